"""Bootstrap resamples of a test set as example weights, drawn without a Python loop over replicates.

Two exact shortcuts keep 2,000 replicates of 10,000 examples cheap (Efron & Tibshirani, 1993, ch. 6: a resample
is a vector of counts):
- examples with identical columns (every run's prediction and the label) are interchangeable, so a resample of the
  n examples is a multinomial draw over the distinct columns with their frequencies as probabilities, the same
  distribution as drawing n indices. With 0/1 correctness and six runs there are at most 64 distinct columns.
- otherwise (continuous scores) the drawn indices become a sparse count matrix directly: a row of a CSR array with
  repeated column indices multiplies as their counts, so nothing is counted by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from scipy import sparse

CELLS = 2**22  # weights drawn per chunk: about 32 MB of counts, whatever the test-set size
DISTINCT = 15  # a multinomial over m columns costs about as much as drawing 15 m indices


class Columns(NamedTuple):
    """A test set reduced to its distinct example columns: `values` (rows, m), `labels` (m,) or None, and how often
    each column occurs; all ones when the set is kept as it is."""

    values: np.ndarray
    labels: np.ndarray | None
    counts: np.ndarray


def distinct_columns(values: np.ndarray, labels: np.ndarray | None) -> Columns:
    """`values` with identical example columns merged, when that makes drawing cheaper (see `example_weights`)."""
    n = values.shape[1]
    stacked = values if labels is None else np.vstack([values, labels])
    unique, counts = np.unique(stacked.T, axis=0, return_counts=True)
    if len(unique) * DISTINCT >= n:
        return Columns(values, labels, np.ones(n, dtype=np.int64))
    unique = unique.T
    return Columns(unique[: len(values)], None if labels is None else unique[-1], counts)


def example_weights(counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Bootstrap resamples of the examples, as weights (replicates, m) per column, `n_boot` rows over all chunks."""
    n, m = int(counts.sum()), len(counts)
    rows = max(1, CELLS // max(n, 1))
    for start in range(0, n_boot, rows):
        size = min(rows, n_boot - start)
        if m < n:
            yield rng.multinomial(n, counts / n, size=size).astype(float)
        else:
            idx = rng.integers(0, n, (size, n), dtype=np.int32).ravel()
            yield sparse.csr_array((np.ones(idx.size), idx, np.arange(0, idx.size + 1, n)), shape=(size, n))
