"""Rows <-> records: the one place that converts between the database's rows and the plain records the store hands
out, and encodes what a row holds in bytes (trained tensors as safetensors: no pickle, so reading them back can never
run code)."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from datetime import datetime
from typing import Any

from safetensors.torch import load, save
from sqlalchemy import delete

from pacebench.choices import Status
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec
from pacebench.store.base import utcnow
from pacebench.store.models import EpochRow, RunRow, RunWeightsRow, WorkerRow
from pacebench.store.records import EpochRecord, RunRecord, WorkerRecord


def encode_tensors(tensors: dict[str, Any]) -> bytes:
    """safetensors bytes: no pickle, so reading weights back can never run code."""
    return save({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


def decode_tensors(data: bytes) -> dict[str, Any]:
    return load(data)


def run_record(row: RunRow) -> RunRecord:
    return RunRecord(**{f.name: getattr(row, f.name) for f in dataclasses.fields(RunRecord)})


def epoch_record(row: EpochRow) -> EpochRecord:
    return EpochRecord(**{f.name: getattr(row, f.name) for f in dataclasses.fields(EpochRecord)})


def run_values(spec: RunSpec, origin: str, key: str | None = None, planned_device: str | None = None
               ) -> dict[str, Any]:
    """What a new queued run starts as: its whole spec and where it was planned to train, no results (the columns
    both stores fill in)."""
    return dict(planned_device=planned_device,
        key=key or run_key(spec), suite=spec.suite, dataset=spec.dataset, data_options=dict(spec.data_options),
        backbone=spec.backbone, weights_sha256=spec.weights_sha256, adapter=spec.train.adapter,
        rank=spec.train.rank, method=spec.method, method_config=dict(spec.method_config), seed=spec.seed,
        hparams=dataclasses.asdict(spec.train), phase=spec.phase, origin=origin, status=Status.queued,
        versions={}, metrics={}, created_at=utcnow(),
    )


def new_run_row(spec: RunSpec, origin: str, key: str | None = None, planned_device: str | None = None) -> RunRow:
    return RunRow(**run_values(spec, origin, key, planned_device))


def worker_record(row: WorkerRow) -> WorkerRecord:
    return WorkerRecord(**{f.name: getattr(row, f.name) for f in fields(WorkerRecord)})


def put_epoch(s: Any, run_id: int, record: EpochRecord) -> None:
    """Writes one epoch row in session `s`, replacing a row for the same epoch left by an interrupted attempt."""
    values = {f.name: getattr(record, f.name) for f in fields(EpochRecord) if f.name != "run_id"}
    s.execute(delete(EpochRow).where(EpochRow.run_id == run_id, EpochRow.epoch == record.epoch))
    s.add(EpochRow(run_id=run_id, **values))


def put_weights(s: Any, run_id: int, weights: dict[str, Any], now: datetime) -> None:
    """Stores a run's trained tensors in session `s`, replacing any kept before."""
    s.execute(delete(RunWeightsRow).where(RunWeightsRow.run_id == run_id))
    s.add(RunWeightsRow(run_id=run_id, data=encode_tensors(weights), created_at=now))
