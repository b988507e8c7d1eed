"""UNETR++ (Shaker et al. 2022): a transformer U-Net with efficient paired attention, 2D or 3D.

Encoder: a patch embedding (conv, kernel = stride = ``patch_size``), then one stage per width —
a stride-2 conv downsampling (after the first) and ``blocks_per_stage`` transformer blocks, each
an **efficient paired attention** (EPA) over the stage's tokens followed by a residual conv block.
Decoder: learned upsampling, addition of the encoder stage's output, a conv block; a final
upsampling by ``patch_size`` joins a full-resolution conv stem before the 1×1 sigmoid ``mask``.

EPA computes two attentions from one shared query/key projection: spatial attention with keys and
values projected from N tokens to ``proj_size`` (cost linear in N) and channel attention between
feature channels (cost linear in N too). Everything is plain matmul/softmax/reshape, so tf2onnx
converts it. Unlike the paper, the decoder is convolutional only (no EPA), which keeps it small
enough to train on CPU at 32–64 px.

Layer names: encoder ``stem_*``, ``patch_embed*``, ``down*``, ``stage*``; decoder ``up*``,
``skip*``, ``dec*``, ``mask`` (freeze the encoder by prefix).
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from medzoo.zoo import blocks
from medzoo.zoo.registry import register


@keras.saving.register_keras_serializable(package="medzoo")
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding per token position: (B, N, C) → (B, N, C)."""

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError("PositionEmbedding expects tokens (batch, N, C) with N and C known. "
                             f"Received: input_shape={tuple(input_shape)}")
        self.embedding = self.add_weight(name="embedding", shape=(1, *input_shape[1:]),
                                         initializer=self.initializer)
        super().build(input_shape)

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)

    def get_config(self):
        return {**super().get_config(),
                "initializer": keras.initializers.serialize(self.initializer)}


def _l2_normalize(x, axis=-1, epsilon=1e-12):
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon))


