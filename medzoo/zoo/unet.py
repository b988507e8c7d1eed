"""U-Net family, written once for 2D and 3D: U-Net and Attention U-Net (a thin variant)."""

from __future__ import annotations

import keras
from keras import layers

from medzoo.zoo import blocks
from medzoo.zoo.registry import register


def _attention_gate(skip, gating, dims: int, filters: int, name: str):
    """Additive attention gate (Oktay et al. 2018): weights skip features by a learned mask."""
    theta = blocks.conv(dims, filters, 1, name=f"{name}_theta")(skip)
    phi = blocks.conv(dims, filters, 1, name=f"{name}_phi")(gating)
    attention = layers.ReLU()(layers.Add()([theta, phi]))
    attention = blocks.conv(dims, 1, 1, activation="sigmoid", name=f"{name}_psi")(attention)
    return layers.Multiply()([skip, attention])


def build_unet(input_shape, *, depth: int = 3, base_width: int = 8, norm: str | None = "batch",
               dropout: float = 0.0, attention: bool = False, label_classes: int | None = None,
               name: str = "unet") -> keras.Model:
    """Encoder–decoder with skip connections; output ``mask``: sigmoid lesion probability, or
    with ``label_classes`` = K ≥ 2 (background + foreground classes) a K-channel softmax.

    Parameters
    ----------
    depth : int
        Down-sampling levels; sizes must be multiples of 2**depth.
    base_width : int
        Filters of the first level, doubled at each level below.
    norm : str or None
        Normalisation after each convolution: batch, group, layer or none.
    dropout : float
        Dropout rate in the bottleneck.
    attention : bool
        Additive attention gates on the skip connections (Attention U-Net).
    label_classes : int or None
        Multi-class segmentation: background + foreground classes (softmax head).
    """
    if depth < 1:
        raise ValueError(f"Argument `depth` must be >= 1. Received: depth={depth}")
    dims = blocks.spatial_dims_of(input_shape)
    blocks.check_divisible(input_shape, 2**depth)
    inputs = blocks.image_input(input_shape)
    x, skips = inputs, []
    for level in range(depth):
        x = blocks.conv_block(x, dims, base_width * 2**level, norm=norm, name=f"enc{level}")
        skips.append(x)
        x = blocks.max_pool(dims)(x)
    x = blocks.conv_block(x, dims, base_width * 2**depth, norm=norm, dropout=dropout,
                          name="bottleneck")
    for level in reversed(range(depth)):
        width = base_width * 2**level
        x = blocks.conv_transpose(dims, width, name=f"up{level}")(x)
        skip = skips[level]
        if attention:
            skip = _attention_gate(skip, x, dims, max(width // 2, 1), name=f"gate{level}")
        x = layers.Concatenate()([x, skip])
        x = blocks.conv_block(x, dims, width, norm=norm, name=f"dec{level}")
    # Lesions cover a few per cent of the image: start the sigmoid near that prior (bias −4 →
    # p ≈ 0.02, Lin et al. 2017) instead of 0.5 everywhere, so early steps learn lesions rather
    # than just suppressing the background.
    if label_classes:
        outputs = blocks.softmax_head(x, dims, label_classes)
    else:
        outputs = blocks.conv(dims, 1, 1, activation="sigmoid", name="mask", dtype="float32",
                              bias_initializer=keras.initializers.Constant(-4.0))(x)
    return keras.Model(inputs, outputs, name=name)


# Sizes by width and depth; "base" is the builder's defaults (depth 3, base width 8).
PRESETS = {"small": {"base_width": 4}, "base": {}, "large": {"base_width": 16, "depth": 4}}


@register("unet", task="segmentation", options_from=build_unet, fixed=("attention",),
          presets=PRESETS)
def unet(input_shape, num_classes: int, **options) -> keras.Model:
    """U-Net (Ronneberger et al. 2015), 2D or 3D from the input shape."""
    return build_unet(input_shape, **options)


@register("attention_unet", task="segmentation", options_from=build_unet, fixed=("attention",),
          presets=PRESETS)
def attention_unet(input_shape, num_classes: int, **options) -> keras.Model:
    """Attention U-Net: U-Net with additive attention gates on the skip connections."""
    return build_unet(input_shape, attention=True, name="attention_unet", **options)
