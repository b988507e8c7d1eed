"""Sliding-window inference over a whole volume (numpy only; no TensorFlow, no torch).

One function, :func:`sliding_window_inference`, modelled on MONAI's
``monai.inferers.sliding_window_inference``: windows of ``patch_size`` placed with a given
``overlap`` (the last window of each axis flush with the volume's end), predicted ``batch_size``
at a time by any ``predict(batch) -> probabilities`` callable (onnxruntime, Keras, a test
function), blended with a Gaussian importance map (sigma = 1/8 of the patch, as MONAI and
nnU-Net do) so that the less reliable window borders weigh little and no seams appear. Both
``medzoo evaluate`` and ``medzoo predict`` call it.

Arrays are channels-last, as Keras models and medzoo records are: the volume is
``(*spatial, C)``, a batch ``(N, *patch_size, C)``, the prediction ``(N, *patch_size, K)``.
Memory: the (padded) input, one ``(*spatial, K)`` accumulator in ``dtype`` and one ``(*spatial)``
float32 weight map — about three copies of the volume whatever the number of windows.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

__all__ = ["sliding_window_inference", "window_starts", "window_slices", "gaussian_importance"]


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start offsets of the windows along one axis of ``size`` voxels.

    Windows step by ``patch * (1 - overlap)`` (at least one voxel); the last one ends exactly at
    ``size``, so every voxel is covered. ``size <= patch`` gives one window at 0 (the caller pads).
    """
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    count = math.ceil((size - patch) / step) + 1
    return sorted({min(i * step, size - patch) for i in range(count)})


