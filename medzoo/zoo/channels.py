"""Layers that rearrange channels inside a model, so the zoo keeps its single ``image`` input.

``ChannelSplit`` turns one (B, ..., M·k) tensor into M tensors of k channels (multimodal fusion:
co-registered modalities arrive stacked as channels). ``RepeatChannels`` turns a grey image into
the 3 channels an ImageNet backbone expects. Both are serialisable, so models load with
``safe_mode=True``.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="medzoo")
class ChannelSplit(layers.Layer):
    """Split the last axis into ``num_splits`` equal parts: (B, ..., C) → list of (B, ..., C/n).

    Raises ``ValueError`` when built on a channel count that ``num_splits`` does not divide.
    """

    def __init__(self, num_splits: int = 2, **kwargs):
        super().__init__(**kwargs)
        if int(num_splits) < 1:
            raise ValueError(f"Argument `num_splits` must be >= 1. Received: num_splits={num_splits}")
        self.num_splits = int(num_splits)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.num_splits:
            raise ValueError(
                f"ChannelSplit needs a channel count that is a multiple of num_splits="
                f"{self.num_splits}. Received: input_shape={tuple(input_shape)}")
        super().build(input_shape)

    def call(self, inputs):
        if self.num_splits == 1:
            return [inputs]
        return ops.split(inputs, self.num_splits, axis=-1)

    def compute_output_shape(self, input_shape):
        part = (*input_shape[:-1], input_shape[-1] // self.num_splits)
        return [part] * self.num_splits

    def get_config(self):
        return {**super().get_config(), "num_splits": self.num_splits}


@keras.saving.register_keras_serializable(package="medzoo")
class RepeatChannels(layers.Layer):
    """Grey → ``channels`` copies along the last axis; an input that already has them passes.

    Raises ``ValueError`` when built on any other channel count.
    """

    def __init__(self, channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        if int(channels) < 1:
            raise ValueError(f"Argument `channels` must be >= 1. Received: channels={channels}")
        self.channels = int(channels)

    def build(self, input_shape):
        if input_shape[-1] not in (1, self.channels):
            raise ValueError(
                f"RepeatChannels needs 1 or {self.channels} input channels. "
                f"Received: input_shape={tuple(input_shape)}")
        super().build(input_shape)

    def call(self, inputs):
        if inputs.shape[-1] == self.channels:
            return inputs
        # Concatenate, not ops.repeat: it lowers to one ConcatV2, which every converter handles.
        return ops.concatenate([inputs] * self.channels, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}
