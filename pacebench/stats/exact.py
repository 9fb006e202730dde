"""Tests on paired examples that hold the runs fixed: exact or permutation p-values, no seed variance.

Both ask "do these runs of A and B differ on this kind of example?", not "do the methods differ?": a seed that
made all of A's runs luckier is, to them, a real difference. Use them for one seed per method, or as a check beside
`paired_bootstrap`, whose p-value counts the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from pacebench.errors import UsageError

EXACT_UP_TO = 16  # non-zero differences enumerated exactly: 2**16 sign patterns


@dataclass(frozen=True)
class SignFlip:
    """A sign-flip test's two-sided p-value, and how it was obtained: `exact` over all `patterns` sign patterns,
    else Monte Carlo over `patterns` random ones."""

    p_value: float
    exact: bool
    patterns: int


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: its two-sided p-value and the discordant counts it rests on."""

    p_value: float
    a_only: int  # examples A got right and B wrong
    b_only: int  # examples B got right and A wrong


def sign_flip_test(a: np.ndarray, b: np.ndarray, n_perm: int = 10_000, seed: int = 0) -> SignFlip:
    """Paired permutation test on examples (Fisher, 1935; the approximate randomization of Noreen, 1989, which Dror
    et al., 2018, recommend for NLP): is the mean per-example difference of A and B zero?

    Each example's difference is its mean over A's seeds minus its mean over B's. Under the null the sign of each
    example's difference is a fair coin, independently across examples: true when, for every example, swapping the
    method labels of its runs is as likely as not. That holds for the runs' example-level noise, not for a seed
    effect shared by all of a run's examples (see the module docstring). The statistic is |Σ d|. With at most 16
    non-zero differences every sign pattern is enumerated; otherwise `n_perm` random patterns give
    p = (1 + #{as extreme}) / (1 + n_perm) (Phipson & Smyth, 2010), never 0. The random patterns are drawn as one
    binomial count per distinct |d| value, exactly the same distribution as per-example coins, and far fewer draws.

    Args:
        a: Per-example values of A (0/1 correctness or a per-example score), (seeds, examples) or (examples,).
        b: The same for B, on the same examples.
        n_perm: Random sign patterns when the test is not exact.
        seed: Seeds the random patterns.
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.ndim != 2 or a.shape[1] != b.shape[1] or not np.isfinite(np.r_[a.ravel(), b.ravel()]).all():
        raise UsageError(f"a and b must be finite per-example values on the same examples, got {a.shape}, {b.shape}")
    if n_perm < 1:
        raise UsageError(f"n_perm must be at least 1, got {n_perm}")
    d = np.abs(a.mean(0) - b.mean(0))
    observed = abs((a.mean(0) - b.mean(0)).sum())
    d = d[d > 0]
    tol = 1e-9 * max(d.sum(), 1e-300)  # sums in another order differ by rounding, not by a pattern
    if len(d) <= EXACT_UP_TO:
        signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)
        extreme = np.abs(signs @ d) >= observed - tol
        return SignFlip(p_value=float(extreme.mean()), exact=True, patterns=2 ** len(d))
    values, counts = np.unique(d, return_counts=True)
    rng = np.random.default_rng(seed)
    rows = max(1, 2**22 // len(values))
    extreme = 0
    for start in range(0, n_perm, rows):
        positive = rng.binomial(counts, 0.5, size=(min(rows, n_perm - start), len(values)))
        extreme += int((np.abs((2 * positive - counts) @ values) >= observed - tol).sum())
    return SignFlip(p_value=(1 + extreme) / (1 + n_perm), exact=False, patterns=n_perm)


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> McNemar:
    """Exact McNemar test (McNemar, 1947; Dietterich, 1998, for comparing classifiers) of one run of A against one
    of B on the same examples: under the null an example that only one of them gets right is A's with probability
    1/2, so the discordant counts are binomial. It sees one seed of each: a seed effect reads as a difference.

    Args:
        a_correct: 0/1 correctness of A per example, (examples,).
        b_correct: The same for B.
    """
    a_correct, b_correct = (x[0] if x.ndim == 2 and len(x) == 1 else x for x in map(np.asarray, (a_correct, b_correct)))
    if (
        a_correct.ndim != 1  # several seeds flattened would read as more examples
        or a_correct.shape != b_correct.shape
        or not np.isin(np.r_[a_correct, b_correct], (0, 1)).all()
    ):
        raise UsageError(
            f"mcnemar_exact needs 0/1 correctness of one run of each method on the same examples, (examples,) "
            f"each, got shapes {np.shape(a_correct)} and {np.shape(b_correct)}; with several seeds use paired_bootstrap"
        )
    a_only = int(((a_correct == 1) & (b_correct == 0)).sum())
    b_only = int(((a_correct == 0) & (b_correct == 1)).sum())
    p = stats.binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return McNemar(p_value=float(p), a_only=a_only, b_only=b_only)
