"""The text trainer: a local Hugging Face model folder with peft's LoRA, AdamW and a linear schedule.

It follows the LoRA paper's GLUE recipe (HF Trainer): AdamW with weight decay on matrices only, linear warm-up over
`warmup_ratio` of all steps then linear decay to zero, stepped every batch, no gradient clipping, the last batch of an
epoch kept. The epoch loop, the methods, the records, the evaluation cadence and the checkpoints are the image
path's (`training.loop`). The FP-distance (paper Eq. 5) is taken on the task outputs of a fixed subset of the
training set (its first FP_SAMPLES examples; the full set would cost a second epoch on QNLI). Evaluation runs LoRA
unmerged: the same outputs as merged weights, without the rounding that merging and unmerging leaves in the frozen
weights (see `TextModel.merged`). A method with `trains = False` ("pretrained") is only evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pacebench.core import backbones
from pacebench.core.adapters import trainable_state
from pacebench.core.methods import SetupInfo, StepOutput
from pacebench.data.base import data_options, dataset_root
from pacebench.errors import UsageError
from pacebench.plan.spec import RunSpec
from pacebench.plan.suites import load_suite
from pacebench.store.records import Predictions
from pacebench.text import models
from pacebench.text.tasks import TASKS, Items, TextTask, collate
from pacebench.training.checkpoint import TrainState
from pacebench.training.loop import (
    TRAINERS,
    Batch,
    Environment,
    EpochStats,
    SetupCallback,
    autocast_for,
    make_optimizer,
    seed_everything,
)

FP_SAMPLES = 256


class TaskStats(EpochStats):
    """EpochStats with the task's own notion of a correct prediction (answer tokens for GSM-8K, none for STS-B)."""

    def __init__(self, device: torch.device, task: TextTask) -> None:
        super().__init__(device)
        self.task, self.has_accuracy = task, True

    def add(self, loss: Tensor, parts: dict[str, Tensor], logits: Tensor, y: Tensor, gn: Tensor | None) -> None:
        # loss, parts and grad norm through the parent; no predictions (empty tensors): hits are counted below
        super().add(loss, parts, logits.new_zeros((0, 1)), y.new_zeros((0,)), gn)
        hits = self.task.hits(logits.detach(), y[: logits.shape[0]])
        if hits is None:
            self.has_accuracy = False
            return
        correct, count = hits
        self.correct += correct
        self.seen += count

    def finish(self) -> dict[str, Any]:
        row = super().finish()
        return row if self.has_accuracy else {**row, "train_acc": None}


