"""`pacebench sweep NAME`: plan exactly the runs one figure (or Table 6) needs, train those not done, draw it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pacebench.choices import Phase
from pacebench.cli.common import console, db_url, grid_values, int_list, shared_options
from pacebench.cli.run_cmd import (
    SELECT,
    Datasets,
    Seeds,
    Shots,
    SplitSeeds,
    _plan,
    _request,
    _shared,
    _worker_options,
    execute_plan,
    two_phase,
)

NAMES = "figure4, figure5, figure6, table6"


@shared_options(_shared)
def sweep(
    o: Any,
    name: Annotated[str, typer.Argument(help=f"What to produce: {NAMES}.")],
    suite: Annotated[str | None, typer.Option("--suite", help="Suite (default: the sweep's own, else demo).",
                                              rich_help_panel=SELECT)] = None,
    datasets: Datasets = None,
    grid: Annotated[list[str] | None, typer.Option("--grid", rich_help_panel=SELECT, help="NAME=V1,V2,... replaces "
                                                   "the sweep's values of that hyperparameter; repeatable.")] = None,
    seeds: Seeds = "0",
    tune_seeds: Annotated[str, typer.Option("--tune-seeds", help="table6: phase-1 seeds per grid point.",
                                            rich_help_panel=SELECT)] = "0",
    shots: Shots = None,
    split_seeds: SplitSeeds = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Figure file (.png, .pdf, .svg) or folder "
                                             "(default results/).")] = None,
) -> None:
    """Plan exactly the runs a figure or Table 6 needs (methods x grid x seeds), skip those done, then draw it.

    figure4: pace and fpa over λ 1e-3..5e4 (tune phase); figure5: lazy interval N and networks M; figure6: σ x λ
    on few-shot Oxford Pets for 1/2/4/8 shots (tune phase); table6: the tuned ablations, as `pacebench ablate`.
    """
    from pacebench.errors import UsageError
    from pacebench.plan.sweeps import SWEEPS, override, plan_grids, table6_grids
    from pacebench.report import plot, render_table
    from pacebench.settings import results_dir
    from pacebench.store import Store

    if name != "table6" and name not in SWEEPS:
        raise UsageError(f"unknown sweep {name!r}; choose one of: {NAMES}")
    opts = _worker_options(o)
    if name == "table6":
        from pacebench.core.methods import ABLATIONS

        s = suite or "demo"
        base = _request(o, s, datasets, list(ABLATIONS), tune_seeds, shots, split_seeds)
        if two_phase(base, override(table6_grids(list(ABLATIONS)), grid_values(grid)),
                     int_list(seeds, "--seeds") or [0], o, opts):
            console.print(render_table("6", Store(db_url(o.db), readonly=True), suite=s))
        return
    spec = SWEEPS.get(name)
    s = suite or spec.suite or "demo"
    own = s == spec.suite  # the sweep's own data set: its datasets and shots are the defaults
    base = _request(o, s, datasets or (",".join(spec.datasets) if own and spec.datasets else None), list(spec.grids),
                    seeds, shots or (",".join(map(str, spec.options.get("shots", []))) if own else None) or None,
                    split_seeds or (",".join(map(str, spec.options.get("split_seed", []))) if own else None) or None,
                    phase=Phase(spec.phase))
    specs = plan_grids(base, override(spec.grids, grid_values(grid)), lambda request: _plan(request, o))
    console.print(f"[bold]{name}[/]: {spec.description}")
    if execute_plan(specs, o, opts, origin="sweep") is None:
        return
    store = Store(db_url(o.db), readonly=True)
    several = len({x.dataset for x in specs}) > 1
    for suite_name, dataset in dict.fromkeys((x.suite, x.dataset) for x in specs):
        target = out or results_dir()
        if not target.suffix:
            target = target / (f"{name}-{dataset}.png" if several else f"{name}.png")
        path = plot(spec.draws, store, target, suite=suite_name, dataset=dataset, phase=spec.phase)
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    from pacebench.cli.common import RegistryHelp

    app.command(cls=RegistryHelp)(sweep)
