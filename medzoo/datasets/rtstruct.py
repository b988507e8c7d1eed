"""RTSTRUCT ROIs rasterised onto a series' voxel grid.

Each ROI's contours are closed planar polygons in patient coordinates (LPS mm). A contour is
put on the slice nearest to its plane (it must lie within a quarter of the slice spacing of
it), its points are projected onto that slice's pixel grid (row ``i``, column ``j``) and the
polygon is filled at pixel centres (an even-odd scanline fill, tested against
``matplotlib.path``). All contours of one ROI on one slice are combined by the even-odd rule
(XOR), so an inner contour is a hole and a contour inside that hole an island again, whichever
order the file lists them in.
"""

from __future__ import annotations

import numpy as np

from medzoo.datasets.annotations import AnnotationError

#: A contour belongs to a slice when its plane lies within this fraction of the slice spacing of
#: the slice's position. Contours drawn on the series sit on its planes (to rounding); one a
#: quarter spacing away or more was drawn on another reconstruction, or is outside the volume.
OFF_PLANE_FRACTION = 0.25
#: A contour is planar when its points stray at most this far (mm) from their mean plane
#: along the slice normal, or 5% of the slice spacing if that is larger.
PLANARITY_MM = 0.05


def roi_names(ds) -> list[tuple]:
    """``(roi_number, keys)`` of every ROI: keys = (ROIName, coded identification forms...)."""
    codes = {}
    for obs in ds.get("RTROIObservationsSequence", []):
        for code in obs.get("RTROIIdentificationCodeSequence", []):
            meaning, scheme, value = (str(code.get(a, "") or "") for a in
                                      ("CodeMeaning", "CodingSchemeDesignator", "CodeValue"))
            codes[int(obs.ReferencedROINumber)] = [meaning, f"{scheme}:{value}", value]
    out = []
    for roi in ds.get("StructureSetROISequence", []):
        number = int(roi.ROINumber)
        name = str(roi.get("ROIName", "") or f"ROI {number}")
        out.append((number, (name, *codes.get(number, []))))
    if not out:
        raise AnnotationError("RTSTRUCT has no ROIs (StructureSetROISequence is empty)")
    return out


def check_references(ds, geometry) -> None:
    """The structure set's frame of reference and contour images must be the series'."""
    frames = [str(f.get("FrameOfReferenceUID", ""))
              for f in ds.get("ReferencedFrameOfReferenceSequence", [])]
    frames += [str(r.get("ReferencedFrameOfReferenceUID", ""))
               for r in ds.get("StructureSetROISequence", [])]
    frames = {f for f in frames if f}
    if geometry.frame_of_reference_uid and frames and geometry.frame_of_reference_uid not in frames:
        raise AnnotationError("RTSTRUCT is in another frame of reference than the series "
                              "(FrameOfReferenceUID differs)")
    known = set(geometry.sop_uids)
    unknown = {str(img.ReferencedSOPInstanceUID)
               for rc in ds.get("ROIContourSequence", [])
               for c in rc.get("ContourSequence", [])
               for img in c.get("ContourImageSequence", [])
               if "ReferencedSOPInstanceUID" in img} - known
    if unknown:
        raise AnnotationError(f"RTSTRUCT contours reference {len(unknown)} image(s) not in the "
                              f"series ({len(known)} slices)")


def rasterise_roi(ds, number: int, name: str, geometry) -> np.ndarray:
    """Boolean ``(D, H, W)`` mask of ROI ``number`` on ``geometry``'s grid.

    Raises
    ------
    AnnotationError
        Empty ROI, open/point contour, fewer than 3 points, non-planar contour, contour farther
        than half the slice spacing from every slice, self-intersecting contour.
    """
    contours = []
    for rc in ds.get("ROIContourSequence", []):
        if int(rc.get("ReferencedROINumber", -1)) == number:
            contours.extend(rc.get("ContourSequence", []))
    if not contours:
        raise AnnotationError(f"ROI {name!r} is empty (no contours)")
    out = np.zeros(geometry.shape, bool)
    normal = geometry.normal
    along = np.asarray(geometry.positions, float) @ normal
    half = OFF_PLANE_FRACTION * geometry.slice_spacing if len(along) > 1 else 0.5
    flatness = max(PLANARITY_MM, 0.05 * geometry.slice_spacing)
    for n, contour in enumerate(contours, start=1):
        where = f"ROI {name!r} contour {n}"
        kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
        if kind != "CLOSED_PLANAR":
            raise AnnotationError(f"{where} is {kind} (expected CLOSED_PLANAR: a closed polygon)")
        try:
            points = np.asarray([float(v) for v in contour.ContourData], float)
        except (AttributeError, TypeError, ValueError):
            raise AnnotationError(f"{where} has no readable ContourData") from None
        if points.size % 3 or not np.all(np.isfinite(points)):
            raise AnnotationError(f"{where}: ContourData must be finite x,y,z triplets "
                                  f"(received {points.size} values)")
        points = _dedupe(points.reshape(-1, 3))
        if len(points) < 3:
            raise AnnotationError(f"{where} has {len(points)} distinct point(s) (expected ≥ 3)")
        depth = points @ normal
        if np.ptp(depth) > flatness:
            raise AnnotationError(f"{where} is not planar: its points span {np.ptp(depth):.2f} mm "
                                  "along the slice normal")
        k = int(np.argmin(np.abs(along - depth.mean())))
        gap = float(abs(along[k] - depth.mean()))
        if gap > half + 1e-6:
            raise AnnotationError(f"{where} lies {gap:.2f} mm from the nearest slice (more than a "
                                  f"quarter of the slice spacing, {half:.2f} mm): off the image "
                                  "planes")
        rel = points - np.asarray(geometry.positions[k], float)
        rows = rel @ np.asarray(geometry.orientation[3:], float) / float(geometry.pixel_spacing[0])
        cols = rel @ np.asarray(geometry.orientation[:3], float) / float(geometry.pixel_spacing[1])
        polygon = np.stack([cols, rows], axis=1)
        if _self_intersects(polygon):
            raise AnnotationError(f"{where} intersects itself (expected a simple polygon)")
        out[k] ^= fill_polygon(polygon, geometry.rows, geometry.columns)
    return out


