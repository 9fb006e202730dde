"""Three or more methods over many datasets, by ranks (Demšar, JMLR 2006, "Statistical comparisons of classifiers
over multiple data sets"): average ranks, the Friedman test with Iman and Davenport's F, and Nemenyi's critical
difference with the groups of methods it cannot tell apart, as a critical-difference diagram draws them.

Ranks make datasets comparable without assuming their scores are: a 0.3-point gain on a saturated dataset counts
as much as 3 points elsewhere. They ignore the size of a difference and the noise within a dataset (a rank
swapped by seed noise counts fully), and the tests treat the datasets as a sample of datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from pacebench.errors import UsageError


@dataclass(frozen=True)
class Friedman:
    """The Friedman test (Friedman, 1937) and Iman and Davenport's (1980) F form of it, which Demšar recommends as
    less conservative than the χ² approximation.

    Attributes:
        statistic: Friedman's χ² (scipy's, with its correction for ties), k - 1 df.
        p_value: From χ²; needs about N > 10 datasets and k > 5 methods to be accurate (Demšar, 2006).
        f_statistic: Iman-Davenport F, with k - 1 and (k - 1)(N - 1) df.
        f_p_value: From F; the one to report.
        ranks: Average rank per method, 1 = best.
    """

    statistic: float
    p_value: float
    f_statistic: float
    f_p_value: float
    ranks: np.ndarray


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """Average rank of each method over datasets, 1 = best (highest score); ties share the mean of their ranks.

    Args:
        scores: (datasets, methods), higher is better; one value per dataset and method (the mean over seeds).
    """
    scores = _check_scores(scores, methods=2, datasets=1)
    return stats.rankdata(-scores, axis=1).mean(axis=0)


def friedman(scores: np.ndarray) -> Friedman:
    """Do the methods' average ranks differ more than chance would make them? Only then are the pairwise
    comparisons of `critical_difference` worth reading (Demšar, 2006, section 3.2.2).

    Args:
        scores: (datasets, methods), higher is better; at least 2 datasets and 3 methods.
    """
    scores = _check_scores(scores, methods=3, datasets=2)
    n, k = scores.shape
    chi2, p = stats.friedmanchisquare(*scores.T)
    spread = n * (k - 1) - chi2
    f = (n - 1) * chi2 / spread if spread > 0 else np.inf
    return Friedman(
        statistic=float(chi2),
        p_value=float(p),
        f_statistic=float(f),
        f_p_value=float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))),
        ranks=average_ranks(scores),
    )


def critical_difference(methods: int, datasets: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference (Nemenyi, 1963; Demšar, 2006, eq. 5): two methods whose average ranks differ
    by at least CD = q_α √(k(k+1) / 6N) differ at level α, over all pairs at once. q_α is the studentized range
    quantile for k means and infinite df, divided by √2 (Demšar's Table 5a: 2.343 for k = 3 at α = 0.05)."""
    if methods < 2 or datasets < 1 or not 0 < alpha < 1:
        raise UsageError("critical_difference needs at least 2 methods, 1 dataset and alpha in (0, 1)")
    q = stats.studentized_range.ppf(1 - alpha, methods, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(methods * (methods + 1) / (6 * datasets)))


def cliques(ranks: np.ndarray, cd: float) -> list[tuple[int, ...]]:
    """Groups of methods not significantly different, as the bars of a critical-difference diagram: each maximal
    run of methods, in rank order, whose average ranks span less than `cd`. Methods are given by index into `ranks`,
    best first; a method alone in its group appears in none.

    Args:
        ranks: Average rank per method (from `average_ranks`).
        cd: The critical difference (from `critical_difference`).
    """
    order = np.argsort(ranks, kind="stable")
    sorted_ranks = np.asarray(ranks)[order]
    groups, reach = [], 0
    for i in range(len(order)):
        end = int(np.searchsorted(sorted_ranks, sorted_ranks[i] + cd, side="left"))  # first rank >= r_i + cd
        if end - i >= 2 and end > reach:
            groups.append(tuple(int(m) for m in order[i:end]))
        reach = max(reach, end)
    return groups


def _check_scores(scores: np.ndarray, methods: int, datasets: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] < datasets or scores.shape[1] < methods or not np.isfinite(scores).all():
        raise UsageError(
            f"scores must be finite (datasets, methods) with at least {datasets} datasets and {methods} "
            f"methods, got shape {scores.shape}"
        )
    return scores
