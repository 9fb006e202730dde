"""Time of a whole `compare` of two methods over a suite, from random per-example results, on one core.

The suite: 19 datasets × 2 methods × 3 seeds × 10,000 test examples, 2,000 bootstrap resamples. Per dataset
`paired_bootstrap`, `sign_flip_test` (10,000 random sign patterns) and `seeds_needed`; then Holm over the
datasets, the stratified mean and IQM, P(A > B) and wins / ties / losses. The target is under 10 s.

Measured on: 2-core dev box, no GPU (numpy and BLAS held to one thread; best of 3 runs, the box otherwise busy):
    accuracy (0/1 correctness):            0.72 s
    --metric pearson (continuous scores):  6.1 s  (no two examples alike, so every resample is drawn in full)
Run from a checkout, pacebench must be importable (installed, or PYTHONPATH=. from the repository root).

    python benchmarks/stats_speed.py
    python benchmarks/stats_speed.py --metric pearson
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from pacebench import stats  # noqa: E402


def suite_data(metric: str, datasets: int, seeds: int, examples: int, seed: int = 0) -> list[tuple]:
    """Per dataset (a, b, labels): A about a point better than B, errors correlated through shared difficulty."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(datasets):
        difficulty = rng.normal(1.5, 2.0, examples)
        if metric == "accuracy":
            runs = [rng.random((seeds, examples)) < 1 / (1 + np.exp(-(difficulty + shift))) for shift in (0.1, 0.0)]
            out.append((runs[0].astype(np.int8), runs[1].astype(np.int8), None))
        else:
            gold = rng.uniform(0, 5, examples)
            out.append(
                (gold + rng.normal(0, 0.9, (seeds, examples)), gold + rng.normal(0, 1.0, (seeds, examples)), gold)
            )
    return out


def compare(data: list[tuple], metric: str, n_boot: int) -> None:
    diffs = [
        stats.paired_bootstrap(a, b, metric, labels, n_boot=n_boot, seed=(0, i))
        for i, (a, b, labels) in enumerate(data)
    ]
    if metric == "accuracy":
        [stats.sign_flip_test(a, b, seed=i) for i, (a, b, _) in enumerate(data)]
    [stats.seeds_needed(d.scores_a, d.scores_b) for d in diffs]
    stats.holm([d.p_value for d in diffs])
    stats.stratified_bootstrap(diffs, "mean")
    stats.stratified_bootstrap(diffs, "iqm")
    stats.probability_of_improvement([d.scores_a for d in diffs], [d.scores_b for d in diffs], n_boot=n_boot)
    stats.wins_ties_losses(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metric", choices=["accuracy", "pearson"], default="accuracy")
    parser.add_argument("--datasets", type=int, default=19)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    data = suite_data(args.metric, args.datasets, args.seeds, args.examples)
    start = time.perf_counter()
    compare(data, args.metric, args.n_boot)
    print(
        f"{time.perf_counter() - start:.2f} s  ({args.metric}, {args.datasets} datasets x 2 methods x {args.seeds} "
        f"seeds x {args.examples} examples, {args.n_boot} resamples)"
    )


if __name__ == "__main__":
    main()
