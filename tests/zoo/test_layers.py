"""Every custom zoo layer round-trips get_config/from_config and computes the same after it."""

import keras
import numpy as np
import pytest

from medzoo.zoo import registry
from medzoo.zoo.channels import ChannelSplit, RepeatChannels
from medzoo.zoo.unetr_pp import EfficientPairedAttention, PositionEmbedding

# (layer, input shape without batch): one entry per custom layer of the zoo
CASES = [
    (ChannelSplit(num_splits=3), (4, 4, 6)),
    (RepeatChannels(channels=3), (4, 4, 1)),
    (PositionEmbedding(initializer="random_normal"), (16, 8)),
    (EfficientPairedAttention(num_heads=2, proj_size=4, dropout=0.0, layer_scale=0.5), (16, 8)),
]


# modules whose layers have round-trip tests of their own
TESTED_ELSEWHERE = {"medzoo.zoo.preprocessing": "tests/zoo/test_preprocessing.py",
                    "medzoo.zoo.gan": "tests/training/test_gan.py"}


def test_every_custom_layer_of_the_model_families_is_covered():
    registry.names()  # imports every family, registering its layers
    registered = {name.split(">", 1)[1] for name, obj in keras.saving.get_custom_objects().items()
                  if name.startswith("medzoo>") and isinstance(obj, type)
                  and issubclass(obj, keras.layers.Layer) and not issubclass(obj, keras.Model)
                  and obj.__module__ not in TESTED_ELSEWHERE}
    assert registered == {type(layer).__name__ for layer, _ in CASES}


@pytest.mark.parametrize("layer, shape", CASES, ids=lambda c: type(c).__name__ if
                         isinstance(c, keras.layers.Layer) else "")
def test_config_round_trip_gives_the_same_layer(layer, shape):
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    expected = layer(x)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build((None, *shape))
    clone.set_weights(layer.get_weights())
    for got, want in zip(keras.tree.flatten(clone(x)), keras.tree.flatten(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)


def test_channel_split_gives_each_modality_its_own_channels():
    x = np.arange(2 * 2 * 2 * 3, dtype="float32").reshape(2, 2, 2, 3)
    parts = ChannelSplit(3)(x)
    assert len(parts) == 3
    for i, part in enumerate(parts):
        np.testing.assert_array_equal(np.asarray(part), x[..., i:i + 1])


def test_channel_split_refuses_channels_it_cannot_divide():
    with pytest.raises(ValueError, match="multiple of num_splits=2.*input_shape=\\(None, 4, 4, 3\\)"):
        ChannelSplit(2)(keras.Input((4, 4, 3)))


def test_repeat_channels_copies_grey_and_passes_rgb():
    grey = np.random.default_rng(1).random((1, 3, 3, 1), dtype=np.float32)
    rgb = np.asarray(RepeatChannels(3)(grey))
    assert rgb.shape == (1, 3, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey[..., 0])
    already = np.random.default_rng(2).random((1, 3, 3, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(RepeatChannels(3)(already)), already)
    with pytest.raises(ValueError, match="1 or 3 input channels"):
        RepeatChannels(3)(keras.Input((3, 3, 2)))
