"""Two methods on one dataset: the difference A - B with an interval that counts both seeds and test examples.

A run's score varies for two reasons: its seed (initialisation, data order, noise) and the finite test set. Every
seed is scored on the same examples, a crossed design, so the variance of A - B has three parts (variance
components of a two-way random-effects model; Searle, Casella & McCulloch, 1992, "Variance components"):
- the seed effect: a whole run doing better or worse;
- the seed × example interaction: which borderline examples a run happens to get right;
- the method × example effect: examples on which A and B differ systematically, which a new test set would change.
The per-seed scores carry the first two, so Welch's seed-level variance s²_A/R_A + s²_B/R_B estimates them. The
third comes from one bootstrap over the examples shared by A and B (paired; Koehn, 2004): its variance holds the
method × example effect plus the interaction again, and the interaction is measured on its own by how the seeds'
deviations from their mean move across the resamples, then subtracted. Together this is the classical estimator
(row + column - interaction mean squares) of the variance of a crossed design's mean, for any metric computed on a
resampled set; it keeps the seed and data-sampling sources apart, as Bouthillier et al. (2021, "Accounting for
variance in machine learning benchmarks") ask.

Why not resample seeds and examples together and read percentiles (a "hierarchical" bootstrap): in a crossed
design that counts the interaction three times (Owen, 2007, "The pigeonhole bootstrap"), and with 3 seeds a seed
resample is too coarse (its variance is 2/3 of the truth, and its interval at most [min, max] of the seeds). In
the simulations of tests/test_stats.py at 2,000 examples and 3 seeds, its 95% intervals covered the truth 100% of
the time with no seed effect and 84% when seed effects dominate; the interval here covered 95-97% in all regimes.

With runs stored before per-example predictions were, only the seed scores exist: `seed_level_difference`.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from pacebench.errors import UsageError
from pacebench.stats.intervals import Difference
from pacebench.stats.metrics import Metric, resolve
from pacebench.stats.resample import distinct_columns, example_weights


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    metric: str | Metric = "accuracy",
    labels: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int | tuple[int, ...] = 0,
    level: float = 0.95,
) -> Difference:
    """A - B on one test set: the mean over seeds of each method's metric, with a t interval and p-value.

    se² is Welch's seed-level variance plus the paired method × example component, what a new test set could change
    (see the module docstring). The interval is estimate ± t · se with Satterthwaite's (1946) degrees of freedom,
    about 4 with 3 seeds per method when seeds dominate: the t quantile accounts for a seed variance read from so
    few runs. The metric is computed on every resampled test set as a whole (MCC and Pearson are not averages over
    examples).

    Args:
        a: Method A's per-example values, (seeds, examples): 0/1 correctness for accuracy without labels, else
            predicted labels (accuracy, mcc) or predicted scores (pearson). One row per seed.
        b: The same for method B, on the same examples in the same order; its seeds are independent of A's, so row
            i of `b` need not share anything with row i of `a`, and the seed counts may differ.
        metric: A name from `metrics.METRICS` or a function of (values, labels, weights) like those.
        labels: Gold labels or scores per example; None when `a` and `b` are already correctness.
        n_boot: Example resamples; 2,000 put the bootstrap's own noise on the example component near 3%.
        seed: Seeds the resampling; give each dataset of a suite its own, e.g. (suite_seed, dataset_index).
        level: Confidence level of the interval.

    Returns:
        The difference. A method with one seed contributes no seed variance (none can be measured): with one seed
        each, the interval speaks for these two runs only, like McNemar's test.
    """
    fn = resolve(metric)
    a, b, labels = _check_runs(a, b, labels)
    _check_level(level, n_boot)
    cols = distinct_columns(np.vstack([a, b]), labels)
    rng = np.random.default_rng(seed)
    full = fn(cols.values, cols.labels, cols.counts[None].astype(float))[0]
    reps = np.concatenate([fn(cols.values, cols.labels, w) for w in example_weights(cols.counts, n_boot, rng)])
    scores_a, scores_b, reps_a, reps_b = full[: len(a)], full[len(a) :], reps[:, : len(a)], reps[:, len(a) :]
    estimate = scores_a.mean() - scores_b.mean()
    resampled = reps_a.mean(1) - reps_b.mean(1)
    (spread_a, inter_a), (spread_b, inter_b) = _seed_terms(scores_a, reps_a), _seed_terms(scores_b, reps_b)
    seed_var = spread_a + spread_b
    example_var = max(0.0, np.var(resampled, ddof=1) - inter_a - inter_b)
    var = seed_var + example_var
    df = _satterthwaite(var, [(spread_a, len(a) - 1), (spread_b, len(b) - 1)])
    shrink = np.sqrt(example_var / np.var(resampled, ddof=1)) if example_var > 0 else 0.0
    replicates = estimate + shrink * (resampled - resampled.mean()) + _seed_jitter(scores_a, scores_b, n_boot, rng)
    return _difference(estimate, var, df, seed_var, scores_a, scores_b, level, seed, replicates)


def seed_level_difference(
    scores_a: np.ndarray, scores_b: np.ndarray, n_boot: int = 2000, seed: int | tuple[int, ...] = 0, level: float = 0.95
) -> Difference:
    """A - B from per-seed scores alone: for runs stored before per-example predictions were, the only comparison
    they allow. Welch's t-test (Welch, 1947) gives the interval and the p-value.

    The seed scores carry the seed effects and which borderline examples each run got right, but not the examples
    on which A and B differ systematically: the interval speaks for this test set, and `paired_bootstrap` adds
    what a new test set could change. The replicates, for suite-level statistics, are a bootstrap over seeds
    rescaled by √(R/(R-1)) so that their variance is Welch's se² (a plain seed bootstrap has (R-1)/R of it).

    Args:
        scores_a: Method A's metric per seed, on the whole test set.
        scores_b: The same for B; at least two seeds each.
        n_boot: Seed resamples for the replicates.
        seed: Seeds the resampling; give each dataset of a suite its own.
        level: Confidence level of the interval.
    """
    scores_a, scores_b = (np.asarray(s, dtype=float).ravel() for s in (scores_a, scores_b))
    if min(len(scores_a), len(scores_b)) < 2 or not np.isfinite(np.r_[scores_a, scores_b]).all():
        raise UsageError("a seed-level comparison needs at least two finite seed scores per method")
    _check_level(level, n_boot)
    spread_a, spread_b = np.var(scores_a, ddof=1) / len(scores_a), np.var(scores_b, ddof=1) / len(scores_b)
    var = spread_a + spread_b
    df = _satterthwaite(var, [(spread_a, len(scores_a) - 1), (spread_b, len(scores_b) - 1)])
    estimate = scores_a.mean() - scores_b.mean()
    jitter = _seed_jitter(scores_a, scores_b, n_boot, np.random.default_rng(seed))
    return _difference(estimate, var, df, var, scores_a, scores_b, level, seed, estimate + jitter)


def seeds_needed(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    delta: float = 0.5,
    power: float = 0.8,
    alpha: float = 0.05,
    max_seeds: int = 1000,
) -> int | None:
    """Seeds per method for a two-sided two-sample t-test at `alpha` to detect a true difference of `delta` points
    with probability `power`, given the spread of the seed scores measured so far (pooled over A and B; power from
    the noncentral t, as in Cohen, 1988). A planning aid: a spread read from 3 seeds is itself uncertain by a factor
    of about two, so read the answer as an order of magnitude. None when more than `max_seeds` would be needed.
    """
    scores_a, scores_b = (np.asarray(s, dtype=float).ravel() for s in (scores_a, scores_b))
    dof = len(scores_a) + len(scores_b) - 2
    if dof < 1 or delta <= 0 or not 0 < power < 1 or not 0 < alpha < 1:
        raise UsageError("seeds_needed needs three seed scores in all, delta > 0, and power and alpha in (0, 1)")
    pooled = np.sqrt((((scores_a - scores_a.mean()) ** 2).sum() + ((scores_b - scores_b.mean()) ** 2).sum()) / dof)
    if pooled == 0:
        return 2
    n = np.arange(2, max_seeds + 1)
    df, shift = 2 * n - 2, delta / (pooled * np.sqrt(2 / n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    reached = stats.nct.sf(crit, df, shift) + stats.nct.cdf(-crit, df, shift) >= power
    return int(n[reached.argmax()]) if reached.any() else None


def _seed_terms(scores: np.ndarray, reps: np.ndarray) -> tuple[float, float]:
    """One method's (spread, interaction), both already divided by its seed count: the variance of the seed
    scores, which holds σ²_seed plus the seed × example interaction, and that interaction alone, read from how the
    seeds' deviations from their mean move across example resamples. (0, 0) with one seed."""
    r = len(scores)
    if r < 2:
        return 0.0, 0.0
    deviations = reps - reps.mean(1, keepdims=True)
    interaction = np.var(deviations, axis=0, ddof=1).sum() / (r - 1)
    return float(np.var(scores, ddof=1)) / r, float(interaction) / r


