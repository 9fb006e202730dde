"""SQLAlchemy 2.0 tables. Callers never see these classes: the store API returns plain records.

`runs` holds one row per run key with its full spec, status and provenance; `epochs` one row per (run, epoch);
`run_weights` the trained adapter and head weights of a finished run (safetensors bytes, a few MB), so a finished
model can be evaluated again or exported without retraining.
`speed` one row per method per `pacebench bench` measurement.
The schema is owned by the Alembic revisions in migrations/; change both together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pacebench.choices import Status
from pacebench.store.types import SafeFloat, SafeJSON


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    suite: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(128), index=True)
    data_options: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    backbone: Mapped[str] = mapped_column(String(128))
    weights_sha256: Mapped[str] = mapped_column(String(64), default="")
    adapter: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(64), index=True)
    method_config: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    seed: Mapped[int] = mapped_column(Integer)
    hparams: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    phase: Mapped[str] = mapped_column(String(16), index=True)
    origin: Mapped[str] = mapped_column(String(16), default="direct")
    status: Mapped[str] = mapped_column(String(16), index=True, default=Status.queued)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    versions: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trainable_params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    adapter_params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    head_params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    setup: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # the work queue (store/queue.py): who holds the run, for how long a silent holder keeps it, how often it started
    claim: Mapped[str | None] = mapped_column(String(32), nullable=True)
    host: Mapped[str | None] = mapped_column(String(128), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    data_fingerprint: Mapped[str] = mapped_column(String(32), default="", server_default="")  # data.fingerprint
    # the kind of device (cpu, cuda) the run was planned for: only workers on that kind claim it (None: any)
    planned_device: Mapped[str | None] = mapped_column(String(16), nullable=True)


class EpochRow(Base):
    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("run_id", "epoch", name="uq_epochs_run_epoch"), Index("ix_epochs_run", "run_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    lr: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    loss: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    parts: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    train_acc: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    val_acc: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    test_acc: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    evals: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    grad_norm_mean: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    grad_norm_max: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    fp_distance: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    grad_norm_task_train: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    grad_norm_task_heldout: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    fp_distance_heldout: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    wall_time: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)


class PredictionRow(Base):
    """One finished run's per-example predictions on one evaluation set at its last evaluation: arrays as .npy
    bytes, the example ids once per distinct list (`ExampleIdsRow`), so a suite's runs share them."""

    __tablename__ = "predictions"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    eval_set: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32))
    ids_digest: Mapped[str] = mapped_column(ForeignKey("example_ids.digest"))
    predicted: Mapped[bytes] = mapped_column(LargeBinary)
    target: Mapped[bytes] = mapped_column(LargeBinary)
    correct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class ExampleIdsRow(Base):
    """A list of example ids (zlib-compressed JSON), stored once however many runs were scored on it."""

    __tablename__ = "example_ids"

    digest: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    ids: Mapped[bytes] = mapped_column(LargeBinary)


class RunWeightsRow(Base):
    __tablename__ = "run_weights"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class CheckpointRow(Base):
    """The newest in-run checkpoint of a running run (torch.save bytes); deleted when the run finishes."""

    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class WorkerRow(Base):
    """One worker process (host:pid) and what it is doing, refreshed by its heartbeat thread."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(160), primary_key=True)
    host: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # idle | training | stopped
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    info: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)


class SpeedRow(Base):
    """One method's training-step measurement from `pacebench bench` (ratios are to the first method measured)."""

    __tablename__ = "speed"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    device: Mapped[str] = mapped_column(String(32))
    device_name: Mapped[str] = mapped_column(String(128))
    versions: Mapped[dict[str, Any]] = mapped_column(SafeJSON, default=dict)
    backbone: Mapped[str] = mapped_column(String(128))
    adapter: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    image_size: Mapped[int] = mapped_column(Integer)
    patch_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    classes: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(8))
    compile: Mapped[bool] = mapped_column(Boolean)
    paths: Mapped[str] = mapped_column(String(16), default="fast", server_default="fast")  # choices.Paths
    threads: Mapped[int] = mapped_column(Integer)
    warmup: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(64), index=True)
    ms_per_step: Mapped[float] = mapped_column(SafeFloat)
    images_per_s: Mapped[float] = mapped_column(SafeFloat)
    gflop_per_step: Mapped[float] = mapped_column(SafeFloat)
    time_ratio: Mapped[float] = mapped_column(SafeFloat)
    flop_ratio: Mapped[float] = mapped_column(SafeFloat)
    peak_mib: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    mfu: Mapped[float | None] = mapped_column(SafeFloat, nullable=True)
    times_ms: Mapped[list[float]] = mapped_column(SafeJSON, default=list)
