"""Multimodal fusion classifiers over co-registered modalities stacked as the channels of ``image``.

The pipeline feeds one ``image`` tensor, so M modalities arrive as C = M channels (one channel
each; M·k channels split evenly also work). Early fusion: one CNN sees all channels at once.
Late fusion: ``ChannelSplit`` separates the modalities inside the model, each gets its own CNN
encoder (``modality{i}_*`` layers, no shared weights), the pooled features are concatenated and a
shared head classifies them. With one channel both reduce to a plain CNN, so they also train on
single-modality datasets.
"""

from __future__ import annotations

import keras
from keras import layers

from medzoo.zoo import blocks
from medzoo.zoo.channels import ChannelSplit
from medzoo.zoo.registry import register

MODES = ("early", "late")


def build_fusion(input_shape, num_classes: int, *, mode: str = "late", modalities: int | None = None,
                 widths=(16, 32, 64), dense: int = 64, norm: str | None = "batch",
                 dropout: float = 0.2) -> keras.Model:
    """Fusion classifier over ``modalities`` (default: one per input channel), 2D or 3D.

    Parameters
    ----------
    mode : str
        ``early`` (one CNN over all channels) or ``late`` (one encoder per modality).
    modalities : int or None
        Modalities stacked as channels (default: one per channel); must divide C.
    widths : tuple of int
        Filters of each encoder stage (conv → pool); sizes must be multiples of 2**len(widths).
    dense : int
        Units of the fused fully connected layer.
    norm : str or None
        Normalisation after each convolution: batch, group, layer or none.
    dropout : float
        Dropout rate before the output layer.

    Raises ``ValueError`` for an unknown ``mode`` or when ``modalities`` does not divide C.
    """
    if mode not in MODES:
        raise ValueError(f"Argument `mode` must be one of {MODES}. Received: mode={mode!r}")
    dims = blocks.spatial_dims_of(input_shape)
    channels = int(input_shape[-1])
    modalities = channels if modalities is None else int(modalities)
    if modalities < 1 or channels % modalities:
        raise ValueError(
            "Argument `modalities` must divide the input channels (modalities are stacked as "
            f"channels of `image`). Received: modalities={modalities}, input_shape="
            f"{tuple(input_shape)}")
    blocks.check_divisible(input_shape, 2 ** len(widths))
    inputs = blocks.image_input(input_shape)
    if mode == "early":
        features = blocks.cnn_encoder(inputs, dims, widths, norm=norm, name="encoder")
    else:
        parts = ChannelSplit(modalities, name="split_modalities")(inputs)
        encoded = [blocks.cnn_encoder(part, dims, widths, norm=norm, name=f"modality{i}")
                   for i, part in enumerate(parts)]
        features = (layers.Concatenate(name="fused_features")(encoded) if modalities > 1
                    else encoded[0])
    x = layers.Dense(dense, activation="relu", name="fusion_fc")(features)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities",
                           dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"fusion_{mode}")


@register("fusion_early", task="classification", default_channels=2, options_from=build_fusion,
          fixed=("mode",))
def fusion_early(input_shape, num_classes: int, **options) -> keras.Model:
    """Early fusion: one CNN over all modalities stacked as channels."""
    return build_fusion(input_shape, num_classes, mode="early", **options)


@register("fusion_late", task="classification", default_channels=2, options_from=build_fusion,
          fixed=("mode",))
def fusion_late(input_shape, num_classes: int, **options) -> keras.Model:
    """Late fusion: one CNN encoder per modality (channel), features concatenated, shared head."""
    return build_fusion(input_shape, num_classes, mode="late", **options)
