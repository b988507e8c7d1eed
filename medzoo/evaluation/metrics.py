"""Evaluation metrics as pure functions of numpy arrays (no TensorFlow).

Conventions
-----------
* Binary labels are 0/1 with 1 the positive class (``dataset.json`` class index 1).
* A score is the model's probability (or any monotone score) of the positive class; a prediction
  is positive when ``score >= threshold``.
* A metric whose denominator is zero (e.g. sensitivity with no positives, AUC with one class) is
  ``nan``, never a silent 0: bootstrap resamples and per-fold summaries skip ``nan``.
* Array-argument problems raise ``ValueError`` saying what was expected and what was received.

Classification metrics match scikit-learn (``roc_auc_score``, ``average_precision_score``,
``brier_score_loss``, ...) where scikit-learn defines them; segmentation distances follow MONAI's
conventions (symmetric, image borders count as surface).
"""

from __future__ import annotations

import warnings
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from medzoo import roc

__all__ = [
    "confusion_counts", "confusion_matrix", "accuracy", "balanced_accuracy", "sensitivity",
    "specificity", "ppv", "npv", "f1_score", "precision_recall_curve",
    "average_precision", "brier_score", "expected_calibration_error", "calibration_bins",
    "binary_report", "one_vs_rest_auc", "multiclass_report",
    "dice_per_image", "iou_per_image", "hausdorff95", "average_surface_distance",
    "aggregate_by_patient", "bootstrap_metrics", "bootstrap_ci", "bootstrap_curve_band", "threshold_metric",
    "BinaryAccumulator",
]


# --------------------------------------------------------------------------------------------
# validation helpers


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


# --------------------------------------------------------------------------------------------
# thresholded metrics


def confusion_counts(y_true, y_pred) -> dict[str, int]:
    """Counts of a binary confusion matrix.

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape (n,)

    Returns
    -------
    dict with integer ``tp``, ``fp``, ``tn``, ``fn``.

    Raises
    ------
    ValueError
        If the arrays are not 1-D 0/1 of equal length.
    """
    y = roc.binary_labels(y_true)
    p = roc.binary_labels(y_pred, "y_pred")
    if p.shape != y.shape:
        raise ValueError(f"`y_pred` must have the shape of `y_true` {y.shape}. Received: shape={p.shape}")
    return {
        "tp": int(np.sum((y == 1) & (p == 1))),
        "fp": int(np.sum((y == 0) & (p == 1))),
        "tn": int(np.sum((y == 0) & (p == 0))),
        "fn": int(np.sum((y == 1) & (p == 0))),
    }


def confusion_matrix(y_true, scores, threshold: float = 0.5) -> np.ndarray:
    """2×2 confusion matrix of ``scores >= threshold`` against ``y_true``.

    Returns
    -------
    np.ndarray of int, shape (2, 2): ``[[tn, fp], [fn, tp]]`` (rows true, columns predicted; the
    layout of ``sklearn.metrics.confusion_matrix``).
    """
    y = roc.binary_labels(y_true)
    s = roc.finite_scores(scores, y.shape[0])
    c = confusion_counts(y, (s >= threshold).astype(np.int64))
    return np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=np.int64)


def accuracy(y_true, y_pred) -> float:
    """Fraction of predictions equal to the label (``nan`` when empty)."""
    c = confusion_counts(y_true, y_pred)
    return _ratio(c["tp"] + c["tn"], sum(c.values()))


def sensitivity(y_true, y_pred) -> float:
    """Recall / true-positive rate: tp / (tp + fn); ``nan`` without positives."""
    c = confusion_counts(y_true, y_pred)
    return _ratio(c["tp"], c["tp"] + c["fn"])


