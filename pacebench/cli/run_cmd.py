"""`pacebench run`, `ablate`, `tune`, `worker` and `status`: plan runs, queue them, train them with workers.

The commands only parse and print: each turns its options into a `plan.protocol.Plan` and hands it to
`execution.sweep.execute_plan`, the one path every training command takes. The options that `run`, `ablate`,
`tune` and `sweep` share are declared once (`shared`) and added to each command by `shared_options`. Planning and
execution import torch, so this module imports them inside the functions that need them: `pacebench --help` stays
fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pacebench.choices import Diagnostics, Mode, Phase
from pacebench.cli.common import (
    DataOption,
    DbOption,
    RegistryHelp,
    console,
    db_url,
    grid_values,
    int_list,
    key_values,
    shared_options,
    split_list,
)
from pacebench.errors import UsageError
from pacebench.execution.options import EXECUTORS, SlurmOptions, WorkerOptions, check_counts, check_database
from pacebench.plan.spec import DEFAULT_METHODS
from pacebench.settings import DIAGNOSTICS_ENV, THREADS_ENV, WEIGHTS_ENV, WorkerSettings
from pacebench.settings import data_root as default_data_root

if TYPE_CHECKING:
    from pacebench.execution.sweep import SweepResult
    from pacebench.plan.planner import PlanRequest
    from pacebench.plan.protocol import Plan
    from pacebench.plan.spec import RunSpec

SELECT, TRAIN, WORKERS, SLURM, STORAGE = "Selection", "Training settings", "Workers", "Slurm", "Storage"
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)

Datasets = Annotated[
    str | None,
    typer.Option("--datasets", "-d", help="Comma-separated datasets (default: all).", rich_help_panel=SELECT),
]
Methods = Annotated[
    str, typer.Option("--methods", "-m", help="Comma-separated methods: {methods}.", rich_help_panel=SELECT)
]
Seeds = Annotated[str, typer.Option("--seeds", help="Comma-separated training seeds.", rich_help_panel=SELECT)]
Shots = Annotated[
    str | None,
    typer.Option("--shots", help="Few-shot: comma-separated shots (default: suite's).", rich_help_panel=SELECT),
]
SplitSeeds = Annotated[
    str | None, typer.Option("--split-seeds", help="Few-shot: comma-separated split seeds.", rich_help_panel=SELECT)
]
Device = Annotated[
    str,
    typer.Option(
        "--device", help="auto | cpu | cuda | cuda:N (cuda without CUDA is an error).", rich_help_panel=WORKERS
    ),
]
Threads = Annotated[
    int,
    typer.Option(
        "--threads",
        envvar=THREADS_ENV,
        rich_help_panel=WORKERS,
        help="CPU runs: torch intra-op threads per worker. 1 is the default: on the "
        "demo's tiny model two threads are 3.5x slower on a 2-core machine (OpenMP "
        "spin-waits); raise it for big models.",
    ),
]
LoaderWorkers = Annotated[
    int, typer.Option("--workers", help="Data-loader worker processes per worker.", rich_help_panel=WORKERS)
]
WeightsFile = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="Weights file (.npz, .pth/.pt, .safetensors); a text suite: the model folder.",
        rich_help_panel=TRAIN,
    ),
]
WeightsDir = Annotated[
    Path | None,
    typer.Option(
        "--weights-dir",
        envvar=WEIGHTS_ENV,
        rich_help_panel=TRAIN,
        help="Folder holding the named backbones' standard files (default ./weights).",
    ),
]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait",
        rich_help_panel=WORKERS,
        help="Also wait for runs of the plan that "
        "live workers elsewhere hold (without it, such runs make the exit code 1).",
    ),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile/--no-compile",
        rich_help_panel=WORKERS,
        help="torch.compile every block (same values as eager; pays off on a GPU).",
    ),
]
Diagnose = Annotated[
    Diagnostics,
    typer.Option(
        "--diagnostics",
        envvar=DIAGNOSTICS_ENV,
        rich_help_panel=TRAIN,
        help="When to take Fig. 2's readings (task-loss gradient norm, "
        "FP-distance on train and held-out): at evaluation epochs, every epoch, "
        "or off. They never change what is trained.",
    ),
]
TuneSeeds = Annotated[str, typer.Option("--tune-seeds", help="Phase-1 seeds per grid point.", rich_help_panel=SELECT)]


def shared(
    adapters: Annotated[
        str | None,
        typer.Option(
            "--adapters",
            "-a",
            rich_help_panel=SELECT,
            help="Comma-separated "
            "adapter kinds, each trained with every method and seed: {adapters} "
            "(default: the suite's own; each kind's size and options come from "
            "the suite's per-adapter tables, else its defaults; "
            "`pacebench methods`).",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Override the suite's epochs.", rich_help_panel=TRAIN)
    ] = None,
    hp: Annotated[
        list[str] | None,
        typer.Option(
            "--hp",
            rich_help_panel=TRAIN,
            help="Method hyperparameter "
            "NAME=VALUE, one of: {hyperparameters}; repeatable; applies to every "
            "selected method that has it (`pacebench methods`).",
        ),
    ] = None,
    train: Annotated[
        list[str] | None,
        typer.Option(
            "--train",
            "-t",
            rich_help_panel=TRAIN,
            help="Training setting NAME=VALUE, one of: {training_settings}; repeatable.",
        ),
    ] = None,
    backbone: Annotated[
        str | None, typer.Option("--backbone", help="Named backbone or timm architecture.", rich_help_panel=TRAIN)
    ] = None,
    weights: WeightsFile = None,
    weights_dir: WeightsDir = None,
    device: Device = "auto",
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            rich_help_panel=WORKERS,
            help="CUDA: one worker process per GPU: all (default), a list 0,2,3, or a count N.",
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", "-j", rich_help_panel=WORKERS, help="CPU: worker processes, each with its own --threads."
        ),
    ] = 1,
    threads: Threads = 1,
    workers: LoaderWorkers = DEFAULT_WORKERS,
    wait: Wait = False,
    compile_: Compile = False,
    diagnostics: Diagnose = Diagnostics.eval,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            "--checkpoint-every",
            rich_help_panel=WORKERS,
            help="Checkpoint every N epochs (and on SIGTERM); default 10 or $PACEBENCH_CHECKPOINT_EVERY.",
        ),
    ] = None,
    attempts: Annotated[
        int | None,
        typer.Option(
            "--attempts",
            rich_help_panel=WORKERS,
            help="Tries per run before it stays failed; default 3 or $PACEBENCH_MAX_ATTEMPTS.",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            rich_help_panel=SLURM,
            help="local (processes on this machine), slurm (a job array through submitit), or submitit-local.",
        ),
    ] = "local",
    partition: Annotated[str | None, typer.Option("--partition", rich_help_panel=SLURM)] = None,
    array: Annotated[int, typer.Option("--array", rich_help_panel=SLURM, help="Tasks in the job array (workers).")] = 1,
    gpus_per_task: Annotated[int, typer.Option("--gpus-per-task", rich_help_panel=SLURM)] = SlurmOptions.gpus_per_task,
    cpus_per_task: Annotated[int, typer.Option("--cpus-per-task", rich_help_panel=SLURM)] = SlurmOptions.cpus_per_task,
    time_limit: Annotated[
        int, typer.Option("--time", rich_help_panel=SLURM, help="Time limit per task, minutes.")
    ] = SlurmOptions.time_min,
    slurm_opt: Annotated[
        list[str] | None,
        typer.Option(
            "--slurm-opt",
            rich_help_panel=SLURM,
            help="Any other sbatch option KEY=VALUE (e.g. account=abc, qos=low); repeatable.",
        ),
    ] = None,
    slurm_folder: Annotated[
        Path,
        typer.Option(
            "--slurm-folder", rich_help_panel=SLURM, help="Job scripts and logs (on a file system every node sees)."
        ),
    ] = SlurmOptions.folder,
    force_sqlite: Annotated[
        bool,
        typer.Option(
            "--force-sqlite",
            rich_help_panel=SLURM,
            help="Allow SQLite with Slurm (only when every task runs on this machine).",
        ),
    ] = False,
    db: DbOption = None,
    data_root: DataOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop.")] = False,
    enqueue_only: Annotated[
        bool,
        typer.Option(
            "--enqueue-only",
            rich_help_panel=WORKERS,
            help="Write the plan "
            "into the database and exit: `pacebench worker` processes started "
            "anywhere (a Kubernetes job, an ssh loop) train it.",
        ),
    ] = False,
) -> None:
    """The options `run`, `ablate` and `tune` share (declared once; `shared_options` adds them to each)."""


def worker_options(o: Any) -> WorkerOptions:
    """The workers' options; a Slurm sweep on SQLite is refused here, before anything is planned."""
    from pacebench.execution import devices  # lazy: torch

    cluster = None
    if o.executor != "local":
        kind = o.executor.removeprefix("submitit-")
        if kind not in EXECUTORS:
            raise UsageError(f"--executor must be local, slurm or submitit-local, got {o.executor!r}")
        cluster = SlurmOptions(
            executor=kind,
            tasks=o.array,
            partition=o.partition,
            gpus_per_task=o.gpus_per_task,
            cpus_per_task=o.cpus_per_task,
            time_min=o.time_limit,
            extra=key_values(o.slurm_opt, "--slurm-opt"),
            folder=o.slurm_folder,
            force_sqlite=o.force_sqlite,
        )
        check_database(db_url(o.db), cluster)
    if cluster is None and not (o.dry_run or o.enqueue_only):  # workers start here: their devices must exist
        devices.worker_devices(o.device, o.gpus, o.jobs, o.threads)  # refused before anything is planned
    else:  # the plan is for workers elsewhere: the values must still make sense
        devices.named_device(o.device)
        check_counts(o.jobs, o.threads)
    settings = WorkerSettings.from_env(checkpoint_every=o.checkpoint_every, max_attempts=o.attempts)
    return WorkerOptions(
        device=o.device,
        gpus=o.gpus,
        jobs=o.jobs,
        threads=o.threads,
        loader_workers=o.workers,
        data_root=o.data_root or default_data_root(),
        weights=o.weights,
        weights_dir=o.weights_dir,
        settings=settings,
        cluster=cluster,
        compile=o.compile_,
        diagnostics=o.diagnostics,
    )


