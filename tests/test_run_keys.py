"""Run keys of existing runs must never change by accident.

`PINNED` were computed before the issue-8 refactor (methods that describe themselves, the one value parser, suite
files with strict keys and shared defaults): the specs these plans make still hash to them under the hashing of
that time (`legacy_key`), so no refactor changed what a run is. Issue 7 then changed results on purpose (the lr
steps after each epoch, which touches every run of more than one epoch; LoRA_add's δb; Swin's per-window noise; the
backbone's own mean/std; the domain suite's strong augmentation), so these runs have new keys, pinned in `NOW`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec

REQUESTS = {
    "demo_all_kinds": PlanRequest(
        suite="demo",
        methods=["baseline", "pace", "pace_lazy", "sam", "pace_drop", "fpa_gp", "pace_sigma_const", "pace_multi"],
        seeds=[0, 1],
    ),
    "vtab_overrides": PlanRequest(
        suite="vtab",
        datasets=["cifar", "dtd"],
        methods=["pace", "gp"],
        train={"lr": "5e-3", "epochs": "3"},
        method={"lam": "0.5"},
    ),
    "fewshot_tune": PlanRequest(
        suite="fewshot",
        datasets=["oxford_pets"],
        methods=["pace_multi"],
        options={"shots": [1], "split_seed": [0]},
        phase="tune",
    ),
    "fgvc": PlanRequest(suite="fgvc", methods=["baseline"]),
    "domain": PlanRequest(suite="domain", methods=["pace_fast", "l1"]),
}
PINNED = {
    "demo_all_kinds": [
        "16f76a7e79556a69",
        "2c6d9655c0a08f18",
        "b6ff9d04a1c380dc",
        "d93a119731f391cc",
        "f50e90f1440438e9",
        "709985be936c999c",
        "e5a5da0d9a991a80",
        "9c621a83958c3cca",
        "b99b9fb698b8174b",
        "10a51bd124eed450",
        "ce2887bc7d644a0d",
        "5fd370240744401c",
        "2c894551d3b7e0ee",
        "64b8d781351882df",
        "fd9a38a50658c2cf",
        "013fb7948c601db2",
    ],
    "vtab_overrides": [
        "9f76212c92c3ab29",
        "e3348f7dfc8f142b",
        "2d84a4c55460f9da",
        "f7c3687449b4bedc",
    ],
    "fewshot_tune": [
        "aefffd1cb4a295a8",
    ],
    "fgvc": [
        "328bcd07b173e936",
        "8c9f6f332a9881cd",
        "dda360c2e78be3c2",
        "c3345da0d7cce79e",
        "02a47c6023fc47bd",
    ],
    "domain": [
        "c631a8b24529e79e",
        "aff4cd7601577044",
    ],
}


NOW = {
    "demo_all_kinds": [
        "d907b082993d90c9",
        "49ae79627686730a",
        "e366f045616df9ce",
        "9b278bdeada4bdf7",
        "3b6182fc8376bfc4",
        "b683a196dbec740f",
        "5702ac5a99930989",
        "d2c6ca2019f88c27",
        "192b9e9b9cf0591e",
        "831c25039029d660",
        "8a6371add86da20e",
        "19de475b1a20f68c",
        "d06fa58a3df3bf03",
        "09399f757bc95965",
        "799c0446f3159548",
        "9480661755686500",
    ],
    "vtab_overrides": [
        "b107c53c86570ba5",
        "78599a9ee46198b2",
        "d6e1d97ab437aad5",
        "0aa9fa6fd6f7936d",
    ],
    "fewshot_tune": [
        "607f8cc560de1eed",
    ],
    "fgvc": [
        "e7a33e5639c9d27f",
        "b6a73bc021a05974",
        "dd87b40c34779532",
        "fee8406f732e6c20",
        "cb4b353b7913581e",
    ],
    "domain": [
        "a081e8e27eff2d30",
        "5eaee3caf3a2bbf8",
    ],
}


def legacy_key(spec: RunSpec) -> str:
    """The key as pacebench hashed it before issue 7: the plain spec, without the settings issue 7 added (and those
    added since, the adapter options, which these plans leave at None)."""
    blob = dataclasses.asdict(spec)
    assert blob.pop("data_fingerprint") == ""  # planning leaves it to execution, which reads the data
    del blob["train"]["augment"]
    for name in ("adapter_scale", "adapter_dropout"):
        assert blob["train"].pop(name) is None
    blob["method_config"].pop("noise_group", None)
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def planned(name: str) -> list[RunSpec]:
    return plan(REQUESTS[name], sha=lambda backbone, weights: "abc")


@pytest.mark.parametrize("name", list(REQUESTS))
def test_planned_specs_are_what_they_were_before_the_refactor(name: str) -> None:
    assert [legacy_key(s) for s in planned(name)] == PINNED[name]


@pytest.mark.parametrize("name", list(REQUESTS))
def test_run_keys_are_unchanged_since_issue_7(name: str) -> None:
    assert [run_key(s) for s in planned(name)] == NOW[name]
    assert not set(NOW[name]) & set(PINNED[name])  # every one of them trains for more than one epoch