def specificity(y_true, y_pred) -> float:
    """True-negative rate: tn / (tn + fp); ``nan`` without negatives."""
    c = confusion_counts(y_true, y_pred)
    return _ratio(c["tn"], c["tn"] + c["fp"])


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean of sensitivity and specificity (``sklearn.metrics.balanced_accuracy_score``)."""
    return (sensitivity(y_true, y_pred) + specificity(y_true, y_pred)) / 2.0


def ppv(y_true, y_pred) -> float:
    """Positive predictive value (precision): tp / (tp + fp); ``nan`` with no positive prediction."""
    c = confusion_counts(y_true, y_pred)
    return _ratio(c["tp"], c["tp"] + c["fp"])


def npv(y_true, y_pred) -> float:
    """Negative predictive value: tn / (tn + fn); ``nan`` with no negative prediction."""
    c = confusion_counts(y_true, y_pred)
    return _ratio(c["tn"], c["tn"] + c["fn"])


def f1_score(y_true, y_pred) -> float:
    """F1 = 2·tp / (2·tp + fp + fn); ``nan`` when there is no positive label or prediction."""
    c = confusion_counts(y_true, y_pred)
    return _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])


# --------------------------------------------------------------------------------------------
# ranking metrics


def precision_recall_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score, highest threshold first.

    Returns
    -------
    precision, recall, thresholds : np.ndarray of equal length (no appended (1, 0) end point).
    """
    y = roc.binary_labels(y_true)
    s = roc.finite_scores(scores, y.shape[0])
    fps, tps, thr = roc.binary_clf_curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps.size and tps[-1] else np.full_like(tps, np.nan)
    return precision, recall, thr


def average_precision(y_true, scores) -> float:
    """PR AUC as average precision: Σ (Rₙ − Rₙ₋₁) Pₙ (``sklearn.metrics.average_precision_score``).

    ``nan`` without positives.
    """
    precision, recall, _ = precision_recall_curve(y_true, scores)
    if recall.size == 0 or np.isnan(recall[-1]):
        return float("nan")
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# --------------------------------------------------------------------------------------------
# calibration