def _device_type(o: Any) -> str:
    from pacebench.execution.devices import device_type  # lazy: torch

    return device_type(o.device, o.gpus_per_task if o.executor != "local" else 0)


def request(
    o: Any,
    suite: str,
    datasets: str | None,
    methods: list[str],
    seeds: str,
    shots: str | None = None,
    split_seeds: str | None = None,
    phase: Phase = Phase.final,
    one_adapter: str = "",
) -> PlanRequest:
    """The plan request of a command's options; `one_adapter` names a command that compares methods within one
    adapter kind (its two-phase choice or its table is per method), which then refuses several --adapters."""
    from pacebench.plan import planner  # lazy: the registries import torch

    kinds = split_list(o.adapters)
    if one_adapter and kinds and len(kinds) > 1:
        raise UsageError(
            f"{one_adapter} compares methods within one adapter kind; give one --adapters kind (or "
            "-t adapter=KIND) and run the others one at a time"
        )
    train_values: dict[str, Any] = key_values(o.train, "--train")
    if o.epochs is not None:
        train_values["epochs"] = o.epochs
    method_values = key_values(o.hp, "--hp")
    planner.check_method_overrides(methods, method_values)
    options = {
        k: v
        for k, v in {"shots": int_list(shots, "--shots"), "split_seed": int_list(split_seeds, "--split-seeds")}.items()
        if v
    }
    return planner.PlanRequest(
        suite=suite,
        datasets=split_list(datasets),
        methods=methods,
        adapters=kinds,
        seeds=int_list(seeds, "--seeds") or [0],
        train=train_values,
        method=method_values,
        phase=phase,
        backbone=o.backbone,
        weights=o.weights,
        options=options or None,
        device=_device_type(o),
    )


