"""pacebench.stats against known truths: calibration on simulated runs, and hand or scipy values for every procedure.

The simulations are small (3 seeds × 300 examples for the calibration checks) and use fixed seeds. A procedure that
counts a variance twice or misses one leaves the 93-97% coverage band in one of the three regimes: resampling seeds
and examples together and reading percentiles covers 98-99% in the first two; an example bootstrap alone, 71% when
seeds dominate; adding the example bootstrap's variance to the seeds' without taking out their overlap, 98-99%.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, sparse, stats
from sklearn.metrics import matthews_corrcoef

from pacebench.errors import UsageError
from pacebench.stats import (
    METRICS,
    Interval,
    average_ranks,
    cliques,
    critical_difference,
    friedman,
    holm,
    iqm,
    mcnemar_exact,
    paired_bootstrap,
    probability_of_improvement,
    seed_level_difference,
    seeds_needed,
    sign_flip_test,
    stratified_bootstrap,
    verdict,
    wins_ties_losses,
)
from pacebench.stats.resample import distinct_columns, example_weights

SIMULATIONS = 400
KINDS, SHARES = np.array([5.0, -4.0, 0.0]), [0.75, 0.15, 0.10]  # easy, hard and borderline examples (logits)


def simulate(
    rng: np.random.Generator,
    seeds: int = 3,
    examples: int = 300,
    shift: float = 0.0,
    seed_sd: float = 0.2,
    method_sd: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 correctness of A and B, (seeds, examples) each, about 80% right. Each example has a difficulty shared by
    both methods (so their errors are correlated; most examples are easy or hard for every run, one in ten is
    borderline) and an effect per method; each run a seed offset; A's logits are B's + `shift`."""
    difficulty = KINDS[rng.choice(3, examples, p=SHARES)] + rng.normal(0, 1.0, examples)

    def runs(offset: float) -> np.ndarray:
        logit = difficulty + rng.normal(0, method_sd, examples) + offset + rng.normal(0, seed_sd, (seeds, 1))
        return (rng.random((seeds, examples)) < 1 / (1 + np.exp(-logit))).astype(np.int8)

    return runs(shift), runs(0.0)


# seed_sd on the logit scale; at 300 examples the seed scores then spread by about 0.9, 1.1 and 1.7 points
REGIMES = {"no seed effect": 0.0, "seed and example noise": 0.2, "seed effects dominate": 0.5}


@functools.cache
def null_runs(regime: str) -> tuple[list, np.ndarray]:
    """400 simulated datasets with no true difference: the paired_bootstrap results and sign-flip p-values."""
    diffs, flips = [], []
    for i in range(SIMULATIONS):
        a, b = simulate(np.random.default_rng(i), seed_sd=REGIMES[regime])
        diffs.append(paired_bootstrap(a, b, n_boot=500, seed=i))
        flips.append(sign_flip_test(a, b, n_perm=999, seed=i).p_value)
    return diffs, np.array(flips)


# ------------------------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("regime", list(REGIMES))
def test_intervals_cover_a_true_zero_difference_95_percent_of_the_time(regime):
    coverage = np.mean([d.low <= 0 <= d.high for d in null_runs(regime)[0]])
    assert 0.93 <= coverage <= 0.97, coverage


@pytest.mark.parametrize("regime", list(REGIMES))
def test_p_values_are_uniform_under_the_null(regime):
    diffs = null_runs(regime)[0]
    assert stats.kstest([d.p_value for d in diffs], "uniform").pvalue > 0.01
    assert all((d.p_value < 0.05) == (verdict(d) != "within noise") for d in diffs), "p and interval must agree"


def test_sign_flip_holds_its_level_when_runs_differ_only_example_by_example():
    """Its p-values are discrete (few examples differ), so valid rather than uniform: P(p <= α) <= α."""
    flips = null_runs("no seed effect")[1]
    assert np.mean(flips < 0.05) <= 0.065 and np.mean(flips < 0.01) <= 0.02


def test_sign_flip_reads_a_seed_effect_as_a_difference():
    """The documented wrong use: its null holds the runs fixed, so a seed that lifts one run's examples counts."""
    assert np.mean(null_runs("seed effects dominate")[1] < 0.05) > 0.15


