"""Workers under faults, on the demo suite with tiny settings: resume is bit for bit, kill -9 at random moments
loses and duplicates nothing, four workers share one SQLite file, a stopped worker that lost its claim writes
nothing, SIGTERM checkpoints and releases. Worker processes are real `pacebench worker` subprocesses."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, rewrite_run

from pacebench.execution.sweep import with_fingerprints
from pacebench.execution.worker import Worker
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.runkey import run_key
from pacebench.store import Claimant, Store
from pacebench.training import Environment, train_run
from pacebench.training.checkpoint import Control, Stopped

ENV = Environment(device=torch.device("cpu"), data_root=Path("data"), num_workers=0)
FAST = {"PACEBENCH_HEARTBEAT_S": "0.5", "PACEBENCH_MISSED_BEATS": "4", "PACEBENCH_POLL_S": "0.2"}  # lease 2 s


def specs(methods=("baseline",), seeds=(0,), **train):
    """Demo runs as `pacebench run` queues them: planned, with the fingerprint of the data they train on."""
    settings = {"epochs": 3, "batch_size": 16, "eval_every": 1, **train}
    return with_fingerprints(
        plan(PlanRequest(suite="demo", methods=list(methods), seeds=list(seeds), train=settings)), Path("data")
    )


def rows(store: Store, run_id: int) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(e).items() if k != "wall_time"} for e in store.epochs(run_id)]


class StopAfter(Control):
    """Captures the state after `epoch` and stops the run there, as a kill right after that checkpoint would."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.saved = epoch, None

    def epoch_done(self, epoch, capture):
        if epoch == self.epoch:
            self.saved = capture()
            raise Stopped


@pytest.mark.parametrize("method", ["pace", "pace_fast", "pace_lazy"])
def test_a_run_resumed_from_a_checkpoint_ends_bit_for_bit_as_an_uninterrupted_one(results, method):
    (spec,) = specs([method], epochs=5, drop_path=0.1)
    full: list = []
    reference = train_run(spec, ENV, lambda e, r: full.append(r))
    stop_at = random.Random(method).randrange(spec.train.epochs - 1)
    first: list = []
    control = StopAfter(stop_at)
    with pytest.raises(Stopped):
        train_run(spec, ENV, lambda e, r: first.append(r), control=control)
    resumed = Control()
    resumed.resume = control.saved
    second: list = []
    result = train_run(spec, ENV, lambda e, r: second.append(r), control=resumed)
    strip = [dataclasses.replace(r, wall_time=None) for r in first + second]
    assert [r.epoch for r in strip] == list(range(spec.train.epochs))
    assert strip == [dataclasses.replace(r, wall_time=None) for r in full]
    assert result.metrics == reference.metrics
    assert all(torch.equal(result.weights[k], reference.weights[k]) for k in reference.weights)


