"""Charts are written as PNG + SVG without leaking metadata; report.html is self-contained."""

import base64
import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from medzoo.errors import InputError
from medzoo.evaluation import charts, stats
from medzoo.evaluation.evaluate import evaluate
from medzoo.evaluation.report import render_report, stat_sentences, write_report
from medzoo.training import curves

from .conftest import write_onnx

SUMMARY = {"cnn": {"accuracy": [0.81, 0.77, 0.85, 0.79, 0.83], "sensitivity": [0.7, 0.75, 0.8, 0.77, 0.72],
                   "specificity": [0.9, 0.88, 0.85, 0.9, 0.91]},
           "resnet": {"accuracy": [0.74, 0.75, 0.80, 0.70, 0.79], "sensitivity": [0.6, 0.65, 0.7, 0.67, 0.62],
                      "specificity": [0.8, 0.78, 0.75, 0.8, 0.81]}}


def _png_ok(path):
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"matplotlib" not in raw.lower() and b"Software" not in raw
    svg = path.with_suffix(".svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<dc:date>" not in svg and "Matplotlib" not in svg
    with Image.open(path) as im:
        return im.size


def test_charts_written_png_and_svg(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = np.clip(0.4 * y + rng.random(60) * 0.6, 0, 1)
    history = [{"epoch": str(i), "loss": str(1 / (i + 1)), "accuracy": 0.5 + i / 20, "val_loss": 1.2 / (i + 1),
                "val_accuracy": 0.5 + i / 25} for i in range(4)]
    written = [
        curves.plot_training_curves(history, tmp_path / "curves.png"),
        charts.plot_model_comparison(SUMMARY, tmp_path / "comparison.png", chance={"accuracy": 0.5}),
        charts.plot_model_comparison(SUMMARY, tmp_path / "comparison_ci.png", error="ci95"),
        charts.plot_roc({"cnn": (y, s)}, tmp_path / "roc.png"),
        charts.plot_confusion([[20, 5], [3, 32]], ["normal", "lesion"], tmp_path / "confusion.png"),
        charts.plot_fold_scatter(SUMMARY, tmp_path / "scatter.png", chance=0.5),
        charts.plot_calibration(y, s, tmp_path / "calibration.png"),
        charts.plot_roc({"cnn": (y, s, np.arange(60) // 2)}, tmp_path / "roc_band.png", n_boot=50),
        charts.plot_pr({"cnn": (y, s), "other": (y, 1 - s)}, tmp_path / "pr.png", n_boot=50),
        charts.plot_calibration_models({"cnn": (y, s), "other": (y, 1 - s)}, tmp_path / "calibration2.png"),
    ]
    for path in written:
        w, h = _png_ok(path)
        assert w > 300 and h > 300
    # text in the SVG shows what a reader needs: n, folds, units
    comparison = (tmp_path / "comparison.svg").read_text()
    assert "k=5 folds" in comparison
    roc = (tmp_path / "roc.svg").read_text()
    assert "n=60" in roc
    # units, n and the error/interval each chart shows are written on it
    band = (tmp_path / "roc_band.svg").read_text()
    assert "95% bootstrap band (50 resamples of patients)" in band and "fraction" in band
    pr = (tmp_path / "pr.svg").read_text()
    assert "AP " in pr and "prevalence" in pr and "records" in pr  # no groups: records resampled
    scatter = (tmp_path / "scatter.svg").read_text()
    assert "mean ± 95% CI" in scatter and "n=5 folds" in scatter and "fraction" in scatter
    cal = (tmp_path / "calibration2.svg").read_text()
    assert "Wilson" in cal and "ECE" in cal and "n=60" in cal
    # same input, same bytes: nothing random or time-stamped in the file
    again = charts.plot_roc({"cnn": (y, s)}, tmp_path / "roc2.png")
    assert again.read_bytes() == (tmp_path / "roc.png").read_bytes()
    assert again.with_suffix(".svg").read_text() == roc


def test_chart_errors(tmp_path):
    with pytest.raises(ValueError, match="'loss' column"):
        curves.plot_training_curves([{"epoch": 0}], tmp_path / "c.png")
    with pytest.raises(ValueError, match="must end in .png"):
        charts.plot_roc({"m": ([0, 1], [0.1, 0.9])}, tmp_path / "c.jpg")
    with pytest.raises(ValueError, match="none of the metrics"):
        charts.plot_model_comparison({"m": {"dice": [0.5]}}, tmp_path / "c.png")


def _cv_dir(tmp_path):
    cv = tmp_path / "cv"
    cv.mkdir()
    with open(cv / "folds.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["model", "fold", "n_test", "n_train", "accuracy"])
        w.writeheader()
        for m, vals in SUMMARY.items():
            for k, v in enumerate(vals["accuracy"]):
                w.writerow({"model": m, "fold": k, "n_test": 40, "n_train": 160, "accuracy": v})
    with open(cv / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["model", "metric", "mean", "sd", "n_folds"])
        w.writeheader()
        for m, vals in SUMMARY.items():
            w.writerow({"model": m, "metric": "accuracy", "mean": np.mean(vals["accuracy"]),
                        "sd": np.std(vals["accuracy"], ddof=1), "n_folds": 5})
    a, b = SUMMARY["cnn"]["accuracy"], SUMMARY["resnet"]["accuracy"]
    st = {"prevalence": 0.5,
          "vs_chance": {m: {"accuracy": stats.one_sample_ttest(v["accuracy"], 0.5)} for m, v in SUMMARY.items()},
          "between_models": [{"a": "cnn", "b": "resnet", "metric": "accuracy",
                              "paired_ttest": stats.paired_ttest(a, b),
                              "corrected_resampled_ttest": stats.corrected_resampled_ttest(a, b, 160, 40),
                              "wilcoxon": {"test": "wilcoxon_signed_rank", "p_value": None,
                                           "note": "not defined here"}}]}
    (cv / "stats.json").write_text(json.dumps(st))
    charts.plot_model_comparison(SUMMARY, cv / "comparison.png")
    return cv, st


def test_cv_report_words_tables_and_embedded_chart(tmp_path):
    cv, st = _cv_dir(tmp_path)
    path = write_report(cv)
    assert path == cv / "report.html"
    text = path.read_text()
    t = st["vs_chance"]["cnn"]["accuracy"]
    assert f"cnn accuracy beats chance (mean 0.810 vs 0.500): t(4)={t['statistic']:.2f}" in text
    assert "Nadeau-Bengio corrected resampled t-test: t(4)=" in text
    assert "anti-conservative" in text
    assert "not defined here" in text
    assert "<table>" in text and "resnet" in text
    # the chart is inside the file, nothing is fetched from elsewhere
    img = re.search(r'src="data:image/png;base64,([^"]+)"', text)
    assert base64.b64decode(img.group(1)) == (cv / "comparison.png").read_bytes()
    assert "http://" not in text.replace("http://www.w3.org", "") and "<script" not in text


def test_eval_report_has_no_record_ids_or_patients(tmp_path, dataset):
    ds, index, _ = dataset
    out = tmp_path / "eval"
    evaluate(write_onnx(tmp_path / "m.onnx"), ds, out, n_boot=50)
    text = write_report(out).read_text()
    assert "sensitivity" in text and "95% CI" in text and "n=12 records from 6 patients" in text
    for r in index:
        assert r["record_id"] not in text and r["patient"] not in text


def test_report_of_an_empty_dir_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="expected a CV dir or eval dir"):
        render_report(tmp_path)


def test_stat_sentences_generic_fallback():
    lines = stat_sentences({"extra": {"deep": {"test": "DeLong test for correlated ROC AUCs", "statistic": 2.1,
                                               "df": None, "p_value": 0.0357}}})
    assert lines == ["extra / deep, DeLong test for correlated ROC AUCs: z=2.10, p=0.036"]


def test_cv_report_opens_with_the_verdict_and_the_per_fold_chart(tmp_path):
    from medzoo.evaluation import crossval
    from medzoo.evaluation.report import verdict_sentences

    from .test_crossval import _fake_cv

    accs = {"cnn": [0.8, 0.85, 0.75], "unet": [0.55, 0.62, 0.5]}
    out, rows = _fake_cv(tmp_path, list(accs), accs)
    st = crossval.cv_statistics(list(accs), rows, out)
    per_model = {m: {"accuracy": v, "sensitivity": v, "specificity": v} for m, v in accs.items()}
    crossval._write_charts(out, list(accs), rows, per_model, st, seed=0)
    (out / "stats.json").write_text(json.dumps(crossval._json_ready(st)))
    verdict = verdict_sentences(crossval._json_ready(st))
    auc_t = st["vs_chance_corrected"]["cnn"]["auc"]
    assert verdict[0] == (f"cnn is better than chance: AUC 0.850 over 3 folds vs chance 0.500 "
                          f"(Nadeau–Bengio corrected t, t(2)={auc_t['statistic']:.2f}, "
                          f"p={auc_t['p_value']:.3f}).")
    assert verdict[1].startswith("unet is not shown to be better than chance: AUC 0.607")
    pair = st["between_models"][0]
    delong, t = pair["delong"], pair["corrected_resampled_ttest"]
    # pooled AUCs alone do not settle it here (DeLong p > 0.05); the fold accuracies do
    assert delong["p_value"] > 0.05 and t["p_value"] < 0.05 and t["mean_difference"] > 0
    assert verdict[2].startswith(f"cnn is better than unet (DeLong on pooled AUC "
                                 f"{delong['auc_a']:.3f} vs {delong['auc_b']:.3f}, z=")
    assert f"corrected t on fold accuracy, t(2)={t['statistic']:.2f}" in verdict[2]
    text = write_report(out).read_text()
    assert text.index("<h2>Verdict") < text.index("<h2>Statistical tests") < text.index("<h2>Charts")
    first = re.search(r'<img alt="([a-z_]+)" src="data:image/png;base64,([^"]+)"', text)
    assert first.group(1) == "folds_auc"
    assert base64.b64decode(first.group(2)) == (out / "folds_auc.png").read_bytes()
    assert text.count('alt="folds_auc"') == 1  # not repeated among the other charts


def test_verdict_falls_back_when_every_fold_scored_the_same():
    from medzoo.evaluation.report import verdict_sentences

    acc = stats.corrected_one_sample_ttest([0.95, 1.0, 0.95], 0.5, [40] * 3, [20] * 3)
    auc = stats.corrected_one_sample_ttest([1.0, 1.0, 1.0], 0.5, [40] * 3, [20] * 3)
    assert auc["p_value"] is None or auc["p_value"] != auc["p_value"]  # not defined
    st = {"vs_chance_corrected": {"unet": {"auc": auc, "accuracy": acc},
                                  "flat": {"auc": auc}},
          "vs_chance_patients": {"flat": stats.binomial_test(58, 60, 0.5)}}
    st["vs_chance_patients"]["flat"].update(mean=58 / 60, chance=0.5)
    unet, flat = verdict_sentences(st)
    assert unet.startswith("unet is better than chance: accuracy 0.967 over 3 folds")
    assert f"p={acc['p_value']:.4f}" in unet or f"p={acc['p_value']:.3f}" in unet
    assert flat.startswith("flat is better than chance: every fold gave the same value, so the "
                           "fold t-test is not defined; patient-level accuracy 0.967")
