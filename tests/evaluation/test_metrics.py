"""Metrics against scikit-learn, scipy brute force and worked examples."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn import metrics as skm

from medzoo import roc
from medzoo.evaluation import metrics as M


def _data(seed, n=80, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(0.35 * y + rng.normal(0.35, 0.25, n), 0, 1)
    if ties:
        s = np.round(s, 1)  # many tied scores, across classes
    return y, s


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True), (3, False)])
def test_binary_metrics_match_sklearn(seed, ties):
    y, s = _data(seed, ties=ties)
    pred = (s >= 0.5).astype(int)
    r = M.binary_report(y, s, threshold=0.5)
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert r["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert r["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert r["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert r["npv"] == pytest.approx(skm.precision_score(1 - y, 1 - pred))
    assert r["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert r["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert r["pr_auc"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert r["brier"] == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert (r["tn"], r["fp"], r["fn"], r["tp"]) == (tn, fp, fn, tp)
    np.testing.assert_array_equal(M.confusion_matrix(y, s, 0.5), skm.confusion_matrix(y, pred))
    assert r["n"] == len(y) and r["n_pos"] == y.sum()


def test_roc_curve_matches_sklearn_with_ties():
    y, s = _data(5, ties=True)
    fpr, tpr, thr = roc.roc_curve(y, s)
    f2, t2, th2 = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])
    assert thr[0] == np.inf


def test_auc_worked_example_with_tie():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) 1, (0.8>0.1) 1, (0.4=0.4) 1/2, (0.4>0.1) 1
    assert roc.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)


def test_undefined_metrics_are_nan_not_zero():
    assert np.isnan(roc.roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert np.isnan(M.sensitivity([0, 0], [0, 1]))
    assert np.isnan(M.average_precision([0, 0], [0.1, 0.2]))
    assert M.specificity([0, 0], [0, 1]) == 0.5


def test_bad_inputs_say_what_was_received():
    with pytest.raises(ValueError, match="only 0 and 1"):
        roc.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="3 values"):
        roc.roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        roc.roc_auc([0, 1], [0.1, np.nan])


def test_ece_worked_example():
    # bin [0.1,0.2): p 0.1, 0.1 labels 0, 1 -> |0.1 - 0.5| = 0.4, weight 2/4
    # bin [0.9,1.0]: p 0.9, 1.0 labels 1, 1 -> |0.95 - 1| = 0.05, weight 2/4
    y = [0, 1, 1, 1]
    p = [0.1, 0.1, 0.9, 1.0]
    assert M.expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.05)
    b = M.calibration_bins(y, p, 10)
    assert b["count"].tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]


def test_youden_threshold_worked_example():
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.6, 0.5, 0.7, 0.9]
    # threshold 0.5 -> sens 1, spec 2/3 (J=0.667); 0.7 -> sens 2/3, spec 1 (J=0.667): highest wins
    assert roc.youden_threshold(y, s) == pytest.approx(0.7)
    assert roc.youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.3)


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    r = M.multiclass_report(y, p)
    pred = p.argmax(1)
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert r["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert r["macro_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    for k in range(3):
        assert r["per_class"][k]["auc"] == pytest.approx(skm.roc_auc_score(y == k, p[:, k]))


def test_dice_iou_worked_examples():
    true = np.zeros((2, 8, 8), bool)
    pred = np.zeros((2, 8, 8), bool)
    true[0, 2:6, 2:6] = True  # 16 px
    pred[0, 2:6, 2:4] = True  # 8 px, all inside
    # image 1: both empty
    np.testing.assert_allclose(M.dice_per_image(pred, true), [2 * 8 / 24, 1.0])
    np.testing.assert_allclose(M.iou_per_image(pred, true), [8 / 16, 1.0])
    rng = np.random.default_rng(1)
    a, b = rng.random((8, 8)) > 0.5, rng.random((8, 8)) > 0.5
    assert M.dice_per_image(a, b)[0] == pytest.approx(skm.f1_score(b.ravel(), a.ravel()))
    assert M.iou_per_image(a[None, ..., None], b[None, ..., None])[0] == pytest.approx(
        skm.jaccard_score(b.ravel(), a.ravel()))


def test_surface_distances_single_pixels_with_spacing():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[5, 5] = True
    b[5, 8] = True
    # 3 columns apart, 2 mm per column
    assert M.hausdorff95(a, b, spacing=(1.0, 2.0)) == pytest.approx(6.0)
    assert M.average_surface_distance(a, b, spacing=(1.0, 2.0)) == pytest.approx(6.0)
    assert M.hausdorff95(a, a) == 0.0
    assert M.hausdorff95(np.zeros((4, 4)), np.zeros((4, 4))) == 0.0
    assert np.isnan(M.hausdorff95(a, np.zeros_like(a)))


def _brute_surface(m):
    pts = []
    for r, c in zip(*np.nonzero(m)):
        nb = [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
        if any(not (0 <= i < m.shape[0] and 0 <= j < m.shape[1]) or not m[i, j] for i, j in nb):
            pts.append((r, c))
    return np.array(pts, float)


def test_surface_distances_match_brute_force():
    true = np.zeros((24, 24), bool)
    pred = np.zeros((24, 24), bool)
    true[4:14, 5:15] = True
    pred[7:20, 6:13] = True
    pred[0:3, 0:3] = True  # touches the border: border pixels count as surface
    sp = np.array([0.7, 1.3])
    pa, pb = _brute_surface(pred) * sp, _brute_surface(true) * sp
    d = cdist(pa, pb)
    d_ab, d_ba = d.min(1), d.min(0)
    hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert M.hausdorff95(pred, true, spacing=sp) == pytest.approx(hd95)
    assert M.average_surface_distance(pred, true, spacing=sp) == pytest.approx(np.mean(np.r_[d_ab, d_ba]))


def test_aggregate_by_patient():
    ids, y, s = M.aggregate_by_patient(["b", "a", "b", "a", "c"], [0, 0, 1, 0, 1], [0.2, 0.1, 0.9, 0.3, 0.5])
    assert ids.tolist() == ["a", "b", "c"]
    assert y.tolist() == [0, 1, 1]
    assert s.tolist() == [0.3, 0.9, 0.5]
    _, _, m = M.aggregate_by_patient(["b", "a", "b", "a", "c"], [0, 0, 1, 0, 1], [0.2, 0.1, 0.9, 0.3, 0.5], "mean")
    np.testing.assert_allclose(m, [0.2, 0.55, 0.5])


def test_bootstrap_by_patient_keeps_patients_together_and_is_seeded():
    y, s = _data(7, n=120)
    patients = np.repeat(np.arange(30), 4)
    drawn = []

    def record_draw(yb, sb):
        drawn.append(sb.astype(int))
        return 0.0

    # scores carry the record index, so each resample shows which records it took
    M.bootstrap_ci(record_draw, y, np.arange(120.0), groups=patients, n_boot=50, seed=3)
    for idx in drawn[1:]:  # drawn[0] is the point estimate on all records
        counts = np.bincount(idx, minlength=120).reshape(30, 4)
        assert (counts == counts[:, :1]).all()  # the 4 records of a patient come and go together
        assert len(idx) == 120
    r1 = M.bootstrap_ci(roc.roc_auc, y, s, groups=patients, n_boot=200, seed=3)
    r2 = M.bootstrap_ci(roc.roc_auc, y, s, groups=patients, n_boot=200, seed=3)
    assert (r1["low"], r1["high"]) == (r2["low"], r2["high"])
    assert r1["value"] == pytest.approx(skm.roc_auc_score(y, s))
    assert r1["low"] < r1["value"] < r1["high"]
    assert r1["n_valid"] == 200 and "patients" in r1["method"]
    r3 = M.bootstrap_ci(roc.roc_auc, y, s, groups=patients, n_boot=200, seed=4)
    assert (r1["low"], r1["high"]) != (r3["low"], r3["high"])


def test_bootstrap_interval_covers_truth_roughly():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, y, 1 - y)
    acc = M.threshold_metric(M.accuracy)
    r = M.bootstrap_ci(acc, y, pred.astype(float), n_boot=300, seed=0)
    assert r["low"] < 0.8 < r["high"] and r["high"] - r["low"] < 0.15


def test_accumulator_equals_one_shot_report():
    y, s = _data(9)
    acc = M.BinaryAccumulator()
    for i in range(0, len(y), 16):
        acc.update(y[i:i + 16], s[i:i + 16])
    assert acc.report(0.4) == M.binary_report(y, s, 0.4) or all(
        (np.isnan(a) and np.isnan(b)) or a == b for a, b in zip(acc.report(0.4).values(), M.binary_report(y, s, 0.4).values()))
    assert len(acc.y_true) == len(y)


def test_bootstrap_curve_band_roc_and_pr():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    s = np.clip(0.3 * y + rng.random(120) * 0.7, 0, 1)
    band = M.bootstrap_curve_band(y, s, curve="roc", n_boot=200, seed=3)
    fpr, tpr, _ = roc.roc_curve(y, s)
    # the full-data curve on the grid is the ROC step: best sensitivity at FPR <= x
    for x, v in zip(band["grid"][::10], band["value"][::10]):
        assert v == pytest.approx(tpr[fpr <= x + 1e-12].max())
    inside = (band["low"] <= band["value"] + 1e-9) & (band["value"] <= band["high"] + 1e-9)
    assert inside.mean() > 0.9 and np.all(band["low"] <= band["high"])
    assert band["n_valid"] == 200
    again = M.bootstrap_curve_band(y, s, curve="roc", n_boot=200, seed=3)
    np.testing.assert_array_equal(again["low"], band["low"])  # seeded: reproducible

    pr = M.bootstrap_curve_band(y, s, curve="pr", groups=np.arange(120) // 3, n_boot=100, seed=0)
    precision, recall, _ = M.precision_recall_curve(y, s)
    r = 0.5
    assert pr["value"][50] == pytest.approx(precision[recall >= r - 1e-12].max())
    assert np.all((pr["low"] >= 0) & (pr["high"] <= 1))
    with pytest.raises(ValueError, match="'roc' or 'pr'"):
        M.bootstrap_curve_band(y, s, curve="det")
