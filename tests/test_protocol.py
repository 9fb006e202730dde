"""The two-phase protocol: phase-1 selection by validation accuracy only, the tie rule, the grid, phase-2 specs."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
from conftest import written_run

from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.protocol import Choice, final_specs, grid, key_of, select_best
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.store import RunRecord, Store

W1, W2 = "1" * 64, "2" * 64
DIGITS = ("demo", "digits", '{"shots":10}', "pace")  # data options as sorted-key compact JSON


class ValOnly(dict):
    """Run metrics that fail the test when the selection reads anything but the validation accuracy."""

    def __getitem__(self, name: str) -> Any:
        assert name == "val_acc", f"phase-1 selection read metrics[{name!r}]"
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        assert name == "val_acc", f"phase-1 selection read metrics.get({name!r})"
        return super().get(name, default)

    def __iter__(self) -> Any:
        raise AssertionError("phase-1 selection iterated over the metrics")

    def items(self) -> Any:
        raise AssertionError("phase-1 selection iterated over the metrics")

    def values(self) -> Any:
        raise AssertionError("phase-1 selection iterated over the metrics")


def guarded(runs: list[RunRecord]) -> list[RunRecord]:
    return [dataclasses.replace(r, metrics=ValOnly(r.metrics)) for r in runs]


def make_run(
    store: Store,
    *,
    method: str = "pace",
    config: dict | None = None,
    seed: int = 0,
    val: float | None = 50.0,
    test: float | None = None,
    phase: str = "tune",
    status: str = "done",
    weights: str = W1,
    options: dict | None = None,
    train: TrainConfig | None = None,
    dataset: str = "digits",
) -> RunRecord:
    spec = RunSpec(
        suite="demo",
        dataset=dataset,
        method=method,
        seed=seed,
        train=train or TrainConfig(epochs=3),
        backbone="vit_demo",
        weights_sha256=weights,
        method_config=config or {},
        data_options={"shots": 10} if options is None else options,
        phase=phase,
    )  # type: ignore[arg-type]
    return written_run(
        store, spec, {"val_acc": val, "test_acc": test, "train_acc": 99.0, "evals": {"val": val}}, status=status
    )


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/r.db")


def test_selects_the_highest_mean_val_acc_and_never_reads_test(store):
    # lam=0.1: val 80, 82 (mean 81), test high; lam=1: val 85, 83 (mean 84), test low; lam=10: one seed, val 90,
    # but its second seed failed (its numbers must not count) and a phase-final run of lam=0.1 has val 99.
    for seed, (val, test) in enumerate([(80, 95), (82, 95)]):
        make_run(store, config={"lam": 0.1}, seed=seed, val=val, test=test)
    for seed, (val, test) in enumerate([(85, 10), (83, 10)]):
        make_run(store, config={"lam": 1.0}, seed=seed, val=val, test=test)
    make_run(store, config={"lam": 10.0}, seed=0, val=70)
    make_run(store, config={"lam": 10.0}, seed=1, val=100, status="failed")
    make_run(store, config={"lam": 10.0}, seed=2, status="running")
    make_run(store, config={"lam": 0.1}, seed=0, val=99, test=99, phase="final")
    best = select_best(guarded(store.runs()))
    assert list(best) == [DIGITS]
    chosen = best[DIGITS]
    assert chosen.method_config["lam"] == 1.0
    assert chosen.val_acc == pytest.approx(84.0) and chosen.val_std == pytest.approx(2**0.5)
    assert (chosen.seeds, chosen.candidates) == ((0, 1), 3)


def test_one_choice_per_dataset_options_and_method(store):
    make_run(store, config={"lam": 1.0}, val=60)
    make_run(store, config={"lam": 0.5}, val=70, options={"shots": 5})
    make_run(store, method="fpa", config={"lam": 2.0}, val=65)
    make_run(store, method="baseline", val=55)
    best = select_best(store.runs())
    assert sorted((k[2], k[3]) for k in best) == [
        ('{"shots":10}', "baseline"),
        ('{"shots":10}', "fpa"),
        ('{"shots":10}', "pace"),
        ('{"shots":5}', "pace"),
    ]
    assert best[("demo", "digits", '{"shots":5}', "pace")].method_config["lam"] == 0.5
    assert all(key_of(c) == k for k, c in best.items())  # a Choice carries its own key


@pytest.mark.parametrize("order", [1, -1], ids=["insertion-order", "reversed"])
def test_tie_rule(tmp_path, order):
    """Equal mean val acc: smaller λ, then smaller σ, then the smallest config JSON, whatever the run order."""
    cases = {
        "lam": ([{"lam": 1.0, "sigma": 0.5}, {"lam": 0.5, "sigma": 2.0}], {"lam": 0.5, "sigma": 2.0}),
        "sigma": ([{"lam": 1.0, "sigma": 1.2}, {"lam": 1.0, "sigma": 0.8}], {"lam": 1.0, "sigma": 0.8}),
    }
    for name, (configs, expected) in cases.items():
        store = Store(f"sqlite:///{tmp_path}/{name}.db")
        for config in configs[::order]:
            for seed, val in enumerate([70.0, 72.0] if config == expected else [72.0, 70.0]):  # means both 71
                make_run(store, config=config, seed=seed, val=val)
        assert select_best(store.runs()[::order])[DIGITS].method_config == expected, name
    # same λ and σ, different learning rate: '..."lr":0.001...' sorts before '..."lr":0.01...'
    store = Store(f"sqlite:///{tmp_path}/json.db")
    for lr in [0.01, 0.001][::order]:
        make_run(store, config={"lam": 1.0, "sigma": 1.2}, train=TrainConfig(epochs=3, lr=lr), val=71.0)
    assert select_best(store.runs()[::order])[DIGITS].train.lr == 0.001


def test_a_better_mean_beats_the_tie_breaks(store):
    make_run(store, config={"lam": 0.1, "sigma": 0.1}, val=71.0)
    make_run(store, config={"lam": 9.0, "sigma": 9.0}, val=71.5)
    assert select_best(store.runs())[DIGITS].method_config == {"lam": 9.0, "sigma": 9.0}


def test_runs_without_a_val_acc_do_not_count(store):
    make_run(store, config={"lam": 1.0}, val=None)
    make_run(store, config={"lam": 2.0}, val=math.nan)
    assert select_best(store.runs()) == {}


def test_runs_on_different_weights_are_refused(store):
    make_run(store, config={"lam": 1.0}, val=80, weights=W1)
    make_run(store, config={"lam": 2.0}, val=90, weights=W2)
    with pytest.raises(PacebenchError, match="2 different weights"):
        select_best(store.runs())
    assert select_best(store.runs(weights_sha256=W1))[DIGITS].method_config["lam"] == 1.0


def test_grid():
    assert grid({"lam": [0.1, 1.0], "sigma": [0.8, 1.2, 1.6]})[:4] == [
        {"lam": 0.1, "sigma": 0.8},
        {"lam": 0.1, "sigma": 1.2},
        {"lam": 0.1, "sigma": 1.6},
        {"lam": 1.0, "sigma": 0.8},
    ]
    assert len(grid({"lam": [0.1, 1.0], "sigma": [0.8, 1.2, 1.6], "lr": ["1e-3"]})) == 6
    assert grid({}) == [{}]
    with pytest.raises(UsageError, match="'sigma' is empty"):
        grid({"lam": [1], "sigma": []})


def test_final_specs_keep_everything_but_phase_and_seed(store):
    train = TrainConfig(epochs=3, lr=0.002, rank=4)
    make_run(store, config={"lam": 0.5, "sigma": 1.0}, train=train, val=80)
    make_run(store, method="baseline", train=train, val=70, dataset="digits5-9-copy")
    best = select_best(store.runs())
    specs = final_specs(best, [0, 1, 2])
    assert [(s.dataset, s.method, s.seed) for s in specs] == [
        ("digits", "pace", 0),
        ("digits", "pace", 1),
        ("digits", "pace", 2),
        ("digits5-9-copy", "baseline", 0),
        ("digits5-9-copy", "baseline", 1),
        ("digits5-9-copy", "baseline", 2),
    ]
    pace = specs[0]
    assert pace.phase == "final" and pace.train == train
    assert (pace.suite, pace.backbone, pace.weights_sha256) == ("demo", "vit_demo", W1)
    assert pace.method_config == {"lam": 0.5, "sigma": 1.0} and pace.data_options == {"shots": 10}
    tune_spec = RunSpec(
        suite="demo",
        dataset="digits",
        method="pace",
        seed=0,
        train=train,
        backbone="vit_demo",
        weights_sha256=W1,
        method_config={"lam": 0.5, "sigma": 1.0},
        data_options={"shots": 10},
        phase="tune",
    )
    assert pace == tune_spec.with_(phase="final") and run_key(pace) != run_key(tune_spec)
    assert store.enqueue([pace])[0].status == "queued"  # a new run, not the tune run again


def test_choice_is_plain_data():
    c = Choice(
        "demo", "digits", {}, "pace", {"lam": 1.0}, TrainConfig(epochs=3), "vit_demo", W1, 80.0, math.nan, (0,), (1,), 1
    )
    assert json.loads(c.config_json())["train"]["epochs"] == 3
