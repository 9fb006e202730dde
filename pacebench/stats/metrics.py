"""Test-set metrics computed from example weights, so that one call scores every bootstrap replicate at once.

A bootstrap replicate (n examples drawn with replacement) is the original test set with weight w_i = the number of
times example i was drawn, and the metric of the resampled set is the weighted metric. Every metric here therefore
takes `values` (seeds, m), `labels` (m,) or None and `weights` (replicates, m), and returns (replicates, seeds):
scoring 2,000 replicates is a few matrix products. MCC and Pearson are computed on each resampled set as a whole,
as the benchmark reports them, never averaged per example (a per-example average of either means nothing).

`weights` may be a dense array or a scipy sparse array: the metrics only multiply it by dense matrices.
Every metric returns points (×100), higher is better, as pacebench's tables print them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pacebench.errors import UsageError

Metric = Callable[[np.ndarray, np.ndarray | None, np.ndarray], np.ndarray]  # (values, labels, weights) -> scores


def _weighted_sums(weights: np.ndarray, *columns: np.ndarray) -> list[np.ndarray]:
    """Σ_i w_ri c_i for each (m, k) block of columns, as (replicates, k) blocks: one product over the weights, which
    is the costly part when they are a large sparse array."""
    blocks = [np.ones((weights.shape[1], 1)), *columns]
    sums = weights @ np.hstack(blocks).astype(float)
    return np.split(sums, np.cumsum([b.shape[1] for b in blocks])[:-1], axis=1)


def accuracy(values: np.ndarray, labels: np.ndarray | None, weights: np.ndarray) -> np.ndarray:
    """Share of examples right, in points. Without labels, `values` are already per-example scores (0/1
    correctness, or exact match) and the metric is their mean; with labels, `values` are predicted labels."""
    correct = values if labels is None else values == labels
    n, right = _weighted_sums(weights, correct.T)
    return 100 * right / n


def mcc(values: np.ndarray, labels: np.ndarray | None, weights: np.ndarray) -> np.ndarray:
    """Matthews correlation (Matthews, 1975; the multi-class form of Gorodkin, 2004, as scikit-learn computes it)
    of predicted labels against `labels`, in points; 0 where it is undefined (one class predicted or present)."""
    if labels is None:
        raise UsageError("metric 'mcc' needs the gold labels (labels=...) and predicted labels as values")
    classes = np.union1d(np.unique(labels), np.unique(values))
    seeds, m = values.shape
    n, true, pred, right = _weighted_sums(
        weights, labels[:, None] == classes, (values.T[:, :, None] == classes).reshape(m, -1), (values == labels).T
    )
    pred = pred.reshape(-1, seeds, len(classes))  # (replicates, seeds, classes)
    cov_tp = right * n - np.einsum("rk,rsk->rs", true, pred)
    cov_pp = n**2 - (pred**2).sum(-1)
    cov_tt = n**2 - (true**2).sum(-1, keepdims=True)
    denom = np.sqrt(cov_tt * cov_pp)
    return 100 * np.divide(cov_tp, denom, out=np.zeros_like(cov_tp), where=denom > 0)


def pearson(values: np.ndarray, labels: np.ndarray | None, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation of predicted scores with the gold `labels` (STS-B), in points; 0 where a side is
    constant. Both sides are centred on their full-set means first, which keeps the one-pass moments exact enough."""
    if labels is None:
        raise UsageError("metric 'pearson' needs the gold scores (labels=...) and predicted scores as values")
    x = (values - values.mean(axis=1, keepdims=True)).T  # (m, seeds)
    y = (labels - labels.mean())[:, None]
    n, sx, sy, sxy, sxx, syy = _weighted_sums(weights, x, y, x * y, x**2, y**2)
    mx, my = sx / n, sy / n
    cov, var_x, var_y = sxy / n - mx * my, sxx / n - mx**2, syy / n - my**2
    denom = np.sqrt(np.clip(var_x * var_y, 0, None))
    constant = denom <= 1e-9 * np.sqrt(sxx * syy) / n  # a side constant within the replicate, up to rounding
    return 100 * np.divide(cov, denom, out=np.zeros_like(cov), where=~constant)


METRICS: dict[str, Metric] = {"accuracy": accuracy, "mcc": mcc, "pearson": pearson}


def resolve(metric: str | Metric) -> Metric:
    """A metric by name from `METRICS`, or a callable with the same signature as they have, returned as is."""
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}, or pass a function")
    return METRICS[metric]
