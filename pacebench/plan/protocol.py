"""The paper's two-phase protocol, as pure functions over run records.

Phase 1 ("tune") trains every grid point on the train split and scores it on the validation split; `select_best`
picks, per (suite, dataset, data options, method), the setting with the highest mean validation accuracy. Phase 2
("final") retrains that setting on train+val for each seed and scores it on test (`final_specs`). The selection
reads `metrics["val_acc"]` and nothing else of a run's results, so test data can never leak into the choice.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pacebench.choices import Phase
from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.planner import PlanRequest, accepts
from pacebench.plan.spec import TRAIN_FIELDS, RunSpec, TrainConfig
from pacebench.store.records import RunRecord
from pacebench.values import canonical_json

Key = tuple[str, str, str, str]  # (suite, dataset, data options as compact sorted-key JSON, method)


def key_of(run: RunRecord | RunSpec) -> Key:
    return run.suite, run.dataset, canonical_json(run.data_options), run.method


@dataclass(frozen=True)
class Plan:
    """What one command asks to train: runs trained as planned, and phase-1 grid points (`search`, trained on train
    and scored on val) whose chosen setting per (dataset, method) is then trained on train+val for every seed."""

    runs: list[RunSpec] = field(default_factory=list)
    search: list[RunSpec] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])  # phase-2 seeds of each chosen setting
    origin: str = "direct"  # what the rows record: "direct" (settings given), "tune" (chosen), "sweep"


@dataclass(frozen=True)
class Choice:
    """The setting phase 1 chose for one key, with the evidence: its mean (and std) validation accuracy over the
    tune seeds, which seeds, which runs, and how many settings competed."""

    suite: str
    dataset: str
    data_options: dict[str, Any]
    method: str
    method_config: dict[str, Any]
    train: TrainConfig
    backbone: str
    weights_sha256: str
    val_acc: float
    val_std: float
    seeds: tuple[int, ...]
    run_ids: tuple[int, ...]
    candidates: int

    def config_json(self) -> str:
        return canonical_json({"method_config": self.method_config, "train": dataclasses.asdict(self.train)})


def _val(run: RunRecord) -> float | None:
    """The only result the selection reads."""
    value = run.metrics.get("val_acc")
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def _rank(candidate: tuple[str, list[tuple[RunRecord, float]]]) -> tuple[float, float, float, str]:
    """Sort key of one setting (its config JSON, its runs with their val acc); the smallest key wins."""
    config, members = candidate
    cfg = members[0][0].method_config
    mean = statistics.fmean(v for _, v in members)
    return -round(mean, 9), float(cfg.get("lam", 0.0)), float(cfg.get("sigma", 0.0)), config


def select_best(runs: Iterable[RunRecord]) -> dict[Key, Choice]:
    """Per (suite, dataset, data options, method): the best phase-1 setting (method_config plus training settings).

    Only runs with phase "tune" and status "done" count (others are ignored), and of those only runs that report a
    finite validation accuracy. A setting's score is its mean val_acc over the seeds that finished.

    Tie rule (deterministic): the higher mean validation accuracy wins, means equal to 9 decimals count as tied;
    then the smaller λ (`lam`), then the smaller σ (`sigma`), a missing λ or σ counting as 0; then the
    lexicographically smallest config JSON ({"method_config": ..., "train": ...} with sorted keys).

    Raises:
        PacebenchError: the runs of one key were made on different weights (filter them by weights first).
    """
    groups: dict[Key, dict[str, list[tuple[RunRecord, float]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.phase != "tune" or run.status != "done":
            continue
        val = _val(run)
        if val is None:
            continue
        config = canonical_json({"method_config": run.method_config, "train": run.hparams})
        groups[key_of(run)][config].append((run, val))
    best = {}
    for key, candidates in groups.items():
        weights = {(r.backbone, r.weights_sha256) for members in candidates.values() for r, _ in members}
        if len(weights) > 1:
            raise PacebenchError(
                f"tune runs of {key[0]}/{key[1]} {key[3]} were made on {len(weights)} different "
                "weights; select among runs of one weight file (filter by weights_sha256)"
            )
        _, members = min(candidates.items(), key=_rank)
        vals = [v for _, v in members]
        first = members[0][0]
        best[key] = Choice(
            suite=first.suite,
            dataset=first.dataset,
            data_options=dict(first.data_options),
            method=first.method,
            method_config=dict(first.method_config),
            train=TrainConfig(**first.hparams),
            backbone=first.backbone,
            weights_sha256=first.weights_sha256,
            val_acc=statistics.fmean(vals),
            val_std=statistics.stdev(vals) if len(vals) > 1 else math.nan,
            seeds=tuple(sorted(r.seed for r, _ in members)),
            run_ids=tuple(sorted(r.id for r, _ in members)),
            candidates=len(candidates),
        )
    return dict(sorted(best.items()))


def grid(values: Mapping[str, Iterable[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid values, in the order given: {"lam": [0.1, 1], "sigma": [1]} -> two points.

    An empty mapping gives one empty point; a name with no values is a usage error.
    """
    names = list(values)
    lists = [list(values[n]) for n in names]
    empty = [n for n, vs in zip(names, lists, strict=True) if not vs]
    if empty:
        raise UsageError(f"grid value list for {empty[0]!r} is empty; give at least one value")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]


def with_point(request: PlanRequest, point: dict[str, Any]) -> PlanRequest:
    """Splits one grid point of a `PlanRequest` into method hyperparameters and training settings."""
    method = {k: v for k, v in point.items() if any(accepts(m, k) for m in request.methods)}
    train = {k: v for k, v in point.items() if k in TRAIN_FIELDS}
    unknown = set(point) - set(method) - set(train)
    if unknown:
        raise UsageError(
            f"--grid {sorted(unknown)[0]}: neither a hyperparameter of {', '.join(request.methods)} "
            "nor a training setting"
        )
    return dataclasses.replace(request, method={**request.method, **method}, train={**request.train, **train})


def excluded_points(runs: Iterable[RunRecord]) -> list[str]:
    """Phase-1 settings left out of the choice because a run of theirs failed all its attempts, one line each:
    dataset, method, the setting (its hyperparameters and the training settings that vary over the grid), seed
    and the first line of the error."""
    runs = [r for r in runs if r.phase == "tune"]
    varying = {k for r in runs for k, v in r.hparams.items() if v != runs[0].hparams.get(k)}
    lines = []
    for r in runs:
        if r.status == "failed":
            setting = {**r.method_config, **{k: r.hparams[k] for k in sorted(varying)}}
            lines.append(
                f"{r.dataset} {r.method} {canonical_json(setting)} seed {r.seed}: "
                f"{(r.error or 'failed').splitlines()[0][:120]}"
            )
    return lines


def final_specs(best: Mapping[Key, Choice], seeds: Iterable[int]) -> list[RunSpec]:
    """Phase-2 specs: each chosen setting on the same suite, dataset, data options, backbone, weights and training
    settings, with phase "final", once per seed; in key order, then seed order."""
    seeds = list(seeds)
    return [
        RunSpec(
            suite=c.suite,
            dataset=c.dataset,
            method=c.method,
            seed=seed,
            train=c.train,
            backbone=c.backbone,
            weights_sha256=c.weights_sha256,
            method_config=dict(c.method_config),
            data_options=dict(c.data_options),
            phase=Phase.final,
        )
        for _, c in sorted(best.items())
        for seed in seeds
    ]