def planner(o: Any) -> Callable[[PlanRequest], list[RunSpec]]:
    """`plan`, hashing named backbones' files in --weights-dir."""
    from pacebench.plan.planner import plan, weights_sha256  # lazy: the registries import torch

    return lambda req: plan(req, lambda backbone, weights: weights_sha256(backbone, weights, o.weights_dir))


def execute(o: Any, opts: WorkerOptions, todo: Plan) -> SweepResult | None:
    """Trains the plan (phase 1 first when it searches anything) and shows it; None on a dry run. A phase that ends
    with runs failed, stopped or held elsewhere ends the command with its one line and exit code 1."""
    from pacebench.cli.progress import ConsoleReporter  # lazy: SQLAlchemy, torch
    from pacebench.execution.sweep import execute_plan
    from pacebench.store import Store

    where = f"{opts.cluster.tasks} {opts.cluster.executor} task(s)" if opts.cluster else opts.device
    if o.dry_run and o.enqueue_only:
        raise UsageError("--dry-run and --enqueue-only exclude each other: the one writes nothing, the other the plan")
    mode = Mode.dry_run if o.dry_run else Mode.enqueue if o.enqueue_only else Mode.train
    return execute_plan(
        todo,
        Store(db_url(o.db)),
        opts,
        ConsoleReporter(console, where, o.dry_run),
        _device_type(o),
        wait=o.wait,
        mode=mode,
    )


