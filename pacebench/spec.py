"""What defines a run: a frozen `RunSpec`, hashed to a stable run key.

Two runs with the same key are the same experiment: the store skips a key that is already done. Everything that can
change a measured number is in the spec (weights hash included, so runs on different weight files are never mixed);
where it ran (device, worker) is not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from pacebench.errors import UsageError

Phase = Literal["tune", "final"]
PHASES: dict[str, str] = {
    "tune": "phase 1: train on the train split (VTAB train800), score on the validation split (val200; text suites: "
            "a fixed 10% held out of train)",
    "final": "phase 2: train on train+val (VTAB train800val200), score on the test split (text suites: train -> "
             "GLUE dev, GSM-8K test)",
}


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters. Defaults follow the authors' VTAB-1k code (see IMPLEMENTATION_NOTES.md)."""

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
    precision: str = "fp32"

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup_epochs": self.warmup_epochs >= 0,
            "drop_path": 0 <= self.drop_path < 1,
            "eval_every": self.eval_every >= 1,
            "rank": self.rank >= 1,
            "image_size": self.image_size >= 1,
            "precision": self.precision in ("fp32", "bf16"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise UsageError(f"invalid training setting {bad[0]}={getattr(self, bad[0])!r}; "
                             "epochs/batch sizes/rank >= 1, lr > 0, 0 <= drop_path < 1, precision fp32|bf16")


TRAIN_FIELDS = {f.name: f.type for f in fields(TrainConfig)}


def coerce_train(values: dict[str, Any]) -> dict[str, Any]:
    """Converts strings from the command line or a suite file to the TrainConfig field types."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in TRAIN_FIELDS:
            raise UsageError(f"unknown training setting {name!r}; known: {', '.join(TRAIN_FIELDS)}")
        kind = {"int": int, "float": float, "str": str}[str(TRAIN_FIELDS[name])]
        try:
            out[name] = kind(float(value)) if kind is int and isinstance(value, str) and "e" in value else kind(value)
        except (TypeError, ValueError):
            raise UsageError(f"training setting {name} must be {kind.__name__}, got {value!r}") from None
    return out


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
    phase: Phase = "final"

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
