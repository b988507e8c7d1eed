"""FLOPs equal hand counts; ``medzoo models`` rows carry them."""

import keras
import pytest

from medzoo.zoo import describe
from medzoo.zoo.unetr_pp import EfficientPairedAttention


def _one_layer(layer, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, layer(inputs))


def test_dense_flops_are_two_per_multiply_accumulate():
    assert describe.count_flops(_one_layer(keras.layers.Dense(5), (7,))) == 2 * 7 * 5
    # on tokens: once per token
    assert describe.count_flops(_one_layer(keras.layers.Dense(5), (10, 7))) == 2 * 10 * 7 * 5


def test_conv_flops_equal_the_hand_count():
    conv = keras.layers.Conv2D(4, 3, padding="same")
    assert describe.count_flops(_one_layer(conv, (8, 8, 3))) == 2 * (8 * 8) * (3 * 3 * 3) * 4
    strided = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    assert describe.count_flops(_one_layer(strided, (8, 8, 3))) == 2 * (4 * 4) * (3 * 3 * 3) * 4
    conv3d = keras.layers.Conv3D(2, 3, padding="same")
    assert describe.count_flops(_one_layer(conv3d, (4, 4, 4, 1))) == 2 * 64 * 27 * 1 * 2
    up = keras.layers.Conv2DTranspose(3, 2, strides=2)  # each input pixel → 2×2×3 outputs
    assert describe.count_flops(_one_layer(up, (4, 4, 5))) == 2 * (4 * 4 * 5) * (2 * 2 * 3)
    depthwise = keras.layers.DepthwiseConv2D(3, padding="same")
    assert describe.count_flops(_one_layer(depthwise, (8, 8, 3))) == 2 * (8 * 8 * 3) * 9


def test_epa_flops_grow_linearly_with_tokens():
    def flops(tokens):
        return describe.count_flops(_one_layer(EfficientPairedAttention(proj_size=8), (tokens, 16)))

    # with P fixed at 8 every product is linear in N (spatial N×P, channel d×d per token,
    # the token projection N→P), so doubling the tokens doubles the count exactly; N² would ×4
    assert flops(128) == 2 * flops(64)


def test_describe_model_reports_flops_and_default_channels():
    row = describe.describe_model("fusion_late", size=32)
    assert row["inputs"] == {"image": [None, 32, 32, 2]}
    assert row["outputs"] == {"probabilities": [None, 2]}
    assert row["flops"] > row["parameters"] > 0
    cnn = describe.describe_model("cnn", size=32)
    # the first conv alone: 2 · 32·32 · 3·3·1 · 16
    assert cnn["flops"] > 2 * 32 * 32 * 9 * 16


def test_flops_need_fixed_input_sizes():
    with pytest.raises(ValueError, match="fixed input sizes"):
        describe.count_flops(_one_layer(keras.layers.Dense(2), (None, 3)))
