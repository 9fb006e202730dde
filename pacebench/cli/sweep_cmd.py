"""`pacebench sweep NAME`: plan exactly the runs one figure (or Table 6) needs, train those not done, draw it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pacebench.choices import Phase
from pacebench.cli.common import RegistryHelp, console, db_url, grid_values, int_list, shared_options
from pacebench.cli.run_cmd import (
    SELECT,
    Datasets,
    Seeds,
    Shots,
    SplitSeeds,
    execute,
    planner,
    request,
    shared,
    worker_options,
)
from pacebench.settings import results_dir


@shared_options(shared)
def sweep(
    o: Any,
    name: Annotated[str, typer.Argument(help="What to produce: {sweeps}.")],
    suite: Annotated[
        str | None, typer.Option("--suite", help="Suite (default: the sweep's own, else demo).", rich_help_panel=SELECT)
    ] = None,
    datasets: Datasets = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            rich_help_panel=SELECT,
            help="NAME=V1,V2,... replaces the sweep's values of that hyperparameter; repeatable.",
        ),
    ] = None,
    seeds: Seeds = "0",
    tune_seeds: Annotated[
        str, typer.Option("--tune-seeds", help="table6: phase-1 seeds per grid point.", rich_help_panel=SELECT)
    ] = "0",
    shots: Shots = None,
    split_seeds: SplitSeeds = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Figure file (.png, .pdf, .svg) or folder (default results/).")
    ] = None,
) -> None:
    """Plan exactly the runs a figure or Table 6 needs (methods x grid x seeds), skip those done, then draw it.

    figure4: pace and fpa over λ 1e-3..5e4 (tune phase); figure5: lazy interval N and networks M; figure6: σ x λ
    on few-shot Oxford Pets for 1/2/4/8 shots (tune phase); table6: the tuned ablations, as `pacebench ablate`.
    """
    from pacebench.plan.protocol import Plan  # lazy: the registries import torch
    from pacebench.plan.sweeps import SWEEPS, override, plan_grids, two_phase_plan  # lazy: torch
    from pacebench.report.figures import plot  # lazy: pandas, matplotlib
    from pacebench.report.render import render_table  # lazy: pandas
    from pacebench.store import Store  # lazy: sqlalchemy

    spec = SWEEPS.get(name)
    s = suite or spec.suite or "demo"
    own = s == spec.suite  # the sweep's own data set: its datasets and shots are the defaults
    grids = override(spec.method_grids(), grid_values(grid))
    opts = worker_options(o)
    if spec.tuned:
        base = request(o, s, datasets, list(grids), tune_seeds, shots, split_seeds, one_adapter="sweep")
        todo = two_phase_plan(base, grids, int_list(seeds, "--seeds") or [0], planner(o))
    else:
        base = request(
            o,
            s,
            datasets or (",".join(spec.datasets) if own and spec.datasets else None),
            list(grids),
            seeds,
            shots or (",".join(map(str, spec.options.get("shots", []))) if own else None) or None,
            split_seeds or (",".join(map(str, spec.options.get("split_seed", []))) if own else None) or None,
            phase=Phase(spec.phase),
            one_adapter="sweep",
        )
        todo = Plan(runs=plan_grids(base, grids, planner(o)), origin="sweep")
    console.print(f"[bold]{name}[/]: {spec.description}")
    if execute(o, opts, todo) is None:
        return
    store = Store(db_url(o.db), readonly=True)
    if spec.draws.startswith("table:"):
        console.print(render_table(spec.draws.removeprefix("table:"), store, suite=s))
        return
    several = len({x.dataset for x in todo.runs}) > 1
    for suite_name, dataset in dict.fromkeys((x.suite, x.dataset) for x in todo.runs):
        target = out or results_dir()
        if not target.suffix:
            target = target / (f"{name}-{dataset}.png" if several else f"{name}.png")
        path = plot(spec.draws, store, target, suite=suite_name, dataset=dataset, phase=spec.phase)
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command(cls=RegistryHelp)(sweep)
