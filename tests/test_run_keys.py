"""Run keys of existing runs must never change: these were computed before the issue-8 refactor (methods that
describe themselves, the one value parser, suite files with strict keys and shared defaults) and are pinned here."""

from __future__ import annotations

import pytest

from pacebench.scheduler import PlanRequest, plan

REQUESTS = {
    "demo_all_kinds": PlanRequest(suite="demo", methods=["baseline", "pace", "pace_lazy", "sam", "pace_drop", "fpa_gp",
                                                         "pace_sigma_const", "pace_multi"], seeds=[0, 1]),
    "vtab_overrides": PlanRequest(suite="vtab", datasets=["cifar", "dtd"], methods=["pace", "gp"],
                                  train={"lr": "5e-3", "epochs": "3"}, method={"lam": "0.5"}),
    "fewshot_tune": PlanRequest(suite="fewshot", datasets=["oxford_pets"], methods=["pace_multi"],
                                options={"shots": [1], "split_seed": [0]}, phase="tune"),
    "fgvc": PlanRequest(suite="fgvc", methods=["baseline"]),
    "domain": PlanRequest(suite="domain", methods=["pace_fast", "l1"]),
}
PINNED = {
    "demo_all_kinds": [
        "16f76a7e79556a69", "2c6d9655c0a08f18", "b6ff9d04a1c380dc", "d93a119731f391cc", "f50e90f1440438e9",
        "709985be936c999c", "e5a5da0d9a991a80", "9c621a83958c3cca", "b99b9fb698b8174b", "10a51bd124eed450",
        "ce2887bc7d644a0d", "5fd370240744401c", "2c894551d3b7e0ee", "64b8d781351882df", "fd9a38a50658c2cf",
        "013fb7948c601db2",
    ],
    "vtab_overrides": [
        "9f76212c92c3ab29", "e3348f7dfc8f142b", "2d84a4c55460f9da", "f7c3687449b4bedc",
    ],
    "fewshot_tune": [
        "aefffd1cb4a295a8",
    ],
    "fgvc": [
        "328bcd07b173e936", "8c9f6f332a9881cd", "dda360c2e78be3c2", "c3345da0d7cce79e", "02a47c6023fc47bd",
    ],
    "domain": [
        "c631a8b24529e79e", "aff4cd7601577044",
    ],
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_run_keys_are_unchanged(name: str) -> None:
    assert [s.key for s in plan(REQUESTS[name], sha=lambda backbone, weights: "abc")] == PINNED[name]
