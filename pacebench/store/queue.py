"""The queue part of the SQL store: exactly-once claims, fenced writes, heartbeats, checkpoints, worker rows.

A claim is a random token written into the run together with the holder's host, pid and lease (how long a silent
holder keeps the run). Every write a worker makes for its run (epoch rows, checkpoints, the finish) is an UPDATE or
DELETE that names the token in its WHERE clause and checks the row count inside the same transaction, so a worker
that lost its claim (it was stopped past its lease and the run was taken over) cannot write a single row: it gets
`ClaimLost` and stops. When a claim may be taken over is `base.holder_gone` (silence is counted only over time
this process saw the database up, so an outage does not make every holder look gone). A worker is handed only runs
planned for its kind of device (or planned for none). On PostgreSQL the next queued run is
picked with `SELECT ... FOR UPDATE SKIP LOCKED`, so many workers never queue up behind one row lock; on SQLite
(where FOR UPDATE is not rendered) the conditional UPDATE alone keeps the claim exclusive.
"""

from __future__ import annotations

import itertools
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from pacebench.choices import Status
from pacebench.store.base import Claimant, ClaimLost, after_failure, holder_gone, utcnow, vanished_error
from pacebench.store.database import Database, retried
from pacebench.store.models import CheckpointRow, EpochRow, RunRow, WorkerRow
from pacebench.store.records import EpochRecord, Predictions, RunRecord, WorkerRecord
from pacebench.store.rows import put_epoch, put_predictions, put_weights, run_record, worker_record


def _record(s: Session, run_id: int) -> RunRecord:
    return run_record(s.scalars(select(RunRow).where(RunRow.id == run_id)).one())


