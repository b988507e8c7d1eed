"""Resampling volumes between grids of different spacing (pure numpy/scipy; no TensorFlow).

Grids here share their origin and direction: voxel ``n`` of an axis lies at ``n * spacing`` mm
from voxel 0 of the source, whatever the spacing. A volume resampled to a target spacing
therefore keeps the source's origin and direction exactly and its spacing is exactly the target;
its shape is ``round(shape * spacing / target)`` and the last voxels, when they fall past the
source's last voxel centre, repeat the edge. Mapping back (:func:`resample_to_shape` with the
source's shape and spacing) samples the same physical points, so an image survives the round
trip up to interpolation error.

Images are interpolated with a smooth kernel (cubic B-spline by default, the coefficients kept
in float32 to bound memory); label maps label-wise — each class's indicator linearly
interpolated, the voxel taking the class of the largest value — so a label is never averaged
into a fractional or a foreign value, and small structures survive better than with nearest.
"""

from __future__ import annotations

import numpy as np


def target_shape(shape, spacing, target_spacing) -> tuple[int, int, int]:
    """``round(shape * spacing / target_spacing)`` per axis, at least 1.

    Examples
    --------
    >>> target_shape((10, 64, 64), (5.0, 0.7, 0.7), (2.5, 1.4, 1.4))
    (20, 32, 32)
    """
    _check_spacing(spacing, "spacing")
    _check_spacing(target_spacing, "target_spacing")
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing))


def _check_spacing(spacing, name):
    values = np.asarray(spacing, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"Argument `{name}` must be 3 positive finite numbers (z, y, x) in mm. "
                         f"Received: {name}={tuple(np.atleast_1d(values).tolist())}")


def _same_grid(shape, spacing, out_shape, out_spacing) -> bool:
    return tuple(shape) == tuple(out_shape) and np.allclose(spacing, out_spacing, rtol=1e-6)


def _resample_3d(volume: np.ndarray, spacing, shape, out_spacing, order: int) -> np.ndarray:
    from scipy import ndimage

    # output voxel n sits at source index n * out_spacing / spacing (a diagonal affine map)
    scale = np.asarray(out_spacing, np.float64) / np.asarray(spacing, np.float64)
    data = np.asarray(volume, dtype=np.float32)
    if order > 1:  # float32 coefficients: scipy's own prefilter would make a float64 copy
        data = ndimage.spline_filter(data, order=order, output=np.float32, mode="nearest")
    return ndimage.affine_transform(data, scale, offset=0.0, output_shape=tuple(shape),
                                    order=order, mode="nearest", prefilter=False,
                                    output=np.float32)


def resample_to_shape(volume, spacing, shape, target_spacing, *, order: int = 3) -> np.ndarray:
    """Resample an image (or probabilities) onto a grid of ``shape`` at ``target_spacing``.

    Both grids share origin and direction (see the module docstring): use it with the record's
    ``original_shape``/``original_spacing`` to put a prediction back on the DICOM grid.

    Parameters
    ----------
    volume : ndarray
        ``(D, H, W)`` or ``(D, H, W, C)`` (each channel resampled alone).
    spacing, target_spacing : sequence of 3 floats
        mm between voxel centres along z, y, x of ``volume`` and of the output.
    shape : sequence of 3 ints
        Output ``(D, H, W)``.
    order : int
        Spline order: 3 cubic (default), 1 linear, 0 nearest.

    Returns
    -------
    numpy.ndarray
        float32 ``shape`` (+ channels).

    Raises
    ------
    ValueError
        Non-positive or non-finite spacing, or a volume that is not 3D (+ channels).
    """
    _check_spacing(spacing, "spacing")
    _check_spacing(target_spacing, "target_spacing")
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise ValueError(f"Argument `volume` must be (D, H, W) or (D, H, W, C). "
                         f"Received: shape={volume.shape}")
    shape = tuple(int(n) for n in shape)
    if _same_grid(volume.shape[:3], spacing, shape, target_spacing):
        return volume.astype(np.float32, copy=True)
    if volume.ndim == 3:
        return _resample_3d(volume, spacing, shape, target_spacing, order)
    out = np.empty((*shape, volume.shape[3]), np.float32)
    for c in range(volume.shape[3]):
        out[..., c] = _resample_3d(volume[..., c], spacing, shape, target_spacing, order)
    return out


