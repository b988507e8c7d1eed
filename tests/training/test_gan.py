"""The GAN augmenter: trains with fit, samples are flagged synthetic, never leave training folds."""

import json

import numpy as np
import pytest

from medzoo.errors import InputError
from medzoo.training import gan


@pytest.fixture(scope="module")
def gan_run(phantom_ds, cnn_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    gan.train_gan(phantom_ds, out, epochs=2, batch_size=8, steps_per_epoch=3, seed=0,
                  classifier_run=cnn_run, verbose=0)
    return out


def test_gan_run_dir(gan_run):
    config = json.loads((gan_run / "config.json").read_text())
    assert config["trained_on"] == "training folds only" and config["epochs_run"] == 2
    assert (gan_run / "generator.keras").exists() and (gan_run / "curves.png").exists()
    assert sorted(p.name for p in (gan_run / "samples").glob("*.png")) == [
        "epoch-001.png", "epoch-002.png"]


def test_generator_round_trips_safely_and_converts_to_onnx(gan_run, tmp_path):
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    generator, config = gan.load_generator(gan_run)
    labels = np.array([0, 1, 1, 0], "int32")
    images = gan.generate(generator, labels, seed=4)
    assert images.shape == (4, 32, 32, 1) and 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, gan.generate(generator, labels, seed=4))
    latent = np.random.default_rng(0).standard_normal((4, 64)).astype("float32")
    spec = [tf.TensorSpec((None, 64), tf.float32, name="latent"),
            tf.TensorSpec((None,), tf.int32, name="label")]
    proto, _ = tf2onnx.convert.from_keras(generator, input_signature=spec, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_images = session.run(None, {"latent": latent, "label": labels})[0]
    np.testing.assert_allclose(onnx_images, np.asarray(generator([latent, labels])), atol=1e-4)


def test_generated_images_join_training_only(gan_run, phantom_ds):
    from medzoo.datasets import records, splits
    from medzoo.training.fit import dataset_fingerprint, split_record_ids, training_datasets

    parts = split_record_ids(splits.fold_assignment(phantom_ds, 3, 0), 0, 3)
    config = {"batch_size": 4, "seed": 0, "augment": False, "folds": 3, "test_fold": 0,
              "split_seed": 0, "data": {"fingerprint": dataset_fingerprint(phantom_ds)},
              "gan": {"run": str(gan_run), "ratio": 0.5}}
    train_ds, val_ds = training_datasets(phantom_ds, parts, config, target="label")
    n_generated = config["gan"]["n_generated"]
    assert n_generated == round(0.5 * len(parts["train"]))
    assert sum(int(x.shape[0]) for x, _ in train_ds) == len(parts["train"]) + n_generated
    val_images = np.concatenate([x.numpy() for x, _ in val_ds])
    stored = np.stack([r["image"] for r in records.read_records(phantom_ds, parts["val"])])
    assert len(val_images) == len(parts["val"])
    # every validation image is a stored patient image, none is generated
    for image in val_images:
        assert np.abs(stored - image).reshape(len(stored), -1).max(1).min() == 0.0


def test_gan_made_for_another_split_is_refused(gan_run, phantom_ds):
    from medzoo.training.fit import dataset_fingerprint

    config = {"folds": 3, "test_fold": 1, "split_seed": 0,
              "data": {"fingerprint": dataset_fingerprint(phantom_ds)}}
    with pytest.raises(InputError, match="test patients"):
        gan.synthetic_training_set(gan_run, config, np.array([0, 1]), 1.0, 0)


def test_samples_are_a_dataset_flagged_synthetic(gan_run, tmp_path):
    from medzoo.datasets import manifest, records

    info = gan.sample_to_dataset(gan_run, 6, tmp_path / "generated")
    assert info["synthetic"] is True and info["counts"]["per_class"] == {"normal": 3, "lesion": 3}
    index = manifest.read_index(tmp_path / "generated")
    assert [r["record_id"] for r in index] == [f"g{i:06d}" for i in range(1, 7)]
    assert {r["patient"] for r in index} == {"synthetic"}
    recs = list(records.read_records(tmp_path / "generated"))
    assert [r["label"] for r in recs] == [0, 1, 0, 1, 0, 1]


def test_frechet_distance_matches_the_formula():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 2))
    assert gan.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # N(0, I) vs N((3, 0), I): distance = |mu|^2 = 9 (covariances equal)
    b = rng.standard_normal((4000, 2)) + np.array([3.0, 0.0])
    assert gan.frechet_distance(a, b) == pytest.approx(9.0, abs=0.3)
    # 1-D closed form: (m1-m2)^2 + s1^2 + s2^2 - 2 s1 s2
    x, y = np.array([[0.0], [2.0], [4.0]]), np.array([[1.0], [1.5], [2.0]])
    sx, sy = np.std(x, ddof=1), np.std(y, ddof=1)
    expected = (x.mean() - y.mean()) ** 2 + sx ** 2 + sy ** 2 - 2 * sx * sy
    assert gan.frechet_distance(x, y) == pytest.approx(expected, abs=1e-9)


def test_frechet_distance_is_logged_per_epoch(gan_run):
    from medzoo.training.curves import read_history

    history = read_history(gan_run / "history.csv")
    assert [row["epoch"] for row in history] == [0, 1]
    assert all(row["frechet"] > 0 for row in history)


def test_quality_report(gan_run, cnn_run):
    quality = gan.gan_quality(gan_run, cnn_run, n_per_class=8)
    assert set(quality["per_class"]) == {"normal", "lesion"}
    for row in quality["per_class"].values():
        assert 0.0 <= row["classified_as_intended"] <= 1.0 and row["frechet_distance"] >= 0
    assert json.loads((gan_run / "quality.json").read_text()) == json.loads(json.dumps(quality))


def test_two_sample_test_tells_different_sets_apart_only():
    rng = np.random.default_rng(1)
    same = gan.two_sample_test(rng.standard_normal((200, 4)), rng.standard_normal((200, 4)))
    apart = gan.two_sample_test(rng.standard_normal((200, 4)),
                                rng.standard_normal((200, 4)) + 1.0)
    assert same["p_value"] > 0.05 and 0.35 < same["accuracy"] < 0.65
    assert apart["p_value"] < 1e-6 and apart["accuracy"] > 0.8


@pytest.mark.slow
def test_frechet_distance_falls_over_training(phantom_ds, cnn_run, tmp_path):
    from medzoo.training.curves import read_history

    gan.train_gan(phantom_ds, tmp_path / "gan", epochs=4, batch_size=8, steps_per_epoch=40,
                  seed=0, classifier_run=cnn_run, verbose=0)
    distances = [row["frechet"] for row in read_history(tmp_path / "gan" / "history.csv")]
    assert len(distances) == 4
    assert distances[-1] < distances[0], distances


def test_generator_exports_like_any_model(gan_run, tmp_path):
    from medzoo.export.exporter import export_run
    from medzoo.export.parity import run_onnx

    version = export_run(gan_run, tmp_path)
    assert version == tmp_path / "gan" / "1"
    for name in ("saved_model.pb", "model.onnx", "parity.json", "model_card.json", "NOT_BLESSED"):
        assert (version / name).exists(), name
    parity = json.loads((version / "parity.json").read_text())
    assert parity["passed"] and max(parity["max_abs_difference"].values()) <= 1e-4
    images = run_onnx(version / "model.onnx", {
        "latent": np.zeros((2, 64), np.float32), "label": np.array([0, 1], np.int32)})["image"]
    assert images.shape == (2, 32, 32, 1)
    assert "not patient images" in json.loads((version / "model_card.json").read_text())[
        "intended_use"]
