"""Planning (pure: suite x datasets x methods x seeds -> RunSpecs) and executing a plan through the work queue.

Executing writes the plan into the database as queued runs, each row holding its full spec, then starts workers
(execution/worker.py): one in this process, one process per GPU or per `--jobs`, or a Slurm job array
(execution/cluster.py). Workers claim runs exactly once, so any number of them, on any machine that reaches the
database, can work through one plan; the database, not the process that planned, is the record of what ran.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pacebench import __version__
from pacebench.choices import Phase
from pacebench.errors import UsageError
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.plan.suites import load_suite
from pacebench.settings import WorkerSettings, repo_root, results_dir
from pacebench.store import RunRecord, Store


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
    device: str = "cpu"  # the device type the runs train on: precision "auto" resolves to bf16 on "cuda"


@cache
def weights_sha256(backbone: str, weights: Path | None, weights_dir: Path | None = None) -> str:
    """The SHA-256 of the backbone's weights file. Pure: a demo backbone that is not pre-trained yet hashes to ""
    (planning never trains anything); `materialise` pre-trains it and fills the hash in before runs execute."""
    from pacebench.core import backbones

    if _pretrainable(backbone, weights) and not _demo_path(backbone).is_file():
        return ""
    resolved = backbones.resolve(backbone, weights, weights_dir)
    return backbones.sha256(resolved.weights) if resolved.weights else ""


def _pretrainable(backbone: str, weights: Path | None) -> bool:
    from pacebench.core import backbones

    return weights is None and backbone in backbones.BACKBONES and backbones.BACKBONES.get(backbone).in_results


def _demo_path(backbone: str) -> Path:
    from pacebench.core import backbones

    return backbones.demo_checkpoint_dir() / backbones.BACKBONES.get(backbone).filename


def materialise(specs: list[RunSpec], device_type: str) -> list[RunSpec]:
    """What must be settled before run keys are final: precision 'auto' becomes bf16 on CUDA and fp32 elsewhere,
    and a demo backbone planned before it existed is pre-trained now and its hash filled in."""
    from pacebench.training.pretrain import pretrain_demo_backbone

    out = []
    for spec in specs:
        spec = spec.with_(train=spec.train.for_device(device_type))
        if not spec.weights_sha256 and _pretrainable(spec.backbone, None):
            pretrain_demo_backbone()
            weights_sha256.cache_clear()
            spec = spec.with_(weights_sha256=weights_sha256(spec.backbone, None))
        out.append(spec)
    return out


def plan(req: PlanRequest, sha: Callable[[str, Path | None], str] = weights_sha256) -> list[RunSpec]:
    """All runs the request names, in a stable order. Unknown names fail here, before anything trains."""
    from pacebench.core.adapters import parse_kind
    from pacebench.core.methods import METHODS
    from pacebench.text.tasks import TASKS

    suite = load_suite(req.suite)
    for m in req.methods:
        METHODS.get(m)
    backbone = req.backbone or suite.backbone
    weights_hash = sha(backbone, req.weights)
    specs = []
    for ds in suite.select(req.datasets):
        train = suite.resolve_train(ds, req.train).for_device(req.device)
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
    from pacebench.core.methods import METHODS

    return METHODS.get(method).Config.accepts(name)


def check_method_overrides(methods: list[str], overrides: dict[str, Any]) -> None:
    unused = [k for k in overrides if not any(_accepts(m, k) for m in methods)]
    if unused:
        raise UsageError(f"no selected method has hyperparameter {unused[0]!r}; see `pacebench methods`")


@cache
@cache
def git_commit() -> str | None:
    """The checkout's commit, asked of git once per process (the code a worker runs cannot change under it)."""
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


COUNTS = ("trainable_params", "adapter_params", "head_params")


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


def spec_of(run: RunRecord) -> RunSpec:
    """The spec a queued run was planned from, rebuilt from its row (the row holds every field of the spec)."""
    spec = RunSpec(suite=run.suite, dataset=run.dataset, method=run.method, seed=run.seed,
                   train=TrainConfig(**run.hparams), backbone=run.backbone, weights_sha256=run.weights_sha256,
                   method_config=dict(run.method_config), data_options=dict(run.data_options),
                   phase=run.phase)  # type: ignore[arg-type]
    if spec.key != run.key:
        raise UsageError(f"run {run.id}'s stored spec no longer hashes to its key {run.key} (made by another "
                         "pacebench version?); plan it again with this version")
    return spec


def preflight(specs: list[RunSpec], data_root: Path) -> None:
    """The cheap half of `pacebench data check`: a missing data set fails now, not after hours."""
    from pacebench.data.check import require_data

    seen = set()
    for spec in specs:
        key = (spec.suite, spec.dataset, spec.phase, tuple(sorted(spec.data_options.items())))
        if key not in seen:
            seen.add(key)
            suite = load_suite(spec.suite)
            require_data(suite, suite.dataset(spec.dataset), data_root, spec.phase, spec.data_options)


@dataclass(frozen=True)
class WorkerOptions:
    """Where and how the workers of a sweep run; nothing here changes a run's key."""

    device: str = "auto"
    gpus: str | None = None  # all | 0,2,3 | N (first N); CUDA only
    jobs: int = 1  # CPU only: worker processes, each with `threads` intra-op threads
    threads: int = 1
    loader_workers: int = 4
    data_root: Path = Path("data")
    weights: Path | None = None
    weights_dir: Path | None = None
    settings: WorkerSettings = field(default_factory=WorkerSettings.from_env)
    cluster: Any = None  # a cluster.SlurmOptions: run the workers as a Slurm job array instead
    compile: bool = False  # torch.compile every block (same values as eager)
    diagnostics: str = "eval"  # when runs take Fig. 2's readings (train.Environment.diagnostics)

    def worker_args(self, device: str) -> list[str]:
        """The `pacebench worker` options that reproduce these options for one device."""
        args = ["--device", device, "--threads", str(self.threads), "--workers", str(self.loader_workers),
                "--data-root", str(self.data_root)]
        args += ["--weights", str(self.weights)] if self.weights else []
        args += ["--weights-dir", str(self.weights_dir)] if self.weights_dir else []
        args += ["--compile"] if self.compile else []
        return [*args, "--diagnostics", str(self.diagnostics)]


