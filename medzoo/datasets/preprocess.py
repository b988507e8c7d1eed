"""Optional image preprocessing applied at ingest, in numpy (no TensorFlow: runs in workers).

Each operation has a Keras twin in :mod:`medzoo.zoo.preprocessing` that computes the same
numbers with TensorFlow ops, so an export can replay in its graph what ingest did to the
training images. The operations run on stored images (after windowing and resizing), in this
fixed order: denoise → enhance → standardize. ``dataset.json`` lists them under
``preprocessing`` as specs (see :func:`parse_specs`).

2D operations (denoise, enhance) work on each ``H × W`` plane of each channel (and of each
slice of a volume); standardize works on the whole sample.
"""

from __future__ import annotations

import numpy as np

from medzoo.errors import InputError

ORDER = ("denoise", "enhance", "standardize")
EPSILON = 1e-6


# --------------------------------------------------------------------------- specs


def parse_specs(denoise=None, enhance=None, standardize=None) -> list[dict]:
    """Command-line style options → the ordered list of specs stored in dataset.json.

    Parameters
    ----------
    denoise : str, optional
        ``median``, ``median:SIZE``, ``gaussian`` or ``gaussian:SIZE`` (odd SIZE ≥ 3; default 3).
    enhance : str, optional
        ``histeq`` or ``clahe`` (``clahe:TILES:CLIP``; default 8 tiles a side, clip limit 2.0).
    standardize : str, optional
        ``zscore`` (per sample: mean 0, std 1) or ``minmax`` (per sample: [0, 1]).

    Returns
    -------
    list of dict
        e.g. ``[{"op": "denoise", "layer": "Denoise", "mode": "median", "size": 3}, …]``.

    Raises
    ------
    InputError
        On an unknown mode or a bad size.
    """
    specs = []
    if denoise:
        mode, _, size = str(denoise).partition(":")
        if mode not in ("median", "gaussian"):
            raise InputError(f"--denoise must be median[:SIZE] or gaussian[:SIZE]. "
                             f"Received: {denoise!r}")
        try:
            size = int(size) if size else 3
        except ValueError:
            size = -1
        if size < 3 or size % 2 == 0:
            raise InputError(f"--denoise size must be an odd integer >= 3. Received: {denoise!r}")
        specs.append({"op": "denoise", "layer": "Denoise", "mode": mode, "size": size})
    if enhance:
        mode, *rest = str(enhance).split(":")
        if mode == "histeq" and not rest:
            specs.append({"op": "enhance", "layer": "Enhance", "mode": "histeq", "bins": 256})
        elif mode == "clahe" and len(rest) <= 2:
            try:
                tiles = int(rest[0]) if rest else 8
                clip = float(rest[1]) if len(rest) > 1 else 2.0
            except ValueError:
                tiles, clip = 0, 0.0
            if tiles < 1 or not clip > 0:
                raise InputError(f"--enhance clahe:TILES:CLIP needs TILES >= 1 and CLIP > 0. "
                                 f"Received: {enhance!r}")
            specs.append({"op": "enhance", "layer": "Enhance", "mode": "clahe", "bins": 256,
                          "tiles": tiles, "clip_limit": clip})
        else:
            raise InputError(f"--enhance must be histeq or clahe[:TILES[:CLIP]]. "
                             f"Received: {enhance!r}")
    if standardize:
        if standardize not in ("zscore", "minmax"):
            raise InputError(f"--standardize must be zscore or minmax. Received: {standardize!r}")
        specs.append({"op": "standardize", "layer": "Standardize", "mode": standardize})
    return specs


def check_size(specs, height: int, width: int) -> None:
    """Raise InputError when CLAHE tiles do not divide the stored image size."""
    for spec in specs:
        if spec.get("mode") == "clahe" and (height % spec["tiles"] or width % spec["tiles"]):
            raise InputError(f"--enhance clahe needs tiles that divide the image size. "
                             f"Received: tiles={spec['tiles']}, size={height}x{width}")


