"""The storage interface: what workers, the execution path, reports, the CLI and `bench` ask of a results store, and
the queue rules every implementation shares.

Two implementations: `store.sql.Store` (SQLAlchemy: a SQLite file or PostgreSQL; what every command opens) and
`store.memory.MemoryStore` (this process's memory: `pacebench bench --no-store`, tests). tests/test_store.py and
tests/test_queue.py run one contract against both through one parametrized fixture.

A run moves queued -> running (claimed by one worker) -> done | failed, or back to queued (released, or retried after
an error). Every write a worker makes for its run names its claim token and is refused with `ClaimLost` once the
claim was taken over; the rules for when that may happen (`holder_gone`) live here, so both implementations decide
alike.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pacebench.choices import Status
from pacebench.errors import PacebenchError

if TYPE_CHECKING:
    from pacebench.plan.spec import RunSpec
    from pacebench.store.records import EpochRecord, Predictions, RunRecord, WorkerRecord

DEFAULT_LEASE_S = 600.0  # a claim recorded without its holder's lease (none is written so today)


class ClaimLost(PacebenchError):
    """This worker no longer holds the run (it was taken over after a missed lease); nothing more may be written."""


class StoreError(PacebenchError):
    """The store itself failed (full disk, damaged schema, a file deleted under it, unreachable for longer than its
    grace): nothing is wrong with the run being written, so a worker stops and leaves the run to a rerun."""


def utcnow() -> datetime:
    """Naive UTC: what every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Claimant:
    """Who claims: a worker process on a host, how long it may stay silent before its claims go stale, and the kind
    of device it trains on (it is handed only runs planned for that kind; None: any, for tests and tools)."""

    lease_s: float
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    device_type: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    def claim_values(self, token: str, now: datetime) -> dict[str, Any]:
        """The columns a claim writes, in every store (the attempt count, which each store raises its own way,
        aside): the run is running, held by `token`, and this worker's from `now`."""
        return {
            "status": Status.running,
            "claim": token,
            "host": self.host,
            "pid": self.pid,
            "lease_s": self.lease_s,
            "worker": self.name,
            "heartbeat_at": now,
            "started_at": now,
            "finished_at": None,
        }


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is alive (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def holder_gone(run: Any, now: datetime, host: str, watched_since: datetime | None = None) -> bool:
    """A running claim may be taken over: its pid is dead on this host, or its heartbeat is older than its lease.

    `watched_since`: when this process last saw the database come back after an outage (or answer after hanging
    for half a lease: a paused server hangs its clients instead of failing them). Silence is only counted
    over time the database was up: a holder could not write its heartbeat while it was away, so after an outage
    every holder has a full lease to beat again before its run is taken over."""
    if run.host == host and run.pid is not None and not pid_alive(run.pid):
        return True
    lease = timedelta(seconds=run.lease_s or DEFAULT_LEASE_S)
    if watched_since is not None and watched_since > now - lease:
        return False
    return run.heartbeat_at is None or run.heartbeat_at < now - lease


def worker_alive(worker: WorkerRecord, now: datetime, lease_s: float, host: str | None = None) -> bool:
    """A worker row is a live worker: not stopped, its pid alive when it is on this host, and a heartbeat younger
    than `lease_s` (a worker killed before it could write "stopped" is not taken for a live one)."""
    if worker.state == "stopped":
        return False
    if worker.host == (host or socket.gethostname()) and not pid_alive(worker.pid):
        return False
    return (now - worker.heartbeat_at).total_seconds() < lease_s


def after_failure(attempts: int, max_attempts: int, retry: bool) -> Status:
    """What a failed attempt makes of its run: queued for another attempt, or failed for good."""
    return Status.queued if retry and attempts < max_attempts else Status.failed


def vanished_error(attempts: int, worker: str | None) -> str:
    """The error kept with a run whose holders died or went silent in every attempt."""
    return f"its worker died or stopped answering in each of {attempts} attempt(s), last {worker}; rerun to try again"


class Storage(Protocol):
    """A results store: runs and their epochs, the work queue over them, worker rows and bench measurements.

    Everything it hands out is a plain frozen record (`store.records`), safe to keep after the call returns.
    """

    @property
    def url(self) -> str:
        """The URL another process opens this store by. It may hold a password: never show it (`display_url`)."""
        ...

    @property
    def display_url(self) -> str:
        """The URL with its password masked: what is printed, logged, stored and rendered."""
        ...

    def without_retries(self) -> Storage:
        """The same store, failing at once with `StoreError` instead of waiting out an outage (for a display that
        must keep refreshing)."""
        ...

    # ---- runs -------------------------------------------------------------------------------------------------
    def get_run(self, key_or_id: str | int) -> RunRecord | None: ...

    def runs(self, **filters: Any) -> list[RunRecord]:
        """Runs matching equality filters on run columns (a list or tuple value means 'any of'), oldest first."""
        ...

    def status_counts(self, keys: list[str] | None = None, **filters: Any) -> Counter[str]: ...

    def epochs(self, run_id: int) -> list[EpochRecord]: ...

    def epochs_of(self, run_ids: Iterable[int]) -> list[EpochRecord]:
        """The epochs of several runs, by run then epoch."""
        ...

    def run_weights(self, run_id: int) -> dict[str, Any] | None:
        """The trained adapter and head tensors of a finished run (CPU tensors by name), or None."""
        ...

    def predictions(self, run_ids: Iterable[int]) -> dict[tuple[int, str], Predictions]:
        """The per-example predictions of finished runs, by (run id, evaluation set); runs stored before they were
        kept have none."""
        ...

    def mean_epoch_seconds(self, **filters: Any) -> float | None:
        """Mean measured wall time of one epoch over the matching runs (for ETAs)."""
        ...

    # ---- planning ---------------------------------------------------------------------------------------------
    def enqueue(
        self, specs: Iterable[RunSpec], origin: str = "direct", planned_device: str | None = None
    ) -> list[RunRecord]:
        """Writes each spec as a queued run planned for `planned_device` (a kind of device: cpu, cuda; None: any);
        a run that failed all its attempts is queued again with fresh attempts, and a queued one is planned anew.
        Done and running runs are left as they are. Returns each spec's run."""
        ...

    def held_by_live_workers(self, keys: list[str], host: str | None = None) -> list[RunRecord]:
        """Runs of `keys` running under a claim whose holder is alive (not to be taken over yet)."""
        ...

    # ---- claims (every write below names the claim token and raises ClaimLost once it was taken over) ----------
    def claim_next(self, who: Claimant, keys: list[str] | None = None, max_attempts: int = 3) -> RunRecord | None:
        """Claims one run planned for `who`'s kind of device: first a running run whose holder is gone, else the
        oldest queued run (of `keys` if given); None when nothing is claimable. A run whose holders vanished
        `max_attempts` times is marked failed instead."""
        ...

    def beat(self, run_id: int, claim: str) -> bool:
        """The heartbeat; False when the claim was lost."""
        ...

    def resume_point(self, run_id: int, claim: str) -> tuple[int, bytes] | None:
        """The run's newest checkpoint (epoch, bytes), or None to start at epoch 0; epoch rows after it are deleted
        (they are trained and written again)."""
        ...

    def checkpoint_epoch(self, run_id: int) -> int | None: ...

    def save_checkpoint(self, run_id: int, claim: str, epoch: int, data: bytes) -> None: ...

    def drop_checkpoint(self, run_id: int, claim: str) -> None:
        """Deletes the run's checkpoint and epoch rows: the checkpoint cannot be read, the run starts again."""
        ...

    def write_epoch(self, run_id: int, claim: str, record: EpochRecord) -> None:
        """One epoch row, replacing a row for the same epoch left by an interrupted attempt."""
        ...

    def set_run_facts(self, run_id: int, claim: str, **values: Any) -> None:
        """Sets run columns the worker learns while training (device, versions, parameter counts, setup)."""
        ...

    def finish_claimed(
        self,
        run_id: int,
        claim: str,
        metrics: dict[str, Any],
        weights: dict[str, Any] | None,
        predictions: Mapping[str, Predictions] | None = None,
    ) -> None:
        """Done, with its weights and per-example predictions, and its checkpoint deleted: all at once, and only
        while the claim holds (a done run keeps the token that finished it, so a finish repeated after a lost reply
        is not a lost claim)."""
        ...

    def fail_claimed(self, run_id: int, claim: str, error: str, max_attempts: int, retry: bool = True) -> str:
        """Gives the run back for another attempt, or marks it failed when it has had `max_attempts` (or `retry`
        is False: an error that would repeat); returns the new status, or "lost". The error is kept either way."""
        ...

    def release(self, run_id: int, claim: str) -> bool:
        """A clean stop: the run goes back to the queue and this attempt is not counted; False if it was lost."""
        ...

    # ---- workers ----------------------------------------------------------------------------------------------
    def worker_started(self, who: Claimant, device: str) -> None: ...

    def worker_update(self, name: str, **values: Any) -> None:
        """Refreshes a worker row's heartbeat and sets `values` (state, run_id, epoch, info)."""
        ...

    def workers(self, active_since: datetime | None = None) -> list[WorkerRecord]: ...

    # ---- speed measurements (`pacebench bench`) ---------------------------------------------------------------
    def add_speed(self, rows: Iterable[dict[str, Any]]) -> None: ...

    def speed(self) -> list[dict[str, Any]]:
        """Every stored bench row as a plain dict, oldest first."""
        ...
