"""What defines a run: its training settings (`TrainConfig`) and the frozen `RunSpec`, plain values only.

Everything that can change a measured number is in the spec (weights hash included, so runs on different weight
files are never mixed); where it ran (device, worker) is not. The spec is a leaf: hashing it into a run key needs
the registries (a method's defaults, a backbone's normalisation), and that is `plan.runkey`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pacebench.choices import Augment, Phase, Precision
from pacebench.errors import UsageError
from pacebench.values import parse_fields

PHASES: dict[Phase, str] = {Phase.tune: "phase 1", Phase.final: "phase 2"}  # what each trains on and scores on is
# the suite's data layout's to say, in its own split names (`data.base.phase_line`)

DEFAULT_METHODS = ("baseline", "pace")  # what `run`, `bench` and a plan train when no methods are named
# The adapter of the paper's main tables (LoRA_mul+VPT_add); every other place that needs a default kind reads this.
DEFAULT_ADAPTER = "lora_mul+vpt_add"


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
    adapter: str = DEFAULT_ADAPTER
    rank: int = 10  # the adapter's size: LoRA's rank, a bottleneck's width, VPT's prompt length (docs/adapters.md)
    image_size: int = 224
    precision: Precision = Precision.auto  # bf16 autocast on CUDA, fp32 elsewhere; resolved before the key
    augment: Augment = Augment.standard  # training augmentation; the domain suite asks for "strong"
    adapter_scale: float | None = None  # the adapter's scale (AdaptFormer's s, LoRA's α/r, ...); None: the kind's
    adapter_dropout: float | None = None  # dropout inside the adapter; None: the kind's default

    def __post_init__(self) -> None:
        typed = parse_fields(TrainConfig, {"precision": self.precision, "augment": self.augment}, "training setting")
        for name, value in typed.items():  # a stored run's "bf16" reads back as Precision.bf16
            object.__setattr__(self, name, value)
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
            "adapter_scale": self.adapter_scale is None or self.adapter_scale > 0,
            "adapter_dropout": self.adapter_dropout is None or 0 <= self.adapter_dropout < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise UsageError(
                f"invalid training setting {bad[0]}={getattr(self, bad[0])!r}; "
                "epochs/batch sizes/rank >= 1, lr/adapter_scale > 0, weight_decay/min_lr/warmup_lr >= 0, "
                "0 <= drop_path/adapter_dropout < 1"
            )

    def for_device(self, device_type: str) -> TrainConfig:
        """Precision "auto" resolved: bf16 autocast on CUDA, fp32 elsewhere (what the run stores and is keyed by)."""
        if self.precision != Precision.auto:
            return self
        return replace(self, precision=Precision.bf16 if device_type == "cuda" else Precision.fp32)


TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))
# The settings that belong to one adapter kind: a suite's values for them apply to the suite's own adapter only
# (`Suite.resolve_train`), another kind takes its own (a per-adapter table, else the kind's defaults).
ADAPTER_SETTINGS = ("rank", "adapter_scale", "adapter_dropout")


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
    data_fingerprint: str = ""  # which copy of the data (`data.fingerprint`); filled in before runs are queued

    @classmethod
    def from_record(cls, run: Any) -> RunSpec:
        """The spec of a stored run (a `RunRecord`), with today's defaults for settings added since it was stored."""
        return cls(
            suite=run.suite,
            dataset=run.dataset,
            method=run.method,
            seed=run.seed,
            train=TrainConfig(**run.hparams),
            backbone=run.backbone,
            weights_sha256=run.weights_sha256,
            method_config=dict(run.method_config),
            data_options=dict(run.data_options),
            phase=run.phase,
            data_fingerprint=run.data_fingerprint,
        )

    def with_(self, **changes: Any) -> RunSpec:
        return replace(self, **changes)

    def label(self) -> str:
        """suite/dataset, the adapter where it is not the default, method with its config, seed and phase."""
        adapter = "" if self.train.adapter == DEFAULT_ADAPTER else f" adapter={self.train.adapter}"
        extra = "".join(f" {k}={v}" for k, v in sorted(self.method_config.items()))
        return f"{self.suite}/{self.dataset}{adapter} {self.method}{extra} seed={self.seed} [{self.phase}]"