def parse_gpus(gpus: str | None, count: int) -> list[int]:
    """'all' (or None) -> every visible GPU; '0,2,3' -> those indices; 'N' -> the first N."""
    if count == 0:
        raise UsageError("--gpus asked for, but CUDA is not available here; use --device cpu --jobs N")
    if gpus in (None, "", "all"):
        return list(range(count))
    try:
        values = [int(v) for v in gpus.split(",") if v.strip()]  # type: ignore[union-attr]
    except ValueError:
        raise UsageError(f"--gpus takes all, a list such as 0,2,3, or a count N; got {gpus!r}") from None
    chosen = values if "," in gpus else list(range(values[0]))  # type: ignore[operator]
    bad = [i for i in chosen if not 0 <= i < count]
    if not chosen or bad:
        raise UsageError(f"--gpus {gpus}: this machine has {count} CUDA device(s) (0..{count - 1})")
    return chosen


def worker_devices(opts: WorkerOptions) -> list[str]:
    """One device name per worker: one per chosen GPU, or `jobs` times the CPU (or one explicit device)."""
    import torch

    if opts.jobs < 1 or opts.threads < 1:
        raise UsageError(f"--jobs and --threads must be >= 1, got {opts.jobs} and {opts.threads}")
    device = resolve_device(opts.device)
    if device.type == "cpu":
        if opts.gpus is not None:
            raise UsageError("--gpus needs CUDA; on a CPU use --jobs N")
        return ["cpu"] * opts.jobs
    if device.index is not None:
        return [str(device)]
    return [f"cuda:{i}" for i in parse_gpus(opts.gpus, torch.cuda.device_count())]


def environment(opts: WorkerOptions, device: str) -> Any:
    """The training environment of one worker in this process (sets torch's CPU threads)."""
    import torch

    from pacebench.settings import results_dir
    from pacebench.training.loop import Environment

    resolved = resolve_device(device)
    if resolved.type == "cpu":
        torch.set_num_threads(opts.threads)
    return Environment(device=resolved, data_root=opts.data_root, weights=opts.weights,
                       num_workers=opts.loader_workers, weights_dir=opts.weights_dir, compile=opts.compile,
                       cache_dir=results_dir() / "cache", diagnostics=opts.diagnostics)


@dataclass(frozen=True)
class SweepResult:
    runs: list[RunRecord]  # every run of the plan, as it stands at the end
    done_before: set[str]  # keys that were done before this sweep started
    held: list[RunRecord]  # runs that live workers elsewhere held when the sweep started

    def status(self, status: str) -> list[RunRecord]:
        return [r for r in self.runs if r.status == status]


def execute(specs: list[RunSpec], store: Store, opts: WorkerOptions, origin: str = "direct", wait: bool = False,
            display: Callable[[list[str]], AbstractContextManager[Any]] | None = None) -> SweepResult:
    """Queues `specs` and runs workers until every run of the plan is done, failed, or held by a live worker
    elsewhere (with `wait`, until those finish too). `display(keys)` is entered while the workers run."""
    keys = list(dict.fromkeys(s.key for s in specs))
    done_before = {r.key for r in store.runs(key=keys, status="done")}
    preflight([s for s in specs if s.key not in done_before], opts.data_root)  # missing data: nothing is queued
    store.enqueue(specs, origin)
    held = store.held_by_live_workers(keys)
    devices = worker_devices(opts) if opts.cluster is None else []
    with (display or (lambda _keys: nullcontext()))(keys):
        if opts.cluster is not None:
            from pacebench.execution.cluster import submit

            submit(store.url, keys, opts, wait)
        elif len(devices) == 1:
            from pacebench.execution.worker import Worker

            Worker(store, environment(opts, devices[0]), opts.settings, keys).work(wait)
        else:
            run_processes(store.url, keys, opts, devices, wait)
    return SweepResult(store.runs(key=keys), done_before, held)


def run_processes(db: str, keys: list[str], opts: WorkerOptions, devices: list[str], wait: bool) -> None:
    """One `pacebench worker` process per device, each in its own session (a terminal's Ctrl-C reaches only this
    process, which forwards one SIGTERM to each worker so that they checkpoint and release their runs)."""
    from pacebench.execution.worker import stop_on_signals

    logs = results_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=logs, delete=False) as f:
        json.dump(keys, f)
    procs = []
    try:
        for i, device in enumerate(devices):
            command = [sys.executable, "-m", "pacebench", "worker", "--db", db, "--keys-file", f.name,
                       *opts.worker_args(device), *(["--wait"] if wait else [])]
            log = open(logs / f"worker-{i}.log", "w")  # noqa: SIM115 (closed with the process below)
            procs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                           env=os.environ.copy()), log))
        stop = threading.Event()
        with stop_on_signals(stop):
            while any(p.poll() is None for p, _ in procs):
                if stop.wait(0.5):
                    for p, _ in procs:
                        if p.poll() is None:
                            p.send_signal(signal.SIGTERM)
                    for p, _ in procs:
                        p.wait()
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
        os.unlink(f.name)