def brier_score(y_true, prob) -> float:
    """Mean squared error of the probability of class 1 (``sklearn.metrics.brier_score_loss``)."""
    y = roc.binary_labels(y_true)
    p = roc.finite_scores(prob, y.shape[0], "prob")
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def calibration_bins(y_true, prob, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Equal-width reliability bins over [0, 1].

    Bin ``b`` holds ``b/n_bins <= p < (b+1)/n_bins``; the last bin also holds ``p == 1``.

    Returns
    -------
    dict with arrays of length ``n_bins``: ``count``, ``mean_prob``, ``frac_pos`` (``nan`` in an
    empty bin) and ``edges`` (length ``n_bins + 1``).
    """
    if int(n_bins) < 1:
        raise ValueError(f"`n_bins` must be a positive integer. Received: n_bins={n_bins}")
    y = roc.binary_labels(y_true)
    p = roc.finite_scores(prob, y.shape[0], "prob")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("`prob` must lie in [0, 1]. Received values outside that range")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"count": count.astype(np.int64), "mean_prob": mean_prob, "frac_pos": frac_pos, "edges": edges}


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """ECE = Σ_b (n_b / n) · |mean prob in b − fraction positive in b| over equal-width bins."""
    b = calibration_bins(y_true, prob, n_bins)
    n = b["count"].sum()
    if n == 0:
        return float("nan")
    full = b["count"] > 0
    return float(np.sum(b["count"][full] / n * np.abs(b["mean_prob"][full] - b["frac_pos"][full])))


def binary_report(y_true, scores, threshold: float = 0.5) -> dict[str, float]:
    """Every binary metric at once.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
    scores : array-like of float, shape (n,)
        Probability of the positive class (Brier/ECE assume probabilities in [0, 1]).
    threshold : float
        A prediction is positive when ``score >= threshold``.

    Returns
    -------
    dict of float: ``n``, ``n_pos``, ``accuracy``, ``balanced_accuracy``, ``sensitivity``,
    ``specificity``, ``ppv``, ``npv``, ``f1``, ``auc``, ``pr_auc``, ``brier``, ``ece``, ``tp``,
    ``fp``, ``tn``, ``fn``, ``threshold``, ``youden_threshold``.
    """
    y = roc.binary_labels(y_true)
    s = roc.finite_scores(scores, y.shape[0])
    pred = (s >= threshold).astype(np.int64)
    c = confusion_counts(y, pred)
    probabilistic = bool(y.size) and s.min() >= 0.0 and s.max() <= 1.0
    return {
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "accuracy": accuracy(y, pred),
        "balanced_accuracy": balanced_accuracy(y, pred),
        "sensitivity": sensitivity(y, pred),
        "specificity": specificity(y, pred),
        "ppv": ppv(y, pred),
        "npv": npv(y, pred),
        "f1": f1_score(y, pred),
        "auc": roc.roc_auc(y, s),
        "pr_auc": average_precision(y, s),
        "brier": brier_score(y, s) if probabilistic else float("nan"),
        "ece": expected_calibration_error(y, s) if probabilistic else float("nan"),
        **c,
        "threshold": float(threshold),
        "youden_threshold": roc.youden_threshold(y, s),
    }


# --------------------------------------------------------------------------------------------
# multi-class


def _multiclass(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"`probs` must have shape (n, n_classes >= 2). Received: shape={p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"`y_true` must be 1-D with {p.shape[0]} labels. Received: shape={y.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1] or not np.all(y == np.round(y))):
        raise ValueError(f"`y_true` must hold class indices in 0..{p.shape[1] - 1}. Received: min={y.min()}, max={y.max()}")
    return y.astype(np.int64), p


def one_vs_rest_auc(y_true, probs) -> np.ndarray:
    """Per-class one-vs-rest ROC AUC of column ``k`` against ``y_true == k``.

    Returns
    -------
    np.ndarray of shape (n_classes,); ``nan`` for a class absent from ``y_true`` (or the only one).
    """
    y, p = _multiclass(y_true, probs)
    return np.array([roc.roc_auc((y == k).astype(np.int64), p[:, k]) for k in range(p.shape[1])])


def multiclass_report(y_true, probs) -> dict:
    """Multi-class metrics from a probability matrix; the prediction is the arg-max class.

    Returns
    -------
    dict: ``n``, ``accuracy``, ``balanced_accuracy`` (macro sensitivity), ``macro_f1``,
    ``macro_auc`` (mean of the defined one-vs-rest AUCs, which equals
    ``roc_auc_score(multi_class="ovr", average="macro")`` when every class is present) and
    ``per_class``: list of dicts with ``sensitivity``, ``specificity``, ``ppv``, ``f1``, ``auc``, ``n``.
    """
    y, p = _multiclass(y_true, probs)
    pred = np.argmax(p, axis=1)
    aucs = one_vs_rest_auc(y, p)
    per_class = []
    for k in range(p.shape[1]):
        yk, pk = (y == k).astype(np.int64), (pred == k).astype(np.int64)
        per_class.append({"n": int(yk.sum()), "sensitivity": sensitivity(yk, pk),
                          "specificity": specificity(yk, pk), "ppv": ppv(yk, pk),
                          "f1": f1_score(yk, pk), "auc": float(aucs[k])})

    def macro(key: str) -> float:
        vals = np.array([c[key] for c in per_class], dtype=np.float64)
        return float(np.nanmean(vals)) if np.any(~np.isnan(vals)) else float("nan")

    present = [c for c in per_class if c["n"] > 0]
    # a class neither present nor predicted is left out, as scikit-learn's label set does
    f1s = [c["f1"] for c in per_class if not np.isnan(c["f1"])]
    return {
        "n": int(y.size),
        "accuracy": _ratio(np.sum(pred == y), y.size),
        "balanced_accuracy": float(np.mean([c["sensitivity"] for c in present])) if present else float("nan"),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "macro_auc": macro("auc"),
        "per_class": per_class,
    }


# --------------------------------------------------------------------------------------------
# segmentation


def _masks(pred, true) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(pred)
    b = np.asarray(true)
    if a.shape != b.shape:
        raise ValueError(f"`pred` and `true` masks must have the same shape. Received: {a.shape} and {b.shape}")
    if a.ndim == 4 and a.shape[-1] == 1:  # (N, H, W, 1), the segmenters' output layout
        a, b = a[..., 0], b[..., 0]
    if a.ndim == 2:
        a, b = a[None], b[None]
    if a.ndim != 3:
        raise ValueError(f"Masks must be (H, W), (N, H, W) or (N, H, W, 1). Received: shape={np.asarray(pred).shape}")
    return a.astype(bool), b.astype(bool)


def dice_per_image(pred, true) -> np.ndarray:
    """Dice = 2|A∩B| / (|A| + |B|) per image; 1.0 when both masks are empty.

    Parameters
    ----------
    pred, true : array-like of bool/0-1, shape (H, W), (N, H, W) or (N, H, W, 1)
        Binary masks (threshold probabilities first).

    Returns
    -------
    np.ndarray of float, shape (N,).
    """
    a, b = _masks(pred, true)
    inter = np.sum(a & b, axis=(1, 2)).astype(np.float64)
    total = np.sum(a, axis=(1, 2)) + np.sum(b, axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total == 0, 1.0, 2.0 * inter / np.where(total == 0, 1, total))


def iou_per_image(pred, true) -> np.ndarray:
    """Intersection over union (Jaccard) per image; 1.0 when both masks are empty. Shapes as Dice."""
    a, b = _masks(pred, true)
    inter = np.sum(a & b, axis=(1, 2)).astype(np.float64)
    union = np.sum(a | b, axis=(1, 2)).astype(np.float64)
    return np.where(union == 0, 1.0, inter / np.where(union == 0, 1, union))


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray] | None:
    """Distances (mm) from a's surface to b's and b's to a's; None when a mask is empty."""
    if not a.any() or not b.any():
        return None
    sa = a ^ ndimage.binary_erosion(a, border_value=0)
    sb = b ^ ndimage.binary_erosion(b, border_value=0)
    dt_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    dt_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return dt_b[sa], dt_a[sb]


def _spacing(spacing, ndim: int) -> tuple[float, ...]:
    sp = tuple(float(v) for v in np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,)))
    if any(v <= 0 for v in sp):
        raise ValueError(f"`spacing` must be positive (mm per pixel along each axis). Received: spacing={spacing}")
    return sp


def hausdorff95(pred, true, spacing=(1.0, 1.0)) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two binary masks, in mm.

    The larger of the two directed 95th percentiles of surface-to-surface distances (MONAI's
    ``compute_hausdorff_distance(percentile=95)``). Surfaces are mask pixels with a 4-connected
    background neighbour (the image border counts as background).

    Parameters
    ----------
    pred, true : array-like of bool, shape (H, W) (or any equal N-D shape)
    spacing : float or sequence of float
        Pixel size in mm along each axis (row spacing first, as DICOM PixelSpacing).

    Returns
    -------
    float: 0.0 when both masks are empty, ``nan`` when exactly one is.
    """
    a, b = np.asarray(pred).astype(bool), np.asarray(true).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"`pred` and `true` masks must have the same shape. Received: {a.shape} and {b.shape}")
    if not a.any() and not b.any():
        return 0.0
    d = _surface_distances(a, b, _spacing(spacing, a.ndim))
    if d is None:
        return float("nan")
    return float(max(np.percentile(d[0], 95), np.percentile(d[1], 95)))


