"""Statistics for comparing methods: pure functions on numpy arrays (numpy, scipy and the standard library only).

Runs are (method, dataset, seed) with per-example results on one test set, aligned by the caller. A difference
is always A - B in the metric's points. docs/statistics.md explains each procedure for a reader of `compare`.

One dataset, two methods (`paired`, `exact`):
- `paired_bootstrap`: Δ with a t interval and p-value that count seeds and examples (variance components, the
  example part from a bootstrap shared by A and B). Assumes the seeds are independent runs and the examples a
  sample from the task. Wrong tool with one seed per method (it can then only speak for those runs) and for
  comparing across different test sets.
- `seed_level_difference`: Δ from per-seed scores only (Welch's t), for runs stored before per-example
  predictions were. Wrong tool when per-example results exist: it ignores the pairing on examples.
- `sign_flip_test`, `mcnemar_exact`: exact tests on the examples with the runs held fixed. Wrong tool for "is A
  better than B" when seed effects are as large as the example noise: they read a lucky seed as a difference.
- `seeds_needed`: seeds per method for a t-test to detect a given Δ; a planning aid, its input spread is itself
  uncertain with 3 seeds.
- `verdict`: "better", "worse" or "within noise" from an interval.

A suite of datasets (`suite`; Agarwal et al., NeurIPS 2021):
- `stratified_bootstrap`: the mean (or `iqm`, or any statistic) of Δ over datasets with an interval, from the
  datasets' own replicates; the suite's datasets are taken as fixed.
- `probability_of_improvement`: P(a run of A beats a run of B), averaged over datasets; from seed scores only.
- `wins_ties_losses`: per-dataset verdicts counted; a tie is an interval covering 0.
- `holm`: Holm's adjusted p-values over the datasets. Without it, at least one "better" or "worse" among 19
  datasets at p < 0.05 is what chance alone gives six times in ten.

Three or more methods over datasets (`ranks`; Demšar, JMLR 2006):
- `average_ranks`, `friedman` (with Iman-Davenport's F), `critical_difference` (Nemenyi), `cliques` for a CD
  diagram. Assume the datasets are a sample of datasets; the χ² approximation needs about 10 or more; ranks ignore
  effect sizes and within-dataset noise. Wrong tool for two methods (use the paired procedures and the suite line).
"""

from __future__ import annotations

from pacebench.stats.exact import McNemar, SignFlip, mcnemar_exact, sign_flip_test
from pacebench.stats.intervals import Difference, Interval, Verdict, verdict
from pacebench.stats.metrics import METRICS, Metric
from pacebench.stats.paired import paired_bootstrap, seed_level_difference, seeds_needed
from pacebench.stats.ranks import Friedman, average_ranks, cliques, critical_difference, friedman
from pacebench.stats.suite import (
    Tally,
    holm,
    iqm,
    probability_of_improvement,
    stratified_bootstrap,
    wins_ties_losses,
)

__all__ = [
    "METRICS",
    "Difference",
    "Friedman",
    "Interval",
    "McNemar",
    "Metric",
    "SignFlip",
    "Tally",
    "Verdict",
    "average_ranks",
    "cliques",
    "critical_difference",
    "friedman",
    "holm",
    "iqm",
    "mcnemar_exact",
    "paired_bootstrap",
    "probability_of_improvement",
    "seed_level_difference",
    "seeds_needed",
    "sign_flip_test",
    "stratified_bootstrap",
    "verdict",
    "wins_ties_losses",
]
