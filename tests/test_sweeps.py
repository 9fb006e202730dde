"""Sweep planning (pure): exactly the runs a figure needs, nothing twice, --grid overrides checked."""

from __future__ import annotations

import pytest

from pacebench.errors import UsageError
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.runkey import run_key
from pacebench.plan.sweeps import LAMBDAS, SWEEPS, override, plan_grids


def no_weights(backbone, weights):
    return "sha"


def planner(request):
    return plan(request, sha=no_weights)


def test_figure4_plans_methods_times_lambdas_times_seeds():
    sweep = SWEEPS.get("figure4")
    specs = plan_grids(
        PlanRequest(suite="vtab", datasets=["cifar100"], seeds=[0, 1], phase="tune"), sweep.grids, planner
    )
    assert len(specs) == (1 + 2 * len(LAMBDAS)) * 2 and len({run_key(s) for s in specs}) == len(specs)
    assert {s.phase for s in specs} == {"tune"} and {s.dataset for s in specs} == {"cifar"}
    assert sorted({s.method_config["lam"] for s in specs if s.method == "fpa"}) == LAMBDAS
    assert LAMBDAS[0] == 1e-3 and LAMBDAS[-1] == 5e4


def test_figure6_plans_sigma_by_lambda_for_each_shot():
    sweep = SWEEPS.get("figure6")
    specs = plan_grids(
        PlanRequest(suite=sweep.suite, datasets=sweep.datasets, phase="tune", options=sweep.options),
        sweep.grids,
        planner,
    )
    assert len(specs) == 4 * 4 * 4  # σ x λ x shots, split seed 0
    assert sorted({s.data_options["shots"] for s in specs}) == [1, 2, 4, 8]


def test_override_replaces_only_searched_values():
    grids = {"pace": {"lam": [1], "sigma": [1.2]}, "baseline": {}, "sam": {"rho": [0.05]}}
    assert override(grids, {"lam": [0.1, 10]}) == {
        "pace": {"lam": [0.1, 10], "sigma": [1.2]},
        "baseline": {},
        "sam": {"rho": [0.05]},
    }
    with pytest.raises(UsageError, match="--grid interval: no method of this sweep searches it"):
        override(grids, {"interval": [2]})
