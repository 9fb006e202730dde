"""Per-example predictions of a run's last evaluation: they agree with the stored accuracy exactly, and name each
example the same way wherever the data lies."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import written_run
from fake_trees import make_vtab
from sqlalchemy import text
from typer.testing import CliRunner

from pacebench.cli import app
from pacebench.data import READERS, DataRequest
from pacebench.errors import DataError
from pacebench.execution.sweep import with_fingerprints
from pacebench.execution.worker import Worker, check_data
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.report.compare import Side, compare
from pacebench.report.page import provenance
from pacebench.report.tables import gather
from pacebench.store import MemoryStore, Store
from pacebench.store.records import Predictions
from pacebench.training import Environment, train_run

CPU = Environment(device=torch.device("cpu"), data_root=Path("data"), num_workers=0)


def test_a_runs_predictions_give_its_accuracy_exactly(results):
    [spec] = plan(PlanRequest(suite="demo", methods=["pace"], train={"epochs": 2, "batch_size": 32}))
    result = train_run(spec, CPU, lambda *_: None)
    [(name, p)] = result.predictions.items()
    assert name == "test" and len(p.ids) == len(set(p.ids)) == len(p.predicted) == len(p.target) > 100
    assert p.ids[0].startswith("digit-") and p.correct.dtype == bool
    assert 100.0 * p.correct.sum() / len(p.correct) == result.metrics["test_acc"]  # the same number, not close
    assert np.array_equal(p.correct, p.predicted == p.target)


def test_image_examples_are_named_by_their_path_inside_the_image_folder(tmp_path):
    for root in (tmp_path / "a" / "cifar", tmp_path / "elsewhere" / "cifar"):
        make_vtab(root, sizes={"train800val200": 6, "test": 4})
        splits = READERS.get("vtab")(DataRequest(root, "cifar", "final", 3, image_size=16))
        ids = splits.example_ids["test"]
        assert ids == ["test/test0.jpg", "test/test1.jpg", "test/test2.png", "test/test3.png"], ids


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    return Store(f"sqlite:///{tmp_path}/p.db") if request.param == "sqlite" else MemoryStore()


def test_a_worker_stores_the_predictions_with_the_runs_finish(store, results):
    [spec] = with_fingerprints(
        plan(PlanRequest(suite="demo", methods=["baseline"], train={"epochs": 1, "batch_size": 32})), Path("data")
    )
    store.enqueue([spec])
    assert Worker(store, CPU, keys=None).work() == Counter({"done": 1})
    [run] = store.runs()
    [(key, p)] = store.predictions([run.id]).items()
    assert key == (run.id, "test") and run.data_fingerprint == spec.data_fingerprint != ""
    assert 100.0 * p.correct.sum() / len(p.correct) == run.metrics["test_acc"]
    assert p.ids[0].startswith("digit-") and len(p.ids) == len(p.predicted) == len(p.target)


def test_predictions_round_trip_compactly_and_share_their_ids(store):
    ids = tuple(f"x{i}" for i in range(1000))
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        pred, target = rng.integers(0, 5, 1000), rng.integers(0, 5, 1000)
        spec = RunSpec(
            suite="demo",
            dataset="digits",
            method="baseline",
            seed=seed,
            train=TrainConfig(epochs=1),
            backbone="vit_demo",
        )
        run = written_run(
            store,
            spec,
            {"test_acc": 50.0},
            predictions={"test": Predictions("test", ids, pred, target, pred == target)},
        )
        got = store.predictions([run.id])[(run.id, "test")]
        assert got.ids == ids and np.array_equal(got.predicted, pred) and np.array_equal(got.correct, pred == target)
    if isinstance(store, Store):
        with store.db.session() as s:
            assert s.scalar(text("select count(*) from example_ids")) == 1  # one id list for both runs
            size = s.scalar(text("select length(predicted) from predictions limit 1"))
        assert size < 1300  # one byte per class index, not eight


def test_runs_on_two_copies_of_the_data_are_neither_skipped_pooled_nor_paired(tmp_path):
    """Copies A and B of one data set (one JPEG encoded otherwise: two fingerprints) give two runs of one setting;
    the B run is not taken for the done A run, a table shows one copy and says it left the other out, and compare
    never pairs them."""
    store = Store(f"sqlite:///{tmp_path}/c.db")
    base = RunSpec(
        suite="demo", dataset="digits", method="baseline", seed=0, train=TrainConfig(epochs=1), backbone="vit_demo"
    )
    a, b = base.with_(data_fingerprint="aaaaaaaaaaaaaaaa"), base.with_(data_fingerprint="bbbbbbbbbbbbbbbb")
    assert run_key(a) != run_key(b) != run_key(base)
    written_run(store, a, {"test_acc": 80.0, "evals": {"test": 80.0}})
    written_run(store, a.with_(seed=1), {"test_acc": 82.0, "evals": {"test": 82.0}})
    [queued] = store.enqueue([b])
    assert queued.status == "queued"  # not skipped as done
    written_run(store, b.with_(seed=2), {"test_acc": 10.0, "evals": {"test": 10.0}})
    table = gather("demo", store)
    assert list(table.frame["test acc"]) == [81.0]  # copy A's two runs, never averaged with B's
    assert any("another copy of their data set" in n for n in table.notes)
    for seed in (0, 1):
        written_run(
            store,
            a.with_(method="pace", seed=seed, method_config={"lam": 1.0}),
            {"test_acc": 90.0 + seed, "evals": {"test": 90.0 + seed}},
        )
    result = compare(store.runs(status="done"), lambda ids: {}, Side("pace"), Side("baseline"))
    [row] = result.rows
    assert row.seeds_b == 2 and row.difference.mean_b == 81.0  # B's run is in another group, left out
    assert any("no finished final-phase runs of pace" in n for n in result.notes)
    listed = CliRunner().invoke(app, ["runs", "--wide", "--db", f"sqlite:///{tmp_path}/c.db"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "aaaaaaaaaaaaaaaa" in listed.output and "bbbbbbbbbbbbbbbb" in listed.output
    assert "demo/digits aaaaaaaaaaaaaaaa (4)" in provenance(store.runs(status="done"))


def test_a_worker_refuses_a_run_planned_on_another_copy_of_its_data(results, tmp_path):
    [spec] = plan(PlanRequest(suite="demo", methods=["baseline"], train={"epochs": 1}))
    with pytest.raises(DataError, match="planned on 0123456789abcdef: point --data-root at the copy"):
        check_data(spec.with_(data_fingerprint="0123456789abcdef"), CPU)
    check_data(with_fingerprints([spec], Path("data"))[0], CPU)  # the copy it was planned on
