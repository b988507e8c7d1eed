"""Dimension-agnostic building blocks: written once, used for 2D and 3D (``spatial_dims``)."""

from __future__ import annotations

import keras
from keras import layers

_CONV = {2: layers.Conv2D, 3: layers.Conv3D}
_CONV_T = {2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}
_MAXPOOL = {2: layers.MaxPooling2D, 3: layers.MaxPooling3D}
_GAP = {2: layers.GlobalAveragePooling2D, 3: layers.GlobalAveragePooling3D}


def spatial_dims_of(input_shape) -> int:
    """2 for (H, W, C), 3 for (D, H, W, C); ``ValueError`` otherwise."""
    dims = len(input_shape) - 1
    if dims not in _CONV:
        raise ValueError(
            "Argument `input_shape` must be (H, W, C) or (D, H, W, C). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return dims


def check_divisible(input_shape, factor: int) -> None:
    """Raise when a spatial size is not a positive multiple of ``factor`` (needed by encoders)."""
    for size in input_shape[:-1]:
        if size is not None and (size <= 0 or size % factor):
            raise ValueError(
                f"Argument `input_shape` must have spatial sizes that are positive multiples of "
                f"{factor}. Received: input_shape={tuple(input_shape)}"
            )


def conv(dims: int, filters: int, kernel_size=3, **kwargs):
    return _CONV[dims](filters, kernel_size, padding="same", **kwargs)


def conv_transpose(dims: int, filters: int, **kwargs):
    return _CONV_T[dims](filters, 2, strides=2, padding="same", **kwargs)


def max_pool(dims: int):
    return _MAXPOOL[dims](2)


def global_pool(dims: int):
    return _GAP[dims]()


def normalization(kind: str | None):
    """``"batch"``, ``"group"`` (8 groups or fewer), ``"layer"`` or ``None``."""
    if kind in (None, "none"):
        return None
    if kind == "batch":
        return layers.BatchNormalization()
    if kind == "layer":
        return layers.LayerNormalization()
    if kind == "group":
        return layers.GroupNormalization(groups=-1)
    raise ValueError(
        "Argument `norm` must be one of 'batch', 'group', 'layer', None. " f"Received: norm={kind!r}"
    )


def conv_block(x, dims: int, filters: int, *, norm: str | None = "batch", repeats: int = 2,
               dropout: float = 0.0, name: str | None = None):
    """``repeats`` × (conv 3 → norm → ReLU), then optional dropout."""
    for i in range(repeats):
        suffix = f"{name}_conv{i}" if name else None
        x = conv(dims, filters, use_bias=norm in (None, "none"), name=suffix)(x)
        norm_layer = normalization(norm)
        if norm_layer is not None:
            x = norm_layer(x)
        x = layers.ReLU()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return x


def image_input(input_shape) -> keras.KerasTensor:
    """The zoo-wide model input: float32 images in [0, 1] named ``image``."""
    return keras.Input(shape=tuple(input_shape), name="image", dtype="float32")
