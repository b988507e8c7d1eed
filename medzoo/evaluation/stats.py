"""Statistical tests for model evaluation (numpy + scipy, no TensorFlow).

Every test returns a plain, JSON-ready dict::

    {"test": exact name, "statistic": float, "df": float | None, "p_value": float,
     "alternative": ..., "effect_size": float, "effect_size_name": ..., "ci": [low, high] | None,
     "ci_level": 0.95, "n": ...}

plus test-specific fields. :func:`describe` turns one into a sentence for reports, e.g.
``"t(4)=5.21, p=0.0065"``.

Chance levels (:func:`chance_level`)
------------------------------------
With prevalence ``p`` of the positive class:

* accuracy: ``max(p, 1 − p)`` — what always predicting the majority class scores;
* sensitivity, specificity, balanced accuracy, AUC: 0.5 — a score unrelated to the label;
* PPV: ``p``; NPV: ``1 − p`` — precision of a prediction unrelated to the label.

Per-fold cross-validation metrics are not independent (training sets overlap): the plain paired
t-test on them is anti-conservative, and :func:`corrected_resampled_ttest` (Nadeau & Bengio 2003)
is the one to prefer for comparing two models.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

__all__ = [
    "chance_level", "multiclass_chance_level", "one_sample_ttest", "corrected_one_sample_ttest",
    "paired_ttest", "corrected_resampled_ttest",
    "wilcoxon_signed_rank", "mcnemar", "delong_roc_variance", "delong_test", "holm", "describe",
]


def _values(x, name: str, min_n: int = 2) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1 or v.size < min_n:
        raise ValueError(f"`{name}` must be 1-D with at least {min_n} values. Received: shape={v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"`{name}` must be finite. Received: {v.tolist()}")
    return v


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"`a` and `b` must be paired (same length). Received: {x.size} and {y.size}")
    return x, y


def _p_from_t(t: float, df: float, alternative: str) -> float:
    if alternative == "two-sided":
        return float(2.0 * sps.t.sf(abs(t), df))
    if alternative == "greater":
        return float(sps.t.sf(t, df))
    if alternative == "less":
        return float(sps.t.cdf(t, df))
    raise ValueError(f"`alternative` must be 'two-sided', 'greater' or 'less'. Received: {alternative!r}")


def _no_variance(test: str, n: int, alternative: str, level: float, **fields) -> dict:
    """A t-test over values that are all equal: the t statistic and its p-value are undefined
    (a p of 0 from three identical folds would claim what the data cannot show)."""
    return {"test": test, "statistic": None, "df": float(n - 1), "p_value": None, "alternative": alternative,
            "n": int(n), "effect_size": None, "ci": None, "ci_level": level, **fields,
            "note": "not defined: every fold gave the same value (zero variance)"}


def _t_ci(center: float, se: float, df: float, level: float) -> list[float]:
    half = float(sps.t.ppf(0.5 + level / 2.0, df) * se)
    return [float(center - half), float(center + half)]


def chance_level(metric: str, prevalence: float | None = None) -> float:
    """Score of a classifier that has learnt nothing, for a binary task.

    Parameters
    ----------
    metric : str
        ``accuracy``, ``balanced_accuracy``, ``sensitivity``, ``specificity``, ``auc``, ``ppv``,
        ``npv`` (aliases ``recall``, ``roc_auc``, ``precision``).
    prevalence : float, optional
        Fraction of positives; needed for accuracy, PPV and NPV.

    Returns
    -------
    float — see the module docstring for the rule per metric.

    Raises
    ------
    ValueError
        For an unknown metric, or a missing/out-of-range prevalence where one is needed.
    """
    m = {"recall": "sensitivity", "roc_auc": "auc", "precision": "ppv"}.get(metric, metric)
    if m in ("sensitivity", "specificity", "balanced_accuracy", "auc"):
        return 0.5
    if m not in ("accuracy", "ppv", "npv"):
        raise ValueError("`metric` must be one of accuracy, balanced_accuracy, sensitivity, specificity, "
                         f"auc, ppv, npv. Received: metric={metric!r}")
    if prevalence is None or not 0.0 <= float(prevalence) <= 1.0:
        raise ValueError(f"`prevalence` in [0, 1] is needed for the chance level of {m}. Received: {prevalence}")
    p = float(prevalence)
    return {"accuracy": max(p, 1.0 - p), "ppv": p, "npv": 1.0 - p}[m]



def multiclass_chance_level(metric: str, class_shares: Sequence[float]) -> float:
    """Chance level of a multi-class metric from the share of each class.

    accuracy: the largest share (always predicting the majority class); balanced accuracy: 1/k;
    (macro) AUC: 0.5.

    Raises
    ------
    ValueError
        For another metric, or shares that are not a distribution over at least 2 classes.
    """
    shares = np.asarray(class_shares, dtype=np.float64)
    if shares.ndim != 1 or shares.size < 2 or np.any(shares < 0) or abs(shares.sum() - 1.0) > 1e-6:
        raise ValueError(f"`class_shares` must be fractions of >= 2 classes summing to 1. Received: {shares.tolist()}")
    m = {"roc_auc": "auc", "macro_auc": "auc"}.get(metric, metric)
    if m == "accuracy":
        return float(shares.max())
    if m == "balanced_accuracy":
        return 1.0 / shares.size
    if m == "auc":
        return 0.5
    raise ValueError(f"`metric` must be accuracy, balanced_accuracy or auc for several classes. "
                     f"Received: metric={metric!r}")


def one_sample_ttest(values: Sequence[float], chance: float, *, alternative: str = "two-sided",
                     level: float = 0.95) -> dict:
    """One-sample t-test of per-fold metric values against a chance level.

    Parameters
    ----------
    values : sequence of float
        One metric value per fold (at least 2).
    chance : float
        The value under the null hypothesis (see :func:`chance_level`).
    alternative : {"two-sided", "greater", "less"}
    level : float
        Coverage of the confidence interval of the mean.

    Returns
    -------
    dict with ``statistic`` t, ``df`` n−1, ``p_value`` (as ``scipy.stats.ttest_1samp``), ``mean``,
    ``sd``, ``chance``, ``effect_size`` Cohen's d = (mean − chance) / sd, ``ci`` of the mean.
    """
    v = _values(values, "values")
    n = v.size
    mean, sd = float(v.mean()), float(v.std(ddof=1))
    se = sd / math.sqrt(n)
    if se == 0:
        return _no_variance("one-sample t-test", n, alternative, level, mean=mean, sd=sd, chance=float(chance),
                            effect_size_name="Cohen's d")
    t = (mean - chance) / se
    return {"test": "one-sample t-test", "statistic": float(t), "df": float(n - 1),
            "p_value": _p_from_t(t, n - 1, alternative),
            "alternative": alternative, "n": int(n), "mean": mean, "sd": sd, "chance": float(chance),
            "effect_size": (mean - chance) / sd if sd > 0 else math.nan, "effect_size_name": "Cohen's d",
            "ci": _t_ci(mean, se, n - 1, level), "ci_level": level}


def paired_ttest(a: Sequence[float], b: Sequence[float], *, alternative: str = "two-sided",
                 level: float = 0.95) -> dict:
    """Paired t-test of ``a − b`` (e.g. two models' per-fold metrics; as ``scipy.stats.ttest_rel``).

    Anti-conservative on cross-validation folds, whose training sets overlap: prefer
    :func:`corrected_resampled_ttest` there.

    Returns
    -------
    dict with ``statistic``, ``df`` k−1, ``p_value``, ``mean_difference``, ``sd_difference``,
    ``effect_size`` Cohen's d_z = mean / sd of the differences, ``ci`` of the mean difference.
    """
    x, y = _pair(a, b)
    r = one_sample_ttest(x - y, 0.0, alternative=alternative, level=level)
    if r["p_value"] is None:
        return _no_variance("paired t-test", r["n"], alternative, level, mean_difference=r["mean"],
                            sd_difference=0.0, effect_size_name="Cohen's d_z")
    return {"test": "paired t-test", "statistic": r["statistic"], "df": r["df"], "p_value": r["p_value"],
            "alternative": alternative, "n": r["n"], "mean_difference": r["mean"],
            "sd_difference": r["sd"], "effect_size": r["effect_size"], "effect_size_name": "Cohen's d_z",
            "ci": r["ci"], "ci_level": level}


def corrected_resampled_ttest(a: Sequence[float], b: Sequence[float], n_train, n_test, *,
                              alternative: str = "two-sided", level: float = 0.95) -> dict:
    """Nadeau–Bengio corrected resampled t-test for two models scored on the same k folds.

    ``t = mean(d) / sqrt((1/k + n_test/n_train) · var(d))`` with ``d = a − b``, ``var`` with
    ``ddof=1`` and ``k − 1`` degrees of freedom (Nadeau & Bengio 2003, Machine Learning 52:239).
    The ``n_test/n_train`` term accounts for the overlap of training sets between folds.

    Parameters
    ----------
    a, b : sequence of float
        Per-fold metric of each model, paired by fold.
    n_train, n_test : int or sequence of int
        Training and test set sizes (per fold, averaged when a sequence).

    Returns
    -------
    dict with ``statistic``, ``df``, ``p_value``, ``mean_difference``, ``correction``
    (``1/k + n_test/n_train``), ``effect_size`` (Cohen's d_z, uncorrected) and ``ci`` of the mean
    difference using the corrected standard error.
    """
    x, y = _pair(a, b)
    tr, te = float(np.mean(n_train)), float(np.mean(n_test))
    if tr <= 0 or te <= 0:
        raise ValueError(f"`n_train` and `n_test` must be positive. Received: n_train={n_train}, n_test={n_test}")
    d = x - y
    k = d.size
    mean, var = float(d.mean()), float(d.var(ddof=1))
    correction = 1.0 / k + te / tr
    se = math.sqrt(correction * var)
    if se == 0:
        return _no_variance("Nadeau-Bengio corrected resampled t-test", k, alternative, level,
                            mean_difference=mean, sd_difference=0.0, correction=correction, n_train=tr,
                            n_test=te, effect_size_name="Cohen's d_z")
    t = mean / se
    return {"test": "Nadeau-Bengio corrected resampled t-test", "statistic": float(t), "df": float(k - 1),
            "p_value": _p_from_t(t, k - 1, alternative),
            "alternative": alternative, "n": int(k), "mean_difference": mean, "sd_difference": math.sqrt(var),
            "correction": correction, "n_train": tr, "n_test": te,
            "effect_size": mean / math.sqrt(var) if var > 0 else math.nan, "effect_size_name": "Cohen's d_z",
            "ci": _t_ci(mean, se, k - 1, level), "ci_level": level}



def corrected_one_sample_ttest(values: Sequence[float], chance: float, n_train, n_test, *,
                               alternative: str = "two-sided", level: float = 0.95) -> dict:
    """Per-fold metric values against a chance level with the Nadeau–Bengio variance correction.

    The cross-validation mean of one model has the same overlap problem as a difference of two:
    its variance is ``(1/k + n_test/n_train) · var`` rather than ``var / k``. This is
    :func:`corrected_resampled_ttest` of ``values`` against the constant ``chance``.

    Returns
    -------
    dict as :func:`one_sample_ttest` (``mean``, ``sd``, ``chance``, Cohen's d) plus ``correction``,
    ``n_train``, ``n_test``; ``ci`` uses the corrected standard error.
    """
    v = _values(values, "values")
    r = corrected_resampled_ttest(v, np.full(v.size, float(chance)), n_train, n_test,
                                  alternative=alternative, level=level)
    if r["p_value"] is None:
        return _no_variance("Nadeau-Bengio corrected one-sample t-test", r["n"], alternative, level,
                            mean=float(v.mean()), sd=0.0, chance=float(chance), correction=r["correction"],
                            n_train=r["n_train"], n_test=r["n_test"], effect_size_name="Cohen's d")
    sd = r["sd_difference"]
    mean = r["mean_difference"] + float(chance)
    return {"test": "Nadeau-Bengio corrected one-sample t-test", "statistic": r["statistic"], "df": r["df"],
            "p_value": r["p_value"], "alternative": alternative, "n": r["n"], "mean": mean, "sd": sd,
            "chance": float(chance), "correction": r["correction"], "n_train": r["n_train"],
            "n_test": r["n_test"], "effect_size": (mean - chance) / sd if sd > 0 else math.nan,
            "effect_size_name": "Cohen's d", "ci": [c + float(chance) for c in r["ci"]], "ci_level": level}


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float], *, alternative: str = "two-sided") -> dict:
    """Wilcoxon signed-rank test of ``a − b`` (``scipy.stats.wilcoxon``, zero differences dropped).

    With 5 folds the smallest possible two-sided exact p is 0.0625: it cannot reach 0.05.

    Returns
    -------
    dict with ``statistic`` (scipy's W), ``df`` None, ``p_value``, ``effect_size`` the matched-pairs
    rank-biserial correlation (W+ − W−) / (W+ + W−), ``ci`` None.
    """
    x, y = _pair(a, b)
    d = x - y
    nz = d[d != 0]
    if nz.size == 0:
        return {"test": "Wilcoxon signed-rank test", "statistic": 0.0, "df": None, "p_value": 1.0,
                "alternative": alternative, "n": int(d.size), "effect_size": 0.0,
                "effect_size_name": "rank-biserial correlation", "ci": None, "ci_level": None}
    res = sps.wilcoxon(x, y, alternative=alternative)
    ranks = sps.rankdata(np.abs(nz))
    w_plus, w_minus = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    return {"test": "Wilcoxon signed-rank test", "statistic": float(res.statistic), "df": None,
            "p_value": float(res.pvalue), "alternative": alternative, "n": int(d.size),
            "n_nonzero": int(nz.size), "w_plus": w_plus, "w_minus": w_minus,
            "effect_size": (w_plus - w_minus) / (w_plus + w_minus),
            "effect_size_name": "rank-biserial correlation", "ci": None, "ci_level": None}


def binomial_test(successes: int, n: int, chance: float, *, alternative: str = "greater",
                  level: float = 0.95) -> dict:
    """Exact binomial test of ``successes`` out of ``n`` independent trials against a chance rate.

    For a classifier's calls on independent units (patients, not the correlated slices of one
    patient): defined where a t-test over folds is not, e.g. when every fold scored 1.0.

    Parameters
    ----------
    successes, n : int
        Correct calls and calls (``0 <= successes <= n``, ``n >= 1``).
    chance : float
        Success rate under the null hypothesis, in (0, 1).
    alternative : {"greater", "two-sided", "less"}
    level : float
        Coverage of the Clopper–Pearson interval of the rate.

    Returns
    -------
    dict with ``statistic`` (successes), ``p_value`` (as ``scipy.stats.binomtest``), ``n``,
    ``mean`` (the observed rate), ``chance``, ``ci`` and ``effect_size`` (rate − chance).

    Raises
    ------
    ValueError
        For counts or a chance rate out of range.
    """
    k, n = int(successes), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"Expected 0 <= successes <= n and n >= 1. Received: successes={k}, n={n}")
    if not 0.0 < float(chance) < 1.0:
        raise ValueError(f"`chance` must be in (0, 1). Received: chance={chance}")
    r = sps.binomtest(k, n, float(chance), alternative=alternative)
    ci = r.proportion_ci(level)
    return {"test": "exact binomial test", "statistic": float(k), "df": None,
            "p_value": float(r.pvalue), "alternative": alternative, "n": n, "mean": k / n,
            "chance": float(chance), "effect_size": k / n - float(chance),
            "effect_size_name": "rate − chance", "ci": [float(ci.low), float(ci.high)],
            "ci_level": level}


def mcnemar(y_true, pred_a, pred_b, *, exact: bool | None = None) -> dict:
    """McNemar's test on paired predictions of two classifiers over the same records.

    ``b`` = records model A gets right and B wrong, ``c`` = the reverse. Exact two-sided binomial
    test of ``b`` out of ``b + c`` at ½ (``scipy.stats.binomtest``) when ``exact`` or, by default,
    when ``b + c < 25``; otherwise the chi-square statistic with continuity correction
    ``(|b − c| − 1)² / (b + c)``, 1 df.

    Returns
    -------
    dict with ``statistic`` (b for the exact test, chi² otherwise), ``df`` (None or 1), ``p_value``,
    ``b``, ``c``, ``effect_size`` the discordant odds ratio b / c (inf when c = 0), ``ci`` (exact:
    Clopper–Pearson interval of b / (b + c); else None).
    """
    y = np.asarray(y_true)
    pa, pb = np.asarray(pred_a), np.asarray(pred_b)
    if not (y.shape == pa.shape == pb.shape) or y.ndim != 1:
        raise ValueError(f"`y_true`, `pred_a`, `pred_b` must be 1-D of one length. Received: {y.shape}, {pa.shape}, {pb.shape}")
    ok_a, ok_b = pa == y, pb == y
    b, c = int(np.sum(ok_a & ~ok_b)), int(np.sum(~ok_a & ok_b))
    n = b + c
    use_exact = n < 25 if exact is None else bool(exact)
    odds = b / c if c else (math.inf if b else math.nan)
    base = {"n": int(y.size), "b": b, "c": c, "effect_size": odds, "effect_size_name": "discordant odds ratio b/c",
            "alternative": "two-sided"}
    if n == 0:
        return {"test": "McNemar's test (no discordant pairs)", "statistic": 0.0, "df": None, "p_value": 1.0,
                "ci": None, "ci_level": None, **base}
    if use_exact:
        r = sps.binomtest(b, n, 0.5)
        ci = r.proportion_ci(0.95)
        return {"test": "McNemar's exact test (binomial)", "statistic": float(b), "df": None,
                "p_value": float(r.pvalue), "ci": [float(ci.low), float(ci.high)], "ci_level": 0.95, **base}
    chi2 = (abs(b - c) - 1.0) ** 2 / n
    return {"test": "McNemar's chi-square test (continuity corrected)", "statistic": float(chi2), "df": 1.0,
            "p_value": float(sps.chi2.sf(chi2, 1)), "ci": None, "ci_level": None, **base}


# --------------------------------------------------------------------------------------------
# DeLong


def _delong_components(y: np.ndarray, scores: np.ndarray):
    """AUCs and placement values of each score row (Sun & Xu 2014 fast algorithm, midranks)."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = np.apply_along_axis(sps.rankdata, 1, pos)
    ty = np.apply_along_axis(sps.rankdata, 1, neg)
    tz = np.apply_along_axis(sps.rankdata, 1, np.concatenate([pos, neg], axis=1))
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v_pos = (tz[:, :m] - tx) / n          # per positive: fraction of negatives it outranks
    v_neg = 1.0 - (tz[:, m:] - ty) / m    # per negative: fraction of positives that outrank it
    return aucs, v_pos, v_neg, m, n


def _binary_and_scores(y_true, *scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    if y.ndim != 1 or not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"`y_true` must be 1-D 0/1 labels. Received: shape={y.shape}")
    s = np.vstack([np.asarray(v, dtype=np.float64) for v in scores])
    if s.shape[1] != y.size or not np.all(np.isfinite(s)):
        raise ValueError(f"Scores must be finite with one value per label ({y.size}). Received: shape={s.shape}")
    if y.sum() < 2 or (y.size - y.sum()) < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives. Received: {int(y.sum())} "
                         f"positives, {int(y.size - y.sum())} negatives")
    return y.astype(np.int64), s


def delong_roc_variance(y_true, scores, *, level: float = 0.95) -> dict:
    """AUC with DeLong's variance and a normal-approximation confidence interval.

    Returns
    -------
    dict with ``auc`` (equal to ``sklearn.metrics.roc_auc_score``), ``variance``, ``se`` and ``ci``
    (clipped to [0, 1]).

    Raises
    ------
    ValueError
        With fewer than 2 positives or 2 negatives.
    """
    y, s = _binary_and_scores(y_true, scores)
    aucs, v_pos, v_neg, m, n = _delong_components(y, s)
    var = float(np.var(v_pos[0], ddof=1) / m + np.var(v_neg[0], ddof=1) / n)
    z = sps.norm.ppf(0.5 + level / 2.0)
    se = math.sqrt(var)
    return {"auc": float(aucs[0]), "variance": var, "se": se,
            "ci": [max(0.0, float(aucs[0] - z * se)), min(1.0, float(aucs[0] + z * se))], "ci_level": level,
            "n_pos": m, "n_neg": n}


def delong_test(y_true, scores_a, scores_b, *, level: float = 0.95) -> dict:
    """DeLong's test for two correlated ROC AUCs (two models scored on the same records).

    Uses the fast midrank algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21:1389):
    ``z = (AUC_a − AUC_b) / sqrt(Var_a + Var_b − 2 Cov_ab)``, two-sided normal p-value.

    Returns
    -------
    dict with ``statistic`` z, ``df`` None, ``p_value``, ``auc_a``, ``auc_b``, ``effect_size`` the
    AUC difference, ``covariance`` (2×2 list), ``ci`` of the difference.
    """
    y, s = _binary_and_scores(y_true, scores_a, scores_b)
    aucs, v_pos, v_neg, m, n = _delong_components(y, s)
    cov = np.cov(v_pos) / m + np.cov(v_neg) / n
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) < 1e-15 else (math.copysign(math.inf, diff), 0.0)
    else:
        z = diff / math.sqrt(var)
        p = float(2.0 * sps.norm.sf(abs(z)))
    half = float(sps.norm.ppf(0.5 + level / 2.0) * math.sqrt(max(var, 0.0)))
    return {"test": "DeLong test for correlated ROC AUCs", "statistic": float(z), "df": None, "p_value": p,
            "alternative": "two-sided", "n": int(y.size), "auc_a": float(aucs[0]), "auc_b": float(aucs[1]),
            "effect_size": diff, "effect_size_name": "AUC difference", "covariance": cov.tolist(),
            "ci": [diff - half, diff + half], "ci_level": level}


def holm(p_values: Sequence[float], alpha: float = 0.05) -> dict:
    """Holm–Bonferroni step-down adjustment for multiple tests.

    Returns
    -------
    dict with ``adjusted`` (p-values in the input order: the running maximum of
    ``(m − i)·p_(i)`` over the sorted p-values, capped at 1) and ``reject`` (``adjusted <= alpha``).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError(f"`p_values` must be 1-D values in [0, 1]. Received: {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adj_sorted
    return {"method": "Holm", "alpha": alpha, "adjusted": adjusted.tolist(),
            "reject": (adjusted <= alpha).tolist()}


def _fmt_p(p: float) -> str:
    if p < 0.0001:
        return "p<0.0001"
    return f"p={p:.4f}" if p < 0.01 else f"p={p:.3f}"


def describe(result: dict) -> str:
    """One phrase for a test result: ``"t(4)=5.21, p=0.0065"``, ``"z=2.10, p=0.036"``, ...

    The symbol follows the test: t for t-tests, W for Wilcoxon, χ² for McNemar's chi-square,
    b for McNemar's exact test, z for DeLong.
    """
    name = result.get("test", "")
    stat, df, p = result.get("statistic"), result.get("df"), result.get("p_value")
    if "exact" in name and "McNemar" in name:
        return f"b={int(stat)}, c={result.get('c')}, {_fmt_p(p)}"
    if "no discordant pairs" in name:
        return f"b=c=0 (both right or both wrong on every record), {_fmt_p(p)}"
    if name == "exact binomial test":
        return f"{int(stat)}/{result.get('n')} correct, {_fmt_p(p)}"
    if "t-test" in name:
        sym = f"t({df:g})"
    elif "Wilcoxon" in name:
        sym = "W"
    elif "chi-square" in name:
        sym = f"χ²({df:g})"
    elif "DeLong" in name:
        sym = "z"
    else:
        sym = "statistic"
    if not isinstance(p, (int, float)) or math.isnan(p):
        return f"{sym}: {result.get('note', 'not defined')}"
    if not isinstance(stat, (int, float)) or not math.isfinite(stat):
        return f"{sym} not finite, {_fmt_p(p)}"
    return f"{sym}={stat:.2f}, {_fmt_p(p)}"
