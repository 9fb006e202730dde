"""Planning: a request (suite x datasets x adapters x methods x seeds, with overrides) becomes run specs, in a stable
order.

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
from pacebench.core import adapters as kinds
from pacebench.core import backbones
from pacebench.core.methods import METHODS
from pacebench.data import READERS
from pacebench.data.base import data_options
from pacebench.errors import UsageError
from pacebench.plan.spec import DEFAULT_METHODS, RunSpec, TrainConfig
from pacebench.plan.suites import DatasetDef, Suite, load_suite
from pacebench.text.tasks import TASKS


@dataclass(frozen=True)
class PlanRequest:
    suite: str
    datasets: list[str] | None = None
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    adapters: list[str] | None = None  # adapter kinds, each planned with every method (None: the suite's own)
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
    demo = (
        backbones.demo_checkpoint_dir() / backbones.BACKBONES.get(backbone).filename
        if pretrainable(backbone, weights)
        else None
    )
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


def adapter_overrides(req: PlanRequest) -> list[dict[str, Any]]:
    """The training overrides of each adapter the request names: one set per `--adapters` kind, or the request's own
    when it names none."""
    if not req.adapters:
        return [req.train]
    if "adapter" in req.train:
        raise UsageError("give the adapter once: --adapters a,b or -t adapter=a, not both")
    return [{**req.train, "adapter": a} for a in dict.fromkeys(req.adapters)]


def resolve_image_train(suite: Suite, ds: DatasetDef, overrides: dict[str, Any]) -> TrainConfig:
    """An image run's training settings, the adapter kind's own defaults filled in and its settings checked (an
    unknown kind or a setting it cannot take fails here, not as a failed run). A rank set anywhere (the user, the
    suite's or the data set's [adapters.KIND] table) for a kind without a size is refused: it would change the run's
    key without changing what trains."""
    train = suite.resolve_train(ds, overrides, kinds.train_defaults)
    given = "rank" in suite.train_layers(ds, overrides)[1]
    kinds.check_settings(train.adapter, train.rank, train.adapter_scale, train.adapter_dropout, given)
    return train


def plan(req: PlanRequest, sha: Callable[[str, Path | None], str] = weights_sha256) -> list[RunSpec]:
    """All runs the request names, in a stable order (dataset, data options, adapter, method, seed). Unknown names
    fail here, before anything trains."""
    suite = load_suite(req.suite)
    for m in req.methods:
        METHODS.get(m)
    datasets = suite.select(req.datasets)  # a wrong name is told before the weights (which may be missing too)
    backbone = req.backbone or suite.backbone
    weights_hash = sha(backbone, req.weights)
    reader = READERS.get(suite.reader)
    text = reader.kind == "text"
    if text and req.adapters:
        raise UsageError(
            f"suite {suite.name} is a text suite: its adapter is LoRA on named modules "
            "(-t adapter=lora:NAME,NAME), not one of --adapters"
        )
    specs = []
    for ds in datasets:
        trains = []
        for overrides in adapter_overrides(req):
            if text:  # LoRA target names and the methods its task runs
                train = suite.resolve_train(ds, overrides)
                TASKS.get(suite.reader).check(suite.name, train.adapter, req.methods)
            else:
                train = resolve_image_train(suite, ds, overrides)
                backbones.check_image_size(backbone, train.image_size)
                if reader.augments is not None and train.augment not in reader.augments:
                    raise UsageError(
                        f"suite {suite.name}'s reader ({suite.reader}) cannot apply augment={train.augment}; "
                        f"use augment={' or '.join(reader.augments)}"
                    )
            trains.append(train.for_device(req.device))
        for options in ds.variants():
            if req.options and any(options.get(k) not in v for k, v in req.options.items()):
                continue
            if reader.check is not None:
                reader.check(data_options(ds, options))
            for train in trains:
                for method in req.methods:
                    config = suite.resolve_method(
                        ds, method, {k: v for k, v in req.method.items() if accepts(method, k)}
                    )
                    for seed in req.seeds:
                        specs.append(
                            RunSpec(
                                suite=suite.name,
                                dataset=ds.name,
                                method=method,
                                seed=seed,
                                train=train,
                                backbone=backbone,
                                weights_sha256=weights_hash,
                                method_config=config,
                                data_options=options,
                                phase=req.phase,
                            )
                        )
    if not specs:
        raise UsageError("the selection names no runs; check --datasets and --shots/--split-seeds")
    return specs
