"""The image trainer: a timm backbone with adapters, AdamW and timm's cosine schedule, evaluation on merged weights.

It follows the authors' code: AdamW on the trainable parameters (weight decay on all of them), no gradient clipping,
timm's cosine schedule with linear warm-up stepped once per epoch *after* the epoch (`scheduler.step(ep)` after epoch
ep, so epoch 0 trains at the warm-up start lr and epoch e at the schedule's value for e - 1), evaluation on merged
weights (paper Eq. 13). Fig. 2's readings of the clean model are taken on the training split and on the phase's
held-out split (`training.diagnostics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import torch
from timm.scheduler import CosineLRScheduler
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from pacebench.core import adapters, backbones
from pacebench.core.methods import Method, SetupInfo, StepOutput
from pacebench.core.prepare import prepare
from pacebench.data import load_splits
from pacebench.data.cache import CachedImages, DeviceBatches, Normalise, device_batches
from pacebench.data.transforms import batch_mixup
from pacebench.errors import UsageError
from pacebench.plan.spec import RunSpec
from pacebench.store.records import Predictions
from pacebench.training.checkpoint import TrainState
from pacebench.training.diagnostics import diagnose, diagnostic_subset, heldout_split
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


def attention_kernel(model: nn.Module) -> str:
    """Which attention timm runs: "fused" (scaled_dot_product_attention), "math" (plain matmul + softmax; the
    gradient penalty needs it for its double backward), "mixed", or "none" for a model without timm attention."""
    flags = {bool(m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")}
    return {frozenset(): "none", frozenset({True}): "fused", frozenset({False}): "math"}.get(frozenset(flags), "mixed")


def loader(
    dataset: Dataset, batch_size: int, env: Environment, train: bool, generator: torch.Generator | None
) -> DataLoader:
    size = len(dataset)  # type: ignore[arg-type]
    order = partial(
        DataLoader, batch_size=batch_size, shuffle=train, drop_last=train and size >= batch_size, generator=generator
    )
    assemble = device_batches(dataset, env.device)
    if assemble is not None:  # cached images: the loader only orders positions, batches are built on the device
        return order(range(size), collate_fn=assemble)  # type: ignore[arg-type]
    workers = 0 if getattr(dataset, "in_memory", False) else env.num_workers
    return order(
        dataset, num_workers=workers, pin_memory=env.device.type == "cuda", persistent_workers=train and workers > 0
    )


def compile_blocks(model: nn.Module, backend: str = "inductor") -> int:
    """torch.compile every block's forward (not the model: the hooks that duplicate PACE's copies and record the
    batch size stay eager, so changing them never recompiles). Random ops fall back to eager's generator, so a
    compiled run draws the same noise and DropPath masks as an eager one. Returns how many blocks were compiled."""
    import torch._inductor.config  # lazy: loading inductor costs seconds, and only --compile needs it

    torch._inductor.config.fallback_random = True
    blocks = [group for group, _ in adapters.layout_of(model).groups if not isinstance(group, nn.Linear)]
    for block in blocks:
        block.forward = torch.compile(block.forward, dynamic=False, backend=backend)  # type: ignore[method-assign]
    return len(blocks)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataLoader,
    device: torch.device,
    classes: Sequence[int] | None,
    autocast: Callable[[], Any],
    inputs: Callable[[Tensor], Tensor] = lambda x: x,
) -> tuple[float, Tensor, Tensor]:
    """Top-1 accuracy in percent on merged weights, with each example's predicted and true class (CPU tensors in
    the data set's order, from the loader's indices); `classes` restricts the logits (ImageNet-A/-R)."""
    model.eval()
    subset = torch.tensor(list(classes), device=device) if classes else None
    size = len(data.dataset)  # type: ignore[arg-type]
    predicted = torch.full((size,), -1, device=device, dtype=torch.long)
    target = torch.full((size,), -1, device=device, dtype=torch.long)
    with adapters.merged(model), autocast():
        for x, y, idx in data:
            x, y = inputs(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            idx = idx.to(device, non_blocking=True)
            logits = model(x)
            predicted[idx] = subset[logits[:, subset].argmax(-1)] if subset is not None else logits.argmax(-1)
            target[idx] = y
    predicted, target = predicted.cpu(), target.cpu()  # the evaluation's one CPU-GPU sync
    correct = int((predicted == target).sum())
    return 100.0 * correct / max(size, 1), predicted, target


def check_mixup_batch(mixup: Callable | None, batch_size: int, num_train: int) -> None:
    """timm's Mixup pairs each sample with its mirror in the batch, so every batch must have an even size."""
    batch = batch_size if num_train >= batch_size else num_train  # a set smaller than the batch: one short step
    if mixup is not None and batch % 2:
        raise UsageError(
            f"Mixup needs an even batch, but this run's batches hold {batch} images; use an even "
            "batch_size (or augment=standard)"
        )


