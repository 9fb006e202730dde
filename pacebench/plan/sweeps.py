"""What each figure and Table 6 need trained, planned as runs (pure: requests in, RunSpecs out).

    pacebench sweep figure4 --suite vtab --datasets cifar100    # pace, fpa over λ 1e-3 .. 5e4 (+ the baseline)
    pacebench sweep figure5 --suite demo                        # lazy interval N and networks M (+ pace, baseline)
    pacebench sweep figure6                                     # σ x λ on few-shot Oxford Pets, 1/2/4/8 shots
    pacebench sweep table6 --suite demo --datasets digits       # the tuned ablations (same as `ablate`)

A sweep lists, per method, a grid of hyperparameter values; every grid point becomes one run per seed (per data
variant). Tune-phase sweeps (Figs. 4 and 6) train on train and score on val, and their figures read the tune
phase. Table 6 is the two-phase protocol over each method's own search grid (`method_grid`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pacebench.choices import Phase
from pacebench.core.methods import ABLATIONS, EFFICIENCY, method_grid
from pacebench.errors import UsageError
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.protocol import Plan, grid, with_point
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec
from pacebench.registry import Registry

Grids = dict[str, dict[str, list[Any]]]  # method -> {hyperparameter: values}


def table6_grids(methods: list[str]) -> Grids:
    """Each method's declared search grid (`pacebench methods` shows them; empty: nothing to tune)."""
    return {m: method_grid(m) for m in methods}


LAMBDAS = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 5e4]  # Fig. 4: "a wide range (1e-3 to 5e4)"


@dataclass(frozen=True)
class Sweep:
    """One figure's (or table's) runs: the grids per method, the phase they train in, what draws them, and the
    data and shots it defaults to."""

    name: str
    description: str
    grids: Grids | Callable[[], Grids]  # a callable reads the registry when the sweep runs (Table 6's own grids)
    phase: str
    draws: str  # a figure name, or "table:NAME"
    suite: str | None = None
    datasets: list[str] | None = None
    options: dict[str, list[Any]] = field(default_factory=dict)
    tuned: bool = False  # the two-phase protocol over the grids (each method's winner retrained), as Table 6

    def method_grids(self) -> Grids:
        return self.grids() if callable(self.grids) else self.grids


SWEEPS: Registry[Sweep] = Registry("sweep")
for _sweep in (
    Sweep(
        "figure4",
        "Fig. 4 / App. Figs. 7-8: pace and fpa over λ from 1e-3 to 5e4, the baseline beside (tune phase)",
        {"baseline": {}, "pace": {"lam": LAMBDAS}, "fpa": {"lam": LAMBDAS}},
        "tune",
        "lambda-sweep",
    ),
    Sweep(
        "figure5",
        "Fig. 5: lazy interval N = 2..12 and networks M = 3, 4 against accuracy and cost, PACE (N = 1, "
        "M = 2) and the baseline beside (final phase)",
        {"baseline": {}, "pace": {}, "pace_lazy": {"interval": [2, 4, 6, 8, 10, 12]}, "pace_multi": {"copies": [3, 4]}},
        "final",
        "efficiency",
    ),
    Sweep(
        "figure6",
        "Fig. 6: pace over σ x λ on few-shot Oxford Pets, 1/2/4/8 shots (tune phase)",
        {"pace": {"sigma": [0.5, 1.0, 1.5, 2.0], "lam": [0.1, 0.5, 1.0, 5.0]}},
        "tune",
        "sensitivity",
        suite="fewshot",
        datasets=["oxford_pets"],
        options={"shots": [1, 2, 4, 8], "split_seed": [0]},
    ),
    Sweep(
        "table6",
        "Table 6: each ablation's own search grid on train -> val, each winner on train+val -> test "
        "(same as `pacebench ablate`)",
        lambda: table6_grids(list(ABLATIONS)),
        "final",
        "table:6",
        tuned=True,
    ),
):
    SWEEPS.register(_sweep.name)(_sweep)


def override(grids: Grids, values: dict[str, list[Any]]) -> Grids:
    """`--grid NAME=V1,V2` replaces NAME's values in every grid that searches NAME; a name no grid of the sweep
    searches is a usage error (a fixed value is `--hp NAME=V`)."""
    for name in values:
        if not any(name in g for g in grids.values()):
            searched = sorted({n for g in grids.values() for n in g})
            raise UsageError(
                f"--grid {name}: no method of this sweep searches it (searched: "
                f"{', '.join(searched) or 'nothing'}); set a fixed value with --hp {name}=V"
            )
    return {m: {k: values.get(k, v) for k, v in g.items()} for m, g in grids.items()}


def plan_grids(
    base: PlanRequest, grids: Grids, planner: Callable[[PlanRequest], list[RunSpec]] = plan
) -> list[RunSpec]:
    """Every (method, grid point, dataset, data variant, seed) as a spec, duplicates (same key) dropped."""
    specs: dict[str, RunSpec] = {}
    for method, values in grids.items():
        for point in grid(values):
            request = dataclasses.replace(base, methods=[method], method={**base.method, **point})
            specs.update((run_key(s), s) for s in planner(request))
    return list(specs.values())


def two_phase_plan(
    base: PlanRequest, grids: Grids, seeds: list[int], planner: Callable[[PlanRequest], list[RunSpec]] = plan
) -> Plan:
    """The protocol over per-method grids: a method with several grid points is searched on train -> val first; a
    method with one point has nothing to choose and goes straight to phase 2 with `seeds`."""
    searched = {m: g for m, g in grids.items() if len(grid(g)) > 1}
    fixed = {m: g for m, g in grids.items() if m not in searched}
    tune = plan_grids(dataclasses.replace(base, phase=Phase.tune), searched, planner) if searched else []
    direct = plan_grids(dataclasses.replace(base, phase=Phase.final, seeds=seeds), fixed, planner) if fixed else []
    return Plan(runs=direct, search=tune, seeds=seeds, origin="tune")


def direct_plan(request: PlanRequest, planner: Callable[[PlanRequest], list[RunSpec]] = plan) -> Plan:
    """`pacebench run`: the request's runs with the settings given (no search)."""
    return Plan(runs=planner(request))


def search_plan(
    base: PlanRequest,
    values: dict[str, list[Any]],
    seeds: list[int],
    planner: Callable[[PlanRequest], list[RunSpec]] = plan,
) -> Plan:
    """`pacebench tune`: every point of a grid over method hyperparameters and training settings, searched on
    train -> val; each (dataset, method)'s best point is then trained for every seed."""
    specs = {run_key(s): s for point in grid(values) for s in planner(with_point(base, point))}
    return Plan(search=list(specs.values()), seeds=seeds, origin="tune")


def ablation_methods(efficiency: bool) -> list[str]:
    """`pacebench ablate`'s methods: Table 6's, and with `efficiency` Fig. 5's variants."""
    return list(ABLATIONS) + (list(EFFICIENCY) if efficiency else [])