@keras.saving.register_keras_serializable(package="medzoo")
class EfficientPairedAttention(layers.Layer):
    """Efficient paired attention (UNETR++ EPA): tokens (B, N, C) → (B, N, C).

    One projection gives the queries and keys that both branches use (``query_key``: the paper's
    shared Q/K); each branch has its own values. Spatial branch: keys and values are projected
    along the token axis from N to P = min(``proj_size``, N) by one shared ``token_projection``,
    so attention is N×P per head. Channel branch: attention between the C/h channels of each head.
    Each branch is projected to C/2 channels, the two are concatenated and scaled per channel by a
    learned ``gamma`` (layer scale, initialised to ``layer_scale``).

    Raises ``ValueError`` when C is not divisible by 2 × ``num_heads`` or N is unknown.
    """

    def __init__(self, num_heads: int = 4, proj_size: int = 16, dropout: float = 0.1,
                 layer_scale: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if int(num_heads) < 1 or int(proj_size) < 1:
            raise ValueError("Arguments `num_heads` and `proj_size` must be >= 1. "
                             f"Received: num_heads={num_heads}, proj_size={proj_size}")
        self.num_heads = int(num_heads)
        self.proj_size = int(proj_size)
        self.dropout = float(dropout)
        self.layer_scale = float(layer_scale)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError("EfficientPairedAttention expects tokens (batch, N, C) with N and C "
                             f"known. Received: input_shape={tuple(input_shape)}")
        tokens, channels = int(input_shape[1]), int(input_shape[2])
        if channels % (2 * self.num_heads):
            raise ValueError(
                f"EfficientPairedAttention needs channels divisible by 2 * num_heads = "
                f"{2 * self.num_heads}. Received: input_shape={tuple(input_shape)}")
        self.tokens, self.channels = tokens, channels
        self.projected = min(self.proj_size, tokens)
        per_token = (None, tokens, channels)
        self.query_key = layers.Dense(2 * channels, use_bias=False, name="query_key")
        self.value_spatial = layers.Dense(channels, use_bias=False, name="value_spatial")
        self.value_channel = layers.Dense(channels, use_bias=False, name="value_channel")
        self.token_projection = layers.Dense(self.projected, name="token_projection")
        self.out_spatial = layers.Dense(channels // 2, name="out_spatial")
        self.out_channel = layers.Dense(channels // 2, name="out_channel")
        for dense in (self.query_key, self.value_spatial, self.value_channel):
            dense.build(per_token)
        self.token_projection.build((None, self.num_heads, channels // self.num_heads, tokens))
        self.out_spatial.build(per_token)
        self.out_channel.build(per_token)
        self.spatial_dropout = layers.Dropout(self.dropout)
        self.channel_dropout = layers.Dropout(self.dropout)
        self.temperature_spatial = self.add_weight(
            name="temperature_spatial", shape=(self.num_heads, 1, 1), initializer="ones")
        self.temperature_channel = self.add_weight(
            name="temperature_channel", shape=(self.num_heads, 1, 1), initializer="ones")
        self.gamma = self.add_weight(name="gamma", shape=(channels,),
                                     initializer=keras.initializers.Constant(self.layer_scale))
        super().build(input_shape)

    def _heads(self, x):
        """(B, N, C) → (B, h, C/h, N): one row per channel of a head, tokens along the last axis."""
        x = ops.reshape(x, (-1, self.tokens, self.num_heads, self.channels // self.num_heads))
        return ops.transpose(x, (0, 2, 3, 1))

    def branches(self, tokens, training=None):
        """The two attention outputs before fusion: ``{"spatial": (B,N,C), "channel": (B,N,C)}``."""
        query, key = ops.split(self.query_key(tokens), 2, axis=-1)
        query, key = _l2_normalize(self._heads(query)), _l2_normalize(self._heads(key))

        # spatial: every token attends to P projected tokens (N×P per head)
        key_projected = self.token_projection(key)                                # B,h,d,P
        value_projected = self.token_projection(self._heads(self.value_spatial(tokens)))
        attention = ops.matmul(ops.transpose(query, (0, 1, 3, 2)), key_projected)  # B,h,N,P
        attention = ops.softmax(attention * self.temperature_spatial, axis=-1)
        attention = self.spatial_dropout(attention, training=training)
        spatial = ops.matmul(attention, ops.transpose(value_projected, (0, 1, 3, 2)))  # B,h,N,d
        spatial = ops.reshape(ops.transpose(spatial, (0, 2, 1, 3)), (-1, self.tokens, self.channels))

        # channel: every channel of a head attends to the head's channels (d×d per head)
        attention = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))            # B,h,d,d
        attention = ops.softmax(attention * self.temperature_channel, axis=-1)
        attention = self.channel_dropout(attention, training=training)
        channel = ops.matmul(attention, self._heads(self.value_channel(tokens)))   # B,h,d,N
        channel = ops.reshape(ops.transpose(channel, (0, 3, 1, 2)), (-1, self.tokens, self.channels))
        return {"spatial": spatial, "channel": channel}

    def call(self, tokens, training=None):
        parts = self.branches(tokens, training=training)
        fused = ops.concatenate([self.out_spatial(parts["spatial"]),
                                 self.out_channel(parts["channel"])], axis=-1)
        return fused * ops.cast(self.gamma, fused.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "proj_size": self.proj_size,
                "dropout": self.dropout, "layer_scale": self.layer_scale}


def _norm_relu(x, norm, name: str):
    layer = blocks.normalization(norm, name=f"{name}_norm")
    return layers.ReLU(name=f"{name}_relu")(layer(x) if layer is not None else x)


def transformer_block(x, dims: int, *, num_heads: int, proj_size: int, norm, dropout: float,
                      name: str):
    """UNETR++ transformer block on a feature map (B, *spatial, C) → same shape.

    tokens + position embedding → x + EPA(LayerNorm(x)) → back to a map → x + 1×1(conv block(x)).
    """
    spatial, channels = tuple(x.shape[1:-1]), int(x.shape[-1])
    tokens = layers.Reshape((math.prod(spatial), channels), name=f"{name}_tokens")(x)
    tokens = PositionEmbedding(name=f"{name}_position")(tokens)
    attended = EfficientPairedAttention(num_heads, proj_size, dropout, name=f"{name}_epa")(
        layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(tokens))
    tokens = layers.Add(name=f"{name}_attention_residual")([tokens, attended])
    x = layers.Reshape((*spatial, channels), name=f"{name}_map")(tokens)
    y = blocks.conv_block(x, dims, channels, norm=norm, name=f"{name}_conv")
    y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = blocks.conv(dims, channels, 1, name=f"{name}_mix")(y)
    return layers.Add(name=f"{name}_conv_residual")([x, y])


@register("unetr_pp", task="segmentation")
def unetr_pp(input_shape, num_classes: int, *, widths=(16, 32, 64), blocks_per_stage: int = 1,
             patch_size: int = 4, num_heads: int = 4, proj_size: int = 16,
             norm: str | None = "batch", dropout: float = 0.1,
             label_classes: int | None = None) -> keras.Model:
    """UNETR++: transformer U-Net with efficient paired attention (Shaker et al. 2022), 2D or 3D.

    Output ``mask``: sigmoid lesion probability, or with ``label_classes`` = K ≥ 2 a K-channel
    softmax over background + foreground classes.

    Parameters
    ----------
    widths : tuple of int
        Channels of each encoder stage (the first after the patch embedding).
    blocks_per_stage : int
        Transformer blocks per stage.
    patch_size : int
        Side of the patch embedding; sizes must be multiples of patch_size * 2**(stages - 1).
    num_heads : int
        Attention heads.
    proj_size : int
        Projected sequence length of the spatial attention.
    norm : str or None
        Normalisation: batch, group, layer or none.
    dropout : float
        Dropout rate in the transformer blocks.
    label_classes : int or None
        Multi-class segmentation: background + foreground classes (softmax head).
    """
    dims = blocks.spatial_dims_of(input_shape)
    if patch_size < 1 or blocks_per_stage < 1 or not widths:
        raise ValueError("Arguments `patch_size` and `blocks_per_stage` must be >= 1 and `widths` "
                         f"non-empty. Received: patch_size={patch_size}, "
                         f"blocks_per_stage={blocks_per_stage}, widths={widths}")
    blocks.check_divisible(input_shape, patch_size * 2 ** (len(widths) - 1))
    inputs = blocks.image_input(input_shape)
    stem = blocks.conv_block(inputs, dims, widths[0], norm=norm, name="stem")
    x = _norm_relu(blocks.conv(dims, widths[0], patch_size, strides=patch_size,
                               name="patch_embed")(inputs), norm, "patch_embed")
    skips = []
    for stage, width in enumerate(widths):
        if stage:
            x = _norm_relu(blocks.conv(dims, width, 2, strides=2, name=f"down{stage}")(x), norm,
                           f"down{stage}")
        for b in range(blocks_per_stage):
            x = transformer_block(x, dims, num_heads=num_heads, proj_size=proj_size, norm=norm,
                                  dropout=dropout, name=f"stage{stage}_block{b}")
        skips.append(x)
    for stage in reversed(range(len(widths) - 1)):
        x = blocks.conv_transpose(dims, widths[stage], name=f"up{stage}")(x)
        x = layers.Add(name=f"skip{stage}")([x, skips[stage]])
        x = blocks.conv_block(x, dims, widths[stage], norm=norm, name=f"dec{stage}")
    x = blocks.conv_transpose(dims, widths[0], factor=patch_size, name="up_patch")(x)
    x = layers.Add(name="skip_stem")([x, stem])
    x = blocks.conv_block(x, dims, widths[0], norm=norm, name="dec_full")
    if label_classes:
        outputs = blocks.softmax_head(x, dims, label_classes)
    else:
        outputs = blocks.conv(dims, 1, 1, activation="sigmoid", name="mask", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="unetr_pp")
