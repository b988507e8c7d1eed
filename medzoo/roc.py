"""ROC analysis of binary scores as pure numpy functions: the curve, its area, Youden's threshold.

A base module, below every package of the chain, because three of them need it: training
chooses its decision threshold on the validation fold (:func:`youden_threshold`), export checks
a quantised model's validation AUC (:func:`roc_auc`) and evaluation reports both.
``medzoo.evaluation.metrics`` builds its other metrics on the same validators.

Binary labels are 0/1 with 1 the positive class; a prediction is positive when
``score >= threshold``; a rate whose denominator is zero is ``nan``. Array-argument problems raise
``ValueError`` saying what was expected and what was received.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["binary_labels", "finite_scores", "binary_clf_curve", "roc_curve", "roc_auc",
           "youden_threshold"]


def binary_labels(y_true, name: str = "y_true") -> np.ndarray:
    """``y_true`` as a 1-D int64 array of 0/1; ``ValueError`` for any other value or shape."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D. Received: shape={y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    ok = (y == 0) | (y == 1)
    if not ok.all():
        bad = np.unique(y[~ok])[:5].tolist()
        raise ValueError(f"`{name}` must hold only 0 and 1. Received values such as {bad}")
    return y.astype(np.int64)


def finite_scores(scores, n: int, name: str = "scores") -> np.ndarray:
    """``scores`` as a 1-D float64 array of ``n`` finite values; ``ValueError`` otherwise."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"`{name}` must be 1-D with {n} values (one per label). Received: shape={s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"`{name}` must be finite. Received {int((~np.isfinite(s)).sum())} non-finite values")
    return s


def binary_clf_curve(y: np.ndarray, s: np.ndarray):
    """False and true positive counts at each distinct score, highest score first.

    ``y`` and ``s`` as :func:`binary_labels` and :func:`finite_scores` return them.

    Returns
    -------
    fps, tps, thresholds : np.ndarray of equal length
    """
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.where(np.diff(s_sorted))[0]
    ends = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y_sorted)[ends].astype(np.float64)
    fps = (1 + ends - tps).astype(np.float64)
    return fps, tps, s_sorted[ends]


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve over every distinct score (``sklearn.metrics.roc_curve(drop_intermediate=False)``).

    Returns
    -------
    fpr, tpr, thresholds : np.ndarray
        Starting at (0, 0) with threshold ``inf``; ``nan`` rates when a class is absent.
    """
    y = binary_labels(y_true)
    s = finite_scores(scores, y.shape[0])
    if y.size == 0:
        return np.array([0.0]), np.array([0.0]), np.array([np.inf])
    fps, tps, thr = binary_clf_curve(y, s)
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / fps[-1] if fps[-1] else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] else np.full_like(tps, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve, rank based (Mann–Whitney U / (n_pos · n_neg)).

    Ties get mid-ranks, i.e. a tied positive/negative pair counts ½ — the same value as
    ``sklearn.metrics.roc_auc_score``. ``nan`` when only one class is present.
    """
    y = binary_labels(y_true)
    s = finite_scores(scores, y.shape[0])
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def youden_threshold(y_true, scores) -> float:
    """Score threshold maximising Youden's J = sensitivity + specificity − 1.

    Among the ROC's finite thresholds; ties go to the highest threshold. ``nan`` with one class.
    """
    fpr, tpr, thr = roc_curve(y_true, scores)
    if np.isnan(fpr[-1]) or np.isnan(tpr[-1]):
        return float("nan")
    j = (tpr - fpr)[1:]
    best = int(np.flatnonzero(j >= j.max() - 1e-12)[0])  # rounding must not break a tie
    return float(thr[1:][best])
