"""Evaluation charts with matplotlib's Agg canvas (no pyplot state, no TensorFlow).

Every ``plot_*`` function writes ``path`` as PNG and the same chart as SVG beside it
(``path.with_suffix(".svg")``), atomically, with no software/date metadata and nothing from the
data but the numbers drawn (:func:`medzoo.figures.save_figure`); it returns the PNG path.

Chart 1 (training curves) is drawn by :mod:`medzoo.training.curves`; chart 2 is
:func:`plot_model_comparison`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from medzoo import roc
from medzoo.evaluation import metrics as M
from medzoo.figures import FONT, new_figure, number, save_figure

__all__ = ["plot_model_comparison", "plot_roc", "plot_pr", "plot_confusion",
           "plot_fold_scatter", "plot_calibration", "plot_calibration_models"]

METRIC_NAMES = {"auc": "ROC AUC", "pr_auc": "PR AUC", "balanced_accuracy": "Balanced accuracy",
                "ppv": "PPV", "npv": "NPV", "f1": "F1"}


def _metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.replace("_", " ").capitalize())


def _spread(values: np.ndarray, error: str) -> float:
    if values.size < 2:
        return 0.0
    sd = float(np.std(values, ddof=1))
    if error == "sd":
        return sd
    from scipy import stats as sps
    return float(sps.t.ppf(0.975, values.size - 1) * sd / np.sqrt(values.size))


def plot_model_comparison(summary: Mapping[str, Mapping[str, Sequence[float]]], path, *,
                          metrics: Sequence[str] = ("accuracy", "sensitivity", "specificity"),
                          error: str = "sd", chance: Mapping[str, float] | None = None,
                          title: str = "Model comparison") -> Path:
    """Chart 2: per model, bars of the mean of each metric over folds with error bars and the folds as dots.

    Parameters
    ----------
    summary : {model: {metric: [per-fold values]}}
    metrics : metric names to draw (missing ones are skipped)
    error : {"sd", "ci95"}
        Error bars: ± one standard deviation over folds, or the t-based 95% CI of the mean.
    chance : {metric: level}, optional
        Dashed chance lines (e.g. from :func:`medzoo.evaluation.stats.chance_level`).

    Returns
    -------
    Path of the PNG.
    """
    if error not in ("sd", "ci95"):
        raise ValueError(f"Argument `error` must be 'sd' or 'ci95'. Received: error={error!r}")
    models = list(summary)
    if not models:
        raise ValueError("`summary` must hold at least one model. Received: {}")
    shown = [m for m in metrics if any(m in summary[k] for k in models)]
    if not shown:
        raise ValueError(f"`summary` holds none of the metrics {list(metrics)}. Received: "
                         f"{sorted({m for k in models for m in summary[k]})}")
    width = 0.8 / len(shown)
    fig, (ax,) = new_figure(max(6.0, 1.8 * len(models) + 3), 4.5)
    x = np.arange(len(models))
    n_folds = set()
    rng = np.random.default_rng(0)  # fixed jitter: the chart is reproducible
    for j, metric in enumerate(shown):
        means, errs = [], []
        for i, model in enumerate(models):
            vals = np.array([number(v) for v in summary[model].get(metric, [])], dtype=np.float64)
            vals = vals[~np.isnan(vals)]
            n_folds.add(vals.size)
            means.append(vals.mean() if vals.size else np.nan)
            errs.append(_spread(vals, error))
            xs = x[i] + (j - (len(shown) - 1) / 2) * width + rng.uniform(-width / 6, width / 6, vals.size)
            ax.plot(xs, vals, "o", color="black", markersize=3, alpha=0.6, zorder=3)
        pos = x + (j - (len(shown) - 1) / 2) * width
        bars = ax.bar(pos, means, width * 0.95, yerr=errs, capsize=4, label=metric.replace("_", " "), zorder=2)
        for bar, mean in zip(bars, means):
            if not np.isnan(mean):
                short = mean < 0.1  # white text on a short bar would sit on the white background
                ax.annotate(f"{mean:.2f}", (bar.get_x() + bar.get_width() / 2, mean + 0.02 if short else 0.02),
                            ha="center", fontsize=FONT - 2, color="black" if short else "white")
        if chance and metric in chance:
            ax.axhline(chance[metric], color=bars.patches[0].get_facecolor(), ls="--", lw=1, zorder=1)
    ax.set_xticks(x, models, fontsize=FONT)
    ax.set_ylim(0, 1.18)  # headroom for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("Score (fraction, 0–1)", fontsize=FONT)
    folds = "/".join(str(n) for n in sorted(n_folds))
    bar_text = "mean ± SD" if error == "sd" else "mean with 95% CI"
    ax.set_title(f"{title}: {bar_text} over k={folds} folds, dots = folds", fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 1, loc="upper center", ncol=len(shown))
    return save_figure(fig, path)


def _curve_inputs(value) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(y_true, scores) or (y_true, scores, groups) → arrays (groups None when not given)."""
    if len(value) not in (2, 3):
        raise ValueError("Each curve must be (y_true, scores) or (y_true, scores, groups). "
                         f"Received a tuple of {len(value)}")
    y, s = np.asarray(value[0]), np.asarray(value[1], dtype=np.float64)
    g = np.asarray(value[2]) if len(value) == 3 and value[2] is not None else None
    return y, s, g