def _take(s: Session, condition: Any, run_id: int, who: Claimant, now: datetime, token: str) -> bool:
    """The conditional UPDATE that makes a claim: it succeeds for exactly one worker."""
    result = s.execute(
        update(RunRow)
        .where(RunRow.id == run_id, condition)
        .values(**who.claim_values(token, now), attempts=RunRow.attempts + 1)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def _held(s: Session, run_id: int, token: str, **values: Any) -> None:
    """Refreshes the heartbeat (and sets `values`) if `token` still holds the run, else raises ClaimLost. Runs first
    in a transaction, so the check and the writes after it are atomic."""
    result = s.execute(
        update(RunRow)
        .where(RunRow.id == run_id, RunRow.claim == token, RunRow.status == Status.running)
        .values(heartbeat_at=utcnow(), **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ClaimLost(f"run {run_id} was taken over by another worker after this one missed its lease")


class Queue:
    """Claims and the fenced writes of their holders, and the worker rows (`Storage`'s claim and worker methods)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim_next(self, who: Claimant, keys: list[str] | None = None, max_attempts: int = 3) -> RunRecord | None:
        """Retried as a whole with one token, so a claim whose commit went through but whose reply was lost with the
        connection is found and returned by the next try, not left behind to go stale."""
        token, tries = uuid.uuid4().hex, itertools.count()
        return self.db.retrying(lambda: self._claim_next(who, keys, max_attempts, token, again=next(tries) > 0))

    def _claim_next(
        self, who: Claimant, keys: list[str] | None, max_attempts: int, token: str, again: bool
    ) -> RunRecord | None:
        if again:
            with self.db.session() as s:
                mine = s.scalars(select(RunRow.id).where(RunRow.claim == token)).one_or_none()
                if mine is not None:
                    return _record(s, mine)
        now = utcnow()
        scope: list[Any] = [RunRow.key.in_(keys)] if keys is not None else []
        if who.device_type is not None:
            scope.append(or_(RunRow.planned_device.is_(None), RunRow.planned_device == who.device_type))
        with self.db.session() as s:
            running = s.execute(
                select(
                    RunRow.id,
                    RunRow.claim,
                    RunRow.host,
                    RunRow.pid,
                    RunRow.heartbeat_at,
                    RunRow.lease_s,
                    RunRow.attempts,
                    RunRow.worker,
                ).where(RunRow.status == Status.running, *scope)
            ).all()
        for run in running:
            if not holder_gone(run, now, who.host, self.db.watched_since):
                continue
            with self.db.session() as s:
                if run.attempts >= max_attempts:
                    s.execute(
                        update(RunRow)
                        .where(RunRow.id == run.id, RunRow.claim == run.claim)
                        .values(
                            status=Status.failed,
                            claim=None,
                            error=vanished_error(run.attempts, run.worker),
                            finished_at=now,
                        )
                    )
                elif _take(s, RunRow.claim == run.claim, run.id, who, now, token):
                    return _record(s, run.id)
        # PostgreSQL: pick and take in one transaction, the row locked and skipped by the others. SQLite: pick in
        # one transaction and take in the next (a read that turns into a write would fail at once with "database is
        # locked" when another worker wrote meanwhile); the conditional UPDATE still lets only one worker win.
        one_transaction = self.db.dialect == "postgresql"
        while True:
            with self.db.session() as s:
                query = (
                    select(RunRow.id)
                    .where(RunRow.status == Status.queued, *scope)
                    .order_by(RunRow.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                run_id = s.scalars(query).one_or_none()
                if run_id is None:
                    return None
                if one_transaction and _take(s, RunRow.status == Status.queued, run_id, who, now, token):
                    return _record(s, run_id)
            if not one_transaction:
                with self.db.session() as s:
                    if _take(s, RunRow.status == Status.queued, run_id, who, now, token):
                        return _record(s, run_id)

    @retried
    def beat(self, run_id: int, claim: str) -> bool:
        try:
            with self.db.session() as s:
                _held(s, run_id, claim)
        except ClaimLost:
            return False
        return True

    @retried
    def resume_point(self, run_id: int, claim: str) -> tuple[int, bytes] | None:
        with self.db.session() as s:
            _held(s, run_id, claim)
            row = s.execute(
                select(CheckpointRow.epoch, CheckpointRow.data).where(CheckpointRow.run_id == run_id)
            ).one_or_none()
            last = -1 if row is None else row.epoch
            s.execute(delete(EpochRow).where(EpochRow.run_id == run_id, EpochRow.epoch > last))
        return None if row is None else (row.epoch, row.data)

    @retried
    def checkpoint_epoch(self, run_id: int) -> int | None:
        with self.db.session() as s:
            return s.scalars(select(CheckpointRow.epoch).where(CheckpointRow.run_id == run_id)).one_or_none()

    @retried
    def save_checkpoint(self, run_id: int, claim: str, epoch: int, data: bytes) -> None:
        with self.db.session() as s:
            _held(s, run_id, claim)
            s.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
            s.add(CheckpointRow(run_id=run_id, epoch=epoch, data=data, created_at=utcnow()))

    @retried
    def drop_checkpoint(self, run_id: int, claim: str) -> None:
        with self.db.session() as s:
            _held(s, run_id, claim)
            s.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
            s.execute(delete(EpochRow).where(EpochRow.run_id == run_id))

    @retried
    def write_epoch(self, run_id: int, claim: str, record: EpochRecord) -> None:
        with self.db.session() as s:
            _held(s, run_id, claim)
            put_epoch(s, run_id, record)

    @retried
    def set_run_facts(self, run_id: int, claim: str, **values: Any) -> None:
        with self.db.session() as s:
            _held(s, run_id, claim, **values)

    @retried
    def finish_claimed(
        self,
        run_id: int,
        claim: str,
        metrics: dict[str, Any],
        weights: dict[str, Any] | None,
        predictions: Mapping[str, Predictions] | None = None,
    ) -> None:
        now = utcnow()
        with self.db.session() as s:
            try:
                _held(s, run_id, claim, status=Status.done, metrics=metrics, finished_at=now, error=None)
            except ClaimLost:  # or a try before went through, and only its reply was lost with the connection
                if (
                    s.scalars(
                        select(RunRow.id).where(
                            RunRow.id == run_id, RunRow.claim == claim, RunRow.status == Status.done
                        )
                    ).one_or_none()
                    is None
                ):
                    raise
                return
            s.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
            if weights is not None:
                put_weights(s, run_id, weights, now)
            if predictions:
                put_predictions(s, run_id, predictions)

    @retried
    def fail_claimed(self, run_id: int, claim: str, error: str, max_attempts: int, retry: bool = True) -> str:
        with self.db.session() as s:
            attempts = s.scalars(select(RunRow.attempts).where(RunRow.id == run_id)).one_or_none() or 0
        status = after_failure(attempts, max_attempts, retry)
        try:
            with self.db.session() as s:
                _held(s, run_id, claim, status=status, error=error, claim=None, finished_at=utcnow())
        except ClaimLost:
            return "lost"
        return status

    @retried
    def release(self, run_id: int, claim: str) -> bool:
        try:
            with self.db.session() as s:
                _held(s, run_id, claim, status=Status.queued, claim=None, attempts=RunRow.attempts - 1)
        except ClaimLost:
            return False
        return True

    @retried
    def held_by_live_workers(self, keys: list[str], host: str | None = None) -> list[RunRecord]:
        now, host = utcnow(), host or socket.gethostname()
        with self.db.session() as s:
            rows = s.scalars(select(RunRow).where(RunRow.key.in_(keys), RunRow.status == Status.running)).all()
            return [run_record(r) for r in rows if not holder_gone(r, now, host, self.db.watched_since)]

    # ---- workers --------------------------------------------------------------------------------------------------
    @retried
    def worker_started(self, who: Claimant, device: str) -> None:
        now = utcnow()
        with self.db.session() as s:
            s.execute(delete(WorkerRow).where(WorkerRow.name == who.name))
            s.add(
                WorkerRow(
                    name=who.name,
                    host=who.host,
                    pid=who.pid,
                    device=device,
                    state="idle",
                    info={},
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    @retried
    def worker_update(self, name: str, **values: Any) -> None:
        with self.db.session() as s:
            s.execute(update(WorkerRow).where(WorkerRow.name == name).values(heartbeat_at=utcnow(), **values))

    @retried
    def workers(self, active_since: datetime | None = None) -> list[WorkerRecord]:
        query = select(WorkerRow).order_by(WorkerRow.started_at, WorkerRow.name)
        if active_since is not None:
            query = query.where(WorkerRow.heartbeat_at >= active_since)
        with self.db.session() as s:
            return [worker_record(r) for r in s.scalars(query)]
