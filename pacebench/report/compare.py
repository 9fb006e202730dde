"""`pacebench compare A B`: is A's difference to B real, on each dataset and over the suite?

Pure steps over run records and their stored predictions (`pacebench.stats` does the statistics):
- the runs of A and of B are gathered per data set (suite, dataset, data variant, weights and data fingerprint:
  runs on different weights or different copies of the data are never paired) and adapter kind (A on LoRA meets B
  on LoRA; with several kinds each is its own row), each side at one setting;
- each evaluation set the paper's table reports (test, or the domain suite's target sets; val in phase tune)
  becomes one row: A's and B's means, Δ = A - B with its 95% interval and p-value, the Holm-adjusted p over the
  rows, the verdict (better / worse / within noise), and how many seeds per method would detect a difference of
  `delta` points;
- with per-example predictions for every run, and the same examples in the same order, the row is paired on the
  examples (`stats.paired_bootstrap`); runs stored before predictions were kept are compared at the seed level
  (`stats.seed_level_difference`) and labelled so;
- over two or more rows: the mean Δ with a stratified interval, its IQM, P(A > B) and wins / ties / losses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pacebench import stats
from pacebench.core.adapters import kind_of
from pacebench.core.methods import METHODS
from pacebench.errors import PacebenchError, UsageError
from pacebench.report.labels import data_label, weights_key
from pacebench.store.records import Predictions, RunRecord

PAIRED, SEED_LEVEL = "paired", "seed level"
Loader = Callable[[list[int]], dict[tuple[int, str], Predictions]]


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a method, optionally on one adapter kind (`pace@lora`) and at named
    hyperparameter values (`pace:lam=0.5`)."""

    method: str
    values: dict[str, Any] = field(default_factory=dict)
    adapter: str | None = None  # None: each kind meets the other side's runs of the same kind

    @property
    def label(self) -> str:
        return (
            self.method
            + (f"@{self.adapter}" if self.adapter else "")
            + ("" if not self.values else ":" + ",".join(f"{k}={v}" for k, v in sorted(self.values.items())))
        )

    def matches(self, run: RunRecord) -> bool:
        return (
            run.method == self.method
            and self.adapter in (None, run.adapter)
            and all(run.method_config.get(k) == v for k, v in self.values.items())
        )


def parse_side(text: str) -> Side:
    """`pace`, `pace@lora` (one adapter kind) or `pace:lam=0.5,sigma=1.2`; the values are read by the method's own
    config (aliases, types)."""
    head, _, rest = text.partition(":")
    name, at, kind = head.partition("@")
    adapter = kind_of(kind.strip()).name if at else None  # an unknown kind names the registered ones
    cls = METHODS.get(name.strip())
    raw = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"compare takes METHOD, METHOD@KIND or METHOD:NAME=VALUE,...; got {text!r}")
        raw[key.strip()] = value.strip()
    config = cls.make_config(raw).as_dict()  # names (aliases accepted) and values checked by the method
    named = {cls.Config.aliases().get(k, k) for k in raw}
    return Side(cls.name, {k: v for k, v in config.items() if k in named}, adapter)


@dataclass(frozen=True)
class Row:
    """One dataset's (and evaluation set's) comparison."""

    data: str
    eval_set: str
    level: str
    metric: str
    difference: stats.Difference
    seeds_a: int
    seeds_b: int
    examples: int | None
    seeds_needed: int | None
    p_holm: float = float("nan")

    @property
    def verdict(self) -> stats.Verdict:
        return stats.verdict(self.difference)


@dataclass(frozen=True)
class SuiteLine:
    """A over B across the rows: the mean Δ and its IQM with stratified intervals, P(A > B), the tally."""

    mean: stats.Interval
    iqm: stats.Interval
    improvement: stats.Interval
    tally: stats.Tally


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    rows: list[Row]
    suite: SuiteLine | None
    notes: list[str]
    delta: float = 0.5  # the difference, in points, that `Row.seeds_needed` is for


