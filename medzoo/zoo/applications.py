"""Keras Applications backbones for transfer learning, behind the zoo's ``image`` contract.

The model: ``image`` (B, H, W, 1 or 3) in [0, 1] → ``RepeatChannels`` (grey → RGB) →
``Rescaling`` to the range the backbone was trained on → the backbone's layers
(``include_top=False``, built into this model's graph, not nested) → ``backbone_pool`` (global
average) → dropout → ``probabilities``.

Weights are never downloaded: ``weights=None`` (random) or the path of a local ``.h5`` /
``.weights.h5`` file holding the backbone's no-top weights (e.g. the Keras ImageNet file copied
onto the machine). Freeze the encoder with ``freeze_backbone=True`` or by setting ``trainable =
False`` on :func:`backbone_layers`.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from medzoo.zoo import blocks
from medzoo.zoo.channels import RepeatChannels
from medzoo.zoo.registry import register

# backbone → (input scale, offset) mapping [0, 1] images to the range it was trained on.
# EfficientNet is left out on purpose: its Normalization layer keeps mean/variance as captured
# tensors, which tf2onnx turns into extra graph inputs, so its ONNX export cannot run.
BACKBONES = {
    "MobileNetV3Small": (255.0, 0.0),   # rescales 0..255 to [-1, 1] itself
    "MobileNetV3Large": (255.0, 0.0),
    "ResNet50V2": (2.0, -1.0),          # expects [-1, 1]
}
DOWNSAMPLING = 32  # every listed backbone reduces H and W by 32


def _check_weights(weights):
    if weights is None:
        return None
    path = Path(weights)
    if not (path.is_file() and path.name.endswith(".h5")):
        raise ValueError(
            "Argument `weights` must be None or the path of an existing local .h5/.weights.h5 file "
            f"(medzoo never downloads weights). Received: weights={weights!r}")
    return str(path)


def build_transfer(input_shape, num_classes: int, *, backbone: str = "MobileNetV3Small",
                   weights: str | None = None, freeze_backbone: bool = False, dropout: float = 0.2,
                   name: str | None = None) -> keras.Model:
    """Classifier over a Keras Applications ``backbone`` (2D only; see the module docstring).

    ``freeze_backbone=True`` trains only the head (the usual first step with pretrained weights).

    Parameters
    ----------
    backbone : str
        A Keras Applications model name (see ``BACKBONES``).
    weights : str or None
        A local weights file for the backbone (nothing is downloaded); none: random.
    freeze_backbone : bool
        Keep the backbone's weights fixed and train the head only.
    dropout : float
        Dropout rate before the output layer.

    Raises ``ValueError`` for 3D inputs, sizes not a multiple of 32, 2+ channels other than 3,
    an unknown backbone or a ``weights`` value that is not a local file.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Argument `backbone` must be one of {sorted(BACKBONES)}. "
                         f"Received: backbone={backbone!r}")
    if blocks.spatial_dims_of(input_shape) != 2:
        raise ValueError("Keras Applications backbones are 2D: `input_shape` must be (H, W, C). "
                         f"Received: input_shape={tuple(input_shape)}")
    blocks.check_divisible(input_shape, DOWNSAMPLING)
    if input_shape[-1] not in (1, 3):
        raise ValueError("Argument `input_shape` must have 1 (grey) or 3 channels for an ImageNet "
                         f"backbone. Received: input_shape={tuple(input_shape)}")
    inputs = blocks.image_input(input_shape)
    x = RepeatChannels(3, name="grey_to_rgb")(inputs)
    scale, offset = BACKBONES[backbone]
    x = layers.Rescaling(scale, offset, name="backbone_range")(x)
    # Built on our tensor, so its layers join this model's graph (no nested model): Grad-CAM
    # finds its last convolution, and `backbone_layers` lists them for freezing.
    net = getattr(keras.applications, backbone)(
        include_top=False, weights=_check_weights(weights), input_tensor=x,
        input_shape=(*input_shape[:2], 3), pooling=None)
    for layer in backbone_layers(net):
        layer.trainable = not freeze_backbone  # frozen BatchNorm also runs in inference mode
    x = layers.GlobalAveragePooling2D(name="backbone_pool")(net.output)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities",
                           dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name or backbone.lower())


def backbone_layers(model) -> list:
    """The backbone's layers of a model built here: all but the input, head and adapters."""
    own = {"image", "grey_to_rgb", "backbone_range", "backbone_pool", "head_dropout",
           "probabilities"}
    return [layer for layer in model.layers if layer.name not in own]


@register("mobilenet_v3", task="classification", options_from=build_transfer,
          fixed=("backbone",))
def mobilenet_v3(input_shape, num_classes: int, **options) -> keras.Model:
    """MobileNetV3Small backbone (Keras Applications; weights=None or a local file), small head."""
    return build_transfer(input_shape, num_classes, backbone="MobileNetV3Small", **options)