def _logit_shift_for(points: float, seed_sd: float) -> float:
    """The shift of A's logits that makes A's expected accuracy `points` above B's in `simulate`."""
    rng, n = np.random.default_rng(12345), 400_000
    logit = KINDS[rng.choice(3, n, p=SHARES)] + rng.normal(0, 1.0, n) + rng.normal(0, 0.5, n)
    logit += rng.normal(0, seed_sd, n)

    def gap(shift: float) -> float:
        return 100 * (stats.logistic.cdf(logit + shift) - stats.logistic.cdf(logit)).mean() - points

    return optimize.brentq(gap, 0.0, 10.0)


def test_a_true_three_point_difference_over_2000_examples_and_3_seeds_is_detected():
    """With seed scores spread by about 0.5 points (seed_sd 0.1). At 0.75 points 3 seeds detect it only about 92%
    of the time: the t reference has about 4 degrees of freedom."""
    shift = _logit_shift_for(3.0, seed_sd=0.1)
    detected = []
    for i in range(200):
        a, b = simulate(np.random.default_rng(1000 + i), examples=2000, shift=shift, seed_sd=0.1)
        d = paired_bootstrap(a, b, n_boot=500, seed=i)
        detected.append(d.low > 0 and d.p_value < 0.05)
    assert np.mean(detected) >= 0.95, np.mean(detected)


def test_pairing_on_examples_narrows_the_interval_when_errors_are_correlated():
    """B's examples shuffled break the pairing (as resampling A and B independently would): same estimate, same seed
    scores, but the shared difficulty no longer cancels."""
    rng = np.random.default_rng(7)
    a, b = simulate(rng, examples=2000, seed_sd=0.0)
    paired = paired_bootstrap(a, b, n_boot=1000)
    unpaired = paired_bootstrap(a, b[:, rng.permutation(b.shape[1])], n_boot=1000)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.high - paired.low < 0.7 * (unpaired.high - unpaired.low)


def test_replicates_carry_the_estimate_and_its_variance_for_the_suite():
    a, b = simulate(np.random.default_rng(3), examples=1000, seed_sd=0.2, method_sd=1.5)
    d = paired_bootstrap(a, b, n_boot=4000)
    assert 0.05 < d.seed_share < 0.95, "both parts present, so both parts of the replicates are checked"
    assert d.replicates.mean() == pytest.approx(d.estimate, abs=0.05 * d.se)
    assert d.replicates.var() == pytest.approx(d.se**2, rel=0.1)


def test_one_seed_each_leaves_only_the_example_bootstrap():
    a, b = simulate(np.random.default_rng(4), seeds=1, examples=2000)
    d = paired_bootstrap(a, b, n_boot=2000)
    diff = (a - b).ravel().astype(float)
    assert d.df == np.inf and d.seed_share == 0
    assert d.se == pytest.approx(100 * diff.std() / np.sqrt(len(diff)), rel=0.08)  # the paired t-test's se


# ------------------------------------------------------------------------------ metrics on resampled sets


def _reference(name: str, values: np.ndarray, labels: np.ndarray) -> float:
    """Each registered metric computed the usual way, on explicitly resampled arrays."""
    return {
        "accuracy": lambda: 100 * np.mean(values == labels),
        "mcc": lambda: 100 * matthews_corrcoef(labels, values),
        "pearson": lambda: 100 * stats.pearsonr(values, labels)[0],
    }[name]()


@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("as_sparse", [False, True])
def test_every_metric_of_weights_is_the_metric_of_the_resampled_set(name, as_sparse):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400) if name != "pearson" else rng.uniform(0, 5, 400)
    noise = rng.integers(0, 3, (3, 400)) if name != "pearson" else labels + rng.normal(0, 1, (3, 400))
    values = np.where(rng.random((3, 400)) < 0.6, labels, noise)
    idx = rng.integers(0, 400, (5, 400))
    counts = np.stack([np.bincount(row, minlength=400) for row in idx]).astype(float)
    weights = sparse.csr_array(counts) if as_sparse else counts
    got = METRICS[name](values, labels, weights)
    assert got.shape == (5, 3)
    want = [[_reference(name, values[s, row], labels[row]) for s in range(3)] for row in idx]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_pearson_and_mcc_are_statistics_of_the_set_not_per_example_averages():
    """Pearson ignores an affine change of the predictions and MCC a renaming of the classes; anything averaged per
    example (squared errors, agreement scores) would not, so the whole comparison must come out the same."""
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, 500)
    a, b = gold + rng.normal(0, 1.0, (3, 500)), gold + rng.normal(0, 1.3, (3, 500))
    plain = paired_bootstrap(a, b, "pearson", labels=gold, n_boot=500, seed=5)
    moved = paired_bootstrap(3 * a - 7, b / 2 + 1, "pearson", labels=gold, n_boot=500, seed=5)
    assert (moved.estimate, moved.low, moved.high) == pytest.approx((plain.estimate, plain.low, plain.high))
    assert plain.mean_a == pytest.approx(np.mean([100 * stats.pearsonr(s, gold)[0] for s in a]))

    y = rng.integers(0, 2, 600)
    pa, pb = (np.where(rng.random((3, 600)) < q, y, 1 - y) for q in (0.8, 0.7))
    plain = paired_bootstrap(pa, pb, "mcc", labels=y, n_boot=500, seed=5)
    renamed = paired_bootstrap(pa + 10, pb + 10, "mcc", labels=y + 10, n_boot=500, seed=5)
    assert (renamed.estimate, renamed.low, renamed.high) == pytest.approx((plain.estimate, plain.low, plain.high))
    assert plain.mean_a == pytest.approx(np.mean([100 * matthews_corrcoef(y, p) for p in pa]))