def window_slices(shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> list[tuple]:
    """Every window of ``patch_size`` over ``shape`` (spatial dims), as tuples of slices."""
    per_axis = [window_starts(s, p, overlap) for s, p in zip(shape, patch_size)]
    return [tuple(slice(o, o + p) for o, p in zip(origin, patch_size))
            for origin in itertools.product(*per_axis)]


IMPORTANCE_FLOOR = 1e-3
"""Smallest weight of a window voxel (MONAI's ``compute_importance_map`` floor): a voxel seen
only by window borders still gets a prediction, and float16 products do not underflow."""


def gaussian_importance(patch_size: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """Separable Gaussian weight map of ``patch_size``: 1 at the centre, sigma = ``sigma_scale``
    × the patch along each axis, floored at :data:`IMPORTANCE_FLOOR` (as MONAI does)."""
    weights = np.ones((), dtype=np.float64)
    for p in patch_size:
        centre, sigma = (p - 1) / 2.0, max(p * sigma_scale, 1e-6)
        axis = np.exp(-0.5 * ((np.arange(p) - centre) / sigma) ** 2)
        weights = np.multiply.outer(weights, axis)
    weights /= weights.max()
    return np.maximum(weights, IMPORTANCE_FLOOR).astype(np.float32)


def _mirror_sets(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    axes = tuple(sorted(set(int(a) for a in mirror_axes)))
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


def sliding_window_inference(volume: np.ndarray, patch_size: Sequence[int],
                             predict: Callable[[np.ndarray], np.ndarray], *,
                             overlap: float = 0.5, batch_size: int = 4, mode: str = "gaussian",
                             sigma_scale: float = 0.125, mirror_axes: Sequence[int] = (),
                             pad_value: float = 0.0, dtype="float32") -> np.ndarray:
    """Predict a whole volume by blending overlapping windows.

    Parameters
    ----------
    volume : ndarray
        ``(*spatial, C)`` channels-last input (2 or 3 spatial dims).
    patch_size : sequence of int
        Window size per spatial axis (the model's input size).
    predict : callable
        ``predict(batch)`` with ``batch`` float32 ``(N, *patch_size, C)`` returns
        ``(N, *patch_size, K)`` (probabilities, or any per-voxel output to average).
    overlap : float
        Fraction of a window shared with its neighbour along each axis, in [0, 1).
    batch_size : int
        Windows per ``predict`` call.
    mode : {"gaussian", "constant"}
        Blending: Gaussian importance (sigma = ``sigma_scale`` × patch) or a plain average.
    sigma_scale : float
        Gaussian sigma as a fraction of the patch (MONAI and nnU-Net: 1/8).
    mirror_axes : sequence of int
        Spatial axes (0-based) for mirroring test-time augmentation: each window is also
        predicted flipped along every combination of these axes, flipped back and averaged
        (2**len(mirror_axes) predictions per window).
    pad_value : float
        Value the volume is padded with where it is smaller than the patch (cropped off again).
    dtype : {"float32", "float16"}
        Accumulator and result type; float16 halves the memory of the probability map.

    Returns
    -------
    ndarray
        ``(*spatial, K)`` blended output, of ``dtype``.

    Raises
    ------
    ValueError
        On a patch of another rank than the volume's spatial dims, a non-positive patch or
        batch size, an overlap outside [0, 1), an unknown mode, or a prediction of the wrong shape.
    """
    volume = np.asarray(volume)
    patch_size = tuple(int(p) for p in patch_size)
    spatial = volume.shape[:-1]
    if volume.ndim < 3 or len(patch_size) != len(spatial):
        raise ValueError(f"Argument `patch_size` must have one size per spatial axis of the "
                         f"channels-last volume. Received: patch_size={patch_size}, "
                         f"volume shape={volume.shape}")
    if min(patch_size) < 1 or int(batch_size) < 1:
        raise ValueError(f"Arguments `patch_size` and `batch_size` must be positive. "
                         f"Received: patch_size={patch_size}, batch_size={batch_size}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"Argument `overlap` must be in [0, 1). Received: overlap={overlap}")
    if mode not in ("gaussian", "constant"):
        raise ValueError(f"Argument `mode` must be 'gaussian' or 'constant'. Received: mode={mode!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float16, np.float32):
        raise ValueError(f"Argument `dtype` must be float32 or float16. Received: dtype={dtype}")

    # Pad (symmetrically) only the axes shorter than the patch; cropped back at the end.
    pads = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for s, p in zip(spatial, patch_size)]
    padded = any(sum(p) for p in pads)
    work = np.pad(volume, pads + [(0, 0)], constant_values=pad_value) if padded else volume
    shape = work.shape[:-1]

    importance = (gaussian_importance(patch_size, sigma_scale) if mode == "gaussian"
                  else np.ones(patch_size, dtype=np.float32))
    windows = window_slices(shape, patch_size, overlap)
    mirrors = _mirror_sets(mirror_axes)
    if any(not 0 <= a < len(spatial) for m in mirrors for a in m):
        raise ValueError(f"Argument `mirror_axes` must name spatial axes 0..{len(spatial) - 1}. "
                         f"Received: mirror_axes={tuple(mirror_axes)}")

    output = None
    weight = np.zeros(shape, dtype=np.float32)
    for first in range(0, len(windows), int(batch_size)):
        chunk = windows[first:first + int(batch_size)]
        batch = np.stack([work[w] for w in chunk]).astype(np.float32, copy=False)
        probs = None
        for axes in mirrors:
            flip = tuple(a + 1 for a in axes)  # batch axis first
            pred = np.asarray(predict(np.flip(batch, flip) if flip else batch), dtype=np.float32)
            if pred.shape[:-1] != batch.shape[:-1]:
                raise ValueError(f"`predict` must return (N, *patch_size, K) for a batch of shape "
                                 f"{batch.shape}. Received: {pred.shape}")
            pred = np.flip(pred, flip) if flip else pred
            probs = pred if probs is None else probs + pred
        probs /= len(mirrors)
        if output is None:
            output = np.zeros(shape + (probs.shape[-1],), dtype=dtype)
        for window, window_probs in zip(chunk, probs):
            output[window] += (window_probs * importance[..., None]).astype(dtype, copy=False)
            weight[window] += importance

    # Every voxel is covered (window_starts ends flush), so weight > 0 everywhere.
    for index in range(output.shape[0]):  # slice by slice: no full-size float32 temporary
        output[index] = (output[index] / weight[index][..., None]).astype(dtype, copy=False)
    if padded:
        output = output[tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, spatial))]
        output = np.ascontiguousarray(output)
    return output
