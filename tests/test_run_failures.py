"""What happens to a plan when a run goes wrong: a diverged run is stored as failed and the plan goes on, Ctrl-C
marks the run in flight, and the pre-flight data check stops a run before any training."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import assert_one_line_error
from fake_trees import write_suites
from typer.testing import CliRunner

from pacebench.cli import app
from pacebench.scheduler import Hooks, PlanRequest, execute, plan
from pacebench.store import Store
from pacebench.train import Environment

runner = CliRunner()


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as con:
        return con.execute("select method, status, error from runs order by id").fetchall()


def test_a_nan_run_is_stored_as_failed_and_the_plan_goes_on(tmp_path, results):
    result = runner.invoke(app, ["run", "demo", "-m", "pace,baseline", "--hp", "sigma=1e30", "--epochs", "1",
                                 "-t", "batch_size=16", "--device", "cpu", "--db", f"sqlite:///{tmp_path}/r.db"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    assert "1 run(s) failed" in result.output
    (pace, pace_status, error), (baseline, baseline_status, _) = rows(tmp_path / "r.db")
    assert (pace, pace_status, baseline, baseline_status) == ("pace", "failed", "baseline", "done")
    assert "training loss became nan at epoch 0" in error


class CtrlC(Hooks):
    def epoch_done(self, spec, epoch, record) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_marks_the_run_interrupted_and_it_is_retried(tmp_path, results):
    import torch

    store = Store(f"sqlite:///{tmp_path}/r.db")
    specs = plan(PlanRequest(suite="demo", methods=["baseline"], train={"epochs": 2, "batch_size": 16}))
    env = Environment(device=torch.device("cpu"), data_root=tmp_path, num_workers=0)
    with pytest.raises(KeyboardInterrupt):
        execute(specs, store, env, CtrlC())
    (run,) = store.runs()
    assert (run.status, run.error) == ("failed", "interrupted")
    assert [o.status for o in execute(specs, store, env)] == ["done"]  # the next `pacebench run` picks it up


def test_preflight_data_check_stops_the_run_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_SUITES", str(write_suites(tmp_path / "suites")))
    from pacebench.suites import all_suites

    all_suites.cache_clear()
    monkeypatch.setattr("pacebench.train.train_run", lambda *a, **k: pytest.fail("trained despite missing data"))
    (tmp_path / "w.safetensors").write_bytes(b"")  # planning hashes the file; nothing may load it
    try:
        result = runner.invoke(app, ["run", "vtab", "--backbone", "vit_tiny_patch16_224", "--weights",
                                     str(tmp_path / "w.safetensors"), "--device", "cpu", "--data-root",
                                     str(tmp_path / "data"), "--db", f"sqlite:///{tmp_path}/r.db"])
    finally:
        all_suites.cache_clear()
    assert_one_line_error(result, 1, "missing data folder")
    assert rows(tmp_path / "r.db") == []  # no run row: nothing was claimed or started