def fill_polygon(polygon: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Boolean ``(rows, columns)``: pixel centres inside ``polygon`` ((x=column, y=row) pairs).

    A scanline fill by the even-odd rule: on each pixel row, the polygon's edges are cut by the
    line through the pixel centres (an edge counts for ``y0 <= y < y1``, so a vertex on the line
    is crossed once), and the centres between successive crossings are inside (``x_a <= x <
    x_b``). Same answer as ``matplotlib.path.Path.contains_points`` away from the boundary, in
    O(rows × edges) instead of O(pixels × edges).
    """
    mask = np.zeros((rows, columns), bool)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo = max(int(np.ceil(y0.min())), 0)
    hi = min(int(np.floor(y0.max())), rows - 1)
    if hi < lo:
        return mask
    ys = np.arange(lo, hi + 1, dtype=float)[:, None]  # (R, 1) against (E,) edges
    low, high = np.minimum(y0, y1), np.maximum(y0, y1)
    crosses = (ys >= low) & (ys < high)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(crosses, x0 + (ys - y0) * (x1 - x0) / (y1 - y0), np.inf)
    xs.sort(axis=1)
    counts = crosses.sum(axis=1)
    cols = np.arange(columns)
    for r, (row, n) in enumerate(zip(xs, counts)):
        for a, b in zip(row[:n:2], row[1:n:2]):
            start, stop = max(int(np.ceil(a)), 0), min(int(np.ceil(b)), columns)
            if stop > start:
                mask[lo + r, cols[start:stop]] = True
    return mask


def _dedupe(points: np.ndarray) -> np.ndarray:
    """Drop repeated consecutive points, and a closing point equal to the first."""
    keep = np.ones(len(points), bool)
    keep[1:] = np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-6
    points = points[keep]
    if len(points) > 1 and np.linalg.norm(points[-1] - points[0]) <= 1e-6:
        points = points[:-1]
    return points


def _self_intersects(polygon: np.ndarray, chunk: int = 512) -> bool:
    """True when two non-adjacent edges of the closed polygon cross (proper crossings).

    Edge pairs are first narrowed to those whose bounding boxes overlap (few, for a contour),
    then tested with orientation signs.
    """
    a = polygon
    b = np.roll(polygon, -1, axis=0)
    n = len(a)
    if n < 4:
        return False
    lo, hi = np.minimum(a, b), np.maximum(a, b)

    def cross(o, p, q):
        return (p[:, 0] - o[:, 0]) * (q[:, 1] - o[:, 1]) - (p[:, 1] - o[:, 1]) * (q[:, 0] - o[:, 0])

    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        overlap = ((lo[start:stop, None, 0] <= hi[None, :, 0])
                   & (lo[None, :, 0] <= hi[start:stop, None, 0])
                   & (lo[start:stop, None, 1] <= hi[None, :, 1])
                   & (lo[None, :, 1] <= hi[start:stop, None, 1]))
        e, f = np.nonzero(overlap)
        e += start
        gap = np.abs(e - f)
        keep = (gap > 1) & (gap != n - 1)  # an edge meets its neighbours at their shared vertex
        e, f = e[keep], f[keep]
        if not len(e):
            continue
        d1, d2 = cross(a[e], b[e], a[f]), cross(a[e], b[e], b[f])
        d3, d4 = cross(a[f], b[f], a[e]), cross(a[f], b[f], b[e])
        if np.any((d1 * d2 < 0) & (d3 * d4 < 0)):
            return True
    return False
