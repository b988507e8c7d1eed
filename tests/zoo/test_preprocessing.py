"""Preprocessing layers: numbers equal their numpy twins (what ingest applies) and scipy."""

import keras
import numpy as np
import pytest
import scipy.ndimage as ndi

from medzoo.datasets import preprocess
from medzoo.zoo.preprocessing import Denoise, Enhance, Standardize, Windowing, layers_from_specs


def _images(shape=(2, 32, 32, 2), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(np.float32)
    x[..., 8:20, 8:20, :] *= 0.3  # some structure, so histograms are not flat
    return x


def _per_plane(fn, x):
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[-1]):
            out[b, ..., c] = fn(x[b, ..., c])
    return out


def _roundtrip(layer):
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    return clone


def test_windowing_matches_c11_2_1_2():
    x = np.array([[-1400.0, -600.5, -600.0, 149.0, 1000.0]], np.float32)
    layer = _roundtrip(Windowing(-600, 1500))
    np.testing.assert_allclose(layer(x).numpy(), np.clip((x + 600.5) / 1499 + 0.5, 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="width=0"):
        Windowing(0, 0)


@pytest.mark.parametrize("mode", ["zscore", "minmax"])
def test_standardize_equals_numpy(mode):
    x = _images()
    got = _roundtrip(Standardize(mode))(x).numpy()
    ref = np.stack([preprocess.standardize(s, mode) for s in x])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    if mode == "zscore":
        np.testing.assert_allclose(got.mean(axis=(1, 2, 3)), 0, atol=1e-5)
        np.testing.assert_allclose(got.std(axis=(1, 2, 3)), 1, atol=1e-4)
        fixed = Standardize("zscore", mean=0.5, std=0.25)(x).numpy()
        np.testing.assert_allclose(fixed, (x - 0.5) / 0.25, atol=1e-5)


@pytest.mark.parametrize("size", [3, 5])
def test_median_equals_scipy(size):
    x = _images()
    got = _roundtrip(Denoise("median", size))(x).numpy()
    ref = _per_plane(lambda p: ndi.median_filter(p, size=size, mode="reflect"), x)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(_per_plane(lambda p: preprocess.median_filter(p, size), x), ref)


@pytest.mark.parametrize("size", [3, 5])
def test_gaussian_equals_scipy(size):
    x = _images()
    got = _roundtrip(Denoise("gaussian", size))(x).numpy()
    sigma = preprocess.gaussian_sigma(size)
    ref = _per_plane(lambda p: ndi.gaussian_filter(p.astype(np.float64), sigma, mode="reflect",
                                                   radius=size // 2), x)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(_per_plane(lambda p: preprocess.gaussian_filter(p, size), x), got,
                               atol=1e-6)


def test_histeq_equals_numpy_and_flattens_the_histogram():
    x = _images()
    got = _roundtrip(Enhance("histeq"))(x).numpy()
    ref = _per_plane(preprocess.equalize_histogram, x)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    # independent check: output = rank of the pixel's bin among all pixels, min bin → 0
    plane = x[0, ..., 0]
    b = np.clip(np.floor(plane * 256), 0, 255)
    cdf = np.array([(b <= v).sum() for v in range(256)], np.float64)
    expected = (cdf[b.astype(int)] - cdf[int(b.min())]) / (b.size - cdf[int(b.min())])
    np.testing.assert_allclose(got[0, ..., 0], expected, atol=1e-6)
    assert got.min() == 0.0 and got.max() == 1.0


def test_clahe_equals_numpy_and_a_volume_goes_slice_by_slice():
    x = _images((2, 32, 32, 1))
    layer = _roundtrip(Enhance("clahe", tiles=4, clip_limit=2.0))
    got = layer(x).numpy()
    ref = _per_plane(lambda p: preprocess.clahe(p, 4, 2.0, 256), x)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert 0.0 <= got.min() and got.max() <= 1.0 + 1e-6
    vol = _images((1, 3, 32, 32, 1), seed=2)
    got3 = Enhance("clahe", tiles=4)(vol).numpy()
    for d in range(3):
        np.testing.assert_allclose(got3[0, d, ..., 0], preprocess.clahe(vol[0, d, ..., 0], 4),
                                   atol=1e-5)
    with pytest.raises(ValueError, match="divisible by tiles=5"):
        Enhance("clahe", tiles=5)(x)


def test_specs_from_ingest_replay_in_a_saved_model(tmp_path):
    specs = preprocess.parse_specs("median:3", "clahe:4:2", "minmax")
    x = _images((2, 32, 32, 1))
    inputs = keras.Input((32, 32, 1))
    y = inputs
    for layer in layers_from_specs(specs):
        y = layer(y)
    model = keras.Model(inputs, y)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    ref = np.stack([preprocess.apply_specs(s, specs) for s in x])
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ref, atol=1e-5)


def test_layers_convert_to_onnx():
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    import tensorflow as tf

    specs = preprocess.parse_specs("gaussian:3", "histeq", "zscore")
    layers = [Windowing(0.5, 2.0)] + layers_from_specs(specs)
    layers.insert(2, Denoise("median", 3))
    layers.insert(3, Enhance("clahe", tiles=4))

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="image")])
    def fn(x):
        for layer in layers:
            x = layer(x)
        return x

    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _images((2, 32, 32, 1))
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, fn(x).numpy(), atol=1e-4)