def test_bootstrap_spread_of_pearson_matches_its_normal_theory_standard_error():
    """For bivariate normal data the standard error of r is about (1 - ρ²) / √n; the spread of r over resampled
    sets must match it (a per-example average would have another spread altogether)."""
    rng = np.random.default_rng(2)
    n, rho = 3000, 0.6
    gold = rng.normal(size=n)
    pred = rho * gold + np.sqrt(1 - rho**2) * rng.normal(size=n)
    r = np.concatenate([METRICS["pearson"](pred[None], gold, w) for w in example_weights(np.ones(n), 2000, rng)])
    assert r.std() == pytest.approx(100 * (1 - rho**2) / np.sqrt(n), rel=0.1)


def test_resampling_merges_identical_examples_only_where_it_pays_and_keeps_their_distribution():
    rng = np.random.default_rng(0)
    binary = (rng.random((6, 5000)) < 0.8).astype(np.int8)
    cols = distinct_columns(binary, None)
    assert len(cols.counts) <= 64 and cols.counts.sum() == 5000
    assert cols.values.shape == (6, len(cols.counts))
    np.testing.assert_allclose(cols.values @ cols.counts, binary.sum(1))
    continuous = rng.random((6, 5000))
    assert len(distinct_columns(continuous, None).counts) == 5000
    for counts in (cols.counts, np.ones(5000)):
        weights = np.vstack(
            [np.asarray(w.todense() if sparse.issparse(w) else w) for w in example_weights(counts, 3000, rng)]
        )
        assert weights.shape == (3000, len(counts)) and (weights.sum(1) == 5000).all()
        np.testing.assert_allclose(weights.mean(0), counts, atol=5 * np.sqrt(counts.max() / 3000) + 0.2)


# ------------------------------------------------------------------------------------ seed-level and exact


def test_seed_level_difference_is_welchs_t_test():
    a, b = np.array([71.2, 70.4, 72.0, 71.1]), np.array([69.9, 70.8, 69.5])
    d = seed_level_difference(a, b, n_boot=20_000)
    welch = stats.ttest_ind(a, b, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert (d.estimate, d.low, d.high, d.p_value, d.df) == pytest.approx(
        (a.mean() - b.mean(), ci.low, ci.high, welch.pvalue, welch.df)
    )
    assert d.replicates.var() == pytest.approx(d.se**2, rel=0.05)
    with pytest.raises(UsageError, match="two finite seed scores"):
        seed_level_difference([70.0], b)


def test_mcnemar_matches_the_binomial_test_on_the_discordant_pairs():
    a = np.array([1] * 7 + [0] * 2 + [1] * 30 + [0] * 11)
    b = np.array([0] * 7 + [1] * 2 + [1] * 30 + [0] * 11)
    result = mcnemar_exact(a, b)
    assert (result.a_only, result.b_only) == (7, 2)
    assert result.p_value == pytest.approx(2 * (36 + 9 + 1) / 2**9)  # P(X >= 7) + P(X <= 2), X ~ Bin(9, 1/2)
    assert result.p_value == pytest.approx(stats.binomtest(7, 9, 0.5).pvalue)
    assert mcnemar_exact(a, a).p_value == 1.0
    assert mcnemar_exact(a[None], b).p_value == result.p_value  # one seed may come as a (1, examples) row
    with pytest.raises(UsageError, match=r"got shapes \(2, \d+\) and \(2, \d+\); with several seeds use paired"):
        mcnemar_exact(np.stack([a, a]), np.stack([b, b]))  # flattened, two seeds would read as twice the examples


def test_sign_flip_enumerates_small_cases_exactly():
    a, b = np.array([1, 1, 1, 0, 1]), np.array([0, 0, 0, 0, 1])  # three differences of +1, two zeros
    result = sign_flip_test(a, b)
    assert result.exact and result.patterns == 8
    assert result.p_value == pytest.approx(2 / 8)  # all + or all -


def test_sign_flip_monte_carlo_agrees_with_full_enumeration():
    rng = np.random.default_rng(0)
    d = np.round(rng.normal(0.3, 1.0, 18), 1)
    signs = 1 - 2 * ((np.arange(2**18)[:, None] >> np.arange(18)) & 1)
    exact = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9)
    result = sign_flip_test(d, np.zeros_like(d), n_perm=20_000, seed=1)
    assert not result.exact
    assert result.p_value == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 20_000))


