"""Volume export (plan in card and ONNX metadata, patch input) and `medzoo evaluate` on a volume
dataset: sliding window through onnxruntime, per-class metrics in mm, patient bootstrap."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from medzoo.evaluation.runtime import OnnxModel
from volume_data import LABEL_CLASSES


def test_export_carries_the_plan_and_takes_patches(volume_export, volume_ds):
    model = OnnxModel(volume_export)
    meta = model.metadata
    plan = json.loads((volume_ds / "plan.json").read_text())
    assert meta["volume"] is True and meta["label_classes"] == LABEL_CLASSES
    assert meta["plan"] == plan and meta["patch_size"] == [16, 32, 32]
    assert meta["target_spacing"] == [2.0, 1.0, 1.0]
    assert meta["normalization"]["scheme"] == "ct"
    assert model.input_shape == [None, 16, 32, 32, 1]
    probs = model.predict(np.zeros((3, 16, 32, 32, 1), np.float32))
    assert probs.shape == (3, 16, 32, 32, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    card = json.loads((volume_export / "model_card.json").read_text())
    assert card["volume"]["label_classes"] == LABEL_CLASSES
    assert card["volume"]["target_spacing_mm"] == [2.0, 1.0, 1.0]
    assert card["volume"]["plan"] == plan
    parity = json.loads((volume_export / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_difference"]["keras_vs_onnx"] < 1e-4
    # validation metrics by sliding window, usable by --bless-if
    assert 0.0 <= card["metrics"]["metrics"]["dice_organ"] <= 1.0
    assert (volume_export / "BLESSED").is_file()
    assert "Target spacing: [2.0, 1.0, 1.0]" in (volume_export / "model_card.md").read_text()


def test_default_blessing_judges_a_volume_export_by_its_validation_dice(volume_run, tmp_path):
    """Without --bless-if the skill rule applies to 3D exports too: the sliding-window Dice's
    patient-bootstrap CI lower bound must beat the Dice floor."""
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export import blessing
    from medzoo.export.exporter import export_run

    version = export_run(volume_run, tmp_path, evaluator=evaluate)
    status = "BLESSED" if (version / "BLESSED").exists() else "NOT_BLESSED"
    text = (version / status).read_text()
    assert "rule: default" in text and "parity: SavedModel and ONNX match Keras" in text
    assert "skill: dice=" in text and "95% CI lower bound" in text
    card = json.loads((version / "model_card.json").read_text())
    low = card["metrics"]["ci95"]["dice"][0]
    assert (status == "BLESSED") == (low > blessing.DICE_FLOOR)


def test_evaluate_writes_per_class_metrics_in_mm(volume_export, volume_ds, tmp_path):
    from medzoo.datasets.volume_records import read_volume_records
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.evaluation.sliding_window import sliding_window_inference
    from medzoo.evaluation.surface import volume_metrics

    out = tmp_path / "eval"
    result = evaluate(volume_export, volume_ds, out, split="all", n_boot=50)
    assert result["volume"] is True and result["n"] == 6 and result["n_patients"] == 6
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"] == result["metrics"]
    for key in ("dice", "hd95", "asd", "nsd", "volume_diff_ml", "dice_organ", "dice_lesion",
                "hd95_organ", "volume_diff_ml_lesion"):
        assert key in saved["metrics"], key
    low, high = saved["ci95"]["dice"]
    assert low <= saved["metrics"]["dice"] <= high
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 * 2 and {r["class"] for r in rows} == {"organ", "lesion"}
    organ = [float(r["dice"]) for r in rows if r["class"] == "organ"]
    assert saved["metrics"]["dice_organ"] == pytest.approx(np.mean(organ), abs=1e-5)
    # the first volume by hand: the same sliding window and metrics give the same row
    model = OnnxModel(volume_export)
    rec = next(read_volume_records(volume_ds, ["r000"]))
    probs = sliding_window_inference(rec["image"], (16, 32, 32), lambda b: model.predict(b))
    by_hand = volume_metrics(np.argmax(probs, -1), rec["mask"], rec["spacing"], LABEL_CLASSES,
                             tolerance_mm=saved["tolerance_mm"])
    row = next(r for r in rows if r["record_id"] == "r000" and r["class"] == "organ")
    assert float(row["dice"]) == pytest.approx(by_hand["organ"]["dice"], rel=1e-4)
    assert float(row["volume_ref_ml"]) == pytest.approx(
        np.count_nonzero(rec["mask"] == 1) * 2.0 / 1000, rel=1e-5)


@pytest.mark.slow
def test_evaluate_cli_on_a_volume_dataset(volume_export, volume_ds, tmp_path):
    out = tmp_path / "cli_eval"
    done = subprocess.run([sys.executable, "-m", "medzoo", "evaluate", str(volume_export),
                           "--data", str(volume_ds), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["split"] == "test" and saved["n"] == 2  # fold 0 of 3: 2 of 6 patients
