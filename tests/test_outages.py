"""The database going away, and secrets staying in.

Store calls wait out an outage (up to PACEBENCH_DB_GRACE_S) instead of failing: a two-worker sweep on a real
PostgreSQL server rides out a restart, a 20-s stop and connections dropped every second, and one on SQLite a file
made read-only for a while; past its grace a worker stops cleanly and a rerun finishes. The password of a database
URL is in no output, log, report, stored row or worker command line. Smaller cases from the same issue: a database
error is never a run's failure, the live view never raises, an unreadable checkpoint is dropped, a deleted SQLite
file is an error (not a run reported done), `worker` exits 1 when its runs failed, runs planned for CUDA are not
trained on a CPU, dead workers are not called live.
"""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import torch
from conftest import assert_one_line_error
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from typer.testing import CliRunner

from pacebench.choices import Status
from pacebench.cli import app
from pacebench.execution.sweep import SweepResult, incomplete
from pacebench.execution.worker import Worker, give_back_unreleased, unreleased_note
from pacebench.plan.planner import PlanRequest, plan
from pacebench.store import Claimant, MemoryStore, Store, StoreError
from pacebench.store.base import holder_gone, utcnow
from pacebench.store.database import display_url, is_transient
from pacebench.training import Environment

REPO = Path(__file__).parents[1]
SECRET = "s3cr3t-Pw"
ENV = Environment(device=torch.device("cpu"), data_root=Path("data"), num_workers=0)
runner = CliRunner()


