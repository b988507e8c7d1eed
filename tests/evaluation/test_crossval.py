"""Cross-validation: a real (tiny) run of two zoo models, resume, split views for repeats, statistics."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats as sps

from medzoo.errors import InputError
from medzoo.evaluation import crossval
from medzoo.evaluation.evaluate import evaluate

from .conftest import write_dataset, write_onnx


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_cv_two_models_files_stats_and_resume(phantom_ds, tmp_path):
    from medzoo.datasets import manifest, splits

    out = tmp_path / "cv"
    models = ["cnn", "unet"]
    result = crossval.run_cv(models, phantom_ds, out, folds=3, epochs=1, batch_size=8,
                             model_options={"unet": {"base_width": 8}})

    # folds.csv: one row per model × fold, sizes from the actual folds
    rows = _rows(out / "folds.csv")
    assert len(rows) == len(models) * 3
    assert sorted((r["model"], int(r["fold"])) for r in rows) == sorted((m, f) for m in models for f in range(3))
    fold_of = splits.fold_assignment(phantom_ds, 3, manifest.read_dataset_info(phantom_ds)["seed"])
    total = len(fold_of)
    for r in rows:
        f = int(r["fold"])
        assert int(r["n_test"]) == sum(v == f for v in fold_of.values())
        assert int(r["n_val"]) == sum(v == (f + 1) % 3 for v in fold_of.values())
        assert int(r["n_train"]) == total - int(r["n_test"]) - int(r["n_val"])

    # summary.csv: mean and SD equal numpy on folds.csv
    for s in _rows(out / "summary.csv"):
        values = np.array([float(r[s["metric"]]) for r in rows if r["model"] == s["model"] and r[s["metric"]]])
        assert int(s["n_folds"]) == values.size == 3
        assert float(s["mean"]) == pytest.approx(values.mean(), abs=1e-6)
        assert float(s["sd"]) == pytest.approx(values.std(ddof=1), abs=1e-6)
    assert {s["metric"] for s in _rows(out / "summary.csv") if s["model"] == "unet"} >= {"accuracy", "dice"}

    # stats.json: chance from the class balance, tests per model, tests between the models
    st = json.loads((out / "stats.json").read_text())
    labels = [int(r["label"]) for r in manifest.read_index(phantom_ds)]
    p = float(np.mean(labels))
    assert st["prevalence"] == pytest.approx(p)
    assert st["chance_levels"]["accuracy"] == pytest.approx(max(p, 1 - p))
    for m in models:
        acc = [float(r["accuracy"]) for r in sorted(rows, key=lambda r: int(r["fold"])) if r["model"] == m]
        t = st["vs_chance"][m]["accuracy"]
        assert t["chance"] == pytest.approx(max(p, 1 - p))
        if np.std(acc) > 0:
            ref = sps.ttest_1samp(acc, max(p, 1 - p))
            assert t["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)
        assert st["vs_chance_corrected"][m]["accuracy"]["n_train"] == pytest.approx(
            np.mean([int(r["n_train"]) for r in rows if r["model"] == m]))
        assert st["vs_chance"][m]["sensitivity"]["chance"] == 0.5
    (pair,) = st["between_models"]
    assert (pair["a"], pair["b"], pair["metric"]) == ("cnn", "unet", "accuracy")
    nb = pair["corrected_resampled_ttest"]
    n_train = np.mean([int(r["n_train"]) for r in rows])
    n_test = np.mean([int(r["n_test"]) for r in rows])
    assert nb["n_train"] == pytest.approx(n_train) and nb["n_test"] == pytest.approx(n_test)
    assert nb["correction"] == pytest.approx(1 / 3 + n_test / n_train)
    for key in ("paired_ttest", "wilcoxon", "mcnemar", "delong"):
        assert key in pair and ("p_value" in pair[key])
    assert pair["mcnemar"]["n"] == total  # pooled out-of-fold predictions: every record once
    for m in models:  # defined even where every fold scored the same
        patients = st["vs_chance_patients"][m]
        assert patients["n"] == len({r["patient"] for r in manifest.read_index(phantom_ds)})
        assert isinstance(patients["p_value"], float) and 0 < patients["p_value"] <= 1
    assert "holm_corrected_resampled_ttest" not in st  # one pair: nothing to adjust

    # charts and report
    for name in ("comparison", "roc", "pr", "calibration", "folds_accuracy"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name
    report = (out / "report.html").read_text()
    assert "cnn" in report and "unet" in report and "Nadeau" in report
    assert report.count("data:image/png;base64,") >= 5
    assert result["lines"][-1].endswith("report.html")

    # resume: only the fold whose eval dir is gone is recomputed; nothing is retrained
    metrics_files = sorted(out.glob("*/fold-*/eval/metrics.json"))
    models_files = sorted(out.glob("*/fold-*/run/model.keras"))
    assert len(metrics_files) == len(models_files) == 6
    before = {p: p.stat().st_mtime_ns for p in metrics_files + models_files}
    shutil.rmtree(out / "unet" / "fold-1" / "eval")
    again = crossval.run_cv(models, phantom_ds, out, folds=3, epochs=1, batch_size=8,
                            model_options={"unet": {"base_width": 8}})
    changed = [p for p in before if p.stat().st_mtime_ns != before[p]]
    assert changed == [out / "unet" / "fold-1" / "eval" / "metrics.json"]
    assert _rows(out / "folds.csv") == rows  # the same export scores the same fold the same way
    assert again["stats"]["between_models"][0]["mcnemar"] == st["between_models"][0]["mcnemar"]

    # other settings in the same CV dir are refused, not mixed in
    with pytest.raises(InputError, match="other settings.*epochs"):
        crossval.run_cv(models, phantom_ds, out, folds=3, epochs=2, batch_size=8,
                        model_options={"unet": {"base_width": 8}})


def test_split_view_refolds_patients_and_export_metadata_finds_the_fold(tmp_path):
    from medzoo.datasets import manifest, splits

    ds, index, _ = write_dataset(tmp_path / "ds", patients=12, folds=3, seed=0)
    view = crossval.split_view(ds, tmp_path / "view", 3, 7)
    info = manifest.read_dataset_info(view)
    assert (info["folds"], info["seed"]) == (3, 7)
    rows = manifest.read_index(view)
    assert [r["record_id"] for r in rows] == [r["record_id"] for r in index]
    expected = splits.fold_assignment(ds, 3, 7)
    assert {r["record_id"]: r["fold"] for r in rows} == expected
    assert expected != {r["record_id"]: r["fold"] for r in index}  # another seed, other folds
    splits.check_grouped([r["patient"] for r in rows], [r["fold"] for r in rows])
    assert sum(info["counts"]["per_fold"].values()) == len(rows)
    assert crossval.split_view(ds, tmp_path / "view", 3, 7) == tmp_path / "view"  # idempotent

    # a model trained on the view carries seed 7: evaluated on the original dataset dir it scores
    # exactly the view's fold
    model = write_onnx(tmp_path / "m.onnx", metadata={"seed": 7, "folds": 3, "test_fold": 1})
    r = evaluate(model, ds, tmp_path / "eval", n_boot=0, charts=False)
    scored = [row["record_id"] for row in _rows(tmp_path / "eval" / "predictions.csv")]
    assert scored == [rid for rid, f in expected.items() if f == 1] and r["fold"] == 1
    assert [r["record_id"] for r in read_records_ids(view)] == [r["record_id"] for r in index]


def read_records_ids(ds_dir):
    from medzoo.datasets.records import read_records

    return list(read_records(ds_dir))


def _fake_cv(tmp_path, models, accuracies, n_classes=2, seed=0):
    """A CV dir holding folds.csv-like rows and predictions.csv per fold (no training)."""
    rng = np.random.default_rng(seed)
    out = tmp_path / "cv"
    rows = []
    n_per_fold = 20
    labels = rng.integers(0, n_classes, 3 * n_per_fold)
    for m_i, model in enumerate(models):
        for fold in range(3):
            ids = range(fold * n_per_fold, (fold + 1) * n_per_fold)
            preds = []
            for i in ids:
                y = int(labels[i])
                score = float(np.clip(0.5 + (0.3 - 0.1 * m_i) * (1 if y else -1) + rng.normal(0, 0.2), 0, 1))
                preds.append({"record_id": f"r{i:04d}", "patient": f"p{i // 2:03d}", "label": y,
                              "score": round(score, 6)})
            d = crossval.fold_dir(out, model, fold) / "eval"
            d.mkdir(parents=True)
            with open(d / "predictions.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, ["record_id", "patient", "label", "score"])
                w.writeheader()
                w.writerows(preds)
            rows.append({"model": model, "repeat": 0, "fold": fold, "n_test": n_per_fold, "n_train": 20,
                         "accuracy": accuracies[model][fold], "balanced_accuracy": accuracies[model][fold],
                         "auc": min(1.0, accuracies[model][fold] + 0.05)})
    return out, rows


def test_statistics_three_models_holm_and_chance(tmp_path):
    accs = {"a": [0.8, 0.85, 0.75], "b": [0.7, 0.72, 0.69], "c": [0.6, 0.66, 0.61]}
    out, rows = _fake_cv(tmp_path, list(accs), accs)
    st = crossval.cv_statistics(list(accs), rows, out)
    assert [(e["a"], e["b"]) for e in st["between_models"]] == [("a", "b"), ("a", "c"), ("b", "c")]
    raw = [e["corrected_resampled_ttest"]["p_value"] for e in st["between_models"]]
    holm = st["holm_corrected_resampled_ttest"]["adjusted"]
    order = np.argsort(raw)
    expected = np.minimum(1, np.maximum.accumulate(np.array(raw)[order] * [3, 2, 1]))
    np.testing.assert_allclose(np.array(holm)[order], expected)
    assert "holm_delong" in st and "holm_mcnemar" in st
    # Nadeau–Bengio by hand
    d = np.array(accs["a"]) - np.array(accs["b"])
    t = d.mean() / math.sqrt((1 / 3 + 20 / 20) * d.var(ddof=1))
    assert st["between_models"][0]["corrected_resampled_ttest"]["statistic"] == pytest.approx(t)
    assert st["between_models"][0]["corrected_resampled_ttest"]["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), 2))
    # DeLong on the pooled predictions: AUCs of the pooled scores
    from sklearn.metrics import roc_auc_score

    pooled = crossval.pooled_predictions(out, "a", range(3))
    y = [v[0] for _, v in sorted(pooled.items())]
    s = [v[1] for _, v in sorted(pooled.items())]
    assert st["between_models"][0]["delong"]["auc_a"] == pytest.approx(roc_auc_score(y, s))
    assert st["prevalence"] == pytest.approx(np.mean(y))


def test_patient_level_binomial_test_counts_patients_not_slices():
    # patient p1 (positive) called by one of its slices, p2 (negative) called nowhere, p3
    # (positive) missed, p4 (negative) wrongly called: 2 of 4 patients right
    pooled = {"r1": (1, 0.9, "p1"), "r2": (0, 0.1, "p1"), "r3": (0, 0.2, "p2"),
              "r4": (0, 0.3, "p2"), "r5": (1, 0.4, "p3"), "r6": (0, 0.7, "p4")}
    r = crossval.patient_binomial_test(pooled)
    assert (r["statistic"], r["n"], r["chance"], r["unit"]) == (2.0, 4, 0.5, "patient")
    assert r["p_value"] == pytest.approx(sps.binomtest(2, 4, 0.5, alternative="greater").pvalue)
    one_class = {k: (0, s, g) for k, (_, s, g) in pooled.items()}
    assert crossval.patient_binomial_test(one_class)["p_value"] is None


def test_statistics_multiclass_skips_mcnemar_and_delong(tmp_path):
    accs = {"a": [0.6, 0.65, 0.55], "b": [0.5, 0.52, 0.49]}
    out, rows = _fake_cv(tmp_path, list(accs), accs, n_classes=3)
    st = crossval.cv_statistics(list(accs), rows, out, n_classes=3)
    assert st["prevalence"] is None and len(st["class_shares"]) == 3
    assert st["chance_levels"]["accuracy"] == pytest.approx(max(st["class_shares"]))
    assert st["chance_levels"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert "sensitivity" not in st["vs_chance"]["a"]
    (pair,) = st["between_models"]
    assert pair["mcnemar"]["p_value"] is None and "3 classes" in pair["mcnemar"]["note"]
    assert pair["delong"]["p_value"] is None
    assert pair["corrected_resampled_ttest"]["p_value"] is not None


def test_run_cv_rejects_bad_requests(tmp_path):
    ds, _, _ = write_dataset(tmp_path / "ds", patients=6)
    with pytest.raises(InputError, match="name each model once"):
        crossval.run_cv(["cnn", "cnn"], ds, tmp_path / "cv", folds=3)
    with pytest.raises(InputError, match="no-such-model"):
        crossval.run_cv(["no-such-model"], ds, tmp_path / "cv", folds=3)
    with pytest.raises(InputError, match="--folds must be at least 3"):
        crossval.run_cv(["cnn"], ds, tmp_path / "cv", folds=1)
    with pytest.raises(InputError, match="--repeats must be at least 1"):
        crossval.run_cv(["cnn"], ds, tmp_path / "cv", folds=3, repeats=0)
    with pytest.raises(InputError, match="at least 9 patients"):
        crossval.run_cv(["cnn"], ds, tmp_path / "cv", folds=9)
    assert not (tmp_path / "cv").exists()


def test_cli_cv_bad_options_exit_2(tmp_path, capsys):
    from medzoo import cli

    ds, _, _ = write_dataset(tmp_path / "ds", patients=6)
    assert cli.main(["cv", "cnn", "--data", str(ds), "--out", str(tmp_path / "cv"), "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
    assert cli.main(["cv", "cnn", "unet", "cnn", "--data", str(ds), "--out", str(tmp_path / "cv")]) == 2
    assert "name each model once" in capsys.readouterr().err
