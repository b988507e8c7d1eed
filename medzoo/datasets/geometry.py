"""Where a series' voxels lie in the patient: one small, pure description shared by volume
ingest, annotation readers (SEG, RTSTRUCT, NIfTI) and the writers that map predictions back.

Conventions (DICOM's): patient coordinates are LPS millimetres. A series is an array indexed
``(k, i, j)`` = (slice in ascending order along the slice normal, row, column). Row ``i`` moves
along the column direction cosines (``orientation[3:]``) by ``pixel_spacing[0]``; column ``j``
moves along the row direction cosines (``orientation[:3]``) by ``pixel_spacing[1]``; slice ``k``
is at ``positions[k]``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: Slices whose positions stray further than this from the regular grid are "uneven" (mm).
POSITION_TOLERANCE_MM = 0.05


@dataclasses.dataclass(frozen=True)
class SeriesGeometry:
    """The source grid of one DICOM series, slices sorted along the normal (ascending).

    Attributes
    ----------
    sop_uids : tuple of str
        SOPInstanceUID of each slice, in array order (kept in memory only; never written).
    positions : numpy.ndarray
        ``(D, 3)`` ImagePositionPatient of each slice (LPS, mm).
    orientation : tuple of float
        ImageOrientationPatient: row direction cosines, then column direction cosines.
    pixel_spacing : tuple of float
        ``(row spacing, column spacing)`` in mm (DICOM PixelSpacing order).
    rows, columns : int
    frame_of_reference_uid : str or None
    """

    sop_uids: tuple
    positions: np.ndarray
    orientation: tuple
    pixel_spacing: tuple
    rows: int
    columns: int
    frame_of_reference_uid: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(D, H, W)`` of the series array."""
        return (len(self.positions), self.rows, self.columns)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (row cosines × column cosines)."""
        row, col = np.asarray(self.orientation[:3], float), np.asarray(self.orientation[3:], float)
        n = np.cross(row, col)
        return n / np.linalg.norm(n)

    @property
    def slice_spacing(self) -> float:
        """Median distance between consecutive slices along the normal (mm); 0 for one slice."""
        if len(self.positions) < 2:
            return 0.0
        along = np.asarray(self.positions, float) @ self.normal
        return float(np.median(np.diff(along)))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """``(slice, row, column)`` spacing in mm, the array's axis order."""
        return (self.slice_spacing, float(self.pixel_spacing[0]), float(self.pixel_spacing[1]))

    def direction(self) -> np.ndarray:
        """3×3 matrix whose rows are the LPS unit vectors of array axes (k, i, j)."""
        return np.stack([self.normal, np.asarray(self.orientation[3:], float),
                         np.asarray(self.orientation[:3], float)])

    def affine(self) -> np.ndarray:
        """4×4 matrix mapping homogeneous voxel index ``(k, i, j, 1)`` to LPS mm.

        Uses the first slice's position and the median slice step; ``check_regular`` says
        whether the actual positions agree with it.
        """
        a = np.eye(4)
        step = self.slice_spacing if len(self.positions) > 1 else 1.0
        a[:3, 0] = self.normal * step
        a[:3, 1] = np.asarray(self.orientation[3:], float) * float(self.pixel_spacing[0])
        a[:3, 2] = np.asarray(self.orientation[:3], float) * float(self.pixel_spacing[1])
        a[:3, 3] = np.asarray(self.positions[0], float)
        return a

    def check_regular(self, tolerance_mm: float = POSITION_TOLERANCE_MM) -> str | None:
        """None when the slices form a regular grid; else a short reason."""
        pos = np.asarray(self.positions, float)
        if not np.all(np.isfinite(pos)):
            return "non-finite ImagePositionPatient"
        if len(pos) < 2:
            return None
        step = self.slice_spacing
        if not step > 0:
            return f"slice spacing must be positive. Received: {step:.4g} mm"
        expected = pos[0] + np.outer(np.arange(len(pos)), self.normal * step)
        worst = float(np.abs(pos - expected).max())
        if worst > max(tolerance_mm, 0.01 * step):
            return (f"uneven slices: positions stray up to {worst:.3g} mm from a regular grid of "
                    f"{step:.4g} mm")
        return None


def _floats(value, n: int):
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def series_geometry(datasets) -> SeriesGeometry:
    """Geometry of one series from its slices' headers (pydicom datasets, any order).

    Parameters
    ----------
    datasets : iterable of pydicom.Dataset
        Single-frame images of one series (headers suffice).

    Returns
    -------
    SeriesGeometry
        Slices sorted ascending along the normal.

    Raises
    ------
    ValueError
        Missing or inconsistent ImageOrientationPatient / ImagePositionPatient / PixelSpacing,
        zero or non-finite geometry, or differing rows/columns.
    """
    items = list(datasets)
    if not items:
        raise ValueError("a series needs at least one slice. Received: 0")
    orientation = _floats(items[0].get("ImageOrientationPatient"), 6)
    spacing = _floats(items[0].get("PixelSpacing"), 2)
    if orientation is None:
        raise ValueError("ImageOrientationPatient must be 6 finite numbers. Received: "
                         f"{items[0].get('ImageOrientationPatient')!r}")
    if spacing is None or min(spacing) <= 0:
        raise ValueError("PixelSpacing must be 2 positive numbers. Received: "
                         f"{items[0].get('PixelSpacing')!r}")
    rows, columns = int(items[0].Rows), int(items[0].Columns)
    normal = np.cross(orientation[:3], orientation[3:])
    entries = []
    for ds in items:
        iop = _floats(ds.get("ImageOrientationPatient"), 6)
        if iop is None or max(abs(a - b) for a, b in zip(iop, orientation)) > 1e-4:
            raise ValueError("mixed orientations in one series (ImageOrientationPatient differs)")
        if (int(ds.Rows), int(ds.Columns)) != (rows, columns):
            raise ValueError(f"slices must share rows × columns. Received: {rows}×{columns} and "
                             f"{int(ds.Rows)}×{int(ds.Columns)}")
        ipp = _floats(ds.get("ImagePositionPatient"), 3)
        if ipp is None:
            raise ValueError("ImagePositionPatient must be 3 finite numbers. Received: "
                             f"{ds.get('ImagePositionPatient')!r}")
        entries.append((float(np.dot(normal, ipp)), str(ds.get("SOPInstanceUID", "")), ipp))
    entries.sort(key=lambda e: e[0])
    along = [e[0] for e in entries]
    if len(along) > 1 and min(np.diff(along)) <= 0:
        raise ValueError("two slices share one position along the normal (duplicate slices)")
    return SeriesGeometry(sop_uids=tuple(e[1] for e in entries),
                          positions=np.array([e[2] for e in entries], float),
                          orientation=orientation, pixel_spacing=spacing, rows=rows,
                          columns=columns,
                          frame_of_reference_uid=str(items[0].get("FrameOfReferenceUID", "")) or None)
