"""The default blessing demands skill: parity AND a validation metric that beats chance with
confidence (AUC CI lower bound > 0.5; Dice CI lower bound > a floor) AND not worse than a baseline.
"""

import csv

import numpy as np
import pytest

from medzoo.export import blessing, exporter


def _classifier(auc, low, high=1.0):
    return {"metrics": {"auc": auc, "accuracy": 0.5}, "ci95": {"auc": [low, high]}}


def test_default_rule_blesses_only_skill():
    blessed, reasons = blessing.decide({"auc": 0.93}, [], parity_passed=True,
                                       evaluation=_classifier(0.93, 0.81))
    assert blessed
    assert reasons[0].startswith("rule: default")
    assert "auc=0.9300, 95% CI lower bound 0.8100 > 0.5000" in reasons[2]
    blessed, reasons = blessing.decide({"auc": 0.62}, [], parity_passed=True,
                                       evaluation=_classifier(0.62, 0.41, 0.80))
    assert not blessed
    assert "lower bound 0.4100 <= 0.5000 (does not beat chance" in reasons[2]
    # parity alone is no longer enough, and no CI means no blessing
    assert not blessing.decide({"auc": 0.9}, [], parity_passed=True,
                               evaluation={"metrics": {"auc": 0.9}, "ci95": {}})[0]
    assert not blessing.decide({"auc": 0.9}, [], parity_passed=False,
                               evaluation=_classifier(0.9, 0.8))[0]


def test_bless_if_overrides_the_skill_rule():
    blessed, reasons = blessing.decide({"auc": 0.62}, ["auc>=0.6"], parity_passed=True,
                                       evaluation=_classifier(0.62, 0.41))
    assert blessed and reasons[0] == "rule: --bless-if auc>=0.6 (overrides the default skill rule)"


def test_default_rule_with_a_baseline():
    evaluation = _classifier(0.90, 0.80)
    ok, _ = blessing.decide(evaluation["metrics"], [], parity_passed=True,
                            baseline={"auc": 0.91}, margin=0.02, evaluation=evaluation)
    worse, reasons = blessing.decide(evaluation["metrics"], [], parity_passed=True,
                                     baseline={"auc": 0.95}, evaluation=evaluation)
    assert ok and not worse
    assert "auc=0.9000 vs blessed baseline 0.9500: worse" in reasons[-1]


def test_segmenter_floor_is_what_an_empty_prediction_scores():
    # 10 records with masks, 2 of them positive: predicting nothing scores Dice 0.8
    seg = {"n_with_mask": 10, "n_positive_with_mask": 2}
    evaluation = {"metrics": {"dice": 0.85, "auc": 0.9}, "ci95": {"dice": [0.78, 0.9]},
                  "segmentation": seg}
    blessed, reasons = blessing.decide(evaluation["metrics"], [], parity_passed=True,
                                       evaluation=evaluation)
    assert not blessed and "0.7800 <= 0.8000" in reasons[2]
    evaluation["ci95"]["dice"] = [0.82, 0.9]
    assert blessing.decide(evaluation["metrics"], [], parity_passed=True, evaluation=evaluation)[0]
    seg["n_positive_with_mask"] = 8  # floor is then DICE_FLOOR
    evaluation["ci95"]["dice"] = [0.55, 0.9]
    assert blessing.decide(evaluation["metrics"], [], parity_passed=True, evaluation=evaluation)[0]


def test_fixture_cnn_is_blessed_by_skill(cnn_export):
    text = (cnn_export / "BLESSED").read_text()
    assert text.startswith("rule: default")
    low = float(text.split("95% CI lower bound ")[1].split()[0])
    assert low > 0.5


def test_chance_level_model_is_not_blessed(phantom_dicom, key_file, tmp_path):
    """Labels shuffled across patients (independent of the images): a model trained on them
    cannot beat chance on validation, and the default rule says so."""
    from medzoo.datasets.ingest import ingest
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.training.fit import train

    dicom_dir, _ = phantom_dicom
    with open(dicom_dir / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    patients = sorted({r["path"].split("/")[0] for r in rows})
    labels = np.random.default_rng(5).permutation(
        ["normal", "lesion"] * (len(patients) // 2) + ["normal"] * (len(patients) % 2))
    label_of = dict(zip(patients, labels))
    shuffled = tmp_path / "labels.csv"
    shuffled.write_text("path,label\n" + "".join(
        f"{dicom_dir / r['path']},{label_of[r['path'].split('/')[0]]}\n" for r in rows))
    ingest(dicom_dir, shuffled, tmp_path / "ds", size=32, folds=3, seed=0, key_file=key_file)
    train("cnn", tmp_path / "ds", tmp_path / "run", epochs=1, batch_size=8, seed=0, verbose=0)
    version = exporter.export_run(tmp_path / "run", tmp_path / "models", evaluator=evaluate)
    assert (version / "NOT_BLESSED").exists() and not (version / "BLESSED").exists()
    text = (version / "NOT_BLESSED").read_text()
    assert "does not beat chance with confidence" in text
    forced = exporter.export_run(tmp_path / "run", tmp_path / "models", bless_if=["auc>=0.0"],
                                  evaluator=evaluate)
    assert (forced / "BLESSED").exists()
