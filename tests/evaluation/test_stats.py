"""Statistical tests against scipy, hand-worked examples and simulated models."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from medzoo import roc
from medzoo.evaluation import stats as S

FOLDS_A = [0.81, 0.77, 0.85, 0.79, 0.83]
FOLDS_B = [0.74, 0.75, 0.80, 0.70, 0.79]


def test_one_sample_ttest_matches_scipy():
    for alt in ("two-sided", "greater", "less"):
        r = S.one_sample_ttest(FOLDS_A, 0.5, alternative=alt)
        ref = sps.ttest_1samp(FOLDS_A, 0.5, alternative=alt)
        assert r["statistic"] == pytest.approx(ref.statistic, abs=1e-10)
        assert r["p_value"] == pytest.approx(ref.pvalue, abs=1e-10)
    r = S.one_sample_ttest(FOLDS_A, 0.5)
    assert r["df"] == 4 and r["test"] == "one-sample t-test"
    ci = sps.ttest_1samp(FOLDS_A, 0.5).confidence_interval(0.95)
    assert r["ci"] == pytest.approx([ci.low, ci.high], abs=1e-10)
    assert r["effect_size"] == pytest.approx((np.mean(FOLDS_A) - 0.5) / np.std(FOLDS_A, ddof=1))


def test_paired_ttest_matches_scipy():
    r = S.paired_ttest(FOLDS_A, FOLDS_B)
    ref = sps.ttest_rel(FOLDS_A, FOLDS_B)
    assert r["statistic"] == pytest.approx(ref.statistic, abs=1e-10)
    assert r["p_value"] == pytest.approx(ref.pvalue, abs=1e-10)
    assert r["df"] == 4
    ci = ref.confidence_interval(0.95)
    assert r["ci"] == pytest.approx([ci.low, ci.high], abs=1e-10)


def test_corrected_resampled_ttest_follows_the_formula():
    d = np.subtract(FOLDS_A, FOLDS_B)
    k, n_train, n_test = 5, 160, 40
    t = d.mean() / math.sqrt((1 / k + n_test / n_train) * d.var(ddof=1))
    r = S.corrected_resampled_ttest(FOLDS_A, FOLDS_B, n_train, n_test)
    assert r["statistic"] == pytest.approx(t, abs=1e-12)
    assert r["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), k - 1), abs=1e-12)
    assert r["correction"] == pytest.approx(0.2 + 0.25)
    # the correction only ever widens: corrected p >= plain paired p
    assert r["p_value"] > S.paired_ttest(FOLDS_A, FOLDS_B)["p_value"]
    # per-fold sizes are averaged
    r2 = S.corrected_resampled_ttest(FOLDS_A, FOLDS_B, [150, 170, 160, 160, 160], [50, 30, 40, 40, 40])
    assert r2["statistic"] == pytest.approx(t)


def test_wilcoxon_matches_scipy():
    a = [0.81, 0.77, 0.85, 0.79, 0.83, 0.80, 0.78, 0.82]
    b = [0.74, 0.78, 0.80, 0.70, 0.79, 0.81, 0.72, 0.76]
    r = S.wilcoxon_signed_rank(a, b)
    ref = sps.wilcoxon(a, b)
    assert r["statistic"] == pytest.approx(ref.statistic, abs=1e-10)
    assert r["p_value"] == pytest.approx(ref.pvalue, abs=1e-10)
    d = np.subtract(a, b)
    ranks = sps.rankdata(np.abs(d))
    assert r["effect_size"] == pytest.approx((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())
    assert S.wilcoxon_signed_rank([1, 2], [1, 2])["p_value"] == 1.0


def test_mcnemar_exact_and_chi2():
    y = np.zeros(100, int)
    a = np.zeros(100, int)
    b = np.zeros(100, int)
    b[:7] = 1      # 7 records A right, B wrong
    a[7:9] = 1     # 2 records A wrong, B right
    r = S.mcnemar(y, a, b)
    assert (r["b"], r["c"]) == (7, 2)
    assert r["test"] == "McNemar's exact test (binomial)"
    assert r["p_value"] == pytest.approx(sps.binomtest(7, 9, 0.5).pvalue, abs=1e-10)
    b[:30] = 1
    a[30:40] = 1
    r = S.mcnemar(y, a, b)
    bb, cc = 28, 10  # 7..8 are now wrong for both: not discordant
    assert (r["b"], r["c"]) == (bb, cc)
    assert r["df"] == 1
    assert r["statistic"] == pytest.approx((abs(bb - cc) - 1) ** 2 / (bb + cc))
    assert r["p_value"] == pytest.approx(sps.chi2.sf(r["statistic"], 1))
    assert S.mcnemar(y, a * 0, a * 0)["p_value"] == 1.0
    assert S.describe(S.mcnemar(y, a, b, exact=True)).startswith("b=28, c=10, p=")
    assert S.describe(r).startswith("χ²(1)=")


def test_delong_variance_hand_worked():
    # positives 0.9, 0.6; negatives 0.7, 0.2
    # placements: positives [1, 1/2]; negatives (share of positives above) [1/2, 1]
    # AUC = 0.75; var = var([1, .5])/2 + var([.5, 1])/2 = 0.125/2 + 0.125/2 = 0.125
    r = S.delong_roc_variance([1, 1, 0, 0], [0.9, 0.6, 0.7, 0.2])
    assert r["auc"] == pytest.approx(0.75)
    assert r["variance"] == pytest.approx(0.125)


def _brute_delong(y, sa, sb):
    def placements(s):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(1), psi.mean(0), psi.mean()
    pa, na, auc_a = placements(sa)
    pb, nb, auc_b = placements(sb)
    m, n = len(pa), len(na)
    s10 = np.cov(np.vstack([pa, pb]))
    s01 = np.cov(np.vstack([na, nb]))
    cov = s10 / m + s01 / n
    z = (auc_a - auc_b) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return auc_a, auc_b, cov, z


def test_delong_test_matches_sklearn_and_brute_force():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 120)
    sa = np.round(y * 0.8 + rng.normal(0, 0.6, 120), 1)  # rounded: ties
    sb = np.round(y * 0.3 + rng.normal(0, 0.6, 120), 1)
    r = S.delong_test(y, sa, sb)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, sa), abs=1e-12)
    assert r["auc_b"] == pytest.approx(roc_auc_score(y, sb), abs=1e-12)
    auc_a, auc_b, cov, z = _brute_delong(y, sa, sb)
    np.testing.assert_allclose(r["covariance"], cov, atol=1e-12)
    assert r["statistic"] == pytest.approx(z, abs=1e-10)
    assert r["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z)), abs=1e-12)
    assert r["p_value"] < 0.05
    same = S.delong_test(y, sa, sa)
    assert same["p_value"] == 1.0
    with pytest.raises(ValueError, match="2 positives"):
        S.delong_test([1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])


def test_holm_worked_example():
    r = S.holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert r["adjusted"] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert r["reject"] == [True, False, False, True]


def test_chance_levels():
    assert S.chance_level("accuracy", prevalence=0.3) == pytest.approx(0.7)
    assert S.chance_level("auc") == 0.5 and S.chance_level("sensitivity") == 0.5
    assert S.chance_level("ppv", prevalence=0.3) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="prevalence"):
        S.chance_level("accuracy")
    with pytest.raises(ValueError, match="dice"):
        S.chance_level("dice")


def _per_fold_auc(seed, signal, k=5, n=60):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        y = rng.integers(0, 2, n)
        out.append(roc.roc_auc(y, signal * y + rng.normal(0, 1, n)))
    return out


def test_random_model_rarely_beats_chance_and_good_model_does():
    p_random = [S.one_sample_ttest(_per_fold_auc(s, 0.0), 0.5)["p_value"] for s in range(40)]
    assert np.mean(np.array(p_random) > 0.05) >= 0.85
    p_good = [S.one_sample_ttest(_per_fold_auc(s, 1.5), 0.5)["p_value"] for s in range(10)]
    assert max(p_good) < 0.05


def test_describe():
    r = S.one_sample_ttest(FOLDS_A, 0.5)
    text = S.describe(r)
    assert text.startswith("t(4)=") and f"{r['statistic']:.2f}" in text
    assert S.describe({"test": "DeLong test for correlated ROC AUCs", "statistic": 2.1, "df": None,
                       "p_value": 0.0357}) == "z=2.10, p=0.036"


def test_binomial_test_hand_worked_and_against_scipy():
    r = S.binomial_test(10, 10, 0.5)
    assert r["p_value"] == pytest.approx(0.5 ** 10)  # all ten right: (1/2)^10
    r = S.binomial_test(7, 10, 0.5)
    assert r["p_value"] == pytest.approx((120 + 45 + 10 + 1) / 1024)  # P(X >= 7), X ~ B(10, 1/2)
    assert r["mean"] == 0.7 and r["effect_size"] == pytest.approx(0.2)
    assert r["p_value"] == pytest.approx(sps.binomtest(7, 10, 0.5, alternative="greater").pvalue)
    low, high = r["ci"]
    assert low < 0.7 < high
    assert S.describe(r) == "7/10 correct, p=0.172"
    with pytest.raises(ValueError, match="successes=11, n=10"):
        S.binomial_test(11, 10, 0.5)
    with pytest.raises(ValueError, match="chance=1"):
        S.binomial_test(3, 10, 1)
