"""Keras Applications backbone: grey input, local weights only, frozen or not, Grad-CAM-able."""

import re

import keras
import numpy as np
import pytest

from medzoo.zoo import registry
from medzoo.zoo.applications import backbone_layers, build_transfer


def test_grey_input_is_repeated_to_rgb_and_rescaled_inside_the_model():
    model = registry.build("mobilenet_v3", (32, 32, 1), 2)
    assert model.inputs[0].shape[1:] == (32, 32, 1)
    assert model.get_layer("grey_to_rgb").output.shape[1:] == (32, 32, 3)
    scaling = model.get_layer("backbone_range")
    assert (scaling.scale, scaling.offset) == (255.0, 0.0)
    # the backbone's layers are in this graph (not nested), so Grad-CAM can reach them
    assert model.get_layer("conv_1").output.shape[1:] == (1, 1, 576)


def test_weights_load_from_a_local_file_and_the_backbone_freezes(tmp_path):
    source = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                 input_shape=(32, 32, 3))
    kernel = source.get_layer("conv_1").kernel
    kernel.assign(np.full(kernel.shape, 0.5, "float32"))  # not what a fresh build would draw
    path = tmp_path / "mobilenet_v3_small_notop.weights.h5"
    source.save_weights(path)
    model = registry.build("mobilenet_v3", (32, 32, 1), 2, weights=str(path),
                           freeze_backbone=True)
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv_1").kernel), 0.5)
    assert all(not layer.trainable for layer in backbone_layers(model))
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"probabilities"}


@pytest.mark.parametrize("weights", ["imagenet", "missing.weights.h5"])
def test_weights_are_never_downloaded(weights):
    with pytest.raises(ValueError, match=re.escape(
            f"never downloads weights). Received: weights='{weights}'")):
        build_transfer((32, 32, 1), 2, weights=weights)


def test_3d_and_unknown_backbones_are_refused():
    with pytest.raises(ValueError, match="2D"):
        build_transfer((32, 32, 32, 1), 2)
    with pytest.raises(ValueError, match="backbone='EfficientNetB0'"):
        build_transfer((32, 32, 1), 2, backbone="EfficientNetB0")
