"""CNN classifiers: the seed's conv/pool/fully-connected network and a residual CNN."""

from __future__ import annotations

import keras
from keras import layers

from medzoo.zoo import blocks
from medzoo.zoo.registry import register


def _head(x, num_classes: int, dropout: float, multi_label: bool = False):
    """``probabilities``: softmax over classes, or one sigmoid per class (multi-label)."""
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, activation="sigmoid" if multi_label else "softmax",
                        name="probabilities", dtype="float32")(x)


@register("cnn", task="classification", presets={
    "small": {"widths": (8, 16, 32), "dense": 32}, "base": {},
    "large": {"widths": (32, 64, 128), "dense": 128}})
def small_cnn(input_shape, num_classes: int, *, widths=(16, 32, 64), dense: int = 64,
              norm: str | None = None, dropout: float = 0.2, pool: str = "max",
              multi_label: bool = False) -> keras.Model:
    """The seed's CNN: (conv → pool) per width, global pooling, a dense layer, softmax
    (``multi_label=True``: one sigmoid per class, for findings that occur together).

    No normalisation by default, as in the seed: on small medical datasets batch statistics
    make validation scores swing. Global max pooling keeps the evidence of a small local finding.

    Parameters
    ----------
    widths : tuple of int
        Filters of each conv → pool stage; sizes must be multiples of 2**len(widths).
    dense : int
        Units of the fully connected layer.
    norm : str or None
        Normalisation after each convolution: batch, group, layer or none.
    dropout : float
        Dropout rate before the output layer.
    pool : str
        Global pooling before the dense layer: max or avg.
    multi_label : bool
        One sigmoid per class (set by ``medzoo train`` for multi-label datasets).
    """
    dims = blocks.spatial_dims_of(input_shape)
    blocks.check_divisible(input_shape, 2 ** len(widths))
    inputs = blocks.image_input(input_shape)
    x = inputs
    for i, width in enumerate(widths):
        x = blocks.conv_block(x, dims, width, norm=norm, repeats=1, name=f"stage{i}")
        x = blocks.max_pool(dims)(x)
    x = blocks.global_pool(dims, pool)(x)
    x = layers.Dense(dense, activation="relu", name="fc")(x)
    return keras.Model(inputs, _head(x, num_classes, dropout, multi_label), name="cnn")


def _residual_unit(x, dims: int, filters: int, stride: int, norm: str | None, name: str):
    shortcut = x
    y = blocks.conv(dims, filters, strides=stride, use_bias=False, name=f"{name}_a")(x)
    y = blocks.normalization(norm)(y) if norm else y
    y = layers.ReLU()(y)
    y = blocks.conv(dims, filters, use_bias=False, name=f"{name}_b")(y)
    y = blocks.normalization(norm)(y) if norm else y
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = blocks.conv(dims, filters, 1, strides=stride, use_bias=False,
                               name=f"{name}_proj")(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


@register("resnet", task="classification")
def resnet(input_shape, num_classes: int, *, widths=(16, 32, 64), units_per_stage: int = 2,
           norm: str | None = "batch", dropout: float = 0.2, pool: str = "max",
           multi_label: bool = False) -> keras.Model:
    """A ResNet-style CNN; depth = ``len(widths) * units_per_stage`` residual units
    (``multi_label=True``: sigmoid head, see :func:`small_cnn`).

    Parameters
    ----------
    widths : tuple of int
        Filters of each stage; every stage after the first halves the size.
    units_per_stage : int
        Residual units per stage.
    norm : str or None
        Normalisation after each convolution: batch, group, layer or none.
    dropout : float
        Dropout rate before the output layer.
    pool : str
        Global pooling at the end: max or avg.
    """
    dims = blocks.spatial_dims_of(input_shape)
    blocks.check_divisible(input_shape, 2 ** len(widths))
    inputs = blocks.image_input(input_shape)
    x = blocks.conv_block(inputs, dims, widths[0], norm=norm, repeats=1, name="stem")
    for s, width in enumerate(widths):
        for u in range(units_per_stage):
            stride = 2 if (u == 0 and s > 0) else 1
            x = _residual_unit(x, dims, width, stride, norm, name=f"stage{s}_unit{u}")
    x = blocks.global_pool(dims, pool)(x)
    return keras.Model(inputs, _head(x, num_classes, dropout, multi_label), name="resnet")