def _band_text(n_boot: int, groups_given: bool) -> str:
    return (f"shaded: pointwise 95% bootstrap band ({n_boot} resamples of "
            f"{'patients' if groups_given else 'records'})")


def _unit_square(ax, title: str, ns, xlabel: str, ylabel: str) -> None:
    """The square both curve charts share: fractions 0–1 on both axes (a little headroom at 1),
    the title with the curves' sample sizes."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.set_title(f"{title} (n={'/'.join(str(n) for n in sorted(ns))})", fontsize=FONT + 1)


def plot_roc(curves: Mapping[str, tuple], path, *, title: str = "ROC curve", n_boot: int = 0,
             seed: int = 0) -> Path:
    """ROC curves with AUC and counts in the legend, optionally with bootstrap bands.

    Parameters
    ----------
    curves : {name: (y_true, scores) or (y_true, scores, groups)}
        Binary labels and positive-class scores per curve; ``groups`` (patient keys) makes the
        band resample whole patients.
    n_boot : int
        Resamples for the pointwise 95% band of sensitivity at each false-positive rate
        (:func:`medzoo.evaluation.metrics.bootstrap_curve_band`); 0 draws no band.

    Returns
    -------
    Path of the PNG.
    """
    if not curves:
        raise ValueError("`curves` must hold at least one (y_true, scores) pair. Received: {}")
    fig, (ax,) = new_figure(5.8, 5.6)
    ns, grouped = set(), False
    for name, value in curves.items():
        y, s, g = _curve_inputs(value)
        fpr, tpr, _ = roc.roc_curve(y, s)
        auc = roc.roc_auc(y, s)
        ns.add(len(y))
        line, = ax.plot(fpr, tpr, lw=2, drawstyle="steps-post",
                        label=f"{name}: AUC {auc:.3f} (n={len(y)}, {int(y.sum())} positive)")
        if n_boot:
            band = M.bootstrap_curve_band(y, s, curve="roc", groups=g, n_boot=n_boot, seed=seed)
            ax.fill_between(band["grid"], band["low"], band["high"], step="post", alpha=0.2,
                            color=line.get_color(), lw=0)
            grouped = grouped or g is not None
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance (AUC 0.5)")
    _unit_square(ax, title, ns, "1 − specificity (false-positive rate, fraction)",
                 "Sensitivity (true-positive rate, fraction)")
    if n_boot:
        ax.text(0.98, 0.02 + 0.07 * (len(curves) + 1), _band_text(n_boot, grouped), ha="right", va="bottom",
                fontsize=FONT - 3, color="#444", transform=ax.transAxes)
    ax.legend(fontsize=FONT - 2, loc="lower right")
    return save_figure(fig, path)


def plot_pr(curves: Mapping[str, tuple], path, *, title: str = "Precision–recall curve",
            n_boot: int = 0, seed: int = 0) -> Path:
    """Precision–recall curves with average precision, prevalence baselines and optional bands.

    Parameters
    ----------
    curves : {name: (y_true, scores) or (y_true, scores, groups)}
    n_boot : int
        Resamples for the pointwise 95% band of interpolated precision at each recall; 0: none.

    Returns
    -------
    Path of the PNG.
    """
    if not curves:
        raise ValueError("`curves` must hold at least one (y_true, scores) pair. Received: {}")
    fig, (ax,) = new_figure(5.8, 5.6)
    ns, grouped, prevalences = set(), False, set()
    for name, value in curves.items():
        y, s, g = _curve_inputs(value)
        precision, recall, _ = M.precision_recall_curve(y, s)
        ap = M.average_precision(y, s)
        ns.add(len(y))
        prevalences.add(round(float(np.mean(y)), 3) if len(y) else float("nan"))
        line, = ax.plot(np.r_[0.0, recall], np.r_[precision[:1], precision], lw=2, drawstyle="steps-pre",
                        label=f"{name}: AP {ap:.3f} (n={len(y)}, {int(y.sum())} positive)")
        if n_boot:
            band = M.bootstrap_curve_band(y, s, curve="pr", groups=g, n_boot=n_boot, seed=seed)
            ax.fill_between(band["grid"], band["low"], band["high"], alpha=0.2, color=line.get_color(), lw=0)
            grouped = grouped or g is not None
    for prev in sorted(prevalences):
        ax.axhline(prev, ls="--", color="grey", lw=1, label=f"chance (prevalence {prev:.3f})")
    _unit_square(ax, title, ns, "Recall (sensitivity, fraction)",
                 "Precision (positive predictive value, fraction)")
    if n_boot:
        ax.text(0.02, 0.02 + 0.07 * (len(curves) + len(prevalences)), _band_text(n_boot, grouped),
                ha="left", va="bottom", fontsize=FONT - 3, color="#444", transform=ax.transAxes)
    ax.legend(fontsize=FONT - 2, loc="lower left")
    return save_figure(fig, path)


def plot_confusion(matrix, class_names: Sequence[str], path, *, title: str = "Confusion matrix",
                   threshold: float | None = None) -> Path:
    """Confusion matrix: counts with row percentages (rows: true class, columns: predicted).

    Parameters
    ----------
    matrix : array-like (k, k) of counts
    class_names : k names
    threshold : float, optional
        Shown in the title for a binary decision threshold.

    Returns
    -------
    Path of the PNG.
    """
    cm = np.asarray(matrix, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"`matrix` must be square with one row per class ({len(class_names)}). "
                         f"Received: shape={cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    k = cm.shape[0]
    fig, (ax,) = new_figure(1.4 * k + 3, 1.2 * k + 2.4)
    ax.grid(False)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]}\n{100 * frac[i, j]:.0f}%", ha="center", va="center", fontsize=FONT,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, fontsize=FONT)
    ax.set_yticks(range(k), class_names, fontsize=FONT)
    ax.set_xlabel("Predicted class", fontsize=FONT)
    ax.set_ylabel("True class", fontsize=FONT)
    fig.colorbar(im, ax=ax, label="Fraction of true class")
    extra = f", threshold {threshold:g}" if threshold is not None else ""
    ax.set_title(f"{title} (n={int(cm.sum())}{extra})", fontsize=FONT + 1)
    return save_figure(fig, path)


def plot_fold_scatter(summary: Mapping[str, Mapping[str, Sequence[float]]], path, *, metric: str = "accuracy",
                      chance: float | None = None, title: str | None = None,
                      fold_labels: Sequence[str] | None = None) -> Path:
    """Per-fold values of one metric, one column per model, folds joined across models, with the
    mean ± t-based 95% CI of the mean beside each column.

    Parameters
    ----------
    summary : {model: {metric: [per-fold values]}} (folds in the same order for every model)
    chance : float, optional — dashed chance line
    fold_labels : names of the folds in the legend (default ``fold 0``, ``fold 1``...)

    Returns
    -------
    Path of the PNG.
    """
    models = [m for m in summary if metric in summary[m]]
    if not models:
        raise ValueError(f"No model in `summary` has metric {metric!r}. Received models: {list(summary)}")
    values = [np.array([number(v) for v in summary[m][metric]]) for m in models]
    k = max(len(v) for v in values)
    labels = list(fold_labels) if fold_labels is not None else [f"fold {i}" for i in range(k)]
    fig, (ax,) = new_figure(max(5.5, 1.6 * len(models) + 3.5), 4.4)
    for fold in range(k):
        pts = [(i, v[fold]) for i, v in enumerate(values) if fold < len(v)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", alpha=0.6, markersize=5,
                label=labels[fold] if fold < len(labels) and k <= 12 else None)
    for i, v in enumerate(values):
        ok = v[~np.isnan(v)]
        if ok.size:
            ax.errorbar(i + 0.22, ok.mean(), yerr=_spread(ok, "ci95"), fmt="D", color="black", capsize=5,
                        markersize=6, label="mean ± 95% CI" if i == 0 else None, zorder=4)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance ({chance:.2f})")
    ax.set_xticks(range(len(models)), models, fontsize=FONT)
    ax.set_xlim(-0.5, len(models) - 0.5)
    ax.set_ylim(min(0.0, np.nanmin([np.nanmin(v) for v in values if v.size])), 1.05)
    ax.set_ylabel(f"{_metric_name(metric)} (fraction, 0–1)", fontsize=FONT)
    ax.set_title(title or f"{_metric_name(metric)} per test fold (n={k} folds per model)",
                 fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 3, ncol=2, loc="lower right")
    return save_figure(fig, path)


def plot_calibration(y_true, prob, path, *, n_bins: int = 10, title: str = "Calibration",
                     label: str = "model") -> Path:
    """Reliability diagram of one model; see :func:`plot_calibration_models`."""
    return plot_calibration_models({label: (y_true, prob)}, path, n_bins=n_bins, title=title)


def plot_calibration_models(curves: Mapping[str, tuple], path, *, n_bins: int = 10,
                            title: str = "Calibration") -> Path:
    """Reliability diagram: fraction positive against mean predicted probability per bin, with ECE.

    Bins with records get a 95% Wilson interval as error bar; with one model, the share of records
    per bin is drawn beneath.

    Parameters
    ----------
    curves : {name: (y_true, prob)} with probabilities in [0, 1]

    Returns
    -------
    Path of the PNG.
    """
    if not curves:
        raise ValueError("`curves` must hold at least one (y_true, prob) pair. Received: {}")
    fig, (ax,) = new_figure(5.8, 5.6)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    z = 1.959963984540054
    ns = set()
    for i, (name, (y_true, prob)) in enumerate(curves.items()):
        dodge = (i - (len(curves) - 1) / 2) * 0.012  # side by side, so error bars of models do not hide each other
        b = M.calibration_bins(y_true, prob, n_bins)
        ece = M.expected_calibration_error(y_true, prob, n_bins)
        full = b["count"] > 0
        n, p = b["count"][full].astype(float), b["frac_pos"][full]
        ns.add(int(b["count"].sum()))
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        yerr = np.clip([p - (centre - half), (centre + half) - p], 0, None)  # rounding can dip below 0
        ax.errorbar(b["mean_prob"][full] + dodge, p, yerr=yerr, fmt="o-", capsize=3,
                    label=f"{name} (ECE {ece:.3f}, n={int(b['count'].sum())})")
        if len(curves) == 1:
            ax.bar(b["edges"][:-1], b["count"] / max(1, b["count"].sum()), width=1.0 / n_bins, align="edge",
                   alpha=0.2, color="grey", label="share of records per bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("Mean predicted probability (fraction)", fontsize=FONT)
    ax.set_ylabel("Observed fraction positive (95% Wilson CI)", fontsize=FONT)
    ax.set_title(f"{title} (n={'/'.join(str(n) for n in sorted(ns))}, {n_bins} bins)", fontsize=FONT + 1)
    ax.legend(fontsize=FONT - 2, loc="upper left")
    return save_figure(fig, path)
