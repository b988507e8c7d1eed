"""Dimension-agnostic building blocks: written once, used for 2D and 3D (``spatial_dims``)."""

from __future__ import annotations

import keras
from keras import layers

_CONV = {2: layers.Conv2D, 3: layers.Conv3D}
_CONV_T = {2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}
_MAXPOOL = {2: layers.MaxPooling2D, 3: layers.MaxPooling3D}
_GAP = {2: layers.GlobalAveragePooling2D, 3: layers.GlobalAveragePooling3D}
_GMP = {2: layers.GlobalMaxPooling2D, 3: layers.GlobalMaxPooling3D}


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


def conv_transpose(dims: int, filters: int, factor: int = 2, **kwargs):
    """Learned upsampling by ``factor`` along every spatial axis (kernel = stride = ``factor``)."""
    return _CONV_T[dims](filters, factor, strides=factor, padding="same", **kwargs)


def max_pool(dims: int):
    return _MAXPOOL[dims](2)


def global_pool(dims: int, kind: str = "avg"):
    """Global average (``"avg"``) or max (``"max"``) pooling; max suits small, local findings."""
    if kind not in ("avg", "max"):
        raise ValueError(f"Argument `pool` must be 'avg' or 'max'. Received: pool={kind!r}")
    return (_GAP if kind == "avg" else _GMP)[dims]()


def normalization(kind: str | None, name: str | None = None):
    """``"batch"``, ``"group"`` (8 groups or fewer), ``"layer"`` or ``None``."""
    if kind in (None, "none"):
        return None
    if kind == "batch":
        # Momentum 0.9, not Keras' 0.99: medical datasets are small, and with a few hundred steps
        # the 0.99 moving statistics lag the weights, which breaks inference after early stopping.
        return layers.BatchNormalization(momentum=0.9, name=name)
    if kind == "layer":
        return layers.LayerNormalization(name=name)
    if kind == "group":
        return layers.GroupNormalization(groups=-1, name=name)
    raise ValueError(
        "Argument `norm` must be one of 'batch', 'group', 'layer', None. " f"Received: norm={kind!r}"
    )


def conv_block(x, dims: int, filters: int, *, norm: str | None = "batch", repeats: int = 2,
               dropout: float = 0.0, name: str | None = None):
    """``repeats`` × (conv 3 → norm → ReLU), then optional dropout.

    With a ``name``, every layer of the block is named ``{name}_conv{i}``, ``{name}_norm{i}``,
    ``{name}_relu{i}``, ``{name}_dropout``, so a block can be found or frozen by prefix.
    """
    def named(part):
        return f"{name}_{part}" if name else None

    for i in range(repeats):
        x = conv(dims, filters, use_bias=norm in (None, "none"), name=named(f"conv{i}"))(x)
        norm_layer = normalization(norm, name=named(f"norm{i}"))
        if norm_layer is not None:
            x = norm_layer(x)
        x = layers.ReLU(name=named(f"relu{i}"))(x)
    if dropout:
        x = layers.Dropout(dropout, name=named("dropout"))(x)
    return x


def image_input(input_shape) -> keras.KerasTensor:
    """The zoo-wide model input: float32 images in [0, 1] named ``image``."""
    return keras.Input(shape=tuple(input_shape), name="image", dtype="float32")


def cnn_encoder(x, dims: int, widths, *, norm: str | None = "batch", name: str = "encoder"):
    """(conv 3 → norm → ReLU → max-pool) per width, then global average pooling → (B, widths[-1]).

    Layer names start with ``name`` (``{name}_stage{i}_conv0``, ``{name}_features``), so an encoder
    can be found, frozen or compared by prefix.
    """
    for i, width in enumerate(widths):
        x = conv_block(x, dims, width, norm=norm, repeats=1, name=f"{name}_stage{i}")
        x = _MAXPOOL[dims](2, name=f"{name}_pool{i}")(x)
    return _GAP[dims](name=f"{name}_features")(x)


def softmax_head(x, dims: int, label_classes: int):
    """The multi-class segmentation output ``mask``: a 1×1 conv to ``label_classes`` channels
    (background + foreground classes) with a softmax over them, in float32."""
    if int(label_classes) < 2:
        raise ValueError("Argument `label_classes` must be >= 2 (background + at least one class). "
                         f"Received: label_classes={label_classes}")
    return conv(dims, int(label_classes), 1, activation="softmax", name="mask",
                dtype="float32")(x)
