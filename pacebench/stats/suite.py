"""A and B across the datasets of a suite, following Agarwal et al. (NeurIPS 2021, "Deep reinforcement learning at
the edge of the statistical precipice"): aggregate Δ with a stratified interval, its interquartile mean, the
probability of improvement, and the count of wins, ties and losses; Holm's correction for per-dataset p-values.

The suite's datasets are fixed (a benchmark, not a sample of tasks): the intervals speak for these datasets, with
their seeds and test examples as the only randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from pacebench.errors import UsageError
from pacebench.stats.intervals import Difference, Interval, Verdict, verdict

Statistic = Callable[[np.ndarray], np.ndarray]


def iqm(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of the values (25% trimmed from each end), the aggregate
    Agarwal et al. (2021) recommend: robust to one dataset far off, less noisy than the median."""
    return stats.trim_mean(values, 0.25, axis=axis)


STATISTICS: dict[str, Statistic] = {"mean": lambda x: x.mean(axis=-1), "iqm": lambda x: iqm(x, axis=-1)}


def stratified_bootstrap(
    diffs: Sequence[Difference], statistic: str | Statistic = "mean", level: float | None = None
) -> Interval:
    """A statistic over datasets of the per-dataset differences, with a stratified bootstrap interval.

    Each dataset's `replicates` come from its own resampling of its own seeds and examples (strata kept apart, as
    Agarwal et al. resample runs within each task); the statistic of one draw per dataset is one replicate of the
    suite statistic. The interval is estimate ± t · (standard deviation of those replicates), with the degrees of
    freedom of the datasets' pooled standard errors (Satterthwaite): with 3 seeds per dataset a percentile interval
    of the replicates would be too narrow, since the bootstrap cannot know that each seed variance rests on 2 df.
    The mean needs no replicates: its standard error is the datasets' combined, √(Σ se²) / datasets, so for one
    dataset the suite line repeats that dataset's interval.

    Args:
        diffs: One `Difference` per dataset, each from `paired_bootstrap` or `seed_level_difference` with its own
            seed and the same `n_boot`.
        statistic: "mean", "iqm", or a function of a (replicates, datasets) array returning (replicates,).
        level: Confidence level; the datasets' own by default.
    """
    if not diffs:
        raise UsageError("stratified_bootstrap needs at least one dataset")
    seeds = [repr(d.seed) for d in diffs]
    if len(set(seeds)) < len(seeds):
        raise UsageError(
            "two datasets were resampled with the same seed, so their replicates are not independent; "
            "give each its own, e.g. seed=(seed, index)"
        )
    if len({len(d.replicates) for d in diffs}) > 1:
        raise UsageError("the datasets' replicates differ in number; use the same n_boot for every dataset")
    fn = _statistic(statistic)
    level = diffs[0].level if level is None else level
    estimate = float(fn(np.array([[d.estimate for d in diffs]]))[0])
    variances = [d.se**2 for d in diffs]
    if statistic == "mean":  # exact: the datasets are independent
        spread = float(np.sqrt(sum(variances))) / len(diffs)
    else:
        spread = float(np.std(fn(np.column_stack([d.replicates for d in diffs])), ddof=1))
    denom = sum(v**2 / d.df for v, d in zip(variances, diffs, strict=True) if np.isfinite(d.df))
    df = sum(variances) ** 2 / denom if denom > 0 else np.inf
    half = float(stats.t.ppf(0.5 + level / 2, df)) * spread
    return Interval(estimate=estimate, low=estimate - half, high=estimate + half, level=level)


def probability_of_improvement(
    scores_a: Sequence[ArrayLike], scores_b: Sequence[ArrayLike], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> Interval:
    """P(A > B): the probability that a run of A beats a run of B on a dataset, averaged over datasets (Agarwal et
    al., 2021). Per dataset it is the Mann-Whitney U statistic over (runs of A × runs of B), divided by their
    number, ties counting one half; the interval is the percentile interval of a bootstrap that resamples each
    method's seeds within each dataset. It sees seed scores only: a test-set sampling effect shared by all runs of
    a dataset is invisible to it, and with 3 seeds per method each dataset's value moves in steps of 1/9.

    Args:
        scores_a: Per dataset, A's metric per seed.
        scores_b: Per dataset, B's metric per seed, in the same dataset order.
        n_boot: Seed resamples.
        seed: Seeds the resampling.
        level: Confidence level.
    """
    if len(scores_a) != len(scores_b) or not scores_a:
        raise UsageError("probability_of_improvement needs the same datasets, at least one, for A and B")
    rng = np.random.default_rng(seed)
    estimate, draws = 0.0, np.zeros(n_boot)
    for a, b in zip(scores_a, scores_b, strict=True):
        a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
        if not len(a) or not len(b):
            raise UsageError("probability_of_improvement needs at least one seed score per method and dataset")
        estimate += _beats(a[None], b[None])[0]
        draws += _beats(a[rng.integers(0, len(a), (n_boot, len(a)))], b[rng.integers(0, len(b), (n_boot, len(b)))])
    low, high = np.quantile(draws / len(scores_a), [0.5 - level / 2, 0.5 + level / 2])
    return Interval(estimate=estimate / len(scores_a), low=float(low), high=float(high), level=level)


class Tally(NamedTuple):
    """How many datasets A wins (interval above 0), ties (interval covers 0) and loses."""

    wins: int
    ties: int
    losses: int


def wins_ties_losses(intervals: Sequence[Interval]) -> Tally:
    """Counts the per-dataset verdicts; a tie is an interval that covers 0 ("within noise"), not an equal score."""
    verdicts = [verdict(i) for i in intervals]
    return Tally(verdicts.count(Verdict.better), verdicts.count(Verdict.within_noise), verdicts.count(Verdict.worse))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (Holm, 1979): the i-th smallest of m is multiplied by m - i + 1, then made
    non-decreasing in that order and capped at 1. Rejecting where the adjusted p < α keeps the chance of any false
    "better" or "worse" among the m datasets below α, whatever their dependence."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise UsageError("holm needs a list of p-values between 0 and 1")
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def _beats(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of (run of A, run of B) pairs that A wins, ties one half, per row: (rows, na) and (rows, nb) -> (rows,)."""
    x, y = a[:, :, None], b[:, None, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(1, 2))


def _statistic(statistic: str | Statistic) -> Statistic:
    if callable(statistic):
        return statistic
    if statistic not in STATISTICS:
        raise UsageError(f"unknown statistic {statistic!r}; choose one of: {', '.join(STATISTICS)}, or a function")
    return STATISTICS[statistic]