def specs(seeds=(0,), epochs: int = 2, methods=("baseline",)):
    return plan(
        PlanRequest(suite="demo", methods=list(methods), seeds=list(seeds), train={"epochs": epochs, "batch_size": 16})
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- what counts as an outage, and how long it is waited for -----------------------------------------------------


def sqlite_error(message: str) -> OperationalError:
    return OperationalError("INSERT ...", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("dialect", "error", "transient"),
    [
        ("sqlite", sqlite_error("database is locked"), True),
        ("sqlite", sqlite_error("attempt to write a readonly database"), True),
        ("sqlite", sqlite_error("unable to open database file"), True),
        ("sqlite", sqlite_error("database or disk is full"), False),
        ("sqlite", sqlite_error("no such table: runs"), False),
        (
            "postgresql",
            OperationalError("SELECT 1", {}, Exception("terminating connection due to administrator command")),
            True,
        ),
        ("postgresql", IntegrityError("INSERT ...", {}, Exception("duplicate key")), False),
        ("postgresql", ValueError("not a database error"), False),
    ],
)
def test_transient_database_errors_are_told_from_faults(dialect, error, transient):
    assert is_transient(error, dialect) is transient


def test_the_claim_that_rides_out_an_outage_gives_silent_holders_a_full_lease(tmp_path):
    """The CI flake this fixes: the first claim after a 20 s outage saw every holder's heartbeat 20 s old and took
    a run over (attempt 2), because the outage's end was recorded only after that claim returned."""
    store = Store(f"sqlite:///{tmp_path}/r.db")
    failures = [sqlite_error("database is locked")]
    silent = SimpleNamespace(host="host-b", pid=1, heartbeat_at=utcnow() - timedelta(seconds=31), lease_s=30.0)

    def judge() -> bool:
        if failures:
            raise failures.pop()
        return holder_gone(silent, utcnow(), "host-a", store.db.watched_since)

    assert store.db.retrying(judge) is False
    assert holder_gone(silent, utcnow(), "host-a", None)  # without the outage it would have been taken over


def test_a_transaction_that_hung_for_half_a_lease_counts_as_an_outage(tmp_path):
    """A paused server (SIGSTOP, a stalled disk) hangs its clients instead of failing them: the holders' heartbeats
    hung as well, so they get a full lease again before their runs are taken over (the CI flake of a 20 s pause)."""
    store = Store(f"sqlite:///{tmp_path}/r.db")
    store.db.stall_s = 0.2
    with store.db.session() as s:
        s.execute(text("select 1"))
    assert store.db.watched_since is None  # an answer in time is no outage
    with store.db.session() as s:
        time.sleep(0.3)
        s.execute(text("select 1"))
    hung_until = store.db.watched_since
    assert hung_until is not None
    silent = SimpleNamespace(host="host-b", pid=1, heartbeat_at=hung_until - timedelta(seconds=31), lease_s=30.0)
    assert not holder_gone(silent, hung_until, "host-a", store.db.watched_since)
    assert holder_gone(silent, hung_until + timedelta(seconds=31), "host-a", store.db.watched_since)

    hanging, judged = threading.Event(), threading.Event()

    def heartbeat() -> None:  # another thread's transaction, still hanging while this one judges a holder
        with store.db.session() as s:
            hanging.set()
            judged.wait(5)
            s.execute(text("select 1"))

    beat = threading.Thread(target=heartbeat)
    beat.start()
    hanging.wait(5)
    time.sleep(0.3)
    assert store.db.watched_since > hung_until  # "now": the outage is not over yet
    judged.set()
    beat.join()


def test_a_store_call_waits_out_an_outage_and_gives_up_after_its_grace(tmp_path, caplog):
    store = Store(f"sqlite:///{tmp_path}/r.db", grace_s=1.0)
    failures = [sqlite_error("database is locked")] * 3

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "answered"

    with caplog.at_level(logging.INFO):
        assert store.db.retrying(flaky) == "answered"
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 2 and "unreachable (database is locked)" in notes[0] and "is back" in notes[1], notes
    assert store.db.watched_since is not None  # holders get a full lease again from now on

    def away() -> None:
        raise sqlite_error("attempt to write a readonly database")

    with pytest.raises(StoreError, match=r"readonly database, for 1 s \(the grace, PACEBENCH_DB_GRACE_S=1, is over\)"):
        store.db.retrying(away)
    with pytest.raises(StoreError, match=r"for \d+ s \(the grace, PACEBENCH_DB_GRACE_S=0, is over\)"):
        store.without_retries().db.retrying(away)  # what the live view reads through: never waits
    with pytest.raises(ValueError):
        store.db.retrying(lambda: int("x"))  # not a database error: at once


def test_a_claim_whose_reply_was_lost_is_found_by_the_next_try(tmp_path):
    """A claim commits but the connection drops before its reply: the retry (same token) gets that run back instead
    of claiming a second one and leaving the first to go stale (and be counted again)."""
    store = Store(f"sqlite:///{tmp_path}/r.db")
    store.enqueue(specs(seeds=(0, 1)))
    who = Claimant(3600.0, host="host-a", pid=1)
    first = store._queue._claim_next(who, None, 3, "token-1", again=False)  # committed; the reply never arrived
    again = store._queue._claim_next(who, None, 3, "token-1", again=True)
    assert again.id == first.id and again.attempts == 1
    assert store.status_counts() == {"running": 1, "queued": 1}


def test_urls_are_shown_with_their_password_masked():
    assert display_url(f"postgresql+psycopg://u:{SECRET}@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert display_url(f"postgresql+psycopg://u@h/db?password={SECRET}") == "postgresql+psycopg://u@h/db?password=***"
    assert display_url(f"postgresql+psycopg://u:{SECRET}@h:port/db") == "postgresql+psycopg://u:***@h:port/db"
    assert display_url("sqlite:///results/pacebench.db") == "sqlite:///results/pacebench.db"


def test_error_lines_never_show_the_password():
    refused = runner.invoke(app, ["runs", "--db", f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/x"])
    assert_one_line_error(refused, 1, "cannot open database postgresql+psycopg://postgres:***@127.0.0.1:1/x")
    unparsable = runner.invoke(app, ["runs", "--db", f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:port/x"])
    assert_one_line_error(unparsable, 2, "cannot parse database URL 'postgresql+psycopg://postgres:***@")
    assert SECRET not in refused.output + unparsable.output


# ---- workers, the live view, status -----------------------------------------------------------------------------


class Away(MemoryStore):
    """A store whose database does not answer."""

    def status_counts(self, *args, **kwargs):
        raise StoreError("database postgresql://u:***@h/db: connection refused")

    workers = status_counts


def test_the_live_view_says_the_database_is_away_and_never_raises():
    from pacebench.cli.progress import SweepDisplay

    console = Console(file=io.StringIO(), width=200)
    store = MemoryStore()
    (run,) = store.enqueue(specs())
    display = SweepDisplay(console, store, [run.key])
    console.print(display.render())
    display.store = Away()
    console.print(display.render())
    console.print(display.render())
    shown = console.file.getvalue()
    assert shown.count("1 runs: 0 done, 1 queued") == 3, "the last view stays up"
    assert shown.count("database unreachable for") == 2 and "connection refused" in shown


def test_a_database_error_is_never_the_runs_failure(results):
    """A store that fails (here: every epoch write, as past the grace) stops the worker with that error; the run is
    neither failed nor counted, and is trained by the next worker."""

    class Failing(MemoryStore):
        away = True

        def write_epoch(self, *args, **kwargs):
            if self.away:
                raise StoreError("database x: unreachable, for 300 s (the grace, PACEBENCH_DB_GRACE_S=300, is over)")
            super().write_epoch(*args, **kwargs)

    store = Failing()
    (run,) = store.enqueue(specs())
    with pytest.raises(StoreError, match="unreachable"):
        Worker(store, ENV).work()
    again = store.get_run(run.id)
    assert (again.status, again.attempts, again.error) == (Status.queued, 0, None)  # released, not counted
    store.away = False
    assert Worker(store, ENV).work() == {"done": 1}


def test_an_unreadable_checkpoint_is_dropped_and_the_run_starts_again(results, caplog):
    import fractions

    store = MemoryStore()
    (run,) = store.enqueue(specs(epochs=3))
    held = store.claim_next(Claimant(3600.0))
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "x": fractions.Fraction(1, 3)}, buffer)  # torch.load(weights_only=True) refuses it
    store.save_checkpoint(held.id, held.claim, 1, buffer.getvalue())
    store.release(held.id, held.claim)
    with caplog.at_level(logging.WARNING):
        assert Worker(store, ENV).work() == {"done": 1}
    (note,) = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert "cannot be read" in note and "starts again from epoch 0" in note and "weights_only" not in note
    assert [e.epoch for e in store.epochs(run.id)] == [0, 1, 2] and store.get_run(run.id).attempts == 1


def test_a_sqlite_file_deleted_while_a_run_writes_is_an_error_not_a_done_run(tmp_path, results):
    path = tmp_path / "r.db"

    class DeletesTheFile(Worker):
        def _on_epoch(self, run, claim):
            write = super()._on_epoch(run, claim)

            def on_epoch(epoch, record):
                write(epoch, record)
                path.unlink()  # someone deletes the database after the first epoch's row

            return on_epoch

    store = Store(f"sqlite:///{path}")
    store.enqueue(specs())
    worker = DeletesTheFile(store, ENV)
    with pytest.raises(StoreError, match="the file was deleted or replaced while pacebench was using it"):
        worker.work()
    assert not worker.outcomes and not path.exists()  # no run reported done, no new empty file in its place


def test_a_worker_exits_1_when_a_run_it_trained_failed(tmp_path, results, monkeypatch):
    monkeypatch.setenv("PACEBENCH_MAX_ATTEMPTS", "1")
    db = f"sqlite:///{tmp_path}/r.db"
    store = Store(db)
    store.enqueue(
        plan(
            PlanRequest(
                suite="demo",
                methods=["pace"],
                seeds=[0],
                method={"sigma": "1e30"},
                train={"epochs": 1, "batch_size": 16},
            )
        )
    )
    result = runner.invoke(app, ["worker", "--device", "cpu", "--workers", "0", "--db", db])
    assert result.exit_code == 1 and "1 failed" in result.output, result.output
    assert [r.status for r in store.runs()] == [Status.failed]


def test_a_cpu_worker_never_trains_runs_planned_for_cuda(tmp_path):
    db = f"sqlite:///{tmp_path}/r.db"
    store = Store(db)
    (run,) = store.enqueue(specs(), planned_device="cuda")
    result = runner.invoke(app, ["worker", "--device", "cpu", "--db", db])
    assert result.exit_code == 0 and "nothing to do" in result.output, result.output
    assert store.get_run(run.id).status == Status.queued and store.get_run(run.id).attempts == 0


def test_dead_workers_are_neither_live_nor_holding_runs(tmp_path):
    db = f"sqlite:///{tmp_path}/r.db"
    store = Store(db)
    keys = [r.key for r in store.enqueue(specs(seeds=(0, 1)))]
    dead = Claimant(3600.0, pid=dead_pid())  # this host, a fresh heartbeat, but its process is gone
    store.worker_started(dead, "cpu")
    held = store.claim_next(dead)
    store.worker_update(dead.name, state="training", run_id=held.id, epoch=0)
    result = SweepResult(store.runs(key=keys), set(), [], {r.key for r in store.held_by_live_workers(keys)})
    problem = incomplete(result, tolerate_failures=False)
    assert "held by live workers" not in problem and "2 run(s) not finished" in problem, problem
    status = runner.invoke(app, ["status", "--db", db])
    assert status.exit_code == 0 and "0 live worker(s)" in status.output and "gone" in status.output, status.output


# ---- real outages under a two-worker sweep ------------------------------------------------------------------------


def results_folder(tmp_path: Path, results: Path) -> Path:
    """A results folder of its own (worker logs land in it) sharing the session's pre-trained demo backbone."""
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "checkpoints").symlink_to(results / "checkpoints")
    return folder


def environment(folder: Path, **extra: str) -> dict[str, str]:
    """Short heartbeats (lease 10 s: well over the store's longest back-off, even on a loaded machine), a grace that
    bounds a failing test."""
    return {
        **os.environ,
        "PACEBENCH_RESULTS": str(folder),
        "PYTHONPATH": str(REPO),
        "PACEBENCH_HEARTBEAT_S": "0.2",
        "PACEBENCH_MISSED_BEATS": "50",
        "PACEBENCH_POLL_S": "0.2",
        "PACEBENCH_DB_GRACE_S": "120",
        **extra,
    }


def pacebench(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pacebench", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


SWEEP = [
    "run",
    "demo",
    "--methods",
    "baseline,pace",
    "--epochs",
    "2",
    "-t",
    "batch_size=16",
    "--device",
    "cpu",
    "--jobs",
    "2",
]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the sweep ended early: {proc.communicate()[0]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def count(query: str, connect) -> int:
    """A number from the database, or -1 while it does not answer."""
    try:
        with connect() as conn:
            return conn.execute(query).fetchone()[0]
    except (psycopg.Error, sqlite3.Error):
        return -1


def training(connect) -> tuple[Callable[[], bool], Callable[[], int]]:
    """(both workers registered and one epoch written; one more epoch written than now)."""
    epochs = lambda: count("select count(*) from epochs", connect)  # noqa: E731
    started = lambda: count("select count(*) from workers", connect) >= 2 and epochs() >= 1  # noqa: E731
    return started, epochs


def assert_each_run_done_once(store: Store, runs: int) -> None:
    done = store.runs()
    assert [(r.status, r.attempts, r.error) for r in done] == [(Status.done, 1, None)] * runs
    assert all([e.epoch for e in store.epochs(r.id)] == [0, 1] for r in done)


def worker_logs(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted((folder / "logs").glob("worker-*.log")))


class CommandLines(threading.Thread):
    """Collects the command lines of the sweep's worker processes while it runs (what `ps` shows any user)."""

    def __init__(self, parent: int) -> None:
        super().__init__(daemon=True)
        self.parent, self.seen, self.done = parent, {}, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == self.parent:
                        line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                        self.seen[proc.name] = line or self.seen.get(proc.name, "")  # a zombie's is empty
                except (OSError, ValueError, IndexError):
                    continue


def test_a_two_worker_sweep_rides_out_a_restart_a_stop_and_dropped_connections(pg_server, tmp_path, results):
    """The issue's test: the same command finishes with exit 0, every run done once with all its epochs, no run
    failed, no traceback. The URL carries a password, which must appear nowhere: output, worker logs, the workers'
    command lines, the report, `status`, `runs`, the stored rows."""
    url = pg_server.create_database("outages").replace("postgres@", f"postgres:{SECRET}@")
    folder = results_folder(tmp_path, results)
    connect = lambda: psycopg.connect(url.replace("+psycopg", ""), connect_timeout=2)  # noqa: E731
    proc = pacebench(*SWEEP, "--seeds", "0,1,2,3", "--db", url, env=environment(folder))
    lines = CommandLines(proc.pid)
    lines.start()
    started, epochs = training(connect)
    wait_for(started, proc)
    pg_server.restart()
    before = epochs()
    wait_for(lambda: epochs() > before, proc)
    pg_server.pause()
    time.sleep(20)
    pg_server.resume()
    dropped, until = 0, time.monotonic() + 20
    while time.monotonic() < until and proc.poll() is None:
        dropped += pg_server.terminate_connections()
        time.sleep(1)
    output = proc.communicate(timeout=600)[0]
    lines.done.set()
    logs = worker_logs(folder)
    assert proc.returncode == 0, output + logs
    assert "Traceback" not in output + logs
    assert "unreachable" in logs and dropped > 0, "the outages reached the workers"
    assert_each_run_done_once(Store(url), 8)
    # the password: masked where the URL is shown, absent everywhere else
    assert f"postgres:***@127.0.0.1:{pg_server.port}/outages" in output
    workers = [line for line in lines.seen.values() if " worker " in line]
    assert len(workers) >= 2 and not any(SECRET in line for line in workers), workers
    page = tmp_path / "report.html"
    shown = [
        runner.invoke(app, [*command, "--db", url])
        for command in (
            ["status"],
            ["runs"],
            ["db", "upgrade"],
            ["report", "--all", "--format", "html", "--out", str(page)],
        )
    ]
    assert all(r.exit_code == 0 for r in shown), [r.output for r in shown]
    assert "postgres:***@" in page.read_text() and "postgres:***@" in shown[1].output
    with connect() as conn:
        stored = str(conn.execute("select * from runs").fetchall() + conn.execute("select * from workers").fetchall())
    for shown_text in (output, logs, page.read_text(), stored, *(r.output for r in shown)):
        assert SECRET not in shown_text


def test_a_noted_claim_is_given_back_without_counting_and_a_stale_note_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_RESULTS", str(tmp_path))
    store = MemoryStore()
    first, second = store.enqueue(specs(seeds=(0, 1)))
    held, taken = store.claim_next(Claimant(30.0)), store.claim_next(Claimant(30.0))
    assert (held.id, taken.id, held.attempts) == (first.id, second.id, 1)
    elsewhere = unreleased_note("sqlite:///another.db", held.id, held.claim)
    notes = [unreleased_note(store.url, held.id, held.claim), unreleased_note(store.url, taken.id, "taken-since")]
    for note in [*notes, elsewhere]:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.touch()
    give_back_unreleased(store)
    assert (store.get_run(first.id).status, store.get_run(first.id).attempts) == (Status.queued, 0)
    assert (store.get_run(second.id).status, store.get_run(second.id).claim) == (Status.running, taken.claim)
    assert not any(note.exists() for note in notes) and elsewhere.exists(), "another database's notes are its own"


def test_past_its_grace_a_worker_stops_cleanly_and_a_rerun_finishes(pg_server, tmp_path, results):
    url = pg_server.create_database("grace")
    store = Store(url)
    (run,) = store.enqueue(specs(epochs=10), planned_device="cpu")
    env = environment(results_folder(tmp_path, results), PACEBENCH_DB_GRACE_S="2", PACEBENCH_CHECKPOINT_EVERY="1")
    worker = ["worker", "--device", "cpu", "--workers", "0", "--db", url]
    proc = pacebench(*worker, env=env)
    wait_for(
        lambda: count("select count(*) from epochs", lambda: psycopg.connect(url.replace("+psycopg", ""))) >= 2, proc
    )
    pg_server.pause()
    try:
        output = proc.communicate(timeout=120)[0]
    finally:
        pg_server.resume()
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, output
    assert "for 2 s (the grace, PACEBENCH_DB_GRACE_S=2, is over)" in errors[0], output
    assert "Traceback" not in output
    stopped = store.get_run(run.id)
    assert stopped.status == Status.running and stopped.error is None, "an outage is never the run's failure"
    assert list((tmp_path / "results" / "unreleased").rglob("*-*")), "the claim it could not give back is noted"
    rerun = pacebench(*worker, env=env)
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0 and "1 done" in output, output
    finished = store.get_run(run.id)
    assert [e.epoch for e in store.epochs(run.id)] == list(range(10)) and finished.status == Status.done
    assert finished.attempts == 1, "the rerun gave the claim back first: the outage cost the run no attempt"
    assert not list((tmp_path / "results" / "unreleased").rglob("*-*"))


def read_only(path: Path, on: bool) -> None:
    """Makes `path` read-only (or writable again) for every process, root's too (`chattr +i`; chmod for others)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True, capture_output=True)
    else:
        path.chmod(0o444 if on else 0o644)


def test_a_sqlite_file_made_read_only_for_a_while_is_waited_for(tmp_path, results):
    probe = tmp_path / "probe"
    probe.write_text("x")
    try:
        read_only(probe, True)
        read_only(probe, False)
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("no way to make a file read-only for root here (chattr +i refused)")
    path = tmp_path / "r.db"
    folder = results_folder(tmp_path, results)
    connect = lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # noqa: E731
    proc = pacebench(*SWEEP, "--seeds", "0,1", "--db", f"sqlite:///{path}", env=environment(folder))
    started, _ = training(connect)
    wait_for(started, proc)
    read_only(path, True)
    try:
        wait_for(lambda: "is read-only" in worker_logs(folder), proc, timeout=60)
    finally:
        read_only(path, False)
    output = proc.communicate(timeout=600)[0]
    logs = worker_logs(folder)
    assert proc.returncode == 0 and "Traceback" not in output + logs, output + logs
    assert "\nwarning: database sqlite" in "\n" + logs and "warning: warning:" not in logs, logs
    assert "\ndatabase sqlite" in logs and "is back after" in logs  # a note, not a warning
    assert_each_run_done_once(Store(f"sqlite:///{path}"), 4)