def decay_groups(params: list[torch.nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only, none on biases and norm weights: the Hugging Face Trainer's rule, which the
    LoRA paper's GLUE runs used (the image trainer decays everything, as the PACE authors' code does)."""
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def model_folder(spec: RunSpec, weights: Path | None, weights_dir: Path | None = None) -> Path:
    folder = backbones.resolve(spec.backbone, weights, weights_dir).weights
    if folder is None or not folder.is_dir():
        raise UsageError(
            f"backbone {spec.backbone} is not a model folder; text suites take a Hugging Face folder "
            "(--weights DIR, or roberta_base / phi3_mini_4k_instruct under the weights folder)"
        )
    return folder


@torch.no_grad()
def fp_distance(
    model: models.TextModel,
    task: TextTask,
    data: torch.utils.data.DataLoader,
    device: torch.device,
    autocast: Callable[[], Any],
) -> float:
    """Paper Eq. 5 on the task outputs, in eval mode: the objective's distance between the tuned model and the
    pre-trained one (LoRA off, task head kept), averaged over samples (GSM-8K: over answer tokens)."""
    model.eval()
    distance = task.objective().distance
    total, count = 0.0, 0
    with autocast():
        for x, y, _ in data:
            x, y = x.to(device), y.to(device)
            tuned = model(x)
            with model.pretrained():
                before = model(x)
            n = task.units(y)
            total += float(distance(tuned, before, y)) * n
            count += n
    return total / max(count, 1)


def readings(
    model: models.TextModel,
    task: TextTask,
    data: torch.utils.data.DataLoader,
    params: list[torch.nn.Parameter],
    device: torch.device,
    autocast: Callable[[], Any],
    with_fp: bool = True,
) -> tuple[float, float]:
    """Fig. 2's readings of the clean model (eval mode: no noise, no dropout) on one loader, as for images: the norm
    of the task loss's gradient per mini-batch, averaged, and the FP-distance on the task outputs (the objective's
    distance to the pre-trained model, averaged over samples or answer tokens; NaN without `with_fp`, which skips
    the pre-trained forward). Nothing is written to `.grad`."""
    model.eval()
    objective = task.objective()
    norms, total, count = [], 0.0, 0
    for x, y, _ in data:
        x, y = x.to(device), y.to(device)
        with autocast():
            outputs = model(x)
            loss = objective.loss(outputs, y)
            if with_fp:
                with torch.no_grad(), model.pretrained():
                    before = model(x)
        grads = [g for g in torch.autograd.grad(loss, params, allow_unused=True) if g is not None]
        norms.append(float(torch.nn.utils.get_total_norm(grads, norm_type=2.0)))
        if with_fp:
            n = task.units(y)
            total += float(objective.distance(outputs.detach(), before, y)) * n
            count += n
    fp = total / max(count, 1) if with_fp else math.nan
    return (sum(norms) / len(norms) if norms else math.nan), fp


@TRAINERS.register("text")
class TextTrainer:
    """A run on a text suite: the task's data and objective, the model folder with LoRA, the method."""

    def __init__(self, spec: RunSpec, env: Environment, setup_info: SetupCallback | None = None) -> None:
        suite = load_suite(spec.suite)
        ds = suite.dataset(spec.dataset)
        self.env, t = env, spec.train
        self.task = task = TASKS.get(suite.reader)(ds.name, ds.classes, data_options(ds, spec.data_options))
        task.check(suite.name, t.adapter, [spec.method])
        models.require_text_extra()
        generator = seed_everything(spec.seed)
        self.splits = splits = task.splits(dataset_root(suite, ds, env.data_root), spec.phase)
        self.last: dict[str, Predictions] = {}  # each evaluation set's predictions at the latest evaluation
        folder = model_folder(spec, env.weights, env.weights_dir)
        self.tokenizer = models.load_tokenizer(folder)
        self.model = model = models.build(
            folder, task.kind, t.adapter, t.rank, task.settings.lora_alpha, task.num_labels()
        )
        started = models.load_lora(model, Path(task.settings.init_lora)) if task.settings.init_lora else 0
        ready = models.attach(
            model,
            spec.method,
            SetupInfo(len(splits.train), task.num_labels()),
            task.objective(),
            spec.method_config,
            env.device,
        )
        self.method = method = ready.method
        self.trains = method.trains
        method.autocast = autocast_for(t.precision, env.device)
        facts = ready.facts
        facts["lora_started_from"] = {"file": task.settings.init_lora, "matrices": started} if started else None
        if setup_info:
            setup_info({**model.parameter_counts(), **facts})
        train_items = task.encode(splits.train, self.tokenizer)
        batches = collate(self.tokenizer.pad_token_id, task.label_dtype())
        self.train_data = torch.utils.data.DataLoader(
            Items(train_items), batch_size=t.batch_size, shuffle=True, generator=generator, collate_fn=batches
        )
        self.fp_data = torch.utils.data.DataLoader(
            Items(train_items[:FP_SAMPLES]), batch_size=t.eval_batch_size, collate_fn=batches
        )
        heldout = "val" if "val" in splits.evals else task.reported  # phase tune never opens the reported split
        # Fig. 2's readings at the training batch size; their loaders have a generator of their own, so taking them
        # (or not: --diagnostics off) leaves the global RNG, and so training, untouched
        self.diag_data = {
            on: torch.utils.data.DataLoader(
                Items(items[:FP_SAMPLES]),
                batch_size=t.batch_size,
                collate_fn=batches,
                generator=torch.Generator().manual_seed(0),
            )
            for on, items in (("train", train_items), ("heldout", task.encode(splits.evals[heldout], self.tokenizer)))
        }
        self.eval_batch_size = t.eval_batch_size
        self.params = ready.params
        if not self.trains:
            return
        from transformers import get_linear_schedule_with_warmup  # lazy: the text extra is optional

        optimizer = make_optimizer(decay_groups(self.params, t.weight_decay), t.lr, t.weight_decay, env.device)
        total_steps = t.epochs * len(self.train_data)
        self.schedule = get_linear_schedule_with_warmup(
            optimizer, math.ceil(task.settings.warmup_ratio * total_steps), total_steps
        )
        self.state = TrainState(model, optimizer, self.schedule, method, generator)

    def batches(self) -> Iterator[Batch]:
        device = self.env.device
        for x, y, idx in self.train_data:
            yield x.to(device), y.to(device), idx.to(device)

    def step(self, batch: Batch) -> tuple[StepOutput, Tensor]:
        out = self.method.step(self.model, batch, self.state.optimizer, self.params)
        self.schedule.step()
        return out, batch[1]

    def stats(self) -> EpochStats:
        return TaskStats(self.env.device, self.task)

    def end_epoch(self, epoch: int) -> None:
        """The linear schedule steps every batch (`step`), not per epoch."""

    def evaluate(self) -> tuple[dict[str, float], dict[str, float]]:
        scored = {
            name: self.task.evaluate(
                self.model, examples, self.tokenizer, self.eval_batch_size, self.env.device, self.method.autocast
            )
            for name, examples in self.splits.evals.items()
        }
        self.last = {
            name: Predictions(
                name, tuple(str(i) for i in range(len(s.target))), s.predicted, s.target, s.correct, s.metric
            )
            for name, s in scored.items()
        }
        evals = {name: s.score for name, s in scored.items()}
        return evals, {
            "fp_distance": fp_distance(self.model, self.task, self.fp_data, self.env.device, self.method.autocast)
        }

    def readings(self) -> dict[str, float]:
        return fig2_readings(self.model, self.task, self.diag_data, self.params, self.env.device, self.method.autocast)

    def headline(self, evals: dict[str, float]) -> dict[str, float | None]:
        return {"val_acc": evals.get("val"), "test_acc": evals.get(self.task.reported)}

    def final(
        self, evals: dict[str, float], extra: dict[str, float], train_acc: float | None, epoch: int
    ) -> dict[str, Any]:
        return _final(self.task, evals, extra["fp_distance"], train_acc, epoch)

    def metrics(self, final: dict[str, Any]) -> dict[str, Any]:
        return final

    def weights(self) -> dict[str, Tensor]:
        return trainable_state(self.model) if self.trains else {}

    def predictions(self) -> dict[str, Predictions]:
        return self.last