def average_surface_distance(pred, true, spacing=(1.0, 1.0)) -> float:
    """Symmetric average surface distance in mm: mean of all surface distances in both directions.

    Same surfaces, spacing and empty-mask rules as :func:`hausdorff95`.
    """
    a, b = np.asarray(pred).astype(bool), np.asarray(true).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"`pred` and `true` masks must have the same shape. Received: {a.shape} and {b.shape}")
    if not a.any() and not b.any():
        return 0.0
    d = _surface_distances(a, b, _spacing(spacing, a.ndim))
    if d is None:
        return float("nan")
    return float(np.mean(np.r_[d[0], d[1]]))


# --------------------------------------------------------------------------------------------
# patients and confidence intervals


def aggregate_by_patient(patients, y_true, scores, how: str = "max"):
    """Collapse record (slice) scores to one score per patient.

    Parameters
    ----------
    patients : array-like, shape (n,)
        Patient key of each record (pseudonyms).
    y_true : array-like of 0/1, shape (n,)
        A patient is positive when any of its records is.
    scores : array-like of float, shape (n,)
    how : {"max", "mean"}

    Returns
    -------
    patient_ids, y_patient, score_patient : np.ndarray, sorted by patient key.
    """
    if how not in ("max", "mean"):
        raise ValueError(f"`how` must be 'max' or 'mean'. Received: how={how!r}")
    y = roc.binary_labels(y_true)
    s = roc.finite_scores(scores, y.shape[0])
    g = np.asarray(patients)
    if g.shape != y.shape:
        raise ValueError(f"`patients` must have one key per record ({y.shape[0]}). Received: shape={g.shape}")
    ids, inv = np.unique(g, return_inverse=True)
    y_p = np.zeros(ids.size, dtype=np.int64)
    np.maximum.at(y_p, inv, y)
    if how == "max":
        s_p = np.full(ids.size, -np.inf)
        np.maximum.at(s_p, inv, s)
    else:
        s_p = np.bincount(inv, weights=s, minlength=ids.size) / np.bincount(inv, minlength=ids.size)
    return ids, y_p, s_p


