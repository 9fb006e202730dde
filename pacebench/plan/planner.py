"""Planning: a request (suite x datasets x methods x seeds, with overrides) becomes run specs, in a stable order.

Pure apart from reading suite files and hashing weight files: nothing is trained or written. Unknown names fail here,
before anything is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pacebench.choices import Phase
from pacebench.core import backbones
from pacebench.core.adapters import parse_kind
from pacebench.core.methods import METHODS
from pacebench.data import READERS
from pacebench.data.base import data_options
from pacebench.errors import UsageError
from pacebench.plan.spec import DEFAULT_METHODS, RunSpec
from pacebench.plan.suites import load_suite
from pacebench.text.tasks import TASKS


@dataclass(frozen=True)
class PlanRequest:
    suite: str
    datasets: list[str] | None = None
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict[str, Any] = field(default_factory=dict)  # user overrides of TrainConfig fields
    method: dict[str, Any] = field(default_factory=dict)  # user overrides of method hyperparameters
    phase: Phase = Phase.final
    backbone: str | None = None
    weights: Path | None = None
    options: dict[str, list[Any]] | None = None  # restrict the data-option grid, e.g. {"shots": [16]}
    device: str = "cpu"  # the device type the runs train on: precision "auto" resolves to bf16 on "cuda"


def pretrainable(backbone: str, weights: Path | None) -> bool:
    """A named backbone that pacebench pre-trains itself into the results folder (the demo's)."""
    return weights is None and backbone in backbones.BACKBONES and backbones.BACKBONES.get(backbone).in_results


@cache
def weights_sha256(backbone: str, weights: Path | None, weights_dir: Path | None = None) -> str:
    """The SHA-256 of the backbone's weights file. A demo backbone that is not pre-trained yet hashes to ""
    (planning never trains anything); execution pre-trains it and fills the hash in before runs are queued."""
    demo = backbones.demo_checkpoint_dir() / backbones.BACKBONES.get(backbone).filename \
        if pretrainable(backbone, weights) else None
    if demo is not None and not demo.is_file():
        return ""
    resolved = backbones.resolve(backbone, weights, weights_dir)
    return backbones.sha256(resolved.weights) if resolved.weights else ""


def accepts(method: str, name: str) -> bool:
    """A --hp value applies to every selected method that has that hyperparameter (lam for pace and fpa, ...)."""
    return METHODS.get(method).Config.accepts(name)


def check_method_overrides(methods: list[str], overrides: dict[str, Any]) -> None:
    unused = [k for k in overrides if not any(accepts(m, k) for m in methods)]
    if unused:
        raise UsageError(f"no selected method has hyperparameter {unused[0]!r}; see `pacebench methods`")


def plan(req: PlanRequest, sha: Callable[[str, Path | None], str] = weights_sha256) -> list[RunSpec]:
    """All runs the request names, in a stable order. Unknown names fail here, before anything trains."""
    suite = load_suite(req.suite)
    for m in req.methods:
        METHODS.get(m)
    backbone = req.backbone or suite.backbone
    weights_hash = sha(backbone, req.weights)
    specs = []
    for ds in suite.select(req.datasets):
        train = suite.resolve_train(ds, req.train).for_device(req.device)
        reader = READERS.get(suite.reader)
        if reader.kind == "text":  # LoRA target names and the methods its task runs
            TASKS.get(suite.reader).check(suite.name, train.adapter, req.methods)
        else:
            parse_kind(train.adapter)  # an unknown adapter fails here, not as a failed run
            backbones.check_image_size(backbone, train.image_size)
        for options in ds.variants():
            if req.options and any(options.get(k) not in v for k, v in req.options.items()):
                continue
            if reader.check is not None:
                reader.check(data_options(ds, options))
            for method in req.methods:
                config = suite.resolve_method(ds, method, {k: v for k, v in req.method.items()
                                                           if accepts(method, k)})
                for seed in req.seeds:
                    specs.append(RunSpec(suite=suite.name, dataset=ds.name, method=method, seed=seed, train=train,
                                         backbone=backbone, weights_sha256=weights_hash, method_config=config,
                                         data_options=options, phase=req.phase))
    if not specs:
        raise UsageError("the selection names no runs; check --datasets and --shots/--split-seeds")
    return specs