def apply_specs(image: np.ndarray, specs) -> np.ndarray:
    """Apply ``specs`` in order to one stored sample ``(H, W, C)`` or ``(D, H, W, C)``."""
    out = np.asarray(image, dtype=np.float32)
    for spec in specs:
        if spec["op"] == "standardize":
            out = standardize(out, spec["mode"])
            continue
        planes = np.moveaxis(out, -1, 0).reshape(-1, *out.shape[-3:-1])  # (C·D, H, W)
        if spec["op"] == "denoise":
            fn = median_filter if spec["mode"] == "median" else gaussian_filter
            done = [fn(p, spec["size"]) for p in planes]
        elif spec["mode"] == "histeq":
            done = [equalize_histogram(p, spec["bins"]) for p in planes]
        else:
            done = [clahe(p, spec["tiles"], spec["clip_limit"], spec["bins"]) for p in planes]
        moved = np.moveaxis(out, -1, 0)
        out = np.moveaxis(np.stack(done).reshape(moved.shape), 0, -1)
    return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------- operations


def _pad_symmetric(plane: np.ndarray, r: int) -> np.ndarray:
    return np.pad(plane, r, mode="symmetric")  # = scipy.ndimage mode "reflect"


def median_filter(plane: np.ndarray, size: int = 3) -> np.ndarray:
    """Median over a ``size × size`` window, edges mirrored (``scipy.ndimage.median_filter``)."""
    plane = np.asarray(plane, dtype=np.float32)
    h, w = plane.shape
    r = size // 2
    padded = _pad_symmetric(plane, r)
    stack = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(size) for dx in range(size)])
    return np.sort(stack, axis=0)[(size * size) // 2].astype(np.float32)


def gaussian_kernel(size: int) -> np.ndarray:
    """Normalised 1D Gaussian of ``size`` taps, sigma = 0.3·((size − 1)/2 − 1) + 0.8 (OpenCV's)."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_sigma(size: int) -> float:
    """The sigma :func:`gaussian_kernel` uses for ``size`` taps."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_filter(plane: np.ndarray, size: int = 3) -> np.ndarray:
    """Separable Gaussian blur, edges mirrored (``scipy.ndimage.gaussian_filter`` with radius
    ``size // 2`` and :func:`gaussian_sigma`)."""
    plane = np.asarray(plane, dtype=np.float32)
    h, w = plane.shape
    r = size // 2
    k = gaussian_kernel(size)
    padded = _pad_symmetric(plane, r)
    rows = sum(k[i] * padded[i:i + h, :] for i in range(size))
    return sum(k[i] * rows[:, i:i + w] for i in range(size)).astype(np.float32)


def _bins(plane: np.ndarray, bins: int) -> np.ndarray:
    scaled = np.floor(np.asarray(plane, dtype=np.float32) * np.float32(bins))
    return np.clip(scaled, 0, bins - 1).astype(np.int64)


def equalize_histogram(plane: np.ndarray, bins: int = 256) -> np.ndarray:
    """Global histogram equalisation of a [0, 1] plane, output in [0, 1].

    ``y = (cdf[b(x)] − cdf_min) / (N − cdf_min)`` with ``b(x) = clip(floor(x · bins))``; a
    constant plane gives zeros.
    """
    b = _bins(plane, bins)
    cdf = np.cumsum(np.bincount(b.ravel(), minlength=bins)).astype(np.float32)
    n = np.float32(b.size)
    cdf_min = np.float32(cdf[b.min()])
    return ((cdf[b] - cdf_min) / np.maximum(n - cdf_min, np.float32(1.0))).astype(np.float32)


def clahe_maps(plane: np.ndarray, tiles: int, clip_limit: float, bins: int) -> np.ndarray:
    """Per-tile mappings ``(tiles, tiles, bins)``: clipped histogram (excess spread evenly), CDF
    divided by the tile's pixel count."""
    h, w = plane.shape
    th, tw = h // tiles, w // tiles
    b = _bins(plane, bins).reshape(tiles, th, tiles, tw).transpose(0, 2, 1, 3)
    b = b.reshape(tiles, tiles, th * tw)
    hist = np.stack([[np.bincount(b[i, j], minlength=bins) for j in range(tiles)]
                     for i in range(tiles)]).astype(np.float32)
    limit = np.float32(max(1.0, clip_limit * th * tw / bins))
    excess = np.maximum(hist - limit, 0).sum(axis=-1, keepdims=True)
    hist = np.minimum(hist, limit) + excess / np.float32(bins)
    return (np.cumsum(hist, axis=-1) / np.float32(th * tw)).astype(np.float32)


def clahe_grid(n: int, tiles: int):
    """For each of ``n`` pixels along an axis: the two nearest tile centres and the weight of
    the second (bilinear between tile mappings; clamped at the borders)."""
    t = n // tiles
    u = (np.arange(n, dtype=np.float64) + 0.5) / t - 0.5
    lo = np.floor(u)
    weight = (u - lo).astype(np.float32)
    first = np.clip(lo, 0, tiles - 1).astype(np.int64)
    second = np.clip(lo + 1, 0, tiles - 1).astype(np.int64)
    return first, second, weight


def clahe(plane: np.ndarray, tiles: int = 8, clip_limit: float = 2.0, bins: int = 256):
    """Contrast-limited adaptive histogram equalisation of a [0, 1] plane (tile-based).

    Each of ``tiles × tiles`` tiles gets a clipped-histogram mapping (:func:`clahe_maps`); each
    pixel is mapped by the four nearest tiles' mappings, blended bilinearly by distance to the
    tile centres (:func:`clahe_grid`). ``tiles`` must divide both sides.
    """
    plane = np.asarray(plane, dtype=np.float32)
    h, w = plane.shape
    if h % tiles or w % tiles:
        raise ValueError(f"CLAHE tiles must divide the image size. Received: tiles={tiles}, "
                         f"size={h}x{w}")
    maps = clahe_maps(plane, tiles, clip_limit, bins)
    b = _bins(plane, bins)
    y0, y1, wy = clahe_grid(h, tiles)
    x0, x1, wx = clahe_grid(w, tiles)
    wy, wx = wy[:, None], wx[None, :]
    m00 = maps[y0[:, None], x0[None, :], b]
    m01 = maps[y0[:, None], x1[None, :], b]
    m10 = maps[y1[:, None], x0[None, :], b]
    m11 = maps[y1[:, None], x1[None, :], b]
    top = m00 + (m01 - m00) * wx
    bottom = m10 + (m11 - m10) * wx
    return (top + (bottom - top) * wy).astype(np.float32)


def standardize(sample: np.ndarray, mode: str = "zscore", mean=None, std=None) -> np.ndarray:
    """Per-sample standardisation.

    ``zscore``: ``(x − mean) / max(std, 1e-6)``, with the sample's own mean and std unless both
    are given (e.g. the dataset's ``pixel_stats``). ``minmax``: ``(x − min) / max(max − min,
    1e-6)``.
    """
    x = np.asarray(sample, dtype=np.float32)
    if mode == "zscore":
        m = np.float32(x.mean(dtype=np.float64)) if mean is None else np.float32(mean)
        s = np.float32(x.std(dtype=np.float64)) if std is None else np.float32(std)
        return ((x - m) / np.maximum(s, np.float32(EPSILON))).astype(np.float32)
    if mode == "minmax":
        lo, hi = x.min(), x.max()
        return ((x - lo) / np.maximum(hi - lo, np.float32(EPSILON))).astype(np.float32)
    raise ValueError(f"Argument `mode` must be 'zscore' or 'minmax'. Received: mode={mode!r}")


__all__ = ["ORDER", "apply_specs", "check_size", "clahe", "equalize_histogram",
           "gaussian_filter", "median_filter", "parse_specs", "standardize"]