def train_step(
    method: Method,
    model: nn.Module,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    mixup: Callable | None,
) -> tuple[StepOutput, Tensor]:
    """One optimisation step; with Mixup the batch is mixed once here, before the method sees it, so both PACE
    copies get the same mixed image and the CE uses the soft targets. Returns the output and the targets used."""
    x, y, idx = batch
    if mixup is not None:
        x, y = mixup(x, y)
    out = method.step(model, (x, y, idx), optimizer, params)
    return out, y


def image_cache_facts(splits: Any) -> dict[str, Any]:
    """Whether the run's images came from the decoded-image cache, and the seconds spent decoding them this time
    (0 when every cache file already existed: the decode cost a first run pays once)."""
    sets = [
        d.base for d in (splits.train, *splits.evals.values()) if isinstance(getattr(d, "base", None), CachedImages)
    ]
    rebuilt = [c.rebuilt for c in sets if c.rebuilt]
    return {
        "used": bool(sets),
        "decode_seconds": round(sum(c.decode_seconds for c in sets), 3),
        **({"rebuilt": rebuilt} if rebuilt else {}),
    }


def reported_test(evals: dict[str, float]) -> float | None:
    """The headline test number: 'test', or the mean over several target sets (domain adaptation)."""
    if "test" in evals:
        return evals["test"]
    targets = [v for k, v in evals.items() if k != "val"]
    return sum(targets) / len(targets) if targets else None


