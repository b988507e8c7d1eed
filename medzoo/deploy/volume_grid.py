"""Volume predict's series and grids: a DICOM series read into a volume of modality values,
normalised as the plan says, and resampled between the source grid and the plan's target spacing.

The shared ``medzoo.datasets`` versions (what ingest applied to the training volumes) are used
where they are installed; the local ones here are equivalents for when they are not.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from medzoo.errors import InputError

__all__ = ["normalize", "target_shape", "resample_to_shape", "grid_resampler", "normalizer",
           "read_dicom", "series_volume"]


def normalize(volume: np.ndarray, normalization: dict) -> np.ndarray:
    """Intensities as the training records hold them (plan ``normalization``).

    ``{"scheme": "ct", "clip": [lo, hi], "mean": m, "std": s}`` → ``(clip(x) − m) / s``;
    ``{"scheme": "zscore"}`` → per-volume ``(x − mean) / std``.

    Raises
    ------
    InputError
        An unknown scheme.
    """
    scheme = (normalization or {}).get("scheme")
    x = volume.astype(np.float32, copy=True)
    if scheme == "ct":
        lo, hi = normalization.get("clip", (-np.inf, np.inf))
        np.clip(x, lo, hi, out=x)
        x -= np.float32(normalization.get("mean", 0.0))
        x /= np.float32(max(float(normalization.get("std", 1.0)), 1e-6))
        return x
    if scheme == "zscore":
        x -= np.float32(x.mean())
        x /= np.float32(max(float(x.std()), 1e-6))
        return x
    raise InputError(f"plan normalization scheme must be 'ct' or 'zscore'. Received: {scheme!r}")


def target_shape(shape, spacing, target_spacing) -> tuple[int, ...]:
    """The grid size covering the same extent at ``target_spacing`` (at least 1 voxel)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing))


def resample_to_shape(array: np.ndarray, shape, *, order: int = 1) -> np.ndarray:
    """Resample a 3-D array to ``shape`` over the same extent (voxel centres aligned the way
    nnU-Net and ``skimage.transform.resize`` align them: ``grid_mode``), edges extended."""
    array = np.asarray(array)
    if tuple(array.shape) == tuple(shape):
        return array
    zoom = [n / o for n, o in zip(shape, array.shape)]
    out = ndimage.zoom(array, zoom, order=order, mode="nearest", grid_mode=True,
                       output=np.float32 if order else array.dtype)
    if out.shape != tuple(shape):  # zoom rounds its output size itself: pin it
        out = out[tuple(slice(0, n) for n in shape)]
        out = np.pad(out, [(0, n - s) for n, s in zip(shape, out.shape)], mode="edge")
    return out


def grid_resampler():
    """``f(array, spacing, shape, target_spacing, order)``: volumes-data's
    ``medzoo.datasets.resample.resample_to_shape`` (the grid ingest resampled the training
    volumes on: voxel n at n × spacing from the origin) when it is installed, else the local
    :func:`resample_to_shape` (same extent, centres aligned by ``grid_mode``)."""
    try:
        from medzoo.datasets.resample import resample_to_shape as shared
    except ImportError:
        return lambda array, spacing, shape, target, order: resample_to_shape(array, shape,
                                                                             order=order)
    return lambda array, spacing, shape, target, order: shared(array, spacing, shape, target,
                                                               order=order)


def normalizer():
    """The plan's intensity normalisation: ``medzoo.datasets.plan.normalize`` (what ingest
    applied) when it is installed, else the local :func:`normalize` (same schemes)."""
    try:
        from medzoo.datasets.plan import normalize as shared
    except ImportError:
        return normalize
    return shared


def read_dicom(path, *, pixels: bool):
    """``pydicom.dcmread`` with its warnings silenced (headers only unless ``pixels``)."""
    import pydicom

    with warnings.catch_warnings():  # pydicom warnings may quote element values (PHI)
        warnings.simplefilter("ignore")
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels)


def series_volume(headers, paths_by_uid: dict, geometry) -> np.ndarray:
    """The series' values after the modality LUT, ``(D, H, W)`` float32 in geometry order."""
    volume = np.empty(geometry.shape, np.float32)
    for k, uid in enumerate(geometry.sop_uids):
        ds = read_dicom(paths_by_uid[uid], pixels=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
        if pixels.shape != geometry.shape[1:]:
            raise ValueError(f"slice of {pixels.shape} pixels in a series of "
                             f"{geometry.shape[1:]}")
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        volume[k] = pixels.astype(np.float32) * slope + intercept
    return volume
