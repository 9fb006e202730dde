"""What defines a run: a frozen `RunSpec`, hashed to a stable run key.

Two runs with the same key are the same experiment: the store skips a key that is already done. Everything that can
change a measured number is in the spec (weights hash included, so runs on different weight files are never mixed);
where it ran (device, worker) is not.

Keys stay valid across pacebench versions where they can: a setting added later enters the key only when its value
changes what earlier versions did, and a change of behaviour (`behaviour_changes`) only for the runs it affects. So
a finished run that no change touches keeps its key and is not trained again, and one that a change touches gets a
new key; `is_current` tells a stored run from one whose key today's code would no longer give (reports leave those
out rather than average them with new results).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache
from typing import Any

from pacebench.choices import Augment, Phase, Precision
from pacebench.errors import PacebenchError, UsageError
from pacebench.values import parse_fields

PHASES: dict[Phase, str] = {
    Phase.tune: "phase 1: train on the train split (VTAB train800), score on the validation split (val200; text "
                "suites: a fixed 10% held out of train)",
    Phase.final: "phase 2: train on train+val (VTAB train800val200), score on the test split (text suites: train "
                 "-> GLUE dev, GSM-8K test)",
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
    precision: Precision = Precision.auto  # bf16 autocast on CUDA, fp32 elsewhere; resolved before the key
    augment: Augment = Augment.standard  # training augmentation; the domain suite asks for "strong"

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
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise UsageError(f"invalid training setting {bad[0]}={getattr(self, bad[0])!r}; "
                             "epochs/batch sizes/rank >= 1, lr > 0, weight_decay/min_lr/warmup_lr >= 0, "
                             "0 <= drop_path < 1")


    def for_device(self, device_type: str) -> TrainConfig:
        """Precision "auto" resolved: bf16 autocast on CUDA, fp32 elsewhere (what the run stores and is keyed by)."""
        if self.precision != Precision.auto:
            return self
        return replace(self, precision=Precision.bf16 if device_type == "cuda" else Precision.fp32)


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
        """Stable 16-hex-digit hash of `key_payload` (sorted-key JSON, so dict order never matters)."""
        blob = json.dumps(key_payload(self), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_record(cls, run: Any) -> RunSpec:
        """The spec of a stored run (a `RunRecord`), with today's defaults for settings added since it was stored."""
        return cls(suite=run.suite, dataset=run.dataset, method=run.method, seed=run.seed,
                   train=TrainConfig(**run.hparams), backbone=run.backbone, weights_sha256=run.weights_sha256,
                   method_config=dict(run.method_config), data_options=dict(run.data_options), phase=run.phase)

    def with_(self, **changes: Any) -> RunSpec:
        return replace(self, **changes)

    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in sorted(self.method_config.items()))
        return f"{self.suite}/{self.dataset} {self.method}{extra} seed={self.seed} [{self.phase}]"


# ---- what the key hashes -------------------------------------------------------------------------------------------

# Settings added after runs were first stored, with the value that reproduces what pacebench did before them.
LEGACY_TRAIN = {"augment": "standard"}


def behaviour_changes(spec: RunSpec) -> dict[str, Any]:
    """The changes of pacebench's behaviour since its first release that alter this run's result (one entry each).

    - lr_step: the schedule steps after each epoch, as in the authors' code (epochs after the first shift by one);
    - lora_add_bias: LoRA_add adds δb directly (b0 + δb, not b0 ⊙ δb, and also on bias-free layers);
    - normalize: inputs normalised with the backbone's own mean/std where that is not ImageNet's.
    """
    from pacebench.core.backbones import BACKBONES, normalization

    if spec.backbone in BACKBONES and BACKBONES.get(spec.backbone).folder:
        return {}  # a text run (pacebench/text): every change listed here is of the image path
    changes: dict[str, Any] = {}
    if spec.train.epochs > 1:
        changes["lr_step"] = "after_epoch"
    if "lora_add" in spec.train.adapter.split("+"):
        changes["lora_add_bias"] = "b0+db"
    mean, std = normalization(spec.backbone)
    if (mean, std) != _legacy_normalization(spec.suite):
        changes["normalize"] = {"mean": list(mean), "std": list(std)}
    return changes


@cache  # suite files name their reader once; this runs for every key
def _legacy_normalization(suite: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """What pacebench normalised with before mean/std followed the backbone: 0.5/0.5 in the demo's reader,
    ImageNet's in every reader of image files."""
    from pacebench.core.backbones import IMAGENET_MEAN, IMAGENET_STD
    from pacebench.plan.suites import load_suite

    try:
        reader = load_suite(suite).reader
    except PacebenchError:
        reader = ""
    return ((0.5,) * 3, (0.5,) * 3) if reader == "demo" else (IMAGENET_MEAN, IMAGENET_STD)


def _method_config(spec: RunSpec) -> dict[str, Any]:
    """The method's full config (defaults filled in); `noise_group` only on windowed backbones (Swin) and only where
    it differs from "sample", what pacebench did before the option existed (on ViT both draw per sample)."""
    from pacebench.core.backbones import arch_of
    from pacebench.core.methods import METHODS

    try:
        config = METHODS.get(spec.method).make_config(spec.method_config).as_dict()
    except UsageError:  # not a registered method (or not valid): hash what was given
        config = dict(spec.method_config)
    if "swin" not in arch_of(spec.backbone) or config.get("noise_group") == "sample":
        config.pop("noise_group", None)
    return config


def key_payload(spec: RunSpec) -> dict[str, Any]:
    """What the run key hashes: the spec, less the later settings at their legacy values, plus the behaviour
    changes that alter this run (see the module docstring)."""
    payload = asdict(spec)
    payload["train"] = {k: v for k, v in payload["train"].items() if LEGACY_TRAIN.get(k, object()) != v}
    payload["method_config"] = _method_config(spec)
    changes = behaviour_changes(spec)
    if changes:
        payload["changes"] = changes
    return payload


def is_current(run: Any) -> bool:
    """Whether a stored run (a `RunRecord`) has the key today's code gives its spec: False for runs made before a
    behaviour change that alters them, or whose stored spec no longer parses."""
    try:
        return RunSpec.from_record(run).key == run.key
    except (TypeError, UsageError):
        return False
