"""Planning (pure: suite x datasets x methods x seeds -> RunSpecs) and executing runs against the store.

Execution claims each run in the database before training it, so several `pacebench run` processes (one per GPU,
or on several machines sharing a PostgreSQL database) can work through the same plan without doing a run twice;
a run whose worker died (no heartbeat for 10 minutes) is claimed again.
"""

from __future__ import annotations

import platform
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

from pacebench import __version__
from pacebench.choices import Phase
from pacebench.errors import PacebenchError, UsageError, one_line
from pacebench.settings import repo_root
from pacebench.spec import RunSpec
from pacebench.store import EpochRecord, RunRecord, Store
from pacebench.store.api import utcnow, worker_name
from pacebench.suites import load_suite


@dataclass(frozen=True)
class PlanRequest:
    suite: str
    datasets: list[str] | None = None
    methods: list[str] = field(default_factory=lambda: ["baseline", "pace"])
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict[str, Any] = field(default_factory=dict)  # user overrides of TrainConfig fields
    method: dict[str, Any] = field(default_factory=dict)  # user overrides of method hyperparameters
    phase: Phase = Phase.final
    backbone: str | None = None
    weights: Path | None = None
    options: dict[str, list[Any]] | None = None  # restrict the data-option grid, e.g. {"shots": [16]}


@cache
def weights_sha256(backbone: str, weights: Path | None) -> str:
    from pacebench import backbones

    b = backbones.BACKBONES.get(backbone) if backbone in backbones.BACKBONES else None
    if b is not None and b.in_results and weights is None:
        from pacebench.pretrain import pretrain_demo_backbone

        pretrain_demo_backbone()
    resolved = backbones.resolve(backbone, weights)
    return backbones.sha256(resolved.weights) if resolved.weights else ""


def plan(req: PlanRequest, sha: Callable[[str, Path | None], str] = weights_sha256) -> list[RunSpec]:
    """All runs the request names, in a stable order. Unknown names fail here, before anything trains."""
    from pacebench.adapters import parse_kind
    from pacebench.methods import METHODS
    from pacebench.text.tasks import TASKS

    suite = load_suite(req.suite)
    for m in req.methods:
        METHODS.get(m)
    backbone = req.backbone or suite.backbone
    weights_hash = sha(backbone, req.weights)
    specs = []
    for ds in suite.select(req.datasets):
        train = suite.resolve_train(ds, req.train)
        if suite.reader in TASKS:  # a text suite: LoRA target names and the methods its task runs
            TASKS.get(suite.reader).check(suite.name, train.adapter, req.methods)
        else:
            parse_kind(train.adapter)  # an unknown adapter fails here, not as a failed run
        for options in ds.variants():
            if req.options and any(options.get(k) not in v for k, v in req.options.items()):
                continue
            for method in req.methods:
                config = suite.resolve_method(ds, method, {k: v for k, v in req.method.items()
                                                           if _accepts(method, k)})
                for seed in req.seeds:
                    specs.append(RunSpec(suite=suite.name, dataset=ds.name, method=method, seed=seed, train=train,
                                         backbone=backbone, weights_sha256=weights_hash, method_config=config,
                                         data_options=options, phase=req.phase))
    if not specs:
        raise UsageError("the selection names no runs; check --datasets and --shots/--split-seeds")
    return specs


def _accepts(method: str, name: str) -> bool:
    """A --hp value applies to every selected method that has that hyperparameter (lam for pace and fpa, ...)."""
    from pacebench.methods import METHODS

    return METHODS.get(method).Config.accepts(name)


def check_method_overrides(methods: list[str], overrides: dict[str, Any]) -> None:
    unused = [k for k in overrides if not any(_accepts(m, k) for m in methods)]
    if unused:
        raise UsageError(f"no selected method has hyperparameter {unused[0]!r}; see `pacebench methods`")


@cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, str]:
    import timm
    import torch

    return {"pacebench": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda or ""}


@dataclass
class Outcome:
    spec: RunSpec
    record: RunRecord
    status: str  # "done", "failed", "skipped-done", "skipped-running"


class Hooks:
    """What a front end (the CLI's progress display) wants to hear about; the defaults do nothing."""

    def run_started(self, spec: RunSpec, index: int, total: int) -> None: ...
    def epoch_done(self, spec: RunSpec, epoch: int, record: EpochRecord) -> None: ...
    def run_finished(self, outcome: Outcome) -> None: ...


def execute(specs: list[RunSpec], store: Store, env: Any, hooks: Hooks | None = None, origin: str = "direct"
            ) -> list[Outcome]:
    """Runs every spec that is not done yet. A failed run is recorded with its error and the others go on;
    Ctrl-C marks the run in flight as failed ('interrupted') and stops."""
    from pacebench.train import train_run

    hooks = hooks or Hooks()
    outcomes = []
    for i, spec in enumerate(specs):
        record = store.add_run(spec, origin)
        if record.status == "done":
            outcomes.append(Outcome(spec, record, "skipped-done"))
            hooks.run_finished(outcomes[-1])
            continue
        if not store.claim(spec.key, worker_name()):
            outcomes.append(Outcome(spec, record, "skipped-running"))
            hooks.run_finished(outcomes[-1])
            continue
        store.update_run(record.id, device=str(env.device), versions=versions(), git_commit=git_commit(),
                         started_at=utcnow())
        hooks.run_started(spec, i, len(specs))

        def on_epoch(epoch: int, rec: EpochRecord, run_id: int = record.id, spec: RunSpec = spec) -> None:
            store.add_epoch(run_id, rec)
            hooks.epoch_done(spec, epoch, rec)

        try:
            result = train_run(spec, env, on_epoch, partial(_store_setup, store, record.id))
        except KeyboardInterrupt:
            store.fail_run(record.id, "interrupted")
            raise
        except PacebenchError as exc:
            store.fail_run(record.id, one_line(exc))
            raise
        except Exception as exc:  # a bug or a numerical failure: keep it with the run, go on with the others
            store.fail_run(record.id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
            outcomes.append(Outcome(spec, store.get_run(record.id), "failed"))  # type: ignore[arg-type]
            hooks.run_finished(outcomes[-1])
            continue
        store.finish_run(record.id, result.metrics, result.weights)
        outcomes.append(Outcome(spec, store.get_run(record.id), "done"))  # type: ignore[arg-type]
        hooks.run_finished(outcomes[-1])
    return outcomes


COUNTS = ("trainable_params", "adapter_params", "head_params")


def _store_setup(store: Store, run_id: int, facts: dict[str, Any]) -> None:
    """Keeps what the trainer reports once the model is built: the parameter counts in their columns, the rest
    (σ per depth position, attention kernel, ...) in the run's `setup`."""
    store.update_run(run_id, **{k: v for k, v in facts.items() if k in COUNTS},
                     setup={k: v for k, v in facts.items() if k not in COUNTS})


def resolve_device(name: str) -> Any:
    """auto: CUDA when present, else CPU. Asking for CUDA where there is none is an error, never a CPU run."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"invalid --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} asked for, but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UsageError(f"unsupported --device {name!r}; use auto, cpu, cuda or cuda:N")
    return device