@shared_options(shared)
def run(
    o: Any,
    suite: Annotated[str, typer.Argument(help="Suite, one of: {suites} (`pacebench suites`).")],
    datasets: Datasets = None,
    methods: Methods = ",".join(DEFAULT_METHODS),
    seeds: Seeds = "0",
    shots: Shots = None,
    split_seeds: SplitSeeds = None,
    phase: Annotated[
        Phase, typer.Option("--phase", help="final (train+val -> test) or tune (train -> val).", rich_help_panel=SELECT)
    ] = Phase.final,
) -> None:
    """Train every (dataset, method, seed) of SUITE that is not done yet, keeping everything in the database.

    The plan is queued in the database first; one worker per GPU (--gpus) or per --jobs on a CPU, or a Slurm job
    array (--executor slurm), trains it. Without tuning the given settings are used directly as phase 2
    (train+val -> test); `pacebench tune` runs the paper's full two-phase protocol.
    """
    from pacebench.plan.sweeps import direct_plan  # lazy: the registries import torch

    opts = worker_options(o)
    todo = direct_plan(
        request(o, suite, datasets, split_list(methods) or [], seeds, shots, split_seeds, phase), planner(o)
    )
    if execute(o, opts, todo) is not None:
        console.print(f"next: [bold]pacebench report --table {suite}[/] and [bold]pacebench plot grad-norm[/]")


@shared_options(shared)
def ablate(
    o: Any,
    dataset: Annotated[
        str, typer.Argument(help="Dataset of the suite, e.g. cifar100 (vtab) or digits (demo). Runs: {table6}.")
    ],
    suite: Annotated[
        str, typer.Option("--suite", help="Suite the dataset belongs to.", rich_help_panel=SELECT)
    ] = "vtab",
    efficiency: Annotated[
        bool,
        typer.Option("--efficiency", rich_help_panel=SELECT, help="Also Fig. 5's efficiency variants: {efficiency}."),
    ] = False,
    no_tune: Annotated[
        bool,
        typer.Option(
            "--no-tune",
            rich_help_panel=SELECT,
            help="Train every method at its defaults (phase 2 only) instead of grid-searching it first.",
        ),
    ] = False,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            rich_help_panel=SELECT,
            help="NAME=V1,V2,... replaces "
            "that hyperparameter's search values for every method that "
            "searches it; repeatable.",
        ),
    ] = None,
    seeds: Seeds = "0",
    tune_seeds: TuneSeeds = "0",
) -> None:
    """Table 6 as the paper made it, for the methods tagged table6: each method's declared search grid on train ->
    val (phase 1), then each winner on train+val -> test (phase 2). `--no-tune`: defaults, phase 2 only."""
    from pacebench.plan import sweeps  # lazy: the registries import torch

    methods = sweeps.ablation_methods(efficiency)
    opts = worker_options(o)
    if no_tune:
        todo = sweeps.direct_plan(request(o, suite, dataset, methods, seeds, one_adapter="ablate"), planner(o))
    else:
        grids = sweeps.override(sweeps.table6_grids(methods), grid_values(grid))
        todo = sweeps.two_phase_plan(
            request(o, suite, dataset, methods, tune_seeds, one_adapter="ablate"),
            grids,
            int_list(seeds, "--seeds") or [0],
            planner(o),
        )
    if execute(o, opts, todo) is not None:
        console.print(f"next: [bold]pacebench report --table 6 --suite {suite}[/]")


