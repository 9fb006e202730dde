"""Rows <-> records: the one place that converts between the database's rows and the plain records the store hands
out, and encodes what a row holds in bytes (trained tensors as safetensors: no pickle, so reading them back can never
run code)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zlib
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete

from pacebench.choices import Status
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec
from pacebench.store.base import utcnow
from pacebench.store.models import EpochRow, ExampleIdsRow, PredictionRow, RunRow, RunWeightsRow, WorkerRow
from pacebench.store.records import EpochRecord, Predictions, RunRecord, WorkerRecord


def encode_tensors(tensors: dict[str, Any]) -> bytes:
    """safetensors bytes: no pickle, so reading weights back can never run code."""
    from safetensors.torch import save  # lazy: torch; the store opens without it

    return save({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


def decode_tensors(data: bytes) -> dict[str, Any]:
    from safetensors.torch import load  # lazy: torch; the store opens without it

    return load(data)


def encode_array(values: np.ndarray) -> bytes:
    """.npy bytes (no pickle: object arrays are refused), in the smallest integer type that holds integers."""
    values = np.asarray(values)
    if values.dtype.kind in "iu" and values.size:
        values = values.astype(np.result_type(np.min_scalar_type(values.min()), np.min_scalar_type(values.max())))
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


def decode_array(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def ids_digest(ids: tuple[str, ...]) -> str:
    """What names one list of example ids: runs are compared example by example only where theirs are equal."""
    return hashlib.blake2b("\n".join(ids).encode(), digest_size=16).hexdigest()


def encode_ids(ids: tuple[str, ...]) -> bytes:
    return zlib.compress(json.dumps(list(ids)).encode())


def decode_ids(data: bytes) -> tuple[str, ...]:
    return tuple(json.loads(zlib.decompress(data)))


def put_predictions(s: Any, run_id: int, predictions: Mapping[str, Predictions]) -> None:
    """Stores a run's per-example predictions in session `s` (its example-id lists once per distinct list),
    replacing any kept before."""
    s.execute(delete(PredictionRow).where(PredictionRow.run_id == run_id))
    for name, p in predictions.items():
        digest = ids_digest(p.ids)
        if s.get(ExampleIdsRow, digest) is None:
            s.add(ExampleIdsRow(digest=digest, count=len(p.ids), ids=encode_ids(p.ids)))
            s.flush()
        s.add(
            PredictionRow(
                run_id=run_id,
                eval_set=name,
                metric=p.metric,
                ids_digest=digest,
                predicted=encode_array(p.predicted),
                target=encode_array(p.target),
                correct=None if p.correct is None else encode_array(np.asarray(p.correct, dtype=bool)),
            )
        )


def prediction_record(row: PredictionRow, ids: tuple[str, ...]) -> Predictions:
    return Predictions(
        row.eval_set,
        ids,
        decode_array(row.predicted),
        decode_array(row.target),
        None if row.correct is None else decode_array(row.correct),
        row.metric,
    )


def run_record(row: RunRow) -> RunRecord:
    return RunRecord(**{f.name: getattr(row, f.name) for f in dataclasses.fields(RunRecord)})


def epoch_record(row: EpochRow) -> EpochRecord:
    return EpochRecord(**{f.name: getattr(row, f.name) for f in dataclasses.fields(EpochRecord)})


def run_values(spec: RunSpec, origin: str, key: str | None = None, planned_device: str | None = None) -> dict[str, Any]:
    """What a new queued run starts as: its whole spec and where it was planned to train, no results (the columns
    both stores fill in)."""
    return dict(
        planned_device=planned_device,
        key=key or run_key(spec),
        suite=spec.suite,
        dataset=spec.dataset,
        data_options=dict(spec.data_options),
        backbone=spec.backbone,
        weights_sha256=spec.weights_sha256,
        adapter=spec.train.adapter,
        rank=spec.train.rank,
        method=spec.method,
        method_config=dict(spec.method_config),
        seed=spec.seed,
        hparams=dataclasses.asdict(spec.train),
        phase=spec.phase,
        origin=origin,
        status=Status.queued,
        versions={},
        metrics={},
        created_at=utcnow(),
        data_fingerprint=spec.data_fingerprint,
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