def resample_image(volume, spacing, target_spacing, *, order: int = 3) -> np.ndarray:
    """An image at ``spacing`` resampled to ``target_spacing`` (shape from :func:`target_shape`).

    Parameters
    ----------
    volume : ndarray
        ``(D, H, W)`` or ``(D, H, W, C)``.
    spacing, target_spacing : sequence of 3 floats
        mm, z y x.
    order : int
        3 cubic (default), 1 linear, 0 nearest.

    Returns
    -------
    numpy.ndarray
        float32, same origin and direction as the input grid.
    """
    volume = np.asarray(volume)
    return resample_to_shape(volume, spacing, target_shape(volume.shape[:3], spacing,
                                                           target_spacing),
                             target_spacing, order=order)


def labels_to_shape(labels, spacing, shape, target_spacing, n_classes=None) -> np.ndarray:
    """A label map resampled label-wise onto a grid of ``shape`` at ``target_spacing``.

    Each class's indicator is interpolated linearly and every output voxel takes the class whose
    indicator is largest there (ties: the lower class), so values stay integer class indices and
    only classes present in the input appear in the output. A class present in the input but
    winning no output voxel (thinner than the new voxels) keeps the voxel where its indicator is
    largest, so every class survives.

    Parameters
    ----------
    labels : ndarray
        ``(D, H, W)`` integer class indices ≥ 0.
    spacing, target_spacing : sequence of 3 floats
    shape : sequence of 3 ints
    n_classes : int, optional
        Number of classes (default: ``labels.max() + 1``).

    Returns
    -------
    numpy.ndarray
        uint8 ``shape``.

    Raises
    ------
    ValueError
        Non-integer or negative labels, a label ≥ n_classes, more than 256 classes.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"Argument `labels` must be (D, H, W). Received: shape={labels.shape}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"Argument `labels` must hold integer class indices. "
                         f"Received: dtype={labels.dtype}")
    top = int(labels.max()) if labels.size else 0
    if labels.size and int(labels.min()) < 0:
        raise ValueError(f"Argument `labels` must be >= 0. Received: minimum {int(labels.min())}")
    n_classes = top + 1 if n_classes is None else int(n_classes)
    if top >= n_classes or n_classes > 256:
        raise ValueError(f"Argument `labels` must be < n_classes <= 256. Received: maximum label "
                         f"{top}, n_classes={n_classes}")
    shape = tuple(int(n) for n in shape)
    if _same_grid(labels.shape, spacing, shape, target_spacing):
        return labels.astype(np.uint8, copy=True)
    _check_spacing(spacing, "spacing")
    _check_spacing(target_spacing, "target_spacing")
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=n_classes))
    out = np.full(shape, present[0] if present.size else 0, np.uint8)
    if present.size < 2:
        return out
    best = _resample_3d(labels == present[0], spacing, shape, target_spacing, 1)
    for cls in present[1:]:  # one class at a time: two float volumes, never n_classes of them
        score = _resample_3d(labels == cls, spacing, shape, target_spacing, 1)
        wins = score > best
        out[wins] = cls
        np.maximum(best, score, out=best)
    del best
    kept = np.bincount(out.ravel(), minlength=n_classes)
    for cls in present[kept[present] == 0]:  # a structure thinner than the new voxels: keep
        score = _resample_3d(labels == cls, spacing, shape, target_spacing, 1)  # its best voxel
        out[np.unravel_index(int(np.argmax(score)), shape)] = cls
    return out


def resample_labels(labels, spacing, target_spacing, n_classes=None) -> np.ndarray:
    """A label map at ``spacing`` resampled label-wise to ``target_spacing``.

    See :func:`labels_to_shape`; the output shape comes from :func:`target_shape`, the same as
    :func:`resample_image` gives its image.
    """
    labels = np.asarray(labels)
    return labels_to_shape(labels, spacing, target_shape(labels.shape, spacing, target_spacing),
                           target_spacing, n_classes=n_classes)