def worker_process(db: str, results: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    environ = {
        **os.environ,
        "PACEBENCH_RESULTS": str(results),
        "PYTHONPATH": str(Path(__file__).parents[1]),
        **FAST,
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pacebench", "worker", "--db", db, "--device", "cpu", "--workers", "0", *extra],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_kill_9_at_random_moments_loses_and_repeats_nothing(tmp_path, results):
    db = f"sqlite:///{tmp_path}/q.db"
    store = Store(db)
    plan_ = specs(["baseline", "pace"], seeds=(0, 1), epochs=4)
    store.enqueue(plan_)
    rng = random.Random(10)
    for _ in range(3):  # bounded: three kills at random moments, then a worker that finishes
        proc = worker_process(db, results, env={"PACEBENCH_CHECKPOINT_EVERY": "1", "PACEBENCH_MAX_ATTEMPTS": "9"})
        time.sleep(rng.uniform(2.0, 5.0))
        proc.kill()
        proc.wait()
    proc = worker_process(db, results, env={"PACEBENCH_MAX_ATTEMPTS": "9"})
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    runs = store.runs()
    assert [r.status for r in runs] == ["done"] * len(plan_)
    for run in runs:
        assert [e.epoch for e in store.epochs(run.id)] == list(range(4))
        assert store.checkpoint_epoch(run.id) is None and store.run_weights(run.id)
    # resumed results equal uninterrupted ones
    clean = Store(f"sqlite:///{tmp_path}/clean.db")
    clean.enqueue(plan_)
    Worker(clean, ENV).work()
    for run in runs:
        other = clean.get_run(run.key)
        assert other.metrics == run.metrics and rows(clean, other.id) == rows(store, run.id)


def test_four_workers_on_one_sqlite_file_run_each_of_40_runs_once(tmp_path, results):
    db = f"sqlite:///{tmp_path}/q.db"
    store = Store(db)
    plan_ = specs(["baseline", "pace"], seeds=range(20), epochs=1, eval_every=1)
    assert len(plan_) == 40
    store.enqueue(plan_)
    procs = [worker_process(db, results, env={"PACEBENCH_MISSED_BEATS": "60"}) for _ in range(4)]  # lease 30 s
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert not any("locked" in out for out in outputs), outputs
    runs = store.runs()
    assert [(r.status, r.attempts) for r in runs] == [("done", 1)] * 40
    assert sum(len(store.epochs(r.id)) for r in runs) == 40
    assert len({r.worker for r in runs}) > 1  # the work was shared


def test_a_stopped_worker_that_lost_its_claim_stops_without_writing(tmp_path, results):
    db = f"sqlite:///{tmp_path}/q.db"
    store = Store(db)
    (spec,) = specs(epochs=400, eval_every=1000)
    store.enqueue([spec])
    proc = worker_process(db, results)
    wait_for(lambda: len(store.epochs(store.get_run(run_key(spec)).id)) >= 2)
    proc.send_signal(signal.SIGSTOP)
    time.sleep(3.0)  # past its lease of 4 x 0.5 s
    taken = store.claim_next(Claimant(3600.0, host="other-host", pid=1))
    assert taken is not None and taken.key == run_key(spec)
    written = rows(store, taken.id)
    proc.send_signal(signal.SIGCONT)
    out = proc.communicate(timeout=120)[0]
    assert "1 lost" in out, out
    assert rows(store, taken.id) == written and store.checkpoint_epoch(taken.id) is None
    assert store.get_run(run_key(spec)).claim == taken.claim


def test_sigterm_checkpoints_releases_and_a_rerun_resumes(tmp_path, results):
    db = f"sqlite:///{tmp_path}/q.db"
    store = Store(db)
    (spec,) = specs(epochs=30, eval_every=1000)
    store.enqueue([spec])
    proc = worker_process(db, results, env={"PACEBENCH_CHECKPOINT_EVERY": "1000"})
    run_id = store.get_run(run_key(spec)).id if store.get_run(run_key(spec)) else None
    wait_for(lambda: len(store.epochs(run_id)) >= 3)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1 and "1 stopped" in out, out
    run = store.get_run(run_key(spec))
    saved = store.checkpoint_epoch(run.id)
    assert run.status == "queued" and run.claim is None and run.attempts == 0 and saved is not None
    assert [e.epoch for e in store.epochs(run.id)] == list(range(saved + 1))
    proc = worker_process(db, results)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and "1 done" in out, out
    assert [e.epoch for e in store.epochs(run.id)] == list(range(30))
    assert store.checkpoint_epoch(run.id) is None and store.get_run(run.id).status == "done"
    assert json.loads(json.dumps(store.get_run(run.id).metrics))["test_acc"] is not None


def test_submitit_job_array_drains_the_plan(tmp_path, results):
    """The Slurm path through submitit's local executor: a 2-task array of workers on one database."""
    from typer.testing import CliRunner

    from pacebench.cli import app

    db = f"sqlite:///{tmp_path}/q.db"
    args = [
        "run",
        "demo",
        "--methods",
        "baseline,pace",
        "--seeds",
        "0,1",
        "--epochs",
        "1",
        "-t",
        "batch_size=16",
        "--device",
        "cpu",
        "--executor",
        "submitit-local",
        "--array",
        "2",
        "--slurm-folder",
        str(tmp_path / "slurm"),
        "--db",
        db,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = Store(db).runs()
    assert [(r.status, r.attempts) for r in runs] == [("done", 1)] * 4
    assert len(list((tmp_path / "slurm").glob("*_log.out"))) == 2
    assert (tmp_path / "slurm").stat().st_mode & 0o077 == 0, "the pickled arguments hold the database URL"


def test_an_array_task_whose_run_failed_fails_in_slurms_accounting_and_the_sweep_says_which(tmp_path, results):
    """Like `pacebench worker`'s exit 1: sacct must not show COMPLETED for a task whose run diverged. The parent
    still reports the failed run itself (not as a dead task) and keeps the baseline that finished."""
    import pickle

    from typer.testing import CliRunner

    from pacebench.cli import app

    db = f"sqlite:///{tmp_path}/q.db"
    args = ["run", "demo", "--methods", "pace,baseline", "--hp", "sigma=1e30", "--epochs", "1", "-t", "batch_size=16"]
    args += ["--device", "cpu", "--attempts", "1", "--executor", "submitit-local", "--array", "1"]
    result = CliRunner().invoke(app, [*args, "--slurm-folder", str(tmp_path / "slurm"), "--db", db])
    assert result.exit_code == 1 and "1 run(s) failed" in result.output, result.output
    assert "Slurm task" not in result.output, result.output
    assert [(r.method, r.status) for r in Store(db).runs()] == [("pace", "failed"), ("baseline", "done")]
    (outcome,) = [pickle.loads(p.read_bytes()) for p in (tmp_path / "slurm").glob("*_result.pkl")]
    assert outcome[0] == "error" and "RunsFailed: 1 failed, 1 done" in outcome[1], outcome


def test_slurm_with_sqlite_is_refused_unless_forced(tmp_path):
    from typer.testing import CliRunner

    from pacebench.cli import app

    result = CliRunner().invoke(
        app, ["run", "demo", "--executor", "slurm", "--device", "cpu", "--db", f"sqlite:///{tmp_path}/q.db"]
    )
    assert result.exit_code == 2 and "needs a database every node reaches" in result.output


def test_a_slurm_that_refuses_the_array_is_one_line_and_the_runs_stay_queued(tmp_path, monkeypatch, results):
    """sbatch failing (Slurm installed but not configured here) is the error a user sees first on a new cluster."""
    from typer.testing import CliRunner

    from pacebench.cli import app

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun", "scontrol", "sacct", "squeue"):
        (bin_dir / tool).write_text(
            "#!/bin/sh\necho 'sbatch: fatal: Could not establish a configuration source' >&2\nexit 1\n"
        )
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    db = f"sqlite:///{tmp_path}/q.db"
    args = ["run", "demo", "--seeds", "0", "--epochs", "1", "--device", "cpu", "--executor", "slurm"]
    result = CliRunner().invoke(app, [*args, "--force-sqlite", "--slurm-folder", str(tmp_path / "slurm"), "--db", db])
    assert_one_line_error(result, 1, "Slurm did not take the job array (")
    assert "Could not establish a configuration source" in result.output
    assert {r.status for r in Store(db).runs()} == {"queued"}  # planned, kept for a rerun or any worker


def cli(*args: str):
    from typer.testing import CliRunner

    from pacebench.cli import app

    return CliRunner().invoke(app, list(args))


TINY = ["--epochs", "1", "-t", "batch_size=16", "-t", "eval_every=1", "--device", "cpu"]


def test_run_with_two_jobs_then_status(tmp_path, results, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]))
    db = f"sqlite:///{tmp_path}/q.db"
    result = cli("run", "demo", "--methods", "baseline,pace", "--seeds", "0,1", "--jobs", "2", *TINY, "--db", db)
    assert result.exit_code == 0, result.output
    runs = Store(db).runs()
    assert [(r.status, r.attempts) for r in runs] == [("done", 1)] * 4 and len({r.worker for r in runs}) == 2
    status = cli("status", "--db", db)
    assert status.exit_code == 0 and "4 runs: 4 done" in status.output and "stopped" in status.output


def test_enqueue_only_writes_the_plan_and_two_plain_workers_drain_it(tmp_path, results, monkeypatch):
    """Any orchestrator can run the workers: `--enqueue-only` queues and exits, `pacebench worker` processes
    started on their own train the runs, each exactly once; a two-phase plan queues phase 2 when asked again."""
    db = f"sqlite:///{tmp_path}/q.db"
    queued = cli("run", "demo", "--methods", "baseline,pace", "--seeds", "0,1", *TINY, "--db", db, "--enqueue-only")
    assert queued.exit_code == 0 and "queued: 4 run(s) wait for workers" in " ".join(queued.output.split())
    assert {(r.status, r.planned_device) for r in Store(db).runs()} == {("queued", "cpu")}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "PACEBENCH_RESULTS": str(results)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "pacebench", "worker", "--db", db, "--device", "cpu", "--workers", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    assert [w.wait(timeout=600) for w in workers] == [0, 0], [w.stdout.read() for w in workers]  # type: ignore
    runs = Store(db).runs()
    assert [(r.status, r.attempts) for r in runs] == [("done", 1)] * 4
    tune = [
        "tune",
        "demo",
        "--methods",
        "pace",
        "--grid",
        "lam=0.5,1",
        "--seeds",
        "0",
        *TINY,
        "--db",
        db,
        "--enqueue-only",
    ]
    first = cli(*tune)
    assert first.exit_code == 0 and "run this command again once the workers have finished phase 1" in " ".join(
        first.output.split()
    )
    assert Worker(Store(db), ENV, keys=None).work() == Counter({"done": 2})
    second = cli(*tune)
    assert second.exit_code == 0 and "queued: 1 run(s) wait for workers" in " ".join(second.output.split())
    assert [r.phase for r in Store(db).runs(status="queued")] == ["final"]


def test_worker_processes_get_the_runs_checkpoint_and_attempt_settings(tmp_path, monkeypatch):
    """`run --jobs 2 --checkpoint-every 1 --attempts 5` must reach the `pacebench worker` processes it starts (they
    fell back to every 10 epochs and 3 attempts)."""
    from pacebench.execution import launch
    from pacebench.execution.options import WorkerOptions
    from pacebench.settings import WorkerSettings

    monkeypatch.setenv("PACEBENCH_RESULTS", str(tmp_path))
    started: list[dict[str, str]] = []

    class Finished:
        def __init__(self, command, env, **_):
            started.append(env)

        def poll(self):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", Finished)
    settings = WorkerSettings.from_env(checkpoint_every=1, max_attempts=5)
    opts = WorkerOptions(device="cpu", settings=settings)
    launch.run_processes(f"sqlite:///{tmp_path}/q.db", ["k"], opts, ["cpu", "cpu"], wait=False)
    assert len(started) == 2
    for env in started:
        monkeypatch.setattr(os, "environ", env)
        assert WorkerSettings.from_env() == settings


def test_runs_queued_for_cuda_elsewhere_are_left_to_cuda_workers(tmp_path, results):
    """`--enqueue-only --device cuda` plans bf16 runs for GPU workers elsewhere: a CPU worker must not train them."""
    db = f"sqlite:///{tmp_path}/q.db"
    args = ["run", "demo", "--methods", "baseline", "--epochs", "1", "-t", "batch_size=16", "--seeds", "0"]
    queued = cli(*args, "--device", "cuda", "--db", db, "--enqueue-only")
    assert queued.exit_code == 0, queued.output
    (run,) = Store(db).runs()
    assert (run.status, run.planned_device, run.hparams["precision"]) == ("queued", "cuda", "bf16")
    assert Worker(Store(db), ENV, keys=None).work() == Counter()
    assert Store(db).get_run(run.id).status == "queued"


def test_a_rerun_that_finds_runs_held_by_live_workers_says_so_unless_it_waits(tmp_path, results, monkeypatch):
    monkeypatch.setenv("PACEBENCH_POLL_S", "0.2")
    db = f"sqlite:///{tmp_path}/q.db"
    store = Store(db)
    plan_ = specs(["baseline"], seeds=(0, 1), epochs=1)
    store.enqueue(plan_)
    held = store.claim_next(Claimant(3600.0, host="other-host", pid=1), keys=[run_key(plan_[0])])
    args = ["run", "demo", "--methods", "baseline", "--seeds", "0,1", *TINY, "--db", db]
    result = cli(*args)
    assert result.exit_code == 1 and "1 run(s) are held by live workers (other-host:1)" in result.output
    assert store.get_run(run_key(plan_[1])).status == "done" and store.get_run(held.id).status == "running"
    rewrite_run(store, held.id, lease_s=0.5)  # the holder goes silent: a waiting rerun takes the run over
    result = cli(*args, "--wait")
    assert result.exit_code == 0, result.output
    assert store.get_run(held.id).status == "done" and store.get_run(held.id).attempts == 2


def test_tune_leaves_out_a_grid_point_that_fails_every_attempt(tmp_path, results):
    db = f"sqlite:///{tmp_path}/q.db"
    result = cli(
        "tune",
        "demo",
        "--methods",
        "pace",
        "--grid",
        "sigma=1.2,1e30",
        "--seeds",
        "0",
        "--tune-seeds",
        "0",
        "--epochs",
        "2",
        "-t",
        "batch_size=16",
        "--device",
        "cpu",
        "--attempts",
        "2",
        "--db",
        db,
    )
    assert result.exit_code == 0, result.output
    assert "excluded digits pace" in result.output and '"sigma":1e+30' in result.output
    runs = Store(db).runs()
    failed = [r for r in runs if r.status == "failed"]
    assert len(failed) == 1 and failed[0].attempts == 2 and "FloatingPointError" in failed[0].error
    (final,) = [r for r in runs if r.phase == "final"]
    assert final.status == "done" and final.method_config["sigma"] == 1.2
    report = cli("report", "--table", "demo", "--format", "md", "--db", db)
    assert report.exit_code == 0 and "1 phase-1 grid point(s) failed all their attempts" in report.output