def test_seeds_needed_matches_the_textbook_and_moves_the_right_way():
    unit = np.array([-1.0, 0.0, 1.0])  # standard deviation 1 in both methods
    assert seeds_needed(unit, unit, delta=1.0) == 17  # Cohen's d = 1, power 0.8, two-sided 0.05
    assert seeds_needed(unit, unit, delta=0.5) == 64  # d = 0.5
    wide = [seeds_needed(unit, unit, delta=x) for x in (0.25, 0.5, 1.0, 2.0)]
    assert wide == sorted(wide, reverse=True) and wide[0] > wide[-1]
    assert seeds_needed(2 * unit, 2 * unit, delta=1.0) > seeds_needed(unit, unit, delta=1.0)
    assert seeds_needed(unit, unit, delta=0.01) is None


# --------------------------------------------------------------------------------------------------- suite


def test_holm_matches_a_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.array([10, 1, 2, 3, 4, 5, 6, 100])) == pytest.approx((3 + 4 + 5 + 6) / 4)


def test_probability_of_improvement_known_values():
    high, low = [np.array([80.0, 81, 82]), np.array([60.0, 61])], [np.array([70.0, 71, 72]), np.array([50.0, 55])]
    full = probability_of_improvement(high, low, n_boot=500)
    assert (full.estimate, full.low, full.high) == (1.0, 1.0, 1.0)
    same = probability_of_improvement(low, low, n_boot=500)
    assert same.estimate == 0.5 and same.low < 0.5 < same.high
    a, b = np.array([1.0, 3, 5]), np.array([2.0, 3, 4, 6])
    u = stats.mannwhitneyu(a, b).statistic
    assert probability_of_improvement([a], [b]).estimate == pytest.approx(u / 12)


def test_stratified_mean_of_one_dataset_is_its_own_interval_and_seeds_must_differ():
    a, b = simulate(np.random.default_rng(0), examples=500)
    d = paired_bootstrap(a, b, n_boot=500, seed=(0, 0))
    suite = stratified_bootstrap([d])
    assert (suite.estimate, suite.low, suite.high) == pytest.approx((d.estimate, d.low, d.high))
    with pytest.raises(UsageError, match="same seed"):
        stratified_bootstrap([d, paired_bootstrap(b, a, n_boot=500, seed=(0, 0))])


def test_stratified_intervals_shrink_with_datasets_and_the_iqm_is_wider_than_the_mean():
    rng = np.random.default_rng(0)
    diffs = []
    for i in range(8):
        a, b = simulate(rng, examples=500)
        diffs.append(paired_bootstrap(a, b, n_boot=2000, seed=(0, i)))
    mean, middle = stratified_bootstrap(diffs, "mean"), stratified_bootstrap(diffs, "iqm")
    assert mean.estimate == pytest.approx(np.mean([d.estimate for d in diffs]))
    assert middle.estimate == pytest.approx(iqm(np.array([d.estimate for d in diffs])))
    assert (mean.high - mean.low) < np.mean([d.high - d.low for d in diffs]) / 2
    assert (middle.high - middle.low) > (mean.high - mean.low)
    replicated = stratified_bootstrap(diffs, lambda x: x.mean(axis=-1))  # the mean read off the replicates
    assert (replicated.high - replicated.low) == pytest.approx(mean.high - mean.low, rel=0.1)