def _data_key(run: RunRecord, by_kind: bool) -> str:
    """Which data, weights (and with `by_kind`, adapter kind) a run was made with: runs are paired only within one
    key. By kind, A and B meet on the same kind (Table 2: PACE on LoRA against the baseline on LoRA, PACE on VPT
    against VPT); sides that name their kinds (`pace@lora` against `pace@vpt_add`) meet across them."""
    return json.dumps(
        [data_label(run), weights_key(run), getattr(run, "data_fingerprint", ""), by_kind and run.adapter]
    )


def _setting(run: RunRecord) -> str:
    return json.dumps({"method_config": run.method_config, "train": run.hparams}, sort_keys=True, default=str)


def _one_setting(runs: list[RunRecord], side: Side, data: str) -> list[RunRecord]:
    settings = sorted({_setting(r) for r in runs})
    if len(settings) > 1:
        varying = sorted(
            {k for r in runs for k, v in r.method_config.items() if any(o.method_config.get(k) != v for o in runs)}
        )
        trained = sorted({k for r in runs for k, v in r.hparams.items() if any(o.hparams.get(k) != v for o in runs)})
        if varying:
            hint = f"name the values, e.g. {side.method}:{varying[0]}={runs[0].method_config[varying[0]]}"
        elif "adapter" in trained:
            hint = f"name the adapter kind, e.g. {side.method}@{runs[0].adapter}"
        else:
            hint = (
                f"its runs differ in training settings ({', '.join(trained)}), which compare cannot select; "
                "keep the runs of one setting in their own database (--db)"
            )
        raise UsageError(f"{side.label} has {len(settings)} settings on {data}; {hint}")
    return runs


def _eval_sets(runs: Iterable[RunRecord], phase: str) -> list[str]:
    names = [set(r.metrics.get("evals", {})) for r in runs]
    common = set.intersection(*names) if names else set()
    wanted = ["val"] if phase == "tune" else sorted(n for n in common if n != "val")
    return [n for n in wanted if n in common]


def _score(run: RunRecord, eval_set: str) -> float:
    """The run's score on `eval_set`: its evaluation's, or its headline `test_acc` / `val_acc` for test / val."""
    evals = run.metrics.get("evals") or {}
    value = evals.get(eval_set, run.metrics.get(f"{eval_set}_acc"))
    if value is None:
        raise PacebenchError(f"run {run.id} has no score on {eval_set}")
    return float(value)


