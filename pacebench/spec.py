"""What defines a run: a frozen `RunSpec`, hashed to a stable run key.

Two runs with the same key are the same experiment: the store skips a key that is already done. Everything that can
change a measured number is in the spec (weights hash included, so runs on different weight files are never mixed);
where it ran (device, worker) is not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pacebench.choices import Phase, Precision
from pacebench.errors import UsageError
from pacebench.values import parse_fields

PHASES: dict[Phase, str] = {
    Phase.tune: "phase 1: train on the train split (VTAB train800), score on the validation split (val200)",
    Phase.final: "phase 2: train on train+val (VTAB train800val200), score on the test split",
}


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters. Defaults follow the authors' VTAB-1k code (docs/implementation.md)."""

    epochs: int = 300
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 10
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    drop_path: float = 0.1
    eval_every: int = 10
    adapter: str = "lora_mul+vpt_add"
    rank: int = 10
    image_size: int = 224
    precision: Precision = Precision.fp32

    def __post_init__(self) -> None:
        precision = parse_fields(TrainConfig, {"precision": self.precision}, "training setting")["precision"]
        object.__setattr__(self, "precision", precision)  # a stored run's "bf16" reads back as Precision.bf16
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup_epochs": self.warmup_epochs >= 0,
            "warmup_lr": self.warmup_lr >= 0,  # (non-finite values never get here: values.parse_fields refuses them)
            "min_lr": self.min_lr >= 0,  # timm's scheduler would stop on a bare AssertionError
            "drop_path": 0 <= self.drop_path < 1,
            "eval_every": self.eval_every >= 1,
            "rank": self.rank >= 1,
            "image_size": self.image_size >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise UsageError(f"invalid training setting {bad[0]}={getattr(self, bad[0])!r}; "
                             "epochs/batch sizes/rank >= 1, lr > 0, weight_decay/min_lr/warmup_lr >= 0, "
                             "0 <= drop_path < 1")


TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))


def coerce_train(values: Mapping[str, Any]) -> dict[str, Any]:
    """Converts strings from the command line or a suite file to the TrainConfig field types (`values.parse_fields`:
    the same rules as method hyperparameters)."""
    return parse_fields(TrainConfig, values, "training setting")


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run."""

    suite: str
    dataset: str
    method: str
    seed: int
    train: TrainConfig
    backbone: str
    weights_sha256: str = ""
    method_config: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)
    phase: Phase = Phase.final

    @property
    def key(self) -> str:
        """Stable 16-hex-digit hash of the spec (sorted-key JSON, so dict order never matters)."""
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_(self, **changes: Any) -> RunSpec:
        return replace(self, **changes)

    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in sorted(self.method_config.items()))
        return f"{self.suite}/{self.dataset} {self.method}{extra} seed={self.seed} [{self.phase}]"
