"""The one epoch loop every kind of task trains through, and the registry of trainers that plug into it.

A trainer (`Trainer`; `training.image` and `training.text` register theirs) builds what differs between kinds of
task: the model with its adapters, the method, the optimizer and schedule, the batches, a training step, the
evaluation and Fig. 2's readings. The loop owns what they share: resuming from a checkpoint, stopping between steps,
the per-epoch statistics (loss and its named parts, train accuracy, the gradient norm the optimizer saw), the
evaluation cadence (every `eval_every` epochs and after the last; the last evaluation is the one reported, no
best-epoch picking), when the readings are taken (`Environment.diagnostics`), the epoch records and the checkpoint
offered after every epoch. `train_run` picks the trainer by the kind of the suite's data reader.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from pacebench.choices import Diagnostics
from pacebench.core.methods import Method, StepOutput
from pacebench.data import READERS
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.plan.suites import load_suite
from pacebench.registry import Registry
from pacebench.store.records import EpochRecord, Predictions
from pacebench.training.checkpoint import Control, Stopped, TrainState
from pacebench.training.diagnostics import wanted

EpochCallback = Callable[[int, EpochRecord], None]
SetupCallback = Callable[[dict], None]
Batch = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class Environment:
    """Where a run executes; none of this is part of the run key."""

    device: torch.device
    data_root: Path
    weights: Path | None = None
    num_workers: int = 4
    diagnostics: str = Diagnostics.eval  # Fig. 2's readings: at evaluation epochs, "every" epoch, or "off"
    weights_dir: Path | None = None  # where named backbones' files are (default: settings.weights_dir())
    compile: bool = False  # torch.compile each block (same values as eager; tested on CPU)
    cache_dir: Path | None = None  # decoded-image cache (data.cache; the CLI uses results/cache); None: decode always


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 autocast on CUDA and fp32 elsewhere (`TrainConfig.for_device`)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return str(precision)


def autocast_for(precision: str, device: torch.device) -> Callable[[], Any]:
    if resolve_precision(precision, device) == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def make_optimizer(
    params: list[nn.Parameter] | list[dict[str, Any]], lr: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    """The authors' AdamW (parameters, or groups with their own weight decay as the text trainer's); on CUDA the
    fused kernel (one launch for all parameters, same update rule)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


