"""The SQL store: the `Storage` interface over any SQLAlchemy database (a SQLite file by default, PostgreSQL for
clusters), made of three parts: `database.Database` (engine, schema, transactions), `runs.Runs` (planning and
reading) and `queue.Queue` (claims, fenced writes, heartbeats, checkpoints, worker rows). `Store` only composes
them; each method says which part answers it.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from pacebench.plan.spec import RunSpec
from pacebench.store.base import Claimant
from pacebench.store.database import Database
from pacebench.store.queue import Queue
from pacebench.store.records import EpochRecord, Predictions, RunRecord, WorkerRecord
from pacebench.store.runs import Runs


class Store:
    """Opens the database at `url`: for writing, creating or upgrading its schema; `readonly`, an existing database
    at the newest revision, changing nothing. An outage is waited out for `grace_s` (default
    `PACEBENCH_DB_GRACE_S`)."""

    def __init__(self, url: str, readonly: bool = False, grace_s: float | None = None) -> None:
        self._compose(Database(url, readonly, grace_s))

    def _compose(self, db: Database) -> None:
        self.db, self._runs, self._queue = db, Runs(db), Queue(db)

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def display_url(self) -> str:
        return self.db.display_url

    def without_retries(self) -> Store:
        other = copy.copy(self)
        other._compose(self.db.with_grace(0.0))
        return other

    @property
    def engine(self) -> Engine:
        return self.db.engine

    # ---- runs (runs.Runs) -----------------------------------------------------------------------------------------
    def enqueue(
        self, specs: Iterable[RunSpec], origin: str = "direct", planned_device: str | None = None
    ) -> list[RunRecord]:
        return self._runs.enqueue(specs, origin, planned_device)

    def get_run(self, key_or_id: str | int) -> RunRecord | None:
        return self._runs.get_run(key_or_id)

    def runs(self, **filters: Any) -> list[RunRecord]:
        return self._runs.runs(**filters)

    def status_counts(self, keys: list[str] | None = None, **filters: Any) -> Counter[str]:
        return self._runs.status_counts(keys, **filters)

    def epochs(self, run_id: int) -> list[EpochRecord]:
        return self._runs.epochs(run_id)

    def epochs_of(self, run_ids: Iterable[int]) -> list[EpochRecord]:
        return self._runs.epochs_of(run_ids)

    def run_weights(self, run_id: int) -> dict[str, Any] | None:
        return self._runs.run_weights(run_id)

    def predictions(self, run_ids: Iterable[int]) -> dict[tuple[int, str], Predictions]:
        return self._runs.predictions(run_ids)

    def mean_epoch_seconds(self, **filters: Any) -> float | None:
        return self._runs.mean_epoch_seconds(**filters)

    def add_speed(self, rows: Iterable[dict[str, Any]]) -> None:
        self._runs.add_speed(rows)

    def speed(self) -> list[dict[str, Any]]:
        return self._runs.speed()

    # ---- claims and workers (queue.Queue) -------------------------------------------------------------------------
    def held_by_live_workers(self, keys: list[str], host: str | None = None) -> list[RunRecord]:
        return self._queue.held_by_live_workers(keys, host)

    def claim_next(self, who: Claimant, keys: list[str] | None = None, max_attempts: int = 3) -> RunRecord | None:
        return self._queue.claim_next(who, keys, max_attempts)

    def beat(self, run_id: int, claim: str) -> bool:
        return self._queue.beat(run_id, claim)

    def resume_point(self, run_id: int, claim: str) -> tuple[int, bytes] | None:
        return self._queue.resume_point(run_id, claim)

    def checkpoint_epoch(self, run_id: int) -> int | None:
        return self._queue.checkpoint_epoch(run_id)

    def save_checkpoint(self, run_id: int, claim: str, epoch: int, data: bytes) -> None:
        self._queue.save_checkpoint(run_id, claim, epoch, data)

    def drop_checkpoint(self, run_id: int, claim: str) -> None:
        self._queue.drop_checkpoint(run_id, claim)

    def write_epoch(self, run_id: int, claim: str, record: EpochRecord) -> None:
        self._queue.write_epoch(run_id, claim, record)

    def set_run_facts(self, run_id: int, claim: str, **values: Any) -> None:
        self._queue.set_run_facts(run_id, claim, **values)

    def finish_claimed(
        self,
        run_id: int,
        claim: str,
        metrics: dict[str, Any],
        weights: dict[str, Any] | None,
        predictions: Mapping[str, Predictions] | None = None,
    ) -> None:
        self._queue.finish_claimed(run_id, claim, metrics, weights, predictions)

    def fail_claimed(self, run_id: int, claim: str, error: str, max_attempts: int, retry: bool = True) -> str:
        return self._queue.fail_claimed(run_id, claim, error, max_attempts, retry)

    def release(self, run_id: int, claim: str) -> bool:
        return self._queue.release(run_id, claim)

    def worker_started(self, who: Claimant, device: str) -> None:
        self._queue.worker_started(who, device)

    def worker_update(self, name: str, **values: Any) -> None:
        self._queue.worker_update(name, **values)

    def workers(self, active_since: datetime | None = None) -> list[WorkerRecord]:
        return self._queue.workers(active_since)