def _group_index(groups, n: int) -> np.ndarray:
    """Group number 0..G-1 of every record (each record its own group when ``groups`` is None)."""
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"`groups` must have one key per record ({n}). Received: shape={g.shape}")
    return np.unique(g, return_inverse=True)[1].reshape(-1)


def _resamples(inv: np.ndarray, n_boot: int, seed: int):
    """Yield ``n_boot`` index arrays, each drawing as many groups as there are, with replacement,
    and taking every record of each drawn group."""
    n = inv.size
    if n == 0:
        return
    n_groups = int(inv.max()) + 1
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv, minlength=n_groups)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        picks = rng.integers(0, n_groups, n_groups)
        lengths = counts[picks]
        offsets = np.repeat(starts[picks] - (np.cumsum(lengths) - lengths), lengths)
        yield order[offsets + np.arange(lengths.sum())]


def bootstrap_metrics(metrics: Mapping[str, Callable], y_true, scores, *, groups=None,
                      n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """Percentile bootstrap confidence intervals, resampling whole groups (patients).

    Every metric is computed on the same resamples. A resample draws as many groups as there are,
    with replacement, and takes all records of each drawn group, so slices of one patient stay
    together (records are resampled alone when ``groups`` is None).

    Parameters
    ----------
    metrics : mapping name -> callable(y_true, scores) -> float
    y_true, scores : array-like, shape (n,) (scores may also be (n, k) for multi-class metrics)
    groups : array-like, shape (n,), optional
        Patient key of each record.
    n_boot : int
    seed : int
        Seeds ``numpy.random.default_rng``; the same seed gives the same intervals.
    level : float
        Coverage, 0.95 for a 95% interval.

    Returns
    -------
    dict name -> {"value", "low", "high", "level", "n_boot", "n_valid", "method"}; ``n_valid`` counts
    resamples where the metric was defined (not ``nan``); ``low``/``high`` are ``nan`` when none was.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores)
    n = y.shape[0]
    if s.shape[0] != n:
        raise ValueError(f"`scores` must have one row per label ({n}). Received: shape={s.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must be in (0, 1). Received: level={level}")
    inv = _group_index(groups, n)
    values = {name: float(fn(y, s)) for name, fn in metrics.items()}
    draws = {name: np.full(n_boot, np.nan) for name in metrics}
    for i, idx in enumerate(_resamples(inv, n_boot, seed)):
        yb, sb = y[idx], s[idx]
        for name, fn in metrics.items():
            draws[name][i] = fn(yb, sb)
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for name, d in draws.items():
        ok = d[~np.isnan(d)]
        low, high = (np.percentile(ok, [tail, 100.0 - tail]) if ok.size else (np.nan, np.nan))
        out[name] = {"value": values[name], "low": float(low), "high": float(high), "level": level,
                     "n_boot": int(n_boot), "n_valid": int(ok.size),
                     "method": "percentile bootstrap, resampling " + ("records" if groups is None else "patients")}
    return out


def bootstrap_ci(metric: Callable, y_true, scores, *, groups=None, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict:
    """Bootstrap interval of one metric; see :func:`bootstrap_metrics` for the arguments and result."""
    return bootstrap_metrics({"metric": metric}, y_true, scores, groups=groups, n_boot=n_boot,
                             seed=seed, level=level)["metric"]


def _roc_on_grid(y: np.ndarray, s: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sensitivity at each false-positive rate of ``grid`` (the ROC step: best TPR with FPR <= x)."""
    fpr, tpr, _ = roc.roc_curve(y, s)
    if np.isnan(fpr[-1]) or np.isnan(tpr[-1]):
        return np.full(grid.size, np.nan)
    return tpr[np.searchsorted(fpr, grid, side="right") - 1]


def _pr_on_grid(y: np.ndarray, s: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Interpolated precision (best precision at recall >= r) at each recall of ``grid``."""
    precision, recall, _ = precision_recall_curve(y, s)
    if recall.size == 0 or np.isnan(recall[-1]):
        return np.full(grid.size, np.nan)
    best_after = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, grid, side="left")
    out = np.full(grid.size, np.nan)
    ok = idx < recall.size
    out[ok] = best_after[idx[ok]]
    return out


def bootstrap_curve_band(y_true, scores, *, curve: str = "roc", groups=None, n_boot: int = 200,
                         seed: int = 0, level: float = 0.95, points: int = 101) -> dict[str, np.ndarray]:
    """Pointwise percentile-bootstrap band of a ROC or precision–recall curve.

    Each resample (whole patients when ``groups`` is given, as :func:`bootstrap_metrics`) gives a
    curve on a fixed grid: sensitivity at each false-positive rate (ROC) or interpolated precision
    at each recall (PR); the band is the ``level`` percentile interval at each grid point.

    Parameters
    ----------
    y_true : (n,) 0/1 labels; scores : (n,) positive-class scores
    curve : {"roc", "pr"}
    groups : (n,) patient keys, optional
    n_boot, seed, level : resamples, their seed and the coverage
    points : grid size over [0, 1]

    Returns
    -------
    dict of arrays ``grid`` (FPR or recall), ``value`` (curve of the full data on the grid), ``low``,
    ``high``, and ``n_valid`` (int: resamples holding both classes).

    Raises
    ------
    ValueError
        Unknown ``curve``, bad ``level``, or labels/scores of different lengths.
    """
    if curve not in ("roc", "pr"):
        raise ValueError(f"`curve` must be 'roc' or 'pr'. Received: curve={curve!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must be in (0, 1). Received: level={level}")
    y = roc.binary_labels(y_true)
    s = roc.finite_scores(scores, y.shape[0])
    grid = np.linspace(0.0, 1.0, int(points))
    on_grid = _roc_on_grid if curve == "roc" else _pr_on_grid
    draws = [on_grid(y[idx], s[idx], grid) for idx in _resamples(_group_index(groups, y.size), n_boot, seed)]
    draws = np.array([d for d in draws if not np.all(np.isnan(d))]).reshape(-1, grid.size)
    tail = (1.0 - level) / 2.0 * 100.0
    if draws.shape[0]:
        with warnings.catch_warnings():  # an all-nan grid column (no resample reaches it) is expected
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanpercentile(draws, [tail, 100.0 - tail], axis=0)
    else:
        low = high = np.full(grid.size, np.nan)
    return {"grid": grid, "value": on_grid(y, s, grid), "low": low, "high": high,
            "n_valid": int(draws.shape[0])}


def threshold_metric(fn: Callable, threshold: float = 0.5) -> Callable:
    """Turn ``fn(y_true, y_pred)`` into ``metric(y_true, scores)`` thresholding at ``threshold``."""
    def metric(y_true, scores):
        return fn(y_true, (np.asarray(scores) >= threshold).astype(np.int64))
    metric.__name__ = getattr(fn, "__name__", "metric")
    return metric


# --------------------------------------------------------------------------------------------
# stateful wrapper


class BinaryAccumulator:
    """Collects labels, scores and patient keys batch by batch, then reports.

    A thin wrapper over the pure functions: ``update`` appends, ``report`` calls
    :func:`binary_report` on everything seen, ``reset`` forgets.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._y: list[np.ndarray] = []
        self._s: list[np.ndarray] = []
        self._g: list[np.ndarray] = []

    def update(self, y_true, scores, patients: Sequence | None = None) -> None:
        y = roc.binary_labels(np.atleast_1d(y_true))
        s = roc.finite_scores(np.atleast_1d(scores), y.shape[0])
        self._y.append(y)
        self._s.append(s)
        self._g.append(np.asarray(patients) if patients is not None else np.full(y.shape[0], None, dtype=object))

    @property
    def y_true(self) -> np.ndarray:
        return np.concatenate(self._y) if self._y else np.zeros(0, dtype=np.int64)

    @property
    def scores(self) -> np.ndarray:
        return np.concatenate(self._s) if self._s else np.zeros(0)

    @property
    def patients(self) -> np.ndarray:
        return np.concatenate(self._g) if self._g else np.zeros(0, dtype=object)

    def report(self, threshold: float = 0.5) -> dict[str, float]:
        """:func:`binary_report` over every record seen so far."""
        return binary_report(self.y_true, self.scores, threshold)