def test_verdicts_and_their_tally():
    intervals = [
        Interval(1.0, 0.2, 1.8, 0.95),
        Interval(-1.0, -1.8, -0.2, 0.95),
        Interval(0.1, -0.5, 0.7, 0.95),
        Interval(0.0, 0.0, 0.0, 0.95),
    ]
    assert [verdict(i) for i in intervals] == ["better", "worse", "within noise", "within noise"]
    assert wins_ties_losses(intervals) == (1, 2, 1)


# --------------------------------------------------------------------------------------------------- ranks


def test_friedman_matches_scipy_and_demsars_formulas():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(12, 4)) + np.array([0.0, 0.3, 0.6, 0.9])  # no ties
    result = friedman(scores)
    n, k = scores.shape
    ranks = stats.rankdata(-scores, axis=1).mean(0)
    chi2 = 12 * n / (k * (k + 1)) * ((ranks**2).sum() - k * (k + 1) ** 2 / 4)  # Demšar (2006), eq. 1
    assert result.statistic == pytest.approx(chi2)
    assert result.statistic == pytest.approx(stats.friedmanchisquare(*scores.T).statistic)
    assert result.f_statistic == pytest.approx((n - 1) * chi2 / (n * (k - 1) - chi2))  # eq. 2
    np.testing.assert_allclose(result.ranks, ranks)


def test_average_ranks_give_rank_one_to_the_best_and_share_ties():
    # ranks [1, 2.5, 2.5] and [2, 1, 3]
    np.testing.assert_allclose(average_ranks(np.array([[90.0, 80, 80], [70, 75, 60]])), [1.5, 1.75, 2.75])


def test_nemenyi_critical_difference_matches_demsars_table():
    assert critical_difference(3, 10) == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 10)), abs=1e-3)
    assert critical_difference(5, 20) == pytest.approx(2.728 * np.sqrt(5 * 6 / (6 * 20)), abs=1e-3)


def test_cliques_group_methods_closer_than_the_critical_difference():
    assert cliques(np.array([2.9, 1.0, 3.1, 1.5]), cd=1.0) == [(1, 3), (0, 2)]
    assert cliques(np.array([1.0, 2.0, 3.0]), cd=0.5) == []
    assert cliques(np.array([1.0, 1.2, 1.4]), cd=1.0) == [(0, 1, 2)]


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_with_the_fix():
    a = np.zeros((3, 10))
    with pytest.raises(UsageError, match="unknown metric 'f1'; choose one of: accuracy, mcc, pearson"):
        paired_bootstrap(a, a, metric="f1")
    with pytest.raises(UsageError, match="same examples"):
        paired_bootstrap(a, np.zeros((3, 11)))
    with pytest.raises(UsageError, match="at least one seed each"):
        paired_bootstrap(np.zeros((0, 10)), a)
    with pytest.raises(UsageError, match="needs the gold labels"):
        paired_bootstrap(a, a, metric="mcc")
    with pytest.raises(UsageError, match="NaN"):
        paired_bootstrap(a + np.nan, a)
    with pytest.raises(UsageError, match="level"):
        paired_bootstrap(a, a, level=95)


# ------------------------------------------------------------------------------------------------ structure


def test_the_compare_recipe_mixes_per_example_and_seed_level_datasets():
    """docs/statistics.md's recipe: old runs with seed scores only sit in the same suite line as new ones."""
    rng = np.random.default_rng(0)
    diffs = []
    for i in range(5):
        a, b = simulate(rng, examples=500)
        diffs.append(paired_bootstrap(a, b, n_boot=500, seed=(0, i)))
    diffs.append(seed_level_difference([71.0, 72.5, 70.9], [70.2, 70.0, 71.1], n_boot=500, seed=(0, 5)))
    adjusted = holm([d.p_value for d in diffs])
    assert (adjusted >= [d.p_value for d in diffs]).all()
    mean = stratified_bootstrap(diffs, "mean")
    assert mean.low < mean.estimate < mean.high
    assert sum(wins_ties_losses(diffs)) == 6
    improvement = probability_of_improvement([d.scores_a for d in diffs], [d.scores_b for d in diffs], n_boot=500)
    assert 0 <= improvement.low <= improvement.estimate <= improvement.high <= 1


def test_the_package_imports_only_numpy_scipy_and_pacebench_errors():
    code = (
        "import json, sys, pacebench.stats; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('torch', 'pandas', 'sklearn', 'pacebench'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]
    ).stdout
    loaded = [m for m in json.loads(out) if not m.startswith("pacebench.stats")]
    assert loaded == ["pacebench", "pacebench.errors", "pacebench.version"], loaded  # version: the package's own
