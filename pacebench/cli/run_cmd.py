"""`pacebench run`, `ablate` and `tune`: plan runs, check the data, train what is not done yet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pacebench.choices import Phase
from pacebench.cli.common import (
    DataOption,
    DbOption,
    RegistryHelp,
    console,
    db_url,
    grid_values,
    int_list,
    key_values,
    split_list,
)
from pacebench.errors import UsageError

Datasets = Annotated[str | None, typer.Option("--datasets", "-d", help="Comma-separated datasets (default: all).")]
Seeds = Annotated[str, typer.Option("--seeds", help="Comma-separated training seeds.")]
Epochs = Annotated[int | None, typer.Option("--epochs", help="Override the suite's epochs.")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N (cuda without CUDA is an error).")]
Hp = Annotated[list[str] | None, typer.Option("--hp", help="Method hyperparameter NAME=VALUE, one of: "
                                              "{hyperparameters}; repeatable; applies to every selected method that "
                                              "has it (`pacebench methods`).")]
Train = Annotated[list[str] | None, typer.Option("--train", "-t", help="Training setting NAME=VALUE, one of: "
                                                 "{training_settings}; repeatable.")]
Backbone = Annotated[str | None, typer.Option("--backbone", help="Named backbone or timm architecture.")]
Weights = Annotated[Path | None, typer.Option("--weights", help="Weights file (.npz, .pth/.pt, .safetensors).")]
WeightsDir = Annotated[Path | None, typer.Option("--weights-dir", envvar="PACEBENCH_WEIGHTS", help="Folder holding "
                                                 "the named backbones' standard files (default ./weights).")]
Shots = Annotated[str | None, typer.Option("--shots", help="Few-shot: comma-separated shots (default: suite's).")]
SplitSeeds = Annotated[str | None, typer.Option("--split-seeds", help="Few-shot: comma-separated split seeds.")]
Workers = Annotated[int, typer.Option("--workers", help="Data-loader worker processes.")]
Threads = Annotated[int, typer.Option("--threads", envvar="PACEBENCH_THREADS", help="CPU runs: torch intra-op "
                                      "threads. 1 is the default: on the demo's tiny model two threads are 3.5x "
                                      "slower on a 2-core machine (OpenMP spin-waits); raise it for big models.")]
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop.")]


def _request(suite: str, datasets: str | None, methods: list[str], seeds: str, epochs: int | None,
             hp: list[str] | None, train: list[str] | None, backbone: str | None, weights: Path | None,
             shots: str | None, split_seeds: str | None, phase: Phase = Phase.final) -> Any:
    from pacebench.scheduler import PlanRequest, check_method_overrides

    train_values: dict[str, Any] = key_values(train, "--train")
    if epochs is not None:
        train_values["epochs"] = epochs
    method_values = key_values(hp, "--hp")
    check_method_overrides(methods, method_values)
    options = {k: v for k, v in {"shots": int_list(shots, "--shots"),
                                 "split_seed": int_list(split_seeds, "--split-seeds")}.items() if v}
    return PlanRequest(suite=suite, datasets=split_list(datasets), methods=methods,
                       seeds=int_list(seeds, "--seeds") or [0], train=train_values, method=method_values,
                       phase=phase, backbone=backbone, weights=weights, options=options or None)


def _environment(device: str, data_root: Path | None, weights: Path | None, workers: int, threads: int,
                 weights_dir: Path | None = None) -> Any:
    import torch

    from pacebench.scheduler import resolve_device
    from pacebench.settings import WEIGHTS_ENV
    from pacebench.settings import data_root as default_data_root
    from pacebench.train import Environment

    if weights_dir is not None:
        os.environ[WEIGHTS_ENV] = str(weights_dir)  # read by backbones.resolve, here and in the planning step
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return Environment(device=resolved, data_root=data_root or default_data_root(), weights=weights,
                       num_workers=workers)


def _preflight(specs: list[Any], data_root: Path) -> None:
    """The cheap half of `pacebench data check`: a missing data set fails now, not after hours."""
    from pacebench.data.check import require_data
    from pacebench.suites import load_suite

    seen = set()
    for spec in specs:
        key = (spec.suite, spec.dataset, spec.phase, tuple(sorted(spec.data_options.items())))
        if key not in seen:
            seen.add(key)
            suite = load_suite(spec.suite)
            require_data(suite, suite.dataset(spec.dataset), data_root, spec.phase, spec.data_options)


def execute_plan(specs: list[Any], db: str | None, env: Any, origin: str = "direct",
                 dry_run: bool = False) -> list[Any]:
    from pacebench.cli.progress import RichHooks
    from pacebench.scheduler import execute
    from pacebench.spec import PHASES
    from pacebench.store import Store

    db = db_url(db)
    store = Store(db)
    done = {r.key for r in store.runs(key=[s.key for s in specs], status="done")}
    console.print(f"[bold]{len(specs)} runs[/] ({len(done)} already done) on {env.device} -> {db}")
    phases = sorted({s.phase for s in specs})
    for phase in phases:
        note = " (settings given directly, not tuned)" if origin == "direct" and phase == "final" else ""
        console.print(f"  {PHASES[phase]}{note}")
    if dry_run:
        for s in specs:
            console.print(f"  {'done ' if s.key in done else 'todo '} {s.key}  {s.label()}")
        return []
    _preflight([s for s in specs if s.key not in done], env.data_root)
    with RichHooks(console) as hooks:
        outcomes = execute(specs, store, env, hooks, origin=origin)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed[/]; see `pacebench runs --status failed`")
        raise typer.Exit(1)
    return outcomes


def register(app: typer.Typer) -> None:
    @app.command(cls=RegistryHelp)
    def run(
        suite: Annotated[str, typer.Argument(help="Suite, one of: {suites} (`pacebench suites`).")],
        datasets: Datasets = None,
        methods: Annotated[str, typer.Option("--methods", "-m", help="Comma-separated methods: {methods}.")]
        = "baseline,pace",
        seeds: Seeds = "0",
        epochs: Epochs = None,
        device: Device = "auto",
        hp: Hp = None,
        train: Train = None,
        backbone: Backbone = None,
        weights: Weights = None,
        weights_dir: WeightsDir = None,
        shots: Shots = None,
        split_seeds: SplitSeeds = None,
        phase: Annotated[Phase, typer.Option("--phase", help="final (train+val -> test) or tune (train -> val).")]
        = Phase.final,
        db: DbOption = None,
        data_root: DataOption = None,
        workers: Workers = DEFAULT_WORKERS,
        threads: Threads = 1,
        dry_run: DryRun = False,
    ) -> None:
        """Train every (dataset, method, seed) of SUITE that is not done yet, keeping everything in the database.

        Without tuning, the given settings are used directly as phase 2 (train+val -> test); `pacebench tune`
        runs the paper's full two-phase protocol.
        """
        from pacebench.scheduler import plan

        method_names = split_list(methods) or []
        env = _environment(device, data_root, weights, workers, threads, weights_dir)
        specs = plan(_request(suite, datasets, method_names, seeds, epochs, hp, train, backbone, weights, shots,
                              split_seeds, phase))
        execute_plan(specs, db, env, dry_run=dry_run)
        if not dry_run:
            console.print(f"next: [bold]pacebench report --table {suite}[/] and [bold]pacebench plot grad-norm[/]")

    @app.command(cls=RegistryHelp)
    def ablate(
        dataset: Annotated[str, typer.Argument(help="Dataset of the suite, e.g. cifar100 (vtab) or digits (demo). "
                                               "Runs: {table6}.")],
        suite: Annotated[str, typer.Option("--suite", help="Suite the dataset belongs to.")] = "vtab",
        efficiency: Annotated[bool, typer.Option("--efficiency", help="Also Fig. 5's efficiency variants: "
                                                 "{efficiency}.")] = False,
        seeds: Seeds = "0",
        epochs: Epochs = None,
        device: Device = "auto",
        hp: Hp = None,
        train: Train = None,
        backbone: Backbone = None,
        weights: Weights = None,
        weights_dir: WeightsDir = None,
        db: DbOption = None,
        data_root: DataOption = None,
        workers: Workers = DEFAULT_WORKERS,
        threads: Threads = 1,
        dry_run: DryRun = False,
    ) -> None:
        """Run the baseline, PACE and every Table-6 ablation (the methods tagged table6) on one dataset (phase 2
        settings)."""
        from pacebench.methods import ABLATIONS, EFFICIENCY
        from pacebench.scheduler import plan

        methods = list(ABLATIONS) + (list(EFFICIENCY) if efficiency else [])
        env = _environment(device, data_root, weights, workers, threads, weights_dir)
        specs = plan(_request(suite, dataset, methods, seeds, epochs, hp, train, backbone, weights, None, None))
        execute_plan(specs, db, env, dry_run=dry_run)
        if not dry_run:
            console.print("next: [bold]pacebench report --table ablations[/]")

    @app.command(cls=RegistryHelp)
    def tune(
        suite: Annotated[str, typer.Argument(help="Suite to tune, one of: {suites}.")],
        datasets: Datasets = None,
        methods: Annotated[str, typer.Option("--methods", "-m", help="Comma-separated methods: {methods}.")] = "pace",
        grid: Annotated[list[str] | None, typer.Option("--grid", help="NAME=V1,V2,... over a method hyperparameter "
                                                       "or training setting; repeatable.")] = None,
        seeds: Annotated[str, typer.Option("--seeds", help="Phase-2 seeds (paper: three).")] = "0,1,2",
        tune_seeds: Annotated[str, typer.Option("--tune-seeds", help="Phase-1 seeds per grid point.")] = "0",
        epochs: Epochs = None,
        device: Device = "auto",
        train: Train = None,
        backbone: Backbone = None,
        weights: Weights = None,
        weights_dir: WeightsDir = None,
        shots: Shots = None,
        split_seeds: SplitSeeds = None,
        db: DbOption = None,
        data_root: DataOption = None,
        workers: Workers = DEFAULT_WORKERS,
        threads: Threads = 1,
        dry_run: DryRun = False,
    ) -> None:
        """The paper's protocol: phase 1 searches the grid on train -> val; the best setting per dataset and method
        (by validation accuracy) is trained on train+val and scored on test for each phase-2 seed."""
        from pacebench import protocol
        from pacebench.protocol import final_specs, select_best
        from pacebench.scheduler import plan
        from pacebench.store import Store

        method_names = split_list(methods) or []
        env = _environment(device, data_root, weights, workers, threads, weights_dir)
        specs = []
        for point in protocol.grid(grid_values(grid)):
            request = _request(suite, datasets, method_names, tune_seeds, epochs, None, train, backbone, weights,
                               shots, split_seeds, phase=Phase.tune)
            specs += plan(_with_point(request, point))
        specs = list({s.key: s for s in specs}.values())
        console.print("[bold]phase 1[/]: grid search on the validation split (test data is never read)")
        execute_plan(specs, db, env, origin="tune", dry_run=dry_run)
        if dry_run:
            return
        store = Store(db_url(db))
        runs = store.runs(key=[s.key for s in specs], status="done")
        best = select_best(runs)
        finals = final_specs(best, int_list(seeds, "--seeds") or [0])
        console.print(f"[bold]phase 2[/]: {len(best)} chosen setting(s) on train+val -> test")
        for chosen in best.values():
            console.print(f"  {chosen.dataset} {chosen.method}: {chosen.method_config} (val {chosen.val_acc:.2f} "
                          f"over {len(chosen.seeds)} seed(s), best of {chosen.candidates})")
        execute_plan(finals, db, env, origin="tune")


def _with_point(request: Any, point: dict[str, str]) -> Any:
    """Splits one grid point into method hyperparameters and training settings."""
    import dataclasses

    from pacebench.scheduler import _accepts
    from pacebench.spec import TRAIN_FIELDS

    method = {k: v for k, v in point.items() if any(_accepts(m, k) for m in request.methods)}
    train = {k: v for k, v in point.items() if k in TRAIN_FIELDS}
    unknown = set(point) - set(method) - set(train)
    if unknown:
        raise UsageError(f"--grid {sorted(unknown)[0]}: neither a hyperparameter of {', '.join(request.methods)} "
                         "nor a training setting")
    return dataclasses.replace(request, method={**request.method, **method}, train={**request.train, **train})
