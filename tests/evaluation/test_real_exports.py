"""evaluate() and report on real exports made by the zoo/training/export packages (session fixtures)."""

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medzoo.evaluation.evaluate import evaluate
from medzoo.evaluation.report import write_report
from medzoo.evaluation.runtime import OnnxModel

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fixture", ["cnn_export", "unet_export"])
def test_evaluate_real_export(fixture, phantom_ds, tmp_path, request):
    export = request.getfixturevalue(fixture)
    model = OnnxModel(export)
    assert model.metadata["task"] in ("classification", "segmentation")
    out = tmp_path / "eval"
    result = evaluate(export, phantom_ds, out, n_boot=100)
    assert result["split"] == "test" and result["fold"] == model.metadata["test_fold"]
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == result["n"] > 0
    y = np.array([int(r["label"]) for r in rows])
    s = np.array([float(r["score"]) for r in rows])
    if 0 < y.sum() < len(y):
        assert result["metrics"]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    if result["task"] == "segmentation":
        assert 0.0 <= result["metrics"]["dice"] <= 1.0
    assert (out / "confusion.png").exists()
    assert "<table>" in write_report(out).read_text()