def _satterthwaite(var: float, terms: list[tuple[float, int]]) -> float:
    """Degrees of freedom of a sum of variance estimates, from its terms (estimate, df) with few df; terms with many
    (the example bootstrap) are left out, as infinite."""
    denom = sum(v**2 / d for v, d in terms if d > 0)
    return var**2 / denom if denom > 0 else np.inf


def _seed_jitter(scores_a: np.ndarray, scores_b: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """A seed bootstrap of A's seed mean minus B's, (n_boot,), each scaled by √(R/(R-1)): drawing R of R seeds
    gives the mean a variance of (R-1)/R · s²/R, so the scale makes it Welch's s²/R. A method with one seed adds 0."""
    jitter = np.zeros(n_boot)
    for sign, scores in ((1, scores_a), (-1, scores_b)):
        r = len(scores)
        if r > 1:
            drawn = (scores - scores.mean())[rng.integers(0, r, (n_boot, r))].mean(1)
            jitter += sign * np.sqrt(r / (r - 1)) * drawn
    return jitter


def _difference(
    estimate: float,
    var: float,
    df: float,
    seed_var: float,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    level: float,
    seed: int | tuple[int, ...],
    replicates: np.ndarray,
) -> Difference:
    """The `Difference` with estimate ± t · se and the matching two-sided p-value."""
    se = float(np.sqrt(var))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    p = float(2 * stats.t.sf(abs(estimate) / se, df)) if se > 0 else float(estimate == 0)
    return Difference(
        estimate=float(estimate),
        low=float(estimate - half),
        high=float(estimate + half),
        level=level,
        p_value=p,
        se=se,
        df=float(df),
        seed_share=seed_var / var if var > 0 else 0.0,
        mean_a=float(scores_a.mean()),
        mean_b=float(scores_b.mean()),
        scores_a=tuple(map(float, scores_a)),
        scores_b=tuple(map(float, scores_b)),
        seed=seed,
        replicates=replicates,
    )


def _check_runs(
    a: np.ndarray, b: np.ndarray, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(seeds, examples) arrays of finite values on the same examples; one seed may come as a 1-D array."""
    a, b = np.atleast_2d(np.asarray(a)), np.atleast_2d(np.asarray(b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] < 2 or min(len(a), len(b)) < 1:
        raise UsageError(
            f"a and b must be (seeds, examples) with at least one seed each on the same examples, got shapes "
            f"{a.shape} and {b.shape}"
        )
    if labels is not None:
        labels = np.asarray(labels).ravel()
        if len(labels) != a.shape[1]:
            raise UsageError(f"labels has {len(labels)} values for {a.shape[1]} examples")
    for name, x in (("a", a), ("b", b), ("labels", labels)):
        if x is not None and x.dtype.kind in "fc" and not np.isfinite(x).all():
            raise UsageError(f"{name} holds NaN or infinite values; drop those examples from every run first")
    return a, b, labels


def _check_level(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise UsageError(f"level must be between 0 and 1 (0.95 for 95%), got {level}")
    if n_boot < 2:
        raise UsageError(f"n_boot must be at least 2, got {n_boot}")
