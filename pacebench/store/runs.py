"""The runs part of the SQL store: enqueuing a plan, and reading runs, epochs, weights and bench rows back as plain
records (`Storage`'s reading and planning methods). Nothing here writes a run's results: only the holder of a
claim does (`store.queue`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from pacebench.choices import Status
from pacebench.errors import UsageError
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec
from pacebench.store.base import utcnow
from pacebench.store.database import Database, retried
from pacebench.store.models import EpochRow, ExampleIdsRow, PredictionRow, RunRow, RunWeightsRow, SpeedRow
from pacebench.store.records import EpochRecord, Predictions, RunRecord
from pacebench.store.rows import decode_ids, decode_tensors, epoch_record, new_run_row, prediction_record, run_record


def _filtered(query: Select, filters: dict[str, Any]) -> Select:
    """`query` restricted by equality filters on run columns (a list or tuple value means 'any of'; None: no filter)."""
    for name, value in filters.items():
        if value is None:
            continue
        column = getattr(RunRow, name, None)
        if column is None:
            raise UsageError(f"cannot filter runs by {name!r}")
        query = query.where(column.in_(value) if isinstance(value, list | tuple) else column == value)
    return query


class Runs:
    """Runs and what hangs off them (epochs, weights), and `pacebench bench`'s speed rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @retried
    def enqueue(
        self, specs: Iterable[RunSpec], origin: str = "direct", planned_device: str | None = None
    ) -> list[RunRecord]:
        """One transaction for the whole plan (a sweep of hundreds of runs against a remote PostgreSQL is one round
        trip, not three per run); if another process inserts one of the same keys at the same moment, the plan
        falls back to adding its runs one by one. The plan that queues a run last says where it trains: queued and
        failed runs of the plan are planned for `planned_device` too (None leaves them as they were)."""
        plan = [(run_key(spec), spec) for spec in specs]  # a key hashes the whole spec: computed once here
        keys = list(dict.fromkeys(key for key, _ in plan))
        try:
            with self.db.session() as s:
                s.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE"})  # SQLite: read, then write
                status = dict(s.execute(select(RunRow.key, RunRow.status).where(RunRow.key.in_(keys))).all())
                fresh = {key: spec for key, spec in plan if key not in status}
                s.add_all(new_run_row(spec, origin, key, planned_device) for key, spec in fresh.items())
                self._replan(s, list(status), planned_device)
        except IntegrityError:  # a concurrent enqueue of the same run: take them one at a time
            for key, spec in plan:
                self._enqueue_one(key, spec, origin, planned_device)
        with self.db.session() as s:
            records = {r.key: run_record(r) for r in s.scalars(select(RunRow).where(RunRow.key.in_(keys)))}
        return [records[key] for key, _ in plan]

    def _enqueue_one(self, key: str, spec: RunSpec, origin: str, planned_device: str | None) -> None:
        try:
            with self.db.session() as s:
                s.add(new_run_row(spec, origin, key, planned_device))
        except IntegrityError:  # there already
            with self.db.session() as s:
                self._replan(s, [key], planned_device)

    @staticmethod
    def _replan(s: Any, keys: list[str], planned_device: str | None) -> None:
        """Runs of the plan that exist already: a failed one is queued again with fresh attempts (asking for it
        again is asking for a retry); queued ones (those too) are planned for `planned_device`."""
        if not keys:
            return
        s.execute(
            update(RunRow)
            .where(RunRow.key.in_(keys), RunRow.status == Status.failed)
            .values(status=Status.queued, attempts=0, claim=None)
        )
        if planned_device is not None:
            s.execute(
                update(RunRow)
                .where(RunRow.key.in_(keys), RunRow.status == Status.queued)
                .values(planned_device=planned_device)
            )

    @retried
    def get_run(self, key_or_id: str | int) -> RunRecord | None:
        column = RunRow.id if isinstance(key_or_id, int) else RunRow.key
        with self.db.session() as s:
            row = s.scalars(select(RunRow).where(column == key_or_id)).one_or_none()
            return None if row is None else run_record(row)

    @retried
    def runs(self, **filters: Any) -> list[RunRecord]:
        query = _filtered(select(RunRow).order_by(RunRow.id), filters)
        with self.db.session() as s:
            return [run_record(r) for r in s.scalars(query)]

    @retried
    def status_counts(self, keys: list[str] | None = None, **filters: Any) -> Counter[str]:
        query = _filtered(select(RunRow.status, func.count()).group_by(RunRow.status), {"key": keys, **filters})
        with self.db.session() as s:
            return Counter({status: n for status, n in s.execute(query)})

    @retried
    def epochs(self, run_id: int) -> list[EpochRecord]:
        with self.db.session() as s:
            rows = s.scalars(select(EpochRow).where(EpochRow.run_id == run_id).order_by(EpochRow.epoch))
            return [epoch_record(r) for r in rows]

    @retried
    def epochs_of(self, run_ids: Iterable[int]) -> list[EpochRecord]:
        with self.db.session() as s:
            rows = s.scalars(
                select(EpochRow).where(EpochRow.run_id.in_(list(run_ids))).order_by(EpochRow.run_id, EpochRow.epoch)
            )
            return [epoch_record(r) for r in rows]

    @retried
    def run_weights(self, run_id: int) -> dict[str, Any] | None:
        with self.db.session() as s:
            data = s.scalars(select(RunWeightsRow.data).where(RunWeightsRow.run_id == run_id)).one_or_none()
        return None if data is None else decode_tensors(data)

    @retried
    def predictions(self, run_ids: Iterable[int]) -> dict[tuple[int, str], Predictions]:
        ids = list(run_ids)
        with self.db.session() as s:
            rows = list(s.scalars(select(PredictionRow).where(PredictionRow.run_id.in_(ids)))) if ids else []
            lists = {
                r.digest: decode_ids(r.ids)
                for r in s.scalars(
                    select(ExampleIdsRow).where(ExampleIdsRow.digest.in_({row.ids_digest for row in rows}))
                )
            }
            return {(row.run_id, row.eval_set): prediction_record(row, lists[row.ids_digest]) for row in rows}

    @retried
    def mean_epoch_seconds(self, **filters: Any) -> float | None:
        query = _filtered(select(func.avg(EpochRow.wall_time)).join(RunRow, RunRow.id == EpochRow.run_id), filters)
        with self.db.session() as s:
            value = s.scalar(query)
        return None if value is None else float(value)

    # ---- speed measurements (`pacebench bench`) -------------------------------------------------------------------
    @retried
    def add_speed(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.db.session() as s:
            s.add_all(SpeedRow(created_at=utcnow(), **row) for row in rows)

    @retried
    def speed(self) -> list[dict[str, Any]]:
        columns = [c.name for c in SpeedRow.__table__.columns]
        with self.db.session() as s:
            return [{c: getattr(r, c) for c in columns} for r in s.scalars(select(SpeedRow).order_by(SpeedRow.id))]
