"""Plain records the store hands out: frozen dataclasses, safe to keep after the session closes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

PARAMETER_COUNTS = ("trainable_params", "adapter_params", "head_params")  # RunRecord fields the trainer fills


@dataclass(frozen=True)
class RunRecord:
    id: int
    key: str
    suite: str
    dataset: str
    data_options: dict[str, Any]
    backbone: str
    weights_sha256: str
    adapter: str
    rank: int
    method: str
    method_config: dict[str, Any]
    seed: int
    hparams: dict[str, Any]
    phase: str
    origin: str
    status: str
    error: str | None
    device: str | None
    worker: str | None
    versions: dict[str, Any]
    git_commit: str | None
    trainable_params: int | None
    adapter_params: int | None
    head_params: int | None
    metrics: dict[str, Any]
    setup: dict[str, Any]  # what the method's set-up reported: σ per depth position, attention kernel, ...
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    claim: str | None = None
    host: str | None = None
    pid: int | None = None
    lease_s: float | None = None
    attempts: int = 0
    data_fingerprint: str = ""  # which copy of the data it trained and was scored on (data.fingerprint)
    planned_device: str | None = None  # cpu or cuda: only a worker on that kind of device trains it (None: any)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    lr: float | None = None
    loss: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    train_acc: float | None = None
    val_acc: float | None = None
    test_acc: float | None = None
    evals: dict[str, float] = field(default_factory=dict)
    grad_norm_mean: float | None = None
    grad_norm_max: float | None = None
    fp_distance: float | None = None  # on the training split
    grad_norm_task_train: float | None = None  # Fig. 2a's reading: ‖∇ CE‖ of the clean model, mini-batch mean
    grad_norm_task_heldout: float | None = None  # the same on the held-out split (val in tune, test in final)
    fp_distance_heldout: float | None = None
    wall_time: float | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class WorkerRecord:
    name: str
    host: str
    pid: int
    device: str
    state: str
    run_id: int | None
    epoch: int | None
    info: dict[str, Any]
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class Predictions:
    """What a run predicted for each example of one evaluation set at its last evaluation: the examples' ids (image
    path inside its folder, or index in the split), the prediction (a class, a score, an extracted number), the gold
    target, and whether each was right (None for a regression, scored by its metric on the whole set). Runs are
    compared example by example only where their ids agree."""

    eval_set: str
    ids: tuple[str, ...]
    predicted: np.ndarray
    target: np.ndarray
    correct: np.ndarray | None
    metric: str = "accuracy"
