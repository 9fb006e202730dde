"""What happens to a plan when a run goes wrong: a diverged run is stored as failed and the plan goes on, Ctrl-C
checkpoints and releases the run in flight, and the pre-flight data check stops a run before any training."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import assert_one_line_error
from fake_trees import write_suites
from typer.testing import CliRunner

from pacebench.cli import app
from pacebench.plan.planner import PlanRequest, plan
from pacebench.store import Store
from pacebench.training import Environment

runner = CliRunner()


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as con:
        return con.execute("select method, status, error from runs order by id").fetchall()


def test_a_nan_run_is_stored_as_failed_and_the_plan_goes_on(tmp_path, results):
    result = runner.invoke(
        app,
        [
            "run",
            "demo",
            "-m",
            "pace,baseline",
            "--hp",
            "sigma=1e30",
            "--epochs",
            "1",
            "-t",
            "batch_size=16",
            "--device",
            "cpu",
            "--attempts",
            "1",
            "--db",
            f"sqlite:///{tmp_path}/r.db",
        ],
    )
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    assert "1 run(s) failed" in result.output
    (pace, pace_status, error), (baseline, baseline_status, _) = rows(tmp_path / "r.db")
    assert (pace, pace_status, baseline, baseline_status) == ("pace", "failed", "baseline", "done")
    assert "training loss became nan at epoch 0" in error


def test_ctrl_c_checkpoints_and_releases_the_run_and_the_next_worker_resumes_it(tmp_path, results):
    import os
    import signal

    import torch

    from pacebench.execution.worker import Worker

    class CtrlC(Worker):
        def _on_epoch(self, run, claim):
            write = super()._on_epoch(run, claim)

            def on_epoch(epoch, record):
                write(epoch, record)
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after the first epoch's row is written

            return on_epoch

    store = Store(f"sqlite:///{tmp_path}/r.db")
    specs = plan(PlanRequest(suite="demo", methods=["baseline"], train={"epochs": 3, "batch_size": 16}))
    store.enqueue(specs)
    env = Environment(device=torch.device("cpu"), data_root=tmp_path, num_workers=0)
    assert CtrlC(store, env).work()["stopped"] == 1
    (run,) = store.runs()
    assert (run.status, run.error, run.attempts, store.checkpoint_epoch(run.id)) == ("queued", None, 0, 0)
    assert Worker(store, env).work()["done"] == 1  # the next worker resumes it from its checkpoint
    assert [e.epoch for e in store.epochs(run.id)] == [0, 1, 2] and store.get_run(run.id).status == "done"


def test_preflight_data_check_stops_the_run_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_SUITES", str(write_suites(tmp_path / "suites")))
    from pacebench.plan.suites import all_suites

    all_suites.cache_clear()
    monkeypatch.setattr(
        "pacebench.execution.worker.train_run", lambda *a, **k: pytest.fail("trained despite missing data")
    )
    (tmp_path / "w.safetensors").write_bytes(b"")  # planning hashes the file; nothing may load it
    try:
        result = runner.invoke(
            app,
            [
                "run",
                "vtab",
                "--backbone",
                "vit_tiny_patch16_224",
                "--weights",
                str(tmp_path / "w.safetensors"),
                "--device",
                "cpu",
                "--data-root",
                str(tmp_path / "data"),
                "--db",
                f"sqlite:///{tmp_path}/r.db",
            ],
        )
    finally:
        all_suites.cache_clear()
    assert_one_line_error(result, 1, "missing data folder")
    assert rows(tmp_path / "r.db") == []  # no run row: nothing was claimed or started
