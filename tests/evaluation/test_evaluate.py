"""evaluate(): real onnxruntime over a real (tiny) dataset dir, checked against numpy/sklearn."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medzoo.errors import InputError
from medzoo.evaluation import metrics as M
from medzoo.evaluation.evaluate import evaluate

from .conftest import write_dataset, write_onnx


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_classifier_on_test_fold(tmp_path, dataset):
    ds, index, truth = dataset
    model = write_onnx(tmp_path / "base" / "tiny" / "1" / "model.onnx")
    out = tmp_path / "eval"
    result = evaluate(model.parent, ds, out, n_boot=200, batch_size=5)

    test_ids = [r["record_id"] for r in index if r["fold"] == 0]
    assert result["split"] == "test" and result["fold"] == 0
    assert result["n"] == len(test_ids) == 12 and result["n_patients"] == 6 and result["n_missing"] == 0

    rows = _rows(out / "predictions.csv")
    assert list(rows[0]) == ["record_id", "patient", "label", "score"]
    assert [r["record_id"] for r in rows] == test_ids
    y = np.array([truth[r["record_id"]][1] for r in rows])
    expected = np.array([truth[r["record_id"]][0].max() for r in rows])  # the tiny model's P(lesion)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5)
    assert [int(r["label"]) for r in rows] == y.tolist()

    m = result["metrics"]
    assert m["auc"] == pytest.approx(roc_auc_score(y, expected), abs=1e-6)
    pred = expected >= 0.5
    assert m["sensitivity"] == pytest.approx(pred[y == 1].mean())
    assert m["specificity"] == pytest.approx(1 - pred[y == 0].mean())
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    lo, hi = result["ci95"]["accuracy"]
    assert lo <= m["accuracy"] <= hi
    assert result["confusion"]["tp"] == int(np.sum(pred & (y == 1)))
    assert result["patient_level"]["n"] == 6
    assert result["bootstrap"]["unit"] == "patient"

    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == result
    for name in ("roc", "confusion", "calibration"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{name}.svg").exists()
    # no half-written temporary files left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_explicit_folds_all_and_threshold(tmp_path, dataset):
    ds, index, truth = dataset
    model = write_onnx(tmp_path / "m.onnx")
    r1 = evaluate(model, ds, tmp_path / "e1", split="fold:2", n_boot=0, charts=False)
    assert r1["fold"] == 2 and r1["n"] == sum(r["fold"] == 2 for r in index)
    r_all = evaluate(model, ds, tmp_path / "e2", split="all", n_boot=0, charts=False, threshold=0.9)
    assert r_all["n"] == len(index) and r_all["fold"] is None
    y = np.array([truth[r["record_id"]][1] for r in index])
    s = np.array([truth[r["record_id"]][0].max() for r in index])
    assert r_all["metrics"]["sensitivity"] == pytest.approx(M.sensitivity(y, (s >= 0.9).astype(int)))
    assert r_all["threshold"] == 0.9 and r_all["threshold_source"] == "given"
    assert not (tmp_path / "e2" / "roc.png").exists()


def test_bad_inputs(tmp_path, dataset):
    ds, _, _ = dataset
    model = write_onnx(tmp_path / "m.onnx")
    with pytest.raises(InputError, match="--split must be"):
        evaluate(model, ds, tmp_path / "e", split="train")
    with pytest.raises(InputError, match=r"fold must be in 0..2"):
        evaluate(model, ds, tmp_path / "e", split="fold:7")
    no_fold = write_onnx(tmp_path / "nf.onnx", metadata={"test_fold": None})
    with pytest.raises(InputError, match="test_fold"):
        evaluate(no_fold, ds, tmp_path / "e")
    big = write_onnx(tmp_path / "big.onnx", size=32, metadata={"image_size": [32, 32]})
    with pytest.raises(InputError, match=r"images of \[32, 32\]"):
        evaluate(big, ds, tmp_path / "e")
    with pytest.raises(InputError, match="dataset.json"):
        evaluate(model, tmp_path / "nowhere", tmp_path / "e")


def test_segmenter(tmp_path):
    ds, index, truth = write_dataset(tmp_path / "ds", patients=12)
    model = write_onnx(tmp_path / "seg.onnx", task="segmentation")
    out = tmp_path / "eval"
    result = evaluate(model, ds, out, n_boot=100)
    rows = _rows(out / "predictions.csv")
    assert list(rows[0]) == ["record_id", "patient", "label", "score", "dice", "iou", "hausdorff95_px"]
    dices, scores, ys = [], [], []
    for r in rows:
        image, label, mask = truth[r["record_id"]]
        prob = 1 / (1 + np.exp(-20 * (image[..., 0].astype(np.float64) - 0.5)))
        dices.append(M.dice_per_image(prob >= 0.5, mask)[0])
        scores.append(prob.max())
        ys.append(label)
    np.testing.assert_allclose([float(r["dice"]) for r in rows], dices, atol=1e-6)
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores, rtol=1e-4)
    assert result["task"] == "segmentation"
    assert result["metrics"]["dice"] == pytest.approx(np.mean(dices), abs=1e-6)
    assert result["metrics"]["auc"] == pytest.approx(roc_auc_score(ys, scores), abs=1e-4)
    assert result["segmentation"]["n_with_mask"] == len(rows)
    assert "dice" in result["ci95"] and "iou" in result["metrics"]


def test_multiclass(tmp_path):
    ds, index, truth = write_dataset(tmp_path / "ds", patients=12)
    info = json.loads((ds / "dataset.json").read_text())
    info["classes"] = ["a", "b", "c"]
    (ds / "dataset.json").write_text(json.dumps(info))
    model = write_onnx(tmp_path / "mc.onnx", n_classes=3, metadata={"classes": ["a", "b", "c"]})
    out = tmp_path / "eval"
    result = evaluate(model, ds, out, n_boot=50)
    rows = _rows(out / "predictions.csv")
    assert list(rows[0])[-4:] == ["predicted", "score_0", "score_1", "score_2"]
    assert len(result["confusion"]["matrix"]) == 3
    assert result["metrics"]["accuracy"] == pytest.approx(
        np.mean([int(r["predicted"]) == int(r["label"]) for r in rows]))
    assert (out / "confusion.png").exists() and (out / "roc.png").exists()  # one-vs-rest curves
