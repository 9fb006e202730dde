"""What the procedures return: an interval, a difference between two methods on one dataset, and the verdict.

Every difference is method A minus method B in the metric's points (higher is better), so "better" always reads
as "A is better than B".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval [low, high] at confidence `level` (0.95 for 95%)."""

    estimate: float
    low: float
    high: float
    level: float


@dataclass(frozen=True)
class Difference(Interval):
    """A minus B on one dataset, with what a `compare` line prints and what the suite-level procedures need.

    Attributes:
        p_value: Two-sided, for "no difference"; below 1 - level exactly when the interval excludes 0.
        se: Standard error of the estimate, from seeds and examples together.
        df: Degrees of freedom of the t reference (Satterthwaite); inf when only examples vary.
        seed_share: Part of the variance that comes from the seeds, 0 to 1: near 1, more seeds narrow the interval;
            near 0, only a larger test set would.
        mean_a: Mean over A's seeds of its metric.
        mean_b: Mean over B's seeds of its metric.
        scores_a: A's metric per seed, on the whole test set.
        scores_b: B's metric per seed.
        seed: The seed the replicates were drawn with; datasets of one suite need different ones.
        replicates: Draws of the estimate with its estimated sampling distribution (mean `estimate`, variance
            se²), one per bootstrap replicate, for suite-level statistics.
    """

    p_value: float
    se: float
    df: float
    seed_share: float
    mean_a: float
    mean_b: float
    scores_a: tuple[float, ...]
    scores_b: tuple[float, ...]
    seed: int | tuple[int, ...]
    replicates: np.ndarray = field(repr=False, compare=False)


class Verdict(StrEnum):
    """What an interval says about A - B; compares equal to its text."""

    better = "better"
    worse = "worse"
    within_noise = "within noise"


def verdict(interval: Interval) -> Verdict:
    """ "better" when the whole interval is above 0, "worse" when it is below, else "within noise"."""
    if interval.low > 0:
        return Verdict.better
    if interval.high < 0:
        return Verdict.worse
    return Verdict.within_noise