class EpochStats:
    """Accumulates on the device; `finish()` is the epoch's one CPU-GPU sync."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.steps = device, 0
        self.seen: Tensor | int = 0  # a tensor where the count depends on the data (GSM-8K's answer tokens)
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.gn_sum = torch.zeros((), device=device)
        self.gn_max = torch.zeros((), device=device)
        self.parts: dict[str, Tensor] = {}

    def add(self, loss: Tensor, parts: dict[str, Tensor], logits: Tensor, y: Tensor, gn: Tensor | None) -> None:
        self.steps += 1
        self.seen += logits.shape[0]
        self.loss += loss.detach().float()
        for name, value in parts.items():
            self.parts[name] = self.parts.get(name, torch.zeros((), device=self.device)) + value.detach().float()
        labels = y.argmax(-1) if y.ndim > 1 else y  # soft (Mixup) targets: their largest share counts as the label
        self.correct += (logits.detach().argmax(-1) == labels[: logits.shape[0]]).sum()
        if gn is not None:
            self.gn_sum += gn
            self.gn_max = torch.maximum(self.gn_max, gn)

    def finish(self) -> dict[str, Any]:
        n = max(self.steps, 1)
        seen = torch.as_tensor(self.seen, device=self.device).clamp(min=1)
        values = torch.stack([self.loss / n, self.correct * 100.0 / seen, self.gn_sum / n, self.gn_max])
        loss, acc, gn_mean, gn_max = values.tolist()
        return {
            "loss": loss,
            "train_acc": acc,
            "grad_norm_mean": gn_mean,
            "grad_norm_max": gn_max,
            "parts": {k: v.item() / n for k, v in self.parts.items()},
        }


def check_finite(row: dict[str, Any], epoch: int) -> None:
    """Stops a run whose epoch loss is NaN or infinite; the error is kept with the run."""
    if not math.isfinite(row["loss"]):
        raise FloatingPointError(f"training loss became {row['loss']} at epoch {epoch}; lower the lr or λ")


def is_eval_epoch(epoch: int, t: TrainConfig) -> bool:
    """Evaluation every `eval_every` epochs and always after the last one (whose numbers the run reports)."""
    return (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs


@dataclass(frozen=True)
class TrainResult:
    """A finished run: its final metrics, its trained adapter and head tensors, and each evaluation set's
    per-example predictions at the last evaluation (all kept with the run)."""

    metrics: dict[str, Any]
    weights: dict[str, Tensor]
    predictions: dict[str, Predictions] = field(default_factory=dict)


class Trainer(Protocol):
    """What a kind of task supplies to the loop. Built from (spec, environment, setup callback), after which the
    model, method, optimizer and data exist and the setup callback has been told the parameter counts."""

    method: Method
    state: TrainState  # what a checkpoint captures
    trains: bool  # False for a method that is only evaluated ("pretrained")

    @property
    def model(self) -> nn.Module:
        """The model trained (read-only here, so that a kind may hold a narrower one: the text kind's TextModel)."""

    def batches(self) -> Iterable[Batch]:
        """One epoch of training batches, on the device."""

    def step(self, batch: Batch) -> tuple[StepOutput, Tensor]:
        """One optimisation step; returns the method's output and the targets the statistics compare with."""

    def stats(self) -> EpochStats:
        """A fresh accumulator for one epoch."""

    def end_epoch(self, epoch: int) -> None:
        """After the epoch's record is written (the image schedule steps here)."""

    def evaluate(self) -> tuple[dict[str, float], dict[str, float]]:
        """Every evaluation set's score, and the epoch record's extra fields an evaluation gives."""

    def readings(self) -> dict[str, float]:
        """Fig. 2's readings, named as `EpochRecord` names them."""

    def headline(self, evals: dict[str, float]) -> dict[str, float | None]:
        """The epoch record's `val_acc` and `test_acc` from the evaluation sets' scores."""

    def final(
        self, evals: dict[str, float], extra: dict[str, float], train_acc: float | None, epoch: int
    ) -> dict[str, Any]:
        """What an evaluation epoch leaves as the run's last evaluation (kept in checkpoints)."""

    def metrics(self, final: dict[str, Any]) -> dict[str, Any]:
        """The finished run's metrics from its last evaluation."""

    def weights(self) -> dict[str, Tensor]:
        """The trained tensors the run keeps."""

    def predictions(self) -> dict[str, Predictions]:
        """Each evaluation set's per-example predictions at the latest evaluation."""


TrainerFactory = Callable[[RunSpec, Environment, SetupCallback | None], Trainer]
TRAINERS: Registry[TrainerFactory] = Registry("trainer")


def run_epochs(
    trainer: Trainer, t: TrainConfig, env: Environment, on_epoch: EpochCallback, control: Control
) -> dict[str, Any]:
    """Trains from the checkpoint `control` holds (or from the start) to the last epoch; returns the last
    evaluation. `on_epoch` receives every epoch's record; `control` may stop the run between steps."""
    if not trainer.trains:  # only scored: one record at epoch 0, no training numbers
        start = time.perf_counter()
        evals, extra = trainer.evaluate()
        on_epoch(
            0,
            EpochRecord(
                epoch=0,
                evals=evals,
                **_fields(trainer.headline(evals)),
                **_fields(extra),
                wall_time=time.perf_counter() - start,
            ),
        )
        return trainer.final(evals, extra, None, 0)
    optimizer = trainer.state.optimizer
    first_epoch, final = trainer.state.start(control, env.device)  # after a checkpoint: as if never stopped
    for epoch in range(first_epoch, t.epochs):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # the lr of the epoch's first step
        trainer.model.train()
        stats = trainer.stats()
        for batch in trainer.batches():
            if control.should_stop():
                raise Stopped(f"stopped during epoch {epoch}")
            out, targets = trainer.step(batch)
            stats.add(out.loss, out.parts, out.logits, targets, out.grad_norm)
        row = stats.finish()
        check_finite(row, epoch)
        is_eval = is_eval_epoch(epoch, t)
        readings = trainer.readings() if wanted(env.diagnostics, is_eval) else {}
        evals, extra = trainer.evaluate() if is_eval else ({}, {})
        if is_eval:
            final = {**trainer.final(evals, extra, row["train_acc"], epoch), **readings}
        on_epoch(
            epoch,
            EpochRecord(
                epoch=epoch,
                lr=lr,
                loss=row["loss"],
                parts=row["parts"],
                train_acc=row["train_acc"],
                evals=evals,
                **_fields(trainer.headline(evals)),
                grad_norm_mean=row["grad_norm_mean"],
                grad_norm_max=row["grad_norm_max"],
                **_fields({**readings, **extra}),
                wall_time=time.perf_counter() - start,
            ),
        )
        trainer.end_epoch(epoch)
        # after the schedule step: the checkpoint holds the lr the next epoch starts with
        control.epoch_done(epoch, lambda epoch=epoch, final=final: trainer.state.capture(epoch, final))
    return final


def _fields(named: Mapping[str, float | None]) -> dict[str, Any]:
    """A trainer's named values as `EpochRecord` keywords: their names are its fields, which mypy cannot check."""
    return dict(named)


def trainer_kind(spec: RunSpec) -> str:
    """The kind of trainer a run needs: that of its suite's data reader ("image" or "text")."""
    return READERS.get(load_suite(spec.suite).reader).kind


def train_run(
    spec: RunSpec,
    env: Environment,
    on_epoch: EpochCallback,
    setup_info: SetupCallback | None = None,
    control: Control | None = None,
) -> TrainResult:
    """Trains `spec` and returns its final metrics and trained weights; `on_epoch` receives every epoch's record
    (the store writes it). `control` resumes from a checkpoint, is offered one after every epoch, and may stop the
    run between steps (raising `Stopped`)."""
    trainer = TRAINERS.get(trainer_kind(spec))(spec, env, setup_info)
    final = run_epochs(trainer, spec.train, env, on_epoch, control or Control())
    return TrainResult(trainer.metrics(final), trainer.weights(), trainer.predictions())
