import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medzoo import fsio
from medzoo.errors import InputError
from medzoo.evaluation.evaluate import evaluate
from medzoo.export import exporter, push
from medzoo.export.parity import ParityError, run_onnx


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_version_dir_is_complete(cnn_export):
    assert cnn_export.name == "1"
    for name in ("saved_model.pb", "variables", "model.onnx", "model_raw.onnx",
                 "model_card.json", "model_card.md", "parity.json"):
        assert (cnn_export / name).exists(), name
    assert (cnn_export / "BLESSED").exists() != (cnn_export / "NOT_BLESSED").exists()
    parity = json.loads((cnn_export / "parity.json").read_text())
    assert parity["passed"] and parity["n_float_inputs"] >= 1
    assert max(parity["max_abs_difference"].values()) <= 1e-4
    card = json.loads((cnn_export / "model_card.json").read_text())
    assert card["training"]["test_fold"] == 0 and card["model"]["classes"] == ["normal", "lesion"]
    assert card["artefacts"]["model.onnx"] == hashlib.sha256(
        (cnn_export / "model.onnx").read_bytes()).hexdigest()
    assert not list(cnn_export.parent.glob(".*partial*"))


def test_saved_model_cli_lists_named_signatures(cnn_export):
    cli = Path(sys.executable).with_name("saved_model_cli")
    out = subprocess.run([str(cli), "show", "--dir", str(cnn_export), "--all"],
                         capture_output=True, text=True, check=True).stdout
    assert "signature_def['serving_default']" in out and "signature_def['serve_float']" in out
    for name in ("pixels", "rescale_slope", "rescale_intercept", "window_center",
                 "window_width", "invert", "image", "probabilities"):
        assert f"['{name}']" in out, name


def test_raw_ct_pixels_score_like_the_training_pipeline(cnn_export, phantom_ds, phantom_dicom):
    """Serving raw int16 pixels + slope/intercept/window = ORT on the ingested image."""
    import tensorflow as tf

    from medzoo.datasets import manifest, records

    dicom_dir, _ = phantom_dicom
    labels = fsio.read_csv(dicom_dir / "labels.csv")
    index = manifest.read_index(phantom_ds)[:6]
    stored = {r["record_id"]: r["image"] for r in
              records.read_records(phantom_ds, [row["record_id"] for row in index])}
    signature = tf.saved_model.load(str(cnn_export)).signatures["serving_default"]
    for row in index:
        ds = pydicom.dcmread(dicom_dir / labels[int(row["row"]) - 1]["path"])
        assert ds.pixel_array.dtype == np.int16
        feeds = {"pixels": ds.pixel_array[None].astype(np.int32),
                 "rescale_slope": np.array([float(ds.RescaleSlope)], np.float32),
                 "rescale_intercept": np.array([float(ds.RescaleIntercept)], np.float32),
                 "window_center": np.array([float(row["window_center"])], np.float32),
                 "window_width": np.array([float(row["window_width"])], np.float32),
                 "invert": np.array([0.0], np.float32)}
        expected = run_onnx(cnn_export / "model.onnx",
                            {"image": stored[row["record_id"]][None]})["probabilities"]
        from_onnx = run_onnx(cnn_export / "model_raw.onnx", feeds)["probabilities"]
        from_saved = signature(**{k: tf.constant(v) for k, v in feeds.items()})["probabilities"]
        np.testing.assert_allclose(from_onnx, expected, atol=1e-4)
        np.testing.assert_allclose(from_saved.numpy(), expected, atol=1e-4)


def test_versions_increment_and_are_never_overwritten(cnn_run, tmp_path):
    first = exporter.export_run(cnn_run, tmp_path)
    before = _tree_digest(first)
    second = exporter.export_run(cnn_run, tmp_path)
    assert (first.name, second.name) == ("1", "2")
    # export stands before evaluation: without an evaluator the card says why it has no metrics
    card = json.loads((first / "model_card.json").read_text())
    assert card["metrics"] == {"split": None,
                               "note": "no evaluator given to the export; no validation metrics"}
    with pytest.raises(InputError, match="never overwritten"):
        exporter.export_run(cnn_run, tmp_path, version=1)
    assert _tree_digest(first) == before