def _arrays(preds: list[Predictions]) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(values per run, labels or None, metric): correctness for accuracy, else predictions with their targets."""
    metric = preds[0].metric
    if metric == "accuracy" and all(p.correct is not None for p in preds):
        return np.stack([np.asarray(p.correct, dtype=float) for p in preds]), None, metric
    return np.stack([np.asarray(p.predicted, dtype=float) for p in preds]), np.asarray(preds[0].target), metric


def compare_row(
    data: str,
    eval_set: str,
    runs_a: list[RunRecord],
    runs_b: list[RunRecord],
    predictions: dict[tuple[int, str], Predictions],
    delta: float,
    n_boot: int,
    seed: tuple[int, ...],
) -> Row | str:
    """One row, or why it cannot be compared (a note)."""
    kept = [predictions.get((r.id, eval_set)) for r in (*runs_a, *runs_b)]
    scores_a, scores_b = [_score(r, eval_set) for r in runs_a], [_score(r, eval_set) for r in runs_b]
    if all(p is not None for p in kept):
        preds: list[Predictions] = kept  # type: ignore[assignment]
        if len({p.ids for p in preds}) > 1:
            raise PacebenchError(
                f"{data} {eval_set}: the runs were scored on different examples (their example ids "
                "differ), so they cannot be paired; check that both methods ran on one copy of the "
                "data (`pacebench data check` prints its fingerprint)"
            )
        values, labels, metric = _arrays(preds)
        diff = stats.paired_bootstrap(values[: len(runs_a)], values[len(runs_a) :], metric, labels, n_boot, seed)
        level, examples = PAIRED, len(preds[0].ids)
    elif min(len(runs_a), len(runs_b)) >= 2:
        diff = stats.seed_level_difference(np.array(scores_a), np.array(scores_b), n_boot, seed)
        level, examples, metric = SEED_LEVEL, None, "seed scores"
    else:
        return (
            f"{data} {eval_set}: one seed on a side and no per-example predictions stored (runs made before "
            "they were kept): nothing to compare; train more seeds"
        )
    needed = (
        stats.seeds_needed(np.array(scores_a), np.array(scores_b), delta)
        if len(scores_a) + len(scores_b) >= 3
        else None
    )
    return Row(data, eval_set, level, metric, diff, len(runs_a), len(runs_b), examples, needed)


def compare(
    runs: list[RunRecord],
    load: Loader,
    a: Side,
    b: Side,
    phase: str = "final",
    delta: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """A against B over the finished runs given (one phase's current ones: `report.select.Reads.runs`)."""
    if a == b:
        raise UsageError(f"compare needs two different sides; got {a.label} twice")
    groups: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: {"a": [], "b": []})
    by_kind = a.adapter is None and b.adapter is None
    for run in runs:
        for name, side in (("a", a), ("b", b)):
            if side.matches(run):
                groups[_data_key(run, by_kind)][name].append(run)
    notes, pairs = [], []
    several_kinds = len({json.loads(key)[3] for key in groups}) > 1
    for key, sides in sorted(groups.items()):
        data, *_, kind = json.loads(key)
        data += f" adapter={kind}" if several_kinds else ""
        if not sides["a"] or not sides["b"]:
            missing = a.label if not sides["a"] else b.label
            notes.append(
                f"{data}: no finished {phase}-phase runs of {missing} on this data, weights and adapter kind; left out"
            )
            continue
        pairs.append((data, _one_setting(sides["a"], a, data), _one_setting(sides["b"], b, data)))
    if not pairs:
        kinds = ",".join(dict.fromkeys(k for k in (a.adapter, b.adapter) if k))
        methods = ",".join(dict.fromkeys((a.method, b.method)))
        raise PacebenchError(
            f"no data set has finished {phase}-phase runs of both {a.label} and {b.label}; train "
            f"them (pacebench run SUITE --methods {methods}{f' --adapters {kinds}' if kinds else ''}) or check "
            "--suite / --phase"
        )
    predictions = load([r.id for _, ra, rb in pairs for r in (*ra, *rb)])
    rows: list[Row] = []
    for data, runs_a, runs_b in pairs:
        for eval_set in _eval_sets([*runs_a, *runs_b], phase):
            out = compare_row(data, eval_set, runs_a, runs_b, predictions, delta, n_boot, (seed, len(rows)))
            if isinstance(out, str):
                notes.append(out)
            else:
                rows.append(out)
    if rows:
        adjusted = stats.holm([r.difference.p_value for r in rows])
        rows = [Row(**{**r.__dict__, "p_holm": float(p)}) for r, p in zip(rows, adjusted, strict=True)]
    if any(r.level == SEED_LEVEL for r in rows):
        notes.append(
            "seed level: runs made before per-example predictions were kept; their interval counts the "
            "seeds only, not which test examples were drawn"
        )
    return Comparison(a, b, rows, suite_line(rows, n_boot, seed) if len(rows) > 1 else None, notes, delta)


def suite_line(rows: list[Row], n_boot: int, seed: int) -> SuiteLine:
    diffs = [r.difference for r in rows]
    return SuiteLine(
        mean=stats.stratified_bootstrap(diffs, "mean"),
        iqm=stats.stratified_bootstrap(diffs, "iqm"),
        improvement=stats.probability_of_improvement(
            [d.scores_a for d in diffs], [d.scores_b for d in diffs], n_boot, seed
        ),
        tally=stats.wins_ties_losses(diffs),
    )