def fig2_readings(
    model: models.TextModel,
    task: TextTask,
    data: dict[str, torch.utils.data.DataLoader],
    params: list[torch.nn.Parameter],
    device: torch.device,
    autocast: Callable[[], Any],
) -> dict[str, float]:
    """The task-gradient norm on the training and held-out splits and the held-out FP-distance, named as the image
    loop names them (the training split's FP-distance is the evaluation's, so it is not taken again here)."""
    out = {}
    for on, loader in data.items():
        grad, fp = readings(model, task, loader, params, device, autocast, with_fp=on != "train")
        out[f"grad_norm_task_{on}"] = grad
        if on != "train":
            out[f"fp_distance_{on}"] = fp
    return out


def _final(task: TextTask, evals: dict[str, float], fp: float, train_acc: float | None, epoch: int) -> dict[str, Any]:
    """The run's metrics: `test_acc` holds the reported split's score (GLUE dev, GSM-8K test) whatever its metric,
    so the shared tools (runs list, tables, figures) read text runs like image runs; `metric` names it."""
    metric = getattr(getattr(task, "task", None), "metric", "exact_match")
    return {
        "train_acc": train_acc,
        "evals": evals,
        "fp_distance": fp,
        "epoch": epoch,
        "metric": metric,
        "val_acc": evals.get("val"),
        "test_acc": evals.get(task.reported),
    }
