"""Fusion classifiers: late fusion keeps one encoder per modality; early fusion one for all."""

import keras
import numpy as np
import pytest

from medzoo.zoo import registry

SHAPE = (32, 32, 2)


def _encoder_layers(model, prefix):
    return [layer for layer in model.layers if layer.name.startswith(prefix) and layer.weights]


def test_late_fusion_has_one_separate_encoder_per_modality():
    model = registry.build("fusion_late", (32, 32, 3), 2)
    branches = [_encoder_layers(model, f"modality{i}_") for i in range(3)]
    assert [len(b) for b in branches] == [len(branches[0])] * 3 and branches[0]
    assert not _encoder_layers(model, "modality3_")
    ids = [{id(w) for layer in b for w in layer.weights} for b in branches]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # nothing shared
    first_convs = [model.get_layer(f"modality{i}_stage0_conv0") for i in range(3)]
    assert all(tuple(conv.kernel.shape) == (3, 3, 1, 16) for conv in first_convs)


def test_late_fusion_modality_features_depend_only_on_their_own_channel():
    model = registry.build("fusion_late", SHAPE, 2)
    features = keras.Model(model.input, [model.get_layer("modality0_features").output,
                                          model.get_layer("modality1_features").output])
    rng = np.random.default_rng(0)
    images = rng.random((2, *SHAPE), dtype=np.float32)
    changed = images.copy()
    changed[..., 1] = rng.random(changed.shape[:-1], dtype=np.float32)
    before, after = features(images), features(changed)
    np.testing.assert_array_equal(np.asarray(before[0]), np.asarray(after[0]))
    assert not np.allclose(np.asarray(before[1]), np.asarray(after[1]))
    assert not np.allclose(np.asarray(model(images)), np.asarray(model(changed)))


def test_early_fusion_sees_all_modalities_in_its_first_convolution():
    model = registry.build("fusion_early", SHAPE, 3)
    assert tuple(model.get_layer("encoder_stage0_conv0").kernel.shape) == (3, 3, 2, 16)
    assert not _encoder_layers(model, "modality")
    assert model.outputs[0].shape[1:] == (3,)


def test_single_channel_is_one_modality_so_fusion_trains_on_grey_datasets():
    model = registry.build("fusion_late", (32, 32, 1), 2)
    assert _encoder_layers(model, "modality0_") and not _encoder_layers(model, "modality1_")


def test_modalities_that_do_not_match_the_channels_are_refused():
    with pytest.raises(ValueError, match="modalities=2, input_shape=\\(32, 32, 3\\)"):
        registry.build("fusion_late", (32, 32, 3), 2, modalities=2)


def test_fusion_builds_in_3d():
    model = registry.build("fusion_late", (8, 16, 16, 2), 2, widths=(4, 8))
    assert model.get_layer("modality1_stage0_conv0").kernel.shape[:3] == (3, 3, 3)
