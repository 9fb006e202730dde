"""The work queue on top of the runs table: exactly-once claims, heartbeats, retries, checkpoints, worker rows.

A claim is a random token written into the run together with the holder's host, pid and lease (how long a silent
holder keeps the run). Every write a worker makes for its run (epoch rows, checkpoints, the finish) is an UPDATE or
DELETE that names the token in its WHERE clause and checks the row count inside the same transaction, so a worker
that lost its claim (it was stopped past its lease and the run was taken over) cannot write a single row: it gets
`ClaimLost` and stops. A claim is taken over when its holder's pid is dead on the same host (at once), or when its
heartbeat is older than the lease (anywhere). On PostgreSQL the next queued run is picked with
`SELECT ... FOR UPDATE SKIP LOCKED`, so many workers never queue up behind one row lock; on SQLite (where FOR UPDATE
is not rendered) the conditional UPDATE alone keeps the claim exclusive.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from pacebench.errors import PacebenchError
from pacebench.plan.runkey import run_key
from pacebench.store.models import CheckpointRow, EpochRow, RunRow, WorkerRow
from pacebench.store.records import EpochRecord, RunRecord, WorkerRecord
from pacebench.store.rows import new_run_row, put_epoch, put_weights, run_record, utcnow, worker_record

if TYPE_CHECKING:
    from pacebench.plan.spec import RunSpec


class ClaimLost(PacebenchError):
    """This worker no longer holds the run (it was taken over after a missed lease); nothing more may be written."""


@dataclass(frozen=True)
class Claimant:
    """Who claims: a worker process on a host, and how long it may stay silent before its claims go stale."""

    lease_s: float
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"


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


def holder_gone(run: Any, now: datetime, host: str) -> bool:
    """A running claim may be taken over: its pid is dead on this host, or its heartbeat is older than its lease."""
    if run.host == host and run.pid is not None and not pid_alive(run.pid):
        return True
    lease = timedelta(seconds=run.lease_s or 600.0)
    return run.heartbeat_at is None or run.heartbeat_at < now - lease


class QueueMixin:
    """Queue methods of `Store` (kept apart from the plain record API in api.py)."""

    # provided by Store
    session: Any
    engine: Any

    get_run: Callable[[str | int], RunRecord | None]
    add_run: Callable[..., RunRecord]

    # ---- planning -------------------------------------------------------------------------------------------------
    def enqueue(self, specs: Iterable[RunSpec], origin: str = "direct") -> list[RunRecord]:
        """Writes each spec as a queued run (its full spec is in the row); a run that failed all its attempts is
        queued again with fresh attempts, since asking for it again is asking for a retry. Done and running runs
        are left as they are. One transaction for the whole plan (a sweep of hundreds of runs against a remote
        PostgreSQL is one round trip, not three per run); if another process inserts one of the same keys at the
        same moment, the plan falls back to adding its runs one by one."""
        from sqlalchemy.exc import IntegrityError

        plan = [(run_key(spec), spec) for spec in specs]  # a key hashes the whole spec: computed once here
        keys = list(dict.fromkeys(key for key, _ in plan))
        try:
            with self.session() as s:
                s.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE"})  # SQLite: read, then write
                status = dict(s.execute(select(RunRow.key, RunRow.status).where(RunRow.key.in_(keys))).all())
                fresh = {key: spec for key, spec in plan if key not in status}
                s.add_all(new_run_row(spec, origin, key) for key, spec in fresh.items())
                failed = [key for key, value in status.items() if value == "failed"]
                if failed:
                    s.execute(update(RunRow).where(RunRow.key.in_(failed), RunRow.status == "failed")
                              .values(status="queued", attempts=0, claim=None))
        except IntegrityError:  # a concurrent enqueue of the same run: take them one at a time
            return [self._enqueue_one(spec, origin) for _, spec in plan]
        with self.session() as s:
            records = {r.key: run_record(r) for r in s.scalars(select(RunRow).where(RunRow.key.in_(keys)))}
        return [records[key] for key, _ in plan]

    def _enqueue_one(self, spec: RunSpec, origin: str) -> RunRecord:
        record = self.add_run(spec, origin)
        if record.status == "failed":
            with self.session() as s:
                s.execute(update(RunRow).where(RunRow.id == record.id, RunRow.status == "failed")
                          .values(status="queued", attempts=0, claim=None))
            record = self.get_run(record.id)  # type: ignore[assignment]
        return record

    def status_counts(self, keys: list[str] | None = None, **filters: Any) -> Counter[str]:
        query = select(RunRow.status, func.count()).group_by(RunRow.status)
        if keys is not None:
            query = query.where(RunRow.key.in_(keys))
        for name, value in filters.items():
            if value is not None:
                query = query.where(getattr(RunRow, name) == value)
        with self.session() as s:
            return Counter({status: n for status, n in s.execute(query)})

    # ---- claims ---------------------------------------------------------------------------------------------------
    def claim_next(self, who: Claimant, keys: list[str] | None = None, max_attempts: int = 3) -> RunRecord | None:
        """Claims one run: first a running run whose holder is gone, else the oldest queued run (of `keys` if
        given). Returns the claimed run (its `claim` is this worker's token) or None when nothing is claimable.
        A run whose holders vanished `max_attempts` times is marked failed instead of being tried again."""
        now = utcnow()
        scope = [RunRow.key.in_(keys)] if keys is not None else []
        with self.session() as s:
            running = s.execute(select(RunRow.id, RunRow.claim, RunRow.host, RunRow.pid, RunRow.heartbeat_at,
                                       RunRow.lease_s, RunRow.attempts, RunRow.worker)
                                .where(RunRow.status == "running", *scope)).all()
        for run in running:
            if not holder_gone(run, now, who.host):
                continue
            if run.attempts >= max_attempts:
                error = (f"its worker died or stopped answering in each of {run.attempts} attempt(s), last "
                         f"{run.worker}; rerun to try again")
                with self.session() as s:
                    s.execute(update(RunRow).where(RunRow.id == run.id, RunRow.claim == run.claim)
                              .values(status="failed", claim=None, error=error, finished_at=now))
                continue
            with self.session() as s:
                taken = self._take(s, RunRow.claim == run.claim, run.id, who, now)
            if taken:
                return self.get_run(run.id)
        # PostgreSQL: pick and take in one transaction, the row locked and skipped by the others. SQLite: pick in
        # one transaction and take in the next (a read that turns into a write would fail at once with "database is
        # locked" when another worker wrote meanwhile); the conditional UPDATE still lets only one worker win.
        one_transaction = self.engine.dialect.name == "postgresql"
        while True:
            with self.session() as s:
                query = (select(RunRow.id).where(RunRow.status == "queued", *scope).order_by(RunRow.id).limit(1)
                         .with_for_update(skip_locked=True))
                run_id = s.scalars(query).one_or_none()
                if run_id is None:
                    return None
                taken = one_transaction and self._take(s, RunRow.status == "queued", run_id, who, now)
            if not one_transaction:
                with self.session() as s:
                    taken = self._take(s, RunRow.status == "queued", run_id, who, now)
            if taken:
                return self.get_run(run_id)

    @staticmethod
    def _take(s: Any, condition: Any, run_id: int, who: Claimant, now: datetime) -> bool:
        """The conditional UPDATE that makes a claim: it succeeds for exactly one worker."""
        result = s.execute(update(RunRow).where(RunRow.id == run_id, condition)
                           .values(status="running", claim=uuid.uuid4().hex, host=who.host, pid=who.pid,
                                   lease_s=who.lease_s, worker=who.name, heartbeat_at=now, started_at=now,
                                   finished_at=None, attempts=RunRow.attempts + 1))
        return result.rowcount == 1

    @staticmethod
    def _held(s: Any, run_id: int, token: str, **values: Any) -> None:
        """Refreshes the heartbeat (and sets `values`) if `token` still holds the run, else raises ClaimLost. Runs
        first in a transaction, so the check and the writes after it are atomic."""
        result = s.execute(update(RunRow).where(RunRow.id == run_id, RunRow.claim == token,
                                                RunRow.status == "running")
                           .values(heartbeat_at=utcnow(), **values))
        if result.rowcount != 1:
            raise ClaimLost(f"run {run_id} was taken over by another worker after this one missed its lease")

    def beat(self, run_id: int, claim: str) -> bool:
        """The heartbeat; False when the claim was lost."""
        try:
            with self.session() as s:
                self._held(s, run_id, claim)
        except ClaimLost:
            return False
        return True

    def resume_point(self, run_id: int, claim: str) -> tuple[int, bytes] | None:
        """The run's newest checkpoint (epoch, bytes), or None to start at epoch 0; epoch rows after it (written
        by an attempt that died before its next checkpoint) are deleted, so they are trained and written again."""
        with self.session() as s:
            self._held(s, run_id, claim)
            row = s.execute(select(CheckpointRow.epoch, CheckpointRow.data)
                            .where(CheckpointRow.run_id == run_id)).one_or_none()
            last = -1 if row is None else row.epoch
            s.execute(delete(EpochRow).where(EpochRow.run_id == run_id, EpochRow.epoch > last))
        return None if row is None else (row.epoch, row.data)

    def write_epoch(self, run_id: int, claim: str, record: EpochRecord) -> None:
        with self.session() as s:
            self._held(s, run_id, claim)
            put_epoch(s, run_id, record)

    def save_checkpoint(self, run_id: int, claim: str, epoch: int, data: bytes) -> None:
        with self.session() as s:
            self._held(s, run_id, claim)
            s.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
            s.add(CheckpointRow(run_id=run_id, epoch=epoch, data=data, created_at=utcnow()))

    def checkpoint_epoch(self, run_id: int) -> int | None:
        with self.session() as s:
            return s.scalars(select(CheckpointRow.epoch).where(CheckpointRow.run_id == run_id)).one_or_none()

    def set_run_facts(self, run_id: int, claim: str, **values: Any) -> None:
        with self.session() as s:
            self._held(s, run_id, claim, **values)

    def finish_claimed(self, run_id: int, claim: str, metrics: dict[str, Any], weights: dict[str, Any] | None
                       ) -> None:
        """Done, with its weights, and its checkpoint deleted: one transaction, and only while the claim holds."""
        now = utcnow()
        with self.session() as s:
            self._held(s, run_id, claim, status="done", metrics=metrics, finished_at=now, error=None, claim=None)
            s.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
            if weights is not None:
                put_weights(s, run_id, weights, now)

    def fail_claimed(self, run_id: int, claim: str, error: str, max_attempts: int, retry: bool = True) -> str:
        """Gives the run back to the queue for another attempt, or marks it failed when it has had `max_attempts`
        (or `retry` is False: an error that would repeat); returns the new status. The error is kept either way."""
        run = self.get_run(run_id)
        status = "queued" if retry and run is not None and run.attempts < max_attempts else "failed"
        try:
            with self.session() as s:
                self._held(s, run_id, claim, status=status, error=error, claim=None, finished_at=utcnow())
        except ClaimLost:
            return "lost"
        return status

    def release(self, run_id: int, claim: str) -> bool:
        """A clean stop (SIGTERM, Ctrl-C): the run goes back to the queue and this attempt is not counted."""
        try:
            with self.session() as s:
                self._held(s, run_id, claim, status="queued", claim=None, attempts=RunRow.attempts - 1)
        except ClaimLost:
            return False
        return True

    def held_by_live_workers(self, keys: list[str], host: str | None = None) -> list[RunRecord]:
        """Runs of `keys` that are running under a claim whose holder is alive (not taken over yet)."""
        now, host = utcnow(), host or socket.gethostname()
        with self.session() as s:
            rows = s.scalars(select(RunRow).where(RunRow.key.in_(keys), RunRow.status == "running")).all()
            return [run_record(r) for r in rows if not holder_gone(r, now, host)]

    # ---- workers --------------------------------------------------------------------------------------------------
    def worker_started(self, who: Claimant, device: str) -> None:
        now = utcnow()
        with self.session() as s:
            s.execute(delete(WorkerRow).where(WorkerRow.name == who.name))
            s.add(WorkerRow(name=who.name, host=who.host, pid=who.pid, device=device, state="idle", info={},
                            started_at=now, heartbeat_at=now))

    def worker_update(self, name: str, **values: Any) -> None:
        with self.session() as s:
            s.execute(update(WorkerRow).where(WorkerRow.name == name).values(heartbeat_at=utcnow(), **values))

    def workers(self, active_since: datetime | None = None) -> list[WorkerRecord]:
        query = select(WorkerRow).order_by(WorkerRow.started_at, WorkerRow.name)
        if active_since is not None:
            query = query.where(WorkerRow.heartbeat_at >= active_since)
        with self.session() as s:
            return [worker_record(r) for r in s.scalars(query)]

    def mean_epoch_seconds(self, **filters: Any) -> float | None:
        """Mean measured wall time of one epoch over the matching runs (for ETAs)."""
        query = select(func.avg(EpochRow.wall_time)).join(RunRow, RunRow.id == EpochRow.run_id)
        for name, value in filters.items():
            if value is not None:
                query = query.where(getattr(RunRow, name) == value)
        with self.session() as s:
            value = s.scalar(query)
        return None if value is None else float(value)


