"""Preprocessing as Keras layers, so that an export can carry it inside its graph.

Each layer computes, with TensorFlow ops that tf2onnx converts (Pad-free mirror padding by
slice/reverse/concat, Conv2D, TopK, OneHot, Gather, CumSum), the same numbers as its numpy twin
in :mod:`medzoo.datasets.preprocess`, which ingest applies with ``--denoise``, ``--enhance`` and
``--standardize``. Inputs are ``(B, H, W, C)`` images or ``(B, D, H, W, C)`` volumes; 2D
operations run on every ``H × W`` plane of every channel (and slice).

:func:`layers_from_specs` turns a dataset's ``dataset.json["preprocessing"]`` into the layers
to append after resizing, in order.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from medzoo.datasets import preprocess as _np

PACKAGE = "medzoo"


def _planes(x):
    """``(B, [D,] H, W, C)`` → ``(N, H, W)`` and a function that puts planes back."""
    shape = tf.shape(x)
    rank = x.shape.rank
    perm = [0, rank - 1] + list(range(1, rank - 1))  # channels before the spatial axes
    moved = tf.transpose(x, perm)
    moved_shape = tf.shape(moved)
    planes = tf.reshape(moved, tf.stack([-1, shape[rank - 3], shape[rank - 2]]))
    inverse = [0] + list(range(2, rank)) + [1]

    def restore(p):
        return tf.transpose(tf.reshape(p, moved_shape), inverse)

    return planes, restore


def _mirror(x, r, axis):
    """Symmetric padding by ``r`` along ``axis`` (numpy "symmetric", scipy "reflect")."""
    if r == 0:
        return x
    n = tf.shape(x)[axis]
    head = tf.reverse(tf.gather(x, tf.range(r), axis=axis), [axis])
    tail = tf.reverse(tf.gather(x, tf.range(n - r, n), axis=axis), [axis])
    return tf.concat([head, x, tail], axis=axis)


class _Base(keras.layers.Layer):
    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class Windowing(_Base):
    """Linear VOI window (DICOM C.11.2.1.2) to [0, 1]: ``clip((x − (c − ½)) / (w − 1) + ½, 0, 1)``.

    Parameters
    ----------
    center, width : float
        ``width`` ≥ 1 (1 is a threshold at ``center − ½``).
    """

    def __init__(self, center, width, **kwargs):
        super().__init__(**kwargs)
        if not float(width) >= 1:
            raise ValueError(f"Argument `width` must be >= 1. Received: width={width}")
        self.center = float(center)
        self.width = float(width)

    def call(self, x):
        x = tf.cast(x, tf.float32)
        if self.width == 1:
            return tf.cast(x > self.center - 0.5, tf.float32)
        y = (x - (self.center - 0.5)) / (self.width - 1.0) + 0.5
        return tf.clip_by_value(y, 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "center": self.center, "width": self.width}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Standardize(_Base):
    """Per-sample standardisation (``medzoo.datasets.preprocess.standardize``).

    Parameters
    ----------
    mode : {"zscore", "minmax"}
        ``zscore``: ``(x − mean) / max(std, 1e-6)``; ``minmax``: ``(x − min) / max(range, 1e-6)``.
    mean, std : float, optional
        Fixed statistics for ``zscore`` (e.g. a dataset's ``pixel_stats``); both or neither.
        Neither: each sample's own.
    """

    def __init__(self, mode="zscore", mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("zscore", "minmax"):
            raise ValueError(f"Argument `mode` must be 'zscore' or 'minmax'. Received: mode={mode!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"Arguments `mean` and `std` go together. Received: mean={mean}, "
                             f"std={std}")
        self.mode = mode
        self.mean = None if mean is None else float(mean)
        self.std = None if std is None else float(std)

    def call(self, x):
        x = tf.cast(x, tf.float32)
        axes = list(range(1, x.shape.rank))
        if self.mode == "minmax":
            lo = tf.reduce_min(x, axis=axes, keepdims=True)
            hi = tf.reduce_max(x, axis=axes, keepdims=True)
            return (x - lo) / tf.maximum(hi - lo, _np.EPSILON)
        if self.mean is not None:
            return (x - self.mean) / max(self.std, _np.EPSILON)
        mean = tf.reduce_mean(x, axis=axes, keepdims=True)
        std = tf.sqrt(tf.reduce_mean(tf.square(x - mean), axis=axes, keepdims=True))
        return (x - mean) / tf.maximum(std, _np.EPSILON)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Denoise(_Base):
    """Median or Gaussian filter over ``size × size`` per plane, edges mirrored.

    ``median`` equals ``scipy.ndimage.median_filter(x, size, mode="reflect")``; ``gaussian`` a
    separable ``size``-tap Gaussian with sigma ``0.3·((size − 1)/2 − 1) + 0.8``
    (``scipy.ndimage.gaussian_filter(x, sigma, mode="reflect", radius=size // 2)``).
    """

    def __init__(self, mode="median", size=3, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("median", "gaussian"):
            raise ValueError(f"Argument `mode` must be 'median' or 'gaussian'. Received: mode={mode!r}")
        if int(size) < 3 or int(size) % 2 == 0:
            raise ValueError(f"Argument `size` must be an odd integer >= 3. Received: size={size}")
        self.mode = mode
        self.size = int(size)

    def call(self, x):
        x = tf.cast(x, tf.float32)
        planes, restore = _planes(x)
        r = self.size // 2
        padded = _mirror(_mirror(planes, r, 1), r, 2)
        h, w = tf.shape(planes)[1], tf.shape(planes)[2]
        if self.mode == "median":
            shifted = [padded[:, dy:dy + h, dx:dx + w]
                       for dy in range(self.size) for dx in range(self.size)]
            stack = tf.stack(shifted, axis=-1)
            k = (self.size * self.size) // 2 + 1
            out = tf.math.top_k(stack, k=k).values[..., -1]
        else:
            kernel = tf.constant(_np.gaussian_kernel(self.size))
            t = padded[..., None]
            t = tf.nn.conv2d(t, tf.reshape(kernel, [self.size, 1, 1, 1]), 1, "VALID")
            t = tf.nn.conv2d(t, tf.reshape(kernel, [1, self.size, 1, 1]), 1, "VALID")
            out = t[..., 0]
        return restore(out)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "size": self.size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Enhance(_Base):
    """Histogram equalisation of [0, 1] planes: global (``histeq``) or tile-based (``clahe``).

    Same numbers as :func:`medzoo.datasets.preprocess.equalize_histogram` and
    :func:`medzoo.datasets.preprocess.clahe`. ``clahe`` needs ``tiles`` dividing H and W.
    """

    def __init__(self, mode="histeq", bins=256, tiles=8, clip_limit=2.0, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("histeq", "clahe"):
            raise ValueError(f"Argument `mode` must be 'histeq' or 'clahe'. Received: mode={mode!r}")
        self.mode = mode
        self.bins = int(bins)
        self.tiles = int(tiles)
        self.clip_limit = float(clip_limit)

    def build(self, input_shape):
        h, w = input_shape[-3], input_shape[-2]
        if self.mode == "clahe" and (h is None or w is None or h % self.tiles or w % self.tiles):
            raise ValueError(f"Enhance(mode='clahe') needs a known height and width divisible "
                             f"by tiles={self.tiles}. Received: input_shape={input_shape}")
        super().build(input_shape)

    def _bins(self, planes):
        b = tf.floor(planes * float(self.bins))
        return tf.cast(tf.clip_by_value(b, 0.0, self.bins - 1.0), tf.int32)

    def call(self, x):
        x = tf.cast(x, tf.float32)
        planes, restore = _planes(x)
        if self.mode == "histeq":
            return restore(self._histeq(planes))
        return restore(self._clahe(planes, x.shape[-3], x.shape[-2]))

    def _histeq(self, planes):
        b = self._bins(planes)
        n_planes = tf.shape(b)[0]
        flat = tf.reshape(b, tf.stack([n_planes, -1]))
        hist = tf.reduce_sum(tf.one_hot(flat, self.bins, dtype=tf.float32), axis=1)
        cdf = tf.cumsum(hist, axis=-1)  # (N, bins)
        n = tf.cast(tf.shape(flat)[1], tf.float32)
        base = tf.range(n_planes)[:, None] * self.bins
        cdf_flat = tf.reshape(cdf, [-1])
        mapped = tf.gather(cdf_flat, flat + base)
        cdf_min = tf.gather(cdf_flat, tf.reduce_min(flat, axis=1, keepdims=True) + base)
        y = (mapped - cdf_min) / tf.maximum(n - cdf_min, 1.0)
        return tf.reshape(y, tf.shape(planes))

    def _clahe(self, planes, h, w):
        t, bins = self.tiles, self.bins
        th, tw = h // t, w // t
        b = self._bins(planes)
        n_planes = tf.shape(b)[0]
        tiled = tf.reshape(b, tf.stack([n_planes, t, th, t, tw]))
        tiled = tf.reshape(tf.transpose(tiled, [0, 1, 3, 2, 4]), tf.stack([n_planes, t, t, th * tw]))
        hist = tf.reduce_sum(tf.one_hot(tiled, bins, dtype=tf.float32), axis=3)  # (N, t, t, bins)
        limit = float(max(1.0, self.clip_limit * th * tw / bins))
        excess = tf.reduce_sum(tf.maximum(hist - limit, 0.0), axis=-1, keepdims=True)
        hist = tf.minimum(hist, limit) + excess / float(bins)
        maps = tf.reshape(tf.cumsum(hist, axis=-1) / float(th * tw), [-1])
        y0, y1, wy = _np.clahe_grid(h, t)
        x0, x1, wx = _np.clahe_grid(w, t)
        base = (tf.range(n_planes) * (t * t * bins))[:, None, None]

        def pick(ty, tx):
            tile = (ty[:, None] * t + tx[None, :]) * bins  # (H, W) numpy
            return tf.gather(maps, base + tf.constant(tile.astype(np.int32))[None] + b)

        m00, m01 = pick(y0, x0), pick(y0, x1)
        m10, m11 = pick(y1, x0), pick(y1, x1)
        wx = tf.constant(wx[None, None, :])
        wy = tf.constant(wy[None, :, None])
        top = m00 + (m01 - m00) * wx
        bottom = m10 + (m11 - m10) * wx
        return top + (bottom - top) * wy

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "bins": self.bins,
                "tiles": self.tiles, "clip_limit": self.clip_limit}


def layers_from_specs(specs) -> list:
    """``dataset.json["preprocessing"]`` → the layers that replay it, in order.

    Raises
    ------
    ValueError
        On an unknown op.
    """
    out = []
    for spec in specs or []:
        op = spec.get("op")
        if op == "denoise":
            out.append(Denoise(spec["mode"], spec["size"]))
        elif op == "enhance":
            out.append(Enhance(spec["mode"], bins=spec.get("bins", 256),
                               tiles=spec.get("tiles", 8), clip_limit=spec.get("clip_limit", 2.0)))
        elif op == "standardize":
            out.append(Standardize(spec["mode"]))
        else:
            raise ValueError(f"Unknown preprocessing op. Expected denoise, enhance or "
                             f"standardize. Received: op={op!r}")
    return out


__all__ = ["Denoise", "Enhance", "Standardize", "Windowing", "layers_from_specs"]
