"""The mask of one 2D image from a DICOM SEG or RTSTRUCT (2D ingest's ``mask`` column).

A labels.csv row of 2D ingest names one image file in ``path``; its ``mask`` may be a ``.npy`` /
``.png`` array (read by :mod:`medzoo.datasets.ingest`) or, read here, a DICOM SEG or RTSTRUCT
that covers the image — alone or with the rest of its series, so one SEG of a series may be the
mask of every slice's row.

* **SEG**: the frames whose source image reference (DerivationImageSequence) is the row's SOP
  Instance UID are the row's mask. Images without plane geometry (CR, DX) are matched by that
  UID only; a SEG whose frames carry no source references is refused. An image the SEG lists
  among its referenced instances but has no frame for (highdicom leaves empty frames out) gets
  an empty mask; an image it does not reference at all is rejected.
* **RTSTRUCT**: the contours that reference the image (ContourImageSequence), or, without
  references, those lying on its plane (within 0.5 mm), filled at pixel centres as
  :func:`medzoo.datasets.rtstruct.rasterise_roi` does. Needs the image's plane geometry.

2D masks are binary (as the ``.npy`` masks of 2D ingest): a pixel is foreground when any segment
or ROI covers it, except those ``segment_map`` maps to ``-`` (fractional SEGs at ≥ 0.5). Bad
input raises :class:`~medzoo.datasets.annotations.AnnotationError` (one line, no UID).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from medzoo.datasets.annotations import (_RTSTRUCT_SOP_CLASS, _SEG_SOP_CLASS,
                                         FRACTION_THRESHOLD, AnnotationError,
                                         _frame_references, _read_dicom, _resolve, _short,
                                         _silenced, open_seg, parse_segment_map)

_ARRAY_SUFFIXES = (".npy", ".png")
#: An RTSTRUCT contour without image references belongs to the image when its plane lies this
#: close to the image's plane (mm).
PLANE_TOLERANCE_MM = 0.5


def is_dicom_annotation(path) -> bool:
    """True for a mask file that is DICOM (read here) rather than a .npy/.png array."""
    path = Path(path)
    if path.suffix.lower() in _ARRAY_SUFFIXES:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or path.suffix.lower() == ".dcm"


def read_slice_mask(mask_path, image_path, *, segment_map=None) -> np.ndarray:
    """Binary ``(rows, columns)`` uint8 mask of one image from a DICOM SEG or RTSTRUCT.

    Parameters
    ----------
    mask_path : path-like
        The DICOM SEG or RTSTRUCT.
    image_path : path-like
        The single-frame image the row names (its header is read: SOP Instance UID, rows,
        columns, plane geometry when it has one).
    segment_map : dict or str, optional
        Segment / ROI name (or coded property) → ``-`` leaves it out of the mask; other values
        are accepted and ignored (2D masks are binary).

    Returns
    -------
    numpy.ndarray
        uint8 0/1 of the image's rows × columns.

    Raises
    ------
    AnnotationError
        Not a SEG/RTSTRUCT, unreadable, other frame size, no reference to the image, an
        RTSTRUCT on an image without plane geometry, bad contours.
    """
    mapping = (parse_segment_map(segment_map) if isinstance(segment_map, str)
               else dict(segment_map or {}))
    image = _read_dicom(Path(image_path))
    sop = str(image.get("SOPInstanceUID", "") or "")
    rows, columns = int(image.get("Rows", 0) or 0), int(image.get("Columns", 0) or 0)
    ds = _read_dicom(Path(mask_path))
    sop_class, modality = str(ds.get("SOPClassUID", "")), str(ds.get("Modality", ""))
    if sop_class == _SEG_SOP_CLASS or modality == "SEG":
        return _seg_mask(Path(mask_path), sop, rows, columns, mapping)
    if sop_class == _RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return _rtstruct_mask(ds, image, mapping)
    raise AnnotationError("mask is DICOM but not an annotation (expected a SEG or RTSTRUCT; "
                          f"received modality {modality or '?'})")


def _kept(names, mapping) -> list:
    """Per segment/ROI: False when ``segment_map`` leaves it out (``NAME=-``)."""
    resolved, _ = _resolve(names, None, mapping)
    return [c is not None for c in resolved]


def _referenced_instances(ds) -> set:
    return {str(item.ReferencedSOPInstanceUID)
            for series in ds.get("ReferencedSeriesSequence", [])
            for item in series.get("ReferencedInstanceSequence", [])
            if "ReferencedSOPInstanceUID" in item}


def _seg_mask(path: Path, sop: str, rows: int, columns: int, mapping) -> np.ndarray:
    import highdicom as hd

    seg, numbers, names = open_seg(path)
    if (int(seg.Rows), int(seg.Columns)) != (rows, columns):
        raise AnnotationError(f"SEG frames are {int(seg.Rows)}x{int(seg.Columns)}, the image "
                              f"{rows}x{columns}")
    keep = [n for n, k in zip(numbers, _kept(names, mapping)) if k]
    refs = _frame_references(seg)
    if refs is None:
        raise AnnotationError("SEG frames carry no source image references (a 2D row's image "
                              "is matched by SOP Instance UID)")
    out = np.zeros((rows, columns), np.uint8)
    if sop not in refs:
        if sop in _referenced_instances(seg):
            return out  # referenced, no frame: nothing segmented on this image
        raise AnnotationError("SEG does not reference this image (no frame for its SOP "
                              "Instance UID)")
    if not keep:
        return out
    try:
        with _silenced():
            pixels = seg.get_pixels_by_source_instance(
                [sop], segment_numbers=keep, ignore_spatial_locations=True,
                assert_missing_frames_are_empty=True, skip_overlap_checks=True,
                rescale_fractional=True, dtype=np.float32)
    except Exception as e:  # noqa: BLE001
        raise AnnotationError(f"DICOM SEG frames unreadable: {_short(e)}") from None
    pixels = np.asarray(pixels)[0]
    if seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL:
        hit = pixels >= FRACTION_THRESHOLD
    else:
        hit = pixels > 0
    out[hit.any(axis=-1)] = 1
    return out


def _rtstruct_mask(ds, image, mapping) -> np.ndarray:
    from medzoo.datasets import rtstruct
    from medzoo.datasets.geometry import series_geometry

    try:
        geometry = series_geometry([image])
    except ValueError:
        raise AnnotationError("RTSTRUCT contours need the image's plane geometry "
                              "(ImagePositionPatient, ImageOrientationPatient, PixelSpacing); "
                              "the image has none (use a DICOM SEG)") from None
    sop = geometry.sop_uids[0]
    normal = geometry.normal
    plane = float(np.asarray(geometry.positions[0], float) @ normal)
    rois = rtstruct.roi_names(ds)
    out = np.zeros((geometry.rows, geometry.columns), np.uint8)
    for (number, keys), kept in zip(rois, _kept([k for _, k in rois], mapping)):
        if not kept:
            continue
        roi_ds = copy.deepcopy(ds)
        on_image = 0
        for rc in roi_ds.get("ROIContourSequence", []):
            if int(rc.get("ReferencedROINumber", -1)) != number:
                continue
            mine = [c for c in rc.get("ContourSequence", []) if _on_image(c, sop, normal, plane)]
            rc.ContourSequence = mine
            on_image += len(mine)
        if on_image:
            out |= rtstruct.rasterise_roi(roi_ds, number, keys[0], geometry)[0]
    return out


def _on_image(contour, sop: str, normal, plane: float) -> bool:
    """The contour references the image, or (no references) lies on its plane."""
    refs = {str(img.ReferencedSOPInstanceUID) for img in contour.get("ContourImageSequence", [])
            if "ReferencedSOPInstanceUID" in img}
    if refs:
        return sop in refs
    try:
        points = np.asarray([float(v) for v in contour.ContourData], float).reshape(-1, 3)
    except (AttributeError, TypeError, ValueError):
        return True  # rasterise_roi names the bad contour
    return bool(abs(float((points @ normal).mean()) - plane) <= PLANE_TOLERANCE_MM)