@shared_options(shared)
def tune(
    o: Any,
    suite: Annotated[str, typer.Argument(help="Suite to tune, one of: {suites}.")],
    datasets: Datasets = None,
    methods: Methods = "pace",
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            rich_help_panel=SELECT,
            help="NAME=V1,V2,... over a method hyperparameter or training setting; repeatable.",
        ),
    ] = None,
    seeds: Annotated[
        str, typer.Option("--seeds", help="Phase-2 seeds (paper: three).", rich_help_panel=SELECT)
    ] = "0,1,2",
    tune_seeds: TuneSeeds = "0",
    shots: Shots = None,
    split_seeds: SplitSeeds = None,
) -> None:
    """The paper's protocol: phase 1 searches the grid on train -> val; the best setting per dataset and method
    (by validation accuracy) is trained on train+val and scored on test for each phase-2 seed. A grid point that
    fails all its attempts is left out of the choice and named."""
    from pacebench.plan.sweeps import search_plan  # lazy: the registries import torch

    opts = worker_options(o)
    base = request(
        o,
        suite,
        datasets,
        split_list(methods) or [],
        tune_seeds,
        shots,
        split_seeds,
        phase=Phase.tune,
        one_adapter="tune",
    )
    execute(o, opts, search_plan(base, grid_values(grid), int_list(seeds, "--seeds") or [0], planner(o)))


def read_keys(path: Path) -> list[str]:
    """The run keys of a --keys-file: a JSON list of strings."""
    try:
        keys = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read --keys-file {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise UsageError(
            f'--keys-file {path} is not JSON; it holds a list of run keys, e.g. ["cf42c2f0fdd97ad7"]'
        ) from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UsageError(f"--keys-file {path} must hold a JSON list of run keys (strings)")
    return keys


def worker(
    db: DbOption = None,
    device: Device = "auto",
    threads: Threads = 1,
    workers: LoaderWorkers = DEFAULT_WORKERS,
    data_root: DataOption = None,
    weights: WeightsFile = None,
    weights_dir: WeightsDir = None,
    compile_: Compile = False,
    keys_file: Annotated[
        Path | None,
        typer.Option("--keys-file", help="JSON list of run keys: work only on these (default: every queued run)."),
    ] = None,
    wait: Wait = False,
    diagnostics: Diagnose = Diagnostics.eval,
) -> None:
    """Drain the queue: claim queued runs from the database and train them one at a time until none is left.

    What a cluster job runs; start as many as there are devices, on any machine that reaches the database. It
    trains only runs planned for its kind of device, and exits 1 when a run it trained failed or it was stopped.
    """
    from pacebench.execution.worker import Worker, described, ended_badly, environment  # lazy: torch
    from pacebench.store import Store

    keys = read_keys(keys_file) if keys_file else None
    opts = WorkerOptions(
        device=device,
        threads=threads,
        loader_workers=workers,
        data_root=data_root or default_data_root(),
        weights=weights,
        weights_dir=weights_dir,
        compile=compile_,
        diagnostics=diagnostics,
    )
    w = Worker(Store(db_url(db)), environment(opts, device), opts.settings, keys)
    outcomes = w.work(wait)
    console.print(f"worker {w.who.name} on {device}: {described(outcomes)}")
    if ended_badly(outcomes):
        raise typer.Exit(1)


def status(
    suite: Annotated[str | None, typer.Option("--suite", help="Restrict to one suite.")] = None,
    phase: Annotated[Phase | None, typer.Option("--phase", help="tune | final")] = None,
    db: DbOption = None,
) -> None:
    """Queued / running / done / failed counts, the workers with their heartbeats, and an ETA."""
    from pacebench.cli.progress import status_view  # lazy: SQLAlchemy and Alembic
    from pacebench.store import Store

    console.print(status_view(Store(db_url(db), readonly=True), suite, phase))


def register(app: typer.Typer) -> None:
    for command in (run, ablate, tune):
        app.command(cls=RegistryHelp)(command)
    for command in (worker, status):
        app.command()(command)
