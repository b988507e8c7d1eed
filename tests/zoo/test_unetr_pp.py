"""UNETR++ and its efficient paired attention (EPA)."""

import numpy as np
import pytest
import tensorflow as tf

from medzoo.zoo import registry
from medzoo.zoo.unetr_pp import EfficientPairedAttention


def _epa(tokens=64, channels=32, **options):
    layer = EfficientPairedAttention(dropout=0.0, layer_scale=1.0, **options)
    x = tf.random.stateless_normal((2, tokens, channels), seed=(0, 1))
    return layer, x, layer(x)


def test_epa_keeps_token_and_channel_shape_and_projects_tokens_to_proj_size():
    layer, _, out = _epa(tokens=64, channels=32, num_heads=4, proj_size=16)
    assert out.shape == (2, 64, 32)
    # spatial attention is N×P, not N×N: the shared E=F projection maps 64 tokens to 16
    assert tuple(layer.token_projection.kernel.shape) == (64, 16)
    assert tuple(layer.query_key.kernel.shape) == (32, 64)  # one projection gives Q and K
    parts = layer.branches(tf.zeros((1, 64, 32)))
    assert parts["spatial"].shape == parts["channel"].shape == (1, 64, 32)


def test_epa_projects_to_at_most_the_number_of_tokens():
    layer, _, out = _epa(tokens=4, channels=16, num_heads=2, proj_size=16)
    assert tuple(layer.token_projection.kernel.shape) == (4, 4)
    assert out.shape == (2, 4, 16)


def test_epa_spatial_and_channel_branches_share_the_query_key_variables():
    layer, x, _ = _epa()
    used = {}
    for branch in ("spatial", "channel"):
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(layer.branches(x)[branch] ** 2)
        grads = tape.gradient(value, layer.trainable_variables)
        used[branch] = {id(v) for v, g in zip(layer.trainable_variables, grads) if g is not None}
    query_key = id(layer.query_key.kernel)
    assert query_key in used["spatial"] and query_key in used["channel"]
    # the values and the token projection are the branches' own
    assert id(layer.token_projection.kernel) in used["spatial"] - used["channel"]
    assert id(layer.value_spatial.kernel) in used["spatial"] - used["channel"]
    assert id(layer.value_channel.kernel) in used["channel"] - used["spatial"]
    assert sum(1 for v in layer.trainable_variables if "query_key" in v.path) == 1


def test_epa_refuses_channels_that_do_not_split_into_heads():
    with pytest.raises(ValueError, match="divisible by 2 \\* num_heads = 8"):
        EfficientPairedAttention(num_heads=4)(tf.zeros((1, 16, 12)))


def test_unetr_pp_has_one_epa_per_block_and_stage():
    model = registry.build("unetr_pp", (32, 32, 1), 2, widths=(8, 16, 32), blocks_per_stage=2)
    epa = [layer for layer in model.layers if isinstance(layer, EfficientPairedAttention)]
    assert [layer.name for layer in epa] == [f"stage{s}_block{b}_epa" for s in range(3)
                                             for b in range(2)]
    # tokens per stage: 32/4 = 8 → 64 tokens, then 16, then 4
    assert [layer.tokens for layer in epa[::2]] == [64, 16, 4]
    assert model.outputs[0].shape[1:] == (32, 32, 1)


def test_unetr_pp_builds_in_3d_from_the_same_code():
    model = registry.build("unetr_pp", (16, 16, 16, 1), 2, widths=(8, 16), num_heads=2)
    assert model.outputs[0].shape[1:] == (16, 16, 16, 1)
    out = model(np.zeros((1, 16, 16, 16, 1), "float32"))
    assert np.all((np.asarray(out) >= 0) & (np.asarray(out) <= 1))


def test_every_weighted_layer_is_named_as_encoder_or_decoder():
    # what a --freeze-encoder option relies on: the encoder is found by name prefix
    encoder, decoder = ("stem_", "patch_embed", "down", "stage"), ("up", "skip", "dec", "mask")
    model = registry.build("unetr_pp", (32, 32, 1), 2, widths=(8, 16, 32))
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert all(name.startswith(encoder) != name.startswith(decoder) for name in weighted), weighted
    assert {name.split("_")[0] for name in weighted if name.startswith(encoder)} >= {
        "stem", "patch", "down1", "down2", "stage0", "stage1", "stage2"}
