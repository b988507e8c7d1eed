"""NIfTI label maps placed on a DICOM series' grid, orientation checked voxel for voxel.

NIfTI's affine maps a voxel index to RAS millimetres; DICOM's patient coordinates are LPS (x and
y negated). A label map written by another tool may store the axes flipped or permuted (a
radiological/neurological flip, x-fastest vs z-fastest). Every series voxel centre is mapped
geometry.affine() → LPS → RAS → NIfTI index; it must land on a NIfTI voxel centre (within
:data:`TOLERANCE_VOXELS` of the series' smallest spacing) inside the NIfTI array, else the label
map is rejected with the offset in mm. Nothing is ever shifted or resampled silently: the result
is the NIfTI array transposed and flipped onto the series' (z, y, x) order, i.e. nearest-neighbour
resampling on a grid that coincides with the series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medzoo.datasets.annotations import AnnotationError

#: A series voxel centre may be this fraction of the series' smallest voxel spacing away from
#: the NIfTI voxel centre it takes its label from; beyond it the NIfTI is "offset".
TOLERANCE_VOXELS = 0.25
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def load_nifti(path):
    """``(data, affine)`` of a NIfTI file; ``affine`` maps voxel index → RAS mm.

    Raises
    ------
    AnnotationError
        Unreadable or truncated file, or no orientation (sform and qform codes both 0).
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise AnnotationError("NIfTI file missing") from None
    except Exception as e:  # noqa: BLE001 - nibabel/gzip/zlib raise many types when truncated
        raise AnnotationError(f"NIfTI unreadable or truncated: {type(e).__name__}") from None
    header = img.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        raise AnnotationError("NIfTI has no orientation (sform_code and qform_code are both 0)")
    return data, np.asarray(img.affine, float)


def read_nifti_labels(path, geometry) -> np.ndarray:
    """The NIfTI label array at ``path`` on ``geometry``'s grid ``(D, H, W)``.

    Raises
    ------
    AnnotationError
        Not 3D, axes not aligned with the series' axes, shape mismatch, or an offset from the
        series larger than the tolerance (stated in mm).
    """
    data, affine = load_nifti(path)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise AnnotationError(f"NIfTI label map must be 3D. Received shape {_shape(data.shape)}")
    return align_to_series(data, affine, geometry)


def align_to_series(data: np.ndarray, affine: np.ndarray, geometry) -> np.ndarray:
    """``data`` (NIfTI voxel order, RAS ``affine``) reordered onto ``geometry``'s (z, y, x) grid."""
    index = np.linalg.inv(affine) @ LPS_TO_RAS @ geometry.affine()  # (k, i, j, 1) → NIfTI index
    linear = index[:3, :3]
    perm = np.round(linear)
    signed_permutation = (np.all(np.abs(perm).sum(0) == 1) and np.all(np.abs(perm).sum(1) == 1))
    if not signed_permutation or np.abs(linear - perm).max() > 0.01:
        spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
        raise AnnotationError(
            "NIfTI grid is not aligned with the series (expected the series' axes and spacing "
            f"{_mm(geometry.spacing)} mm in some order, received spacing {_mm(spacing)} mm"
            f"{'' if _axis_aligned(affine) else ', oblique axes'})")
    source_axis = [int(np.argmax(np.abs(perm[:, g]))) for g in range(3)]
    expected = tuple(geometry.shape[source_axis.index(a)] for a in range(3))
    if tuple(data.shape) != expected:
        raise AnnotationError(f"NIfTI shape mismatch (expected {_shape(expected)} for the series' "
                              f"{_shape(geometry.shape)} in the NIfTI's axis order, received "
                              f"{_shape(data.shape)})")
    offset = _corner_offset_mm(index, affine, data.shape, geometry.shape)
    tolerance = TOLERANCE_VOXELS * min(s for s in geometry.spacing if s > 0)
    if offset > tolerance:
        raise AnnotationError(f"NIfTI affine does not match the series: voxel centres are offset "
                              f"by up to {offset:.2f} mm (tolerance {tolerance:.2f} mm)")
    out = np.transpose(data, source_axis)
    flips = tuple(g for g in range(3) if perm[source_axis[g], g] < 0)
    return np.ascontiguousarray(np.flip(out, flips) if flips else out)


def _corner_offset_mm(index, affine, nifti_shape, series_shape) -> float:
    """Largest distance (mm) from a series corner voxel to the NIfTI voxel it would take."""
    corners = np.array([[k, i, j, 1.0] for k in (0, series_shape[0] - 1)
                        for i in (0, series_shape[1] - 1) for j in (0, series_shape[2] - 1)])
    idx = (corners @ index.T)[:, :3]
    nearest = np.clip(np.round(idx), 0, np.asarray(nifti_shape) - 1)
    return float(np.linalg.norm((idx - nearest) @ affine[:3, :3].T, axis=1).max())


def _axis_aligned(affine) -> bool:
    lin = affine[:3, :3] / np.sqrt((affine[:3, :3] ** 2).sum(0))
    return bool(np.all(np.isclose(np.abs(lin).max(0), 1.0, atol=1e-3)))


def _mm(values) -> str:
    return "×".join(f"{float(v):.3g}" for v in values)


def _shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape) or "scalar"


def nifti_suffix(path) -> bool:
    """True for ``.nii`` / ``.nii.gz`` names."""
    return Path(path).name.lower().endswith((".nii", ".nii.gz"))