@TRAINERS.register("image")
class ImageTrainer:
    """A run on an image suite: the spec's backbone from its weights file, its adapters and method, its data."""

    trains = True

    def __init__(self, spec: RunSpec, env: Environment, setup_info: SetupCallback | None = None) -> None:
        self.env, t = env, spec.train
        generator = seed_everything(spec.seed)
        self.splits = splits = load_splits(spec, env.data_root, env.cache_dir)
        mean, std = backbones.normalization(spec.backbone)
        self.inputs = Normalise(mean, std)  # cached uint8 images are normalised on the device; decoded ones already are
        ready = prepare(
            spec,
            SetupInfo(len(splits.train), splits.num_classes),  # type: ignore[arg-type]
            env.device,
            env.weights,
            env.weights_dir,
        )
        self.model, self.method, self.params = ready.model, ready.method, ready.params
        if env.compile:
            compile_blocks(self.model)
        facts = {**ready.facts, "attention": attention_kernel(self.model), "image_cache": image_cache_facts(splits)}
        facts["normalize"] = {"mean": list(mean), "std": list(std)}  # the mean/std the inputs were normalised with
        optimizer = make_optimizer(self.params, t.lr, t.weight_decay, env.device)
        self.schedule = CosineLRScheduler(
            optimizer,
            t_initial=t.epochs,
            lr_min=t.min_lr,
            warmup_t=t.warmup_epochs,
            warmup_lr_init=t.warmup_lr,
            t_in_epochs=True,
        )
        self.method.autocast = autocast_for(t.precision, env.device)
        self.mixup = batch_mixup(t.augment, splits.num_classes)
        check_mixup_batch(self.mixup, t.batch_size, len(splits.train))  # type: ignore[arg-type]
        self.train_data = loader(splits.train, t.batch_size, env, True, generator)
        self.eval_data = {name: loader(d, t.eval_batch_size, env, False, None) for name, d in splits.evals.items()}
        # Fig. 2's readings at the training batch size, so their gradient norms compare with the optimizer's; their
        # own generator, so that taking them or not (env.diagnostics) leaves the global RNG and thus training as is
        heldout = splits.evals[heldout_split(splits.evals)]
        self.diag_data = {
            on: loader(diagnostic_subset(d), t.batch_size, env, False, torch.Generator().manual_seed(spec.seed))
            for on, d in (("train", splits.train), ("heldout", heldout))
        }
        facts["image_cache"]["on_device"] = isinstance(self.train_data.collate_fn, DeviceBatches)
        counts = adapters.count_parameters(self.model)
        if setup_info:
            setup_info(
                {
                    "trainable_params": counts.total,
                    "adapter_params": counts.adapter,
                    "head_params": counts.head,
                    **facts,
                }
            )
        self.state = TrainState(self.model, optimizer, self.schedule, self.method, generator)
        self.last: dict[str, Predictions] = {}  # each evaluation set's predictions at the latest evaluation

    def batches(self) -> Iterator[Batch]:
        device = self.env.device
        for x, y, idx in self.train_data:
            yield (
                self.inputs(x.to(device, non_blocking=True)),
                y.to(device, non_blocking=True),
                idx.to(device, non_blocking=True),
            )

    def step(self, batch: Batch) -> tuple[StepOutput, Tensor]:
        return train_step(self.method, self.model, batch, self.state.optimizer, self.params, self.mixup)

    def stats(self) -> EpochStats:
        return EpochStats(self.env.device)

    def end_epoch(self, epoch: int) -> None:
        self.schedule.step(epoch)  # after the epoch, as the authors' code does

    def evaluate(self) -> tuple[dict[str, float], dict[str, float]]:
        evals = {}
        for name, data in self.eval_data.items():
            evals[name], predicted, target = evaluate(
                self.model, data, self.env.device, self.splits.eval_classes.get(name), self.method.autocast, self.inputs
            )
            ids = self.splits.example_ids.get(name) or [str(i) for i in range(len(target))]
            self.last = {
                **self.last,
                name: Predictions(name, tuple(ids), predicted.numpy(), target.numpy(), (predicted == target).numpy()),
            }
        # the train-split FP-distance loader of earlier releases drew one base seed from the global RNG here (every
        # DataLoader iterator does); drawn still, so that existing run keys keep training the same
        torch.empty((), dtype=torch.int64).random_()
        return evals, {}

    def readings(self) -> dict[str, float]:
        return diagnose(self.model, self.diag_data, self.params, self.env.device, self.method.autocast, self.inputs)

    def headline(self, evals: dict[str, float]) -> dict[str, float | None]:
        return {"val_acc": evals.get("val"), "test_acc": reported_test(evals)}

    def final(
        self, evals: dict[str, float], extra: dict[str, float], train_acc: float | None, epoch: int
    ) -> dict[str, Any]:
        return {"train_acc": train_acc, "evals": evals, "epoch": epoch}

    def metrics(self, final: dict[str, Any]) -> dict[str, Any]:
        metrics = {**final, **self.headline(final["evals"])}
        if self.splits.label_ids is not None:  # the data set's own label ids, in class-index order (FGVC)
            metrics["label_ids"] = self.splits.label_ids
        return metrics

    def weights(self) -> dict[str, Tensor]:
        return adapters.trainable_state(self.model)

    def predictions(self) -> dict[str, Predictions]:
        return self.last