def test_failed_export_leaves_no_visible_version(cnn_run, tmp_path):
    with pytest.raises(ParityError, match="expected at most"):
        exporter.export_run(cnn_run, tmp_path, tolerance=-1.0)
    assert list((tmp_path / "cnn").iterdir()) == []


def test_blessing_rules_and_push(cnn_run, tmp_path):
    failing = exporter.export_run(cnn_run, tmp_path / "models", bless_if=["auc>1.01"],
                                  evaluator=evaluate)
    assert (failing / "NOT_BLESSED").exists()
    assert "fails >1.01" in (failing / "NOT_BLESSED").read_text()
    with pytest.raises(InputError, match="not blessed"):
        push.push(failing, tmp_path / "serving")
    blessed = exporter.export_run(cnn_run, tmp_path / "models", bless_if=["auc>=0.0"],
                                  evaluator=evaluate)
    assert (blessed / "BLESSED").exists()
    target = push.push(blessed, tmp_path / "serving")
    assert target == tmp_path / "serving" / "cnn" / "2"
    assert _tree_digest(target) == _tree_digest(blessed)
    with pytest.raises(InputError, match="never overwritten"):
        push.push(blessed, tmp_path / "serving")


def test_bless_rule_is_parsed_not_evaluated():
    from medzoo.errors import MedzooError
    from medzoo.export.blessing import parse_rule

    assert parse_rule("AUC >= 0.85") == ("auc", ">=", 0.85)
    with pytest.raises(MedzooError, match="METRIC>=VALUE"):
        parse_rule("__import__('os').system('true')")


def test_segmentation_export_has_mask_and_score(unet_export):
    card = json.loads((unet_export / "model_card.json").read_text())
    assert card["model"]["task"] == "segmentation"
    image = np.zeros((2, 32, 32, 1), np.float32)
    out = run_onnx(unet_export / "model.onnx", {"image": image})
    assert out["mask"].shape == (2, 32, 32, 1)
    np.testing.assert_allclose(out["score"], out["mask"].reshape(2, -1).max(1), atol=1e-6)


def test_ingest_preprocessing_is_replayed_inside_the_serving_graph(phantom_dicom, key_file,
                                                                   tmp_path):
    """Denoise + standardise at ingest: raw pixels through model_raw.onnx = stored images."""
    from medzoo.datasets import manifest, records
    from medzoo.datasets.ingest import ingest
    from medzoo.training.fit import train

    dicom_dir, _ = phantom_dicom
    ds = tmp_path / "ds"
    ingest(dicom_dir, dicom_dir / "labels.csv", ds, size=32, folds=3, seed=0, key_file=key_file,
           denoise="median:3", standardize="zscore")
    assert [spec["op"] for spec in manifest.read_dataset_info(ds)["preprocessing"]] == [
        "denoise", "standardize"]
    train("cnn", ds, tmp_path / "run", epochs=1, batch_size=8, verbose=0)
    version = exporter.export_run(tmp_path / "run", tmp_path / "models")
    labels = fsio.read_csv(dicom_dir / "labels.csv")
    rows = manifest.read_index(ds)[:4]
    stored = {r["record_id"]: r["image"] for r in
              records.read_records(ds, [row["record_id"] for row in rows])}
    for row in rows:
        source = pydicom.dcmread(dicom_dir / labels[int(row["row"]) - 1]["path"])
        feeds = {"pixels": source.pixel_array[None].astype(np.int32),
                 "rescale_slope": np.array([float(source.RescaleSlope)], np.float32),
                 "rescale_intercept": np.array([float(source.RescaleIntercept)], np.float32),
                 "window_center": np.array([row["window_center"]], np.float32),
                 "window_width": np.array([row["window_width"]], np.float32),
                 "invert": np.array([0.0], np.float32)}
        expected = run_onnx(version / "model.onnx", {"image": stored[row["record_id"]][None]})
        np.testing.assert_allclose(run_onnx(version / "model_raw.onnx", feeds)["probabilities"],
                                   expected["probabilities"], atol=1e-4)
