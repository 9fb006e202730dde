"""`pacebench sweep NAME`: plan exactly the runs one figure (or Table 6) needs, train those not done, draw it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pacebench.choices import Diagnostics, Phase
from pacebench.cli.common import DataOption, DbOption, console, db_url, grid_values, int_list
from pacebench.cli.run_cmd import (
    DEFAULT_WORKERS,
    Backbone,
    Device,
    Diagnose,
    DryRun,
    Epochs,
    Seeds,
    Shots,
    SplitSeeds,
    Threads,
    Train,
    Weights,
    WeightsDir,
    Workers,
    _environment,
    _request,
    execute_plan,
    two_phase,
)

NAMES = "figure4, figure5, figure6, table6"


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        name: Annotated[str, typer.Argument(help=f"What to produce: {NAMES}.")],
        suite: Annotated[str | None, typer.Option("--suite", help="Suite (default: the sweep's own, else demo).")]
        = None,
        datasets: Annotated[str | None, typer.Option("--datasets", "-d", help="Comma-separated datasets (default: "
                                                     "the sweep's own, else all of the suite).")] = None,
        grid: Annotated[list[str] | None, typer.Option("--grid", help="NAME=V1,V2,... replaces the sweep's values "
                                                       "of that hyperparameter; repeatable.")] = None,
        seeds: Seeds = "0",
        tune_seeds: Annotated[str, typer.Option("--tune-seeds", help="table6: phase-1 seeds per grid point.")] = "0",
        epochs: Epochs = None,
        train: Train = None,
        shots: Shots = None,
        split_seeds: SplitSeeds = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Figure file (.png, .pdf, .svg) or folder "
                                                 "(default results/).")] = None,
        device: Device = "auto",
        backbone: Backbone = None,
        weights: Weights = None,
        weights_dir: WeightsDir = None,
        db: DbOption = None,
        data_root: DataOption = None,
        workers: Workers = DEFAULT_WORKERS,
        threads: Threads = 1,
        diagnostics: Diagnose = Diagnostics.eval,
        dry_run: DryRun = False,
    ) -> None:
        """Plan exactly the runs a figure or Table 6 needs (methods x grid x seeds), skip those done, then draw it.

        figure4: pace and fpa over λ 1e-3..5e4 (tune phase); figure5: lazy interval N and networks M; figure6: σ x λ
        on few-shot Oxford Pets for 1/2/4/8 shots (tune phase); table6: the tuned ablations, as `pacebench ablate`.
        """
        from pacebench.errors import UsageError
        from pacebench.report import plot, render_table
        from pacebench.settings import results_dir
        from pacebench.store import Store
        from pacebench.sweeps import SWEEPS, override, plan_grids, table6_grids

        env = _environment(device, data_root, weights, workers, threads, weights_dir, diagnostics)
        if name == "table6":
            from pacebench.methods import ABLATIONS

            s = suite or "demo"
            base = _request(s, datasets, list(ABLATIONS), tune_seeds, epochs, None, train, backbone, weights, shots,
                            split_seeds)
            two_phase(base, override(table6_grids(list(ABLATIONS)), grid_values(grid)),
                      int_list(seeds, "--seeds") or [0], db, env, dry_run)
            if not dry_run:
                console.print(render_table("6", Store(db_url(db)), suite=s))
            return
        if name not in SWEEPS:
            raise UsageError(f"unknown sweep {name!r}; choose one of: {NAMES}")
        spec = SWEEPS.get(name)
        s = suite or spec.suite or "demo"
        default_shots = ",".join(map(str, spec.options.get("shots", []))) or None if s == spec.suite else None
        default_splits = ",".join(map(str, spec.options.get("split_seed", []))) or None if s == spec.suite else None
        base = _request(s, datasets or (",".join(spec.datasets) if spec.datasets and s == spec.suite else None),
                        list(spec.grids), seeds, epochs, None, train, backbone, weights, shots or default_shots,
                        split_seeds or default_splits, phase=Phase(spec.phase))
        specs = plan_grids(base, override(spec.grids, grid_values(grid)))
        console.print(f"[bold]{name}[/]: {spec.description}")
        execute_plan(specs, db, env, origin="sweep", dry_run=dry_run)
        if dry_run:
            return
        store = Store(db_url(db))
        for suite_name, dataset in dict.fromkeys((x.suite, x.dataset) for x in specs):
            target = out or results_dir()
            if target.suffix == "" and len({x.dataset for x in specs}) > 1:
                target = target / f"{name}-{dataset}.png"
            elif target.suffix == "":
                target = target / f"{name}.png"
            path = plot(spec.draws, store, target, suite=suite_name, dataset=dataset, phase=spec.phase)
            console.print(f"wrote {path}")
