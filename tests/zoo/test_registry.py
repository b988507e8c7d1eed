"""Every registered model: builds tiny, fits a step, round-trips .keras safely, converts to ONNX.

Predictors (classification, segmentation) are tested over the same path; the GAN augmenter makes
images instead, so it is built, stepped and its generator checked on its own (its export is in
tests/training/test_gan.py).
"""

import numpy as np
import pytest

from medzoo.zoo import registry

SIZE = 32


def _targets(entry, batch, rng):
    if entry.task == "segmentation":
        return (rng.random((batch, SIZE, SIZE, 1)) > 0.8).astype("float32")
    return rng.integers(0, 2, size=(batch,)).astype("int32")


PREDICTORS = registry.names(registry.PREDICTOR_TASKS)


@pytest.mark.parametrize("name", PREDICTORS)
def test_model_fits_saves_loads_and_converts(name, tmp_path):
    import tf2onnx
    import onnxruntime as ort

    from medzoo.export import serving
    from medzoo.training.fit import _compile
    from medzoo.zoo import saving

    entry = registry.get(name)
    rng = np.random.default_rng(0)
    shape = (SIZE, SIZE, entry.default_channels)
    model = registry.build(name, shape, 2)
    assert model.inputs[0].shape[1:] == shape
    _compile(model, entry.task, 1e-3)
    # One eager step: tracing Keras' train function is >90% of this test's time for the larger
    # models and checks nothing that the graph-mode serving trace and ONNX conversion below (and
    # tests/training, which fits in graph mode) do not already check.
    model.run_eagerly = True
    images = rng.random((4, *shape), dtype=np.float32)
    history = model.fit(images, _targets(entry, 4, rng), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = saving.load_model(path)
    expected = np.asarray(model(images, training=False))
    np.testing.assert_array_equal(np.asarray(reloaded(images, training=False)), expected)
    if entry.task == "classification":
        np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-5)
        from medzoo.evaluation.explain import grad_cam

        for guided in (False, True):  # every classifier can be explained
            maps = grad_cam(reloaded, images, 1, guided=guided)
            assert maps.shape == (4, SIZE, SIZE) and np.isfinite(maps).all()
            assert maps.min() >= 0.0 and maps.max() <= 1.0
    else:
        assert expected.shape == (4, SIZE, SIZE, 1)

    fn = serving.make_serving_functions(reloaded, entry.task, shape)["serve_float"]
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"image": images})[0]
    np.testing.assert_allclose(onnx_out, expected, atol=1e-4)


def test_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("cnn", task="classification")(lambda *a, **k: None)


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="task"):
        registry.register("x-new", task="regression")


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KeyError, match="cnn"):
        registry.get("no-such-model")


@pytest.mark.parametrize("name", PREDICTORS)
def test_size_that_does_not_fit_the_encoder_is_refused(name):
    with pytest.raises(ValueError, match="multiples"):
        registry.build(name, (36, 36, 1), 2)


def test_unet_builds_in_3d_from_the_same_code():
    model = registry.build("unet", (8, 16, 16, 1), 2, depth=2, base_width=4)
    assert model.outputs[0].shape[1:] == (8, 16, 16, 1)


def test_every_model_is_a_predictor_or_the_gan_augmenter():
    tasks = {name: registry.get(name).task for name in registry.names()}
    assert {n for n, t in tasks.items() if t not in registry.PREDICTOR_TASKS} == {"gan"}
    assert tasks["gan"] == "augmentation" and "gan" not in PREDICTORS


@pytest.mark.parametrize("name", [n for n in registry.names() if n not in PREDICTORS])
def test_augmenter_builds_steps_and_generates_images(name, tmp_path):
    from medzoo.zoo import saving

    entry = registry.get(name)
    rng = np.random.default_rng(0)
    shape = (SIZE, SIZE, entry.default_channels)
    gan = registry.build(name, shape, 2, base_width=8)
    gan.compile()
    gan.run_eagerly = True
    images = rng.random((4, *shape), dtype=np.float32)
    history = gan.fit(images, np.array([0, 1, 0, 1], np.int32), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["d_loss"][0]) and np.isfinite(history.history["g_loss"][0])
    latent = rng.standard_normal((3, gan.generator.inputs[0].shape[-1])).astype(np.float32)
    made = np.asarray(gan.generator([latent, np.array([0, 1, 1], np.int32)], training=False))
    assert made.shape == (3, *shape) and made.min() >= 0.0 and made.max() <= 1.0
    gan.generator.save(tmp_path / "generator.keras")
    again = saving.load_model(tmp_path / "generator.keras")
    np.testing.assert_array_equal(
        np.asarray(again([latent, np.array([0, 1, 1], np.int32)], training=False)), made)
    with pytest.raises(ValueError, match="power of two"):
        registry.build(name, (36, 36, 1), 2)
