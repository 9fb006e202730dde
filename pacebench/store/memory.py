"""The `Storage` interface in this process's memory: nothing survives the process, nothing is shared with another.

What `pacebench bench` keeps one measurement in (its table is rendered by the same code as a stored one), and what
tests use where a database would only slow them down. It follows the SQL store's contract to the letter (the same
tests run on both): claims are exclusive, a holder that lost its claim cannot write, records are copies.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import socket
import statistics
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pacebench.choices import Status
from pacebench.errors import UsageError
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec
from pacebench.store.base import Claimant, ClaimLost, after_failure, holder_gone, utcnow, vanished_error
from pacebench.store.records import EpochRecord, Predictions, RunRecord, WorkerRecord
from pacebench.store.rows import run_values

RUN_FIELDS = {f.name for f in dataclasses.fields(RunRecord)}
_BLANK = {
    f.name: None
    for f in dataclasses.fields(RunRecord)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
}


def _matches(run: RunRecord, filters: dict[str, Any]) -> bool:
    """Equality filters on run fields, as the SQL store applies them (a list or tuple means 'any of')."""
    for name, value in filters.items():
        if value is None:
            continue
        if name not in RUN_FIELDS:
            raise UsageError(f"cannot filter runs by {name!r}")
        got = getattr(run, name)
        if not (got in value if isinstance(value, list | tuple) else got == value):
            return False
    return True


class MemoryStore:
    """Runs, epochs, checkpoints, weights, worker rows and bench rows in dictionaries behind one lock."""

    url = display_url = "memory://"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._runs: dict[int, RunRecord] = {}
        self._epochs: dict[int, dict[int, EpochRecord]] = {}
        self._checkpoints: dict[int, tuple[int, bytes]] = {}
        self._weights: dict[int, dict[str, Any]] = {}
        self._predictions: dict[int, dict[str, Predictions]] = {}
        self._workers: dict[str, WorkerRecord] = {}
        self._speed: list[dict[str, Any]] = []

    def without_retries(self) -> MemoryStore:
        return self  # memory never goes away

    # ---- runs -----------------------------------------------------------------------------------------------------
    def enqueue(
        self, specs: Iterable[RunSpec], origin: str = "direct", planned_device: str | None = None
    ) -> list[RunRecord]:
        with self._lock:
            out = []
            for spec in specs:
                key = run_key(spec)
                run = self._by_key(key)
                if run is None:
                    values = run_values(spec, origin, key, planned_device)
                    run = RunRecord(**{**_BLANK, "setup": {}, **values, "id": next(self._ids)})
                if run.status == Status.failed:
                    run = dataclasses.replace(run, status=Status.queued, attempts=0, claim=None)
                if run.status == Status.queued and planned_device is not None:
                    run = dataclasses.replace(run, planned_device=planned_device)
                self._runs[run.id] = run
                out.append(copy.deepcopy(run))
            return out

    def _by_key(self, key: str) -> RunRecord | None:
        return next((r for r in self._runs.values() if r.key == key), None)

    def get_run(self, key_or_id: str | int) -> RunRecord | None:
        with self._lock:
            run = self._runs.get(key_or_id) if isinstance(key_or_id, int) else self._by_key(key_or_id)
            return copy.deepcopy(run)

    def runs(self, **filters: Any) -> list[RunRecord]:
        with self._lock:
            return [copy.deepcopy(r) for _, r in sorted(self._runs.items()) if _matches(r, filters)]

    def status_counts(self, keys: list[str] | None = None, **filters: Any) -> Counter[str]:
        return Counter(str(r.status) for r in self.runs(key=keys, **filters))

    def epochs(self, run_id: int) -> list[EpochRecord]:
        return self.epochs_of([run_id])

    def epochs_of(self, run_ids: Iterable[int]) -> list[EpochRecord]:
        with self._lock:
            return [copy.deepcopy(e) for i in sorted(set(run_ids)) for _, e in sorted(self._epochs.get(i, {}).items())]

    def predictions(self, run_ids: Iterable[int]) -> dict[tuple[int, str], Predictions]:
        with self._lock:
            return {(run_id, name): p for run_id in run_ids for name, p in self._predictions.get(run_id, {}).items()}

    def run_weights(self, run_id: int) -> dict[str, Any] | None:
        with self._lock:
            weights = self._weights.get(run_id)
            return None if weights is None else {name: t.clone() for name, t in weights.items()}

    def mean_epoch_seconds(self, **filters: Any) -> float | None:
        times = [e.wall_time for e in self.epochs_of(r.id for r in self.runs(**filters)) if e.wall_time is not None]
        return statistics.fmean(times) if times else None

    def add_speed(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._speed += [
                {"id": len(self._speed) + i + 1, "created_at": utcnow(), **copy.deepcopy(row)}
                for i, row in enumerate(rows)
            ]

    def speed(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._speed)

    # ---- claims ---------------------------------------------------------------------------------------------------
    def held_by_live_workers(self, keys: list[str], host: str | None = None) -> list[RunRecord]:
        now, host = utcnow(), host or socket.gethostname()
        return [r for r in self.runs(key=keys, status=Status.running) if not holder_gone(r, now, host)]

    def claim_next(self, who: Claimant, keys: list[str] | None = None, max_attempts: int = 3) -> RunRecord | None:
        now = utcnow()
        with self._lock:
            mine = [
                r for r in self.runs(key=keys) if who.device_type is None or r.planned_device in (None, who.device_type)
            ]
            for run in (r for r in mine if r.status == Status.running):
                if not holder_gone(run, now, who.host):
                    continue
                if run.attempts >= max_attempts:
                    self._runs[run.id] = dataclasses.replace(
                        run,
                        status=Status.failed,
                        claim=None,
                        finished_at=now,
                        error=vanished_error(run.attempts, run.worker),
                    )
                else:
                    return self._take(run, who, now)
            queued = [r for r in mine if r.status == Status.queued]
            return self._take(queued[0], who, now) if queued else None

    def _take(self, run: RunRecord, who: Claimant, now: datetime) -> RunRecord:
        self._runs[run.id] = dataclasses.replace(
            run, **who.claim_values(uuid.uuid4().hex, now), attempts=run.attempts + 1
        )
        return copy.deepcopy(self._runs[run.id])

    def _held(self, run_id: int, token: str, **values: Any) -> None:
        """Refreshes the heartbeat (and sets `values`) if `token` still holds the run, else raises ClaimLost."""
        run = self._runs.get(run_id)
        if run is None or run.claim != token or run.status != Status.running:
            raise ClaimLost(f"run {run_id} was taken over by another worker after this one missed its lease")
        self._runs[run_id] = dataclasses.replace(run, heartbeat_at=utcnow(), **copy.deepcopy(values))

    def beat(self, run_id: int, claim: str) -> bool:
        with self._lock:
            try:
                self._held(run_id, claim)
            except ClaimLost:
                return False
            return True

    def resume_point(self, run_id: int, claim: str) -> tuple[int, bytes] | None:
        with self._lock:
            self._held(run_id, claim)
            saved = self._checkpoints.get(run_id)
            last = -1 if saved is None else saved[0]
            self._epochs[run_id] = {e: r for e, r in self._epochs.get(run_id, {}).items() if e <= last}
            return saved

    def checkpoint_epoch(self, run_id: int) -> int | None:
        with self._lock:
            saved = self._checkpoints.get(run_id)
            return None if saved is None else saved[0]

    def save_checkpoint(self, run_id: int, claim: str, epoch: int, data: bytes) -> None:
        with self._lock:
            self._held(run_id, claim)
            self._checkpoints[run_id] = (epoch, bytes(data))

    def drop_checkpoint(self, run_id: int, claim: str) -> None:
        with self._lock:
            self._held(run_id, claim)
            self._checkpoints.pop(run_id, None)
            self._epochs.pop(run_id, None)

    def write_epoch(self, run_id: int, claim: str, record: EpochRecord) -> None:
        with self._lock:
            self._held(run_id, claim)
            self._epochs.setdefault(run_id, {})[record.epoch] = dataclasses.replace(
                copy.deepcopy(record), run_id=run_id
            )

    def set_run_facts(self, run_id: int, claim: str, **values: Any) -> None:
        with self._lock:
            self._held(run_id, claim, **values)

    def finish_claimed(
        self,
        run_id: int,
        claim: str,
        metrics: dict[str, Any],
        weights: dict[str, Any] | None,
        predictions: Mapping[str, Predictions] | None = None,
    ) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and run.claim == claim and run.status == Status.done:
                return
            self._held(run_id, claim, status=Status.done, metrics=metrics, finished_at=utcnow(), error=None)
            self._checkpoints.pop(run_id, None)
            if weights is not None:
                self._weights[run_id] = {name: t.detach().cpu().clone() for name, t in weights.items()}
            if predictions:
                self._predictions[run_id] = dict(predictions)

    def fail_claimed(self, run_id: int, claim: str, error: str, max_attempts: int, retry: bool = True) -> str:
        with self._lock:
            run = self._runs.get(run_id)
            status = after_failure(run.attempts if run else 0, max_attempts, retry)
            try:
                self._held(run_id, claim, status=status, error=error, claim=None, finished_at=utcnow())
            except ClaimLost:
                return "lost"
            return status

    def release(self, run_id: int, claim: str) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            try:
                self._held(run_id, claim, status=Status.queued, claim=None, attempts=(run.attempts if run else 1) - 1)
            except ClaimLost:
                return False
            return True

    # ---- workers --------------------------------------------------------------------------------------------------
    def worker_started(self, who: Claimant, device: str) -> None:
        now = utcnow()
        with self._lock:
            self._workers[who.name] = WorkerRecord(
                name=who.name,
                host=who.host,
                pid=who.pid,
                device=device,
                state="idle",
                run_id=None,
                epoch=None,
                info={},
                started_at=now,
                heartbeat_at=now,
            )

    def worker_update(self, name: str, **values: Any) -> None:
        with self._lock:
            if name in self._workers:
                self._workers[name] = dataclasses.replace(
                    self._workers[name], heartbeat_at=utcnow(), **copy.deepcopy(values)
                )

    def workers(self, active_since: datetime | None = None) -> list[WorkerRecord]:
        with self._lock:
            rows = sorted(self._workers.values(), key=lambda w: (w.started_at, w.name))
            return [copy.deepcopy(w) for w in rows if active_since is None or w.heartbeat_at >= active_since]
