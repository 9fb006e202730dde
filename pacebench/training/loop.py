"""One training run, start to finish: data, backbone + adapters, method, AdamW + cosine schedule, evaluation.

The loop follows the authors' code: AdamW on the trainable parameters (weight decay on all of them), no gradient
clipping, timm's cosine schedule with linear warm-up stepped once per epoch *after* the epoch (`scheduler.step(ep)`
after epoch ep, so epoch 0 trains at the warm-up start lr and epoch e at the schedule's value for e - 1), evaluation
every `eval_every` epochs
and at the end on merged weights, the last evaluation reported (no best-epoch picking). Per epoch it records the
loss and its named parts, train accuracy and the gradient norm the optimizer saw (mean and max over steps). At
evaluation epochs (every epoch with `Environment.diagnostics = "every"`) it also takes Fig. 2's readings of the
clean model on the training split and on the phase's held-out split (`diagnose`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from pacebench.core import adapters, backbones
from pacebench.core.methods import Method, SetupInfo, StepOutput
from pacebench.core.methods.fpa import pretrained_logits
from pacebench.core.prepare import prepare
from pacebench.data import load_splits
from pacebench.data.cache import DeviceBatches, Normalise, device_batches
from pacebench.data.transforms import batch_mixup
from pacebench.errors import UsageError
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.store import EpochRecord
from pacebench.training.checkpoint import Control, Stopped, TrainState

EpochCallback = Callable[[int, EpochRecord], None]


@dataclass(frozen=True)
class Environment:
    """Where a run executes; none of this is part of the run key."""

    device: torch.device
    data_root: Path
    weights: Path | None = None
    num_workers: int = 4
    diagnostics: str = "eval"  # Fig. 2's readings (`diagnose`): at evaluation epochs, "every" epoch, or "off"
    weights_dir: Path | None = None  # where named backbones' files are (default: settings.weights_dir())
    compile: bool = False  # torch.compile each block (same values as eager; tested on CPU)
    cache_dir: Path | None = None  # decoded-image cache (data.cache; the CLI uses results/cache); None: decode always


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def attention_kernel(model: nn.Module) -> str:
    """Which attention timm runs: "fused" (scaled_dot_product_attention), "math" (plain matmul + softmax; the
    gradient penalty needs it for its double backward), "mixed", or "none" for a model without timm attention."""
    flags = {bool(m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")}
    return {frozenset(): "none", frozenset({True}): "fused", frozenset({False}): "math"}.get(frozenset(flags), "mixed")


def loader(dataset: Dataset, batch_size: int, env: Environment, train: bool, generator: torch.Generator | None
           ) -> DataLoader:
    size = len(dataset)  # type: ignore[arg-type]
    order = partial(DataLoader, batch_size=batch_size, shuffle=train, drop_last=train and size >= batch_size,
                    generator=generator)
    assemble = device_batches(dataset, env.device)
    if assemble is not None:  # cached images: the loader only orders positions, batches are built on the device
        return order(range(size), collate_fn=assemble)  # type: ignore[arg-type]
    workers = 0 if getattr(dataset, "in_memory", False) else env.num_workers
    return order(dataset, num_workers=workers, pin_memory=env.device.type == "cuda",
                 persistent_workers=train and workers > 0)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 autocast on CUDA and fp32 elsewhere (`TrainConfig.for_device`)."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return str(precision)


def autocast_for(precision: str, device: torch.device) -> Callable[[], Any]:
    if resolve_precision(precision, device) == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def make_optimizer(params: list[nn.Parameter] | list[dict[str, Any]], lr: float, weight_decay: float,
                   device: torch.device) -> torch.optim.Optimizer:
    """The authors' AdamW (parameters, or groups with their own weight decay as the text trainer's); on CUDA the
    fused kernel (one launch for all parameters, same update rule)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


def compile_blocks(model: nn.Module, backend: str = "inductor") -> int:
    """torch.compile every block's forward (not the model: the hooks that duplicate PACE's copies and record the
    batch size stay eager, so changing them never recompiles). Random ops fall back to eager's generator, so a
    compiled run draws the same noise and DropPath masks as an eager one. Returns how many blocks were compiled."""
    import torch._inductor.config

    from pacebench.core.adapters import layout_of

    torch._inductor.config.fallback_random = True
    blocks = [group for group, _ in layout_of(model).groups if not isinstance(group, nn.Linear)]
    for block in blocks:
        block.forward = torch.compile(block.forward, dynamic=False, backend=backend)  # type: ignore[method-assign]
    return len(blocks)


@torch.no_grad()
def evaluate(model: nn.Module, data: DataLoader, device: torch.device, classes: Sequence[int] | None,
             autocast: Callable[[], Any], inputs: Callable[[Tensor], Tensor] = lambda x: x) -> float:
    """Top-1 accuracy in percent on merged weights; `classes` restricts the logits (ImageNet-A/-R)."""
    model.eval()
    subset = torch.tensor(list(classes), device=device) if classes else None
    correct = torch.zeros((), device=device, dtype=torch.long)
    total = 0
    with adapters.merged(model), autocast():
        for x, y, _ in data:
            x, y = inputs(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            logits = model(x)
            pred = subset[logits[:, subset].argmax(-1)] if subset is not None else logits.argmax(-1)
            correct += (pred == y).sum()
            total += y.numel()
    return 100.0 * correct.item() / max(total, 1)


def clean_readings(model: nn.Module, data: DataLoader, params: list[nn.Parameter], device: torch.device,
                   autocast: Callable[[], Any], inputs: Callable[[Tensor], Tensor] = lambda x: x
                   ) -> tuple[float, float]:
    """Fig. 2's readings of the clean model (eval mode: no noise, no DropPath) over one loader, in one pass:

    - the task gradient norm, what Theorems 1-2 bound: ‖∇θ CE‖ per mini-batch, averaged over the mini-batches;
    - the FP-distance of paper Eq. 5: mean over samples of ‖f(θ0+Δθ)(x) - f(θ0)(x)‖² on the logits.

    Adapters stay unmerged (merging and unmerging would round W0) and nothing is written to `.grad`, so taking the
    readings leaves training exactly as it was.
    """
    model.eval()
    norms, fp, count = [], torch.zeros((), device=device), 0
    for x, y, _ in data:
        x, y = inputs(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        with autocast():
            logits = model(x).float()
            reference = pretrained_logits(model, x).float()
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), params, allow_unused=True)
        norms.append(torch.nn.utils.get_total_norm([g for g in grads if g is not None], norm_type=2.0))
        fp += (logits.detach() - reference).pow(2).sum()
        count += x.shape[0]
    if not norms:
        return math.nan, math.nan
    return torch.stack(norms).mean().item(), fp.item() / count  # one CPU-GPU sync each


def heldout_split(evals: dict[str, Dataset]) -> str:
    """The phase's held-out split: "val" in phase tune (the only one a tune reader opens), "test" in phase final;
    a reader without either (domain adaptation) gives its first evaluation set."""
    return next((name for name in ("test", "val") if name in evals), next(iter(evals)))


DIAGNOSTIC_SAMPLES = 1000  # per split: a fixed subset keeps the readings' cost bounded on big test sets


def diagnostic_subset(dataset: Dataset, size: int = DIAGNOSTIC_SAMPLES) -> Dataset:
    """At most `size` samples of `dataset`, the same ones for every run and method (a permutation with a fixed seed
    of its own, so the global RNG is not touched); the whole set when it is no larger."""
    n = len(dataset)  # type: ignore[arg-type]
    if n <= size:
        return dataset
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:size].sort().values
    subset = torch.utils.data.Subset(dataset, keep.tolist())
    subset.in_memory = getattr(dataset, "in_memory", False)  # type: ignore[attr-defined]
    return subset


def diagnose(model: nn.Module, data: dict[str, DataLoader], params: list[nn.Parameter], device: torch.device,
             autocast: Callable[[], Any], inputs: Callable[[Tensor], Tensor] = lambda x: x) -> dict[str, float]:
    """Fig. 2's readings on the training split and the held-out split (`data` keys "train", "heldout"): the task
    gradient norm and the FP-distance. Diagnostic only: the protocol's choice never reads them."""
    out = {}
    for on, loader_ in data.items():
        grad, fp = clean_readings(model, loader_, params, device, autocast, inputs)
        out[f"grad_norm_task_{on}"] = grad
        out["fp_distance" if on == "train" else f"fp_distance_{on}"] = fp
    return out


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
        return {"loss": loss, "train_acc": acc, "grad_norm_mean": gn_mean, "grad_norm_max": gn_max,
                "parts": {k: v.item() / n for k, v in self.parts.items()}}


def check_finite(row: dict[str, Any], epoch: int) -> None:
    """Stops a run whose epoch loss is NaN or infinite; the error is kept with the run."""
    if not math.isfinite(row["loss"]):
        raise FloatingPointError(f"training loss became {row['loss']} at epoch {epoch}; lower the lr or λ")


def is_eval_epoch(epoch: int, t: TrainConfig) -> bool:
    """Evaluation every `eval_every` epochs and always after the last one (whose numbers the run reports)."""
    return (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs


@dataclass(frozen=True)
class TrainResult:
    """A finished run: its final metrics and its trained adapter and head tensors (kept with the run)."""

    metrics: dict[str, Any]
    weights: dict[str, Tensor]


def check_mixup_batch(mixup: Callable | None, batch_size: int, num_train: int) -> None:
    """timm's Mixup pairs each sample with its mirror in the batch, so every batch must have an even size."""
    batch = batch_size if num_train >= batch_size else num_train  # a set smaller than the batch: one short step
    if mixup is not None and batch % 2:
        raise UsageError(f"Mixup needs an even batch, but this run's batches hold {batch} images; use an even "
                         "batch_size (or augment=standard)")


def train_step(method: Method, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], optimizer: torch.optim.Optimizer,
               params: list[nn.Parameter], mixup: Callable | None) -> tuple[StepOutput, Tensor]:
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
    from pacebench.data.cache import CachedImages

    sets = [d.base for d in (splits.train, *splits.evals.values()) if isinstance(getattr(d, "base", None),
                                                                                CachedImages)]
    return {"used": bool(sets), "decode_seconds": round(sum(c.decode_seconds for c in sets), 3)}


def train_run(spec: RunSpec, env: Environment, on_epoch: EpochCallback, setup_info: Callable[[dict], None]
              | None = None, control: Control | None = None) -> TrainResult:
    """Trains `spec` and returns its final metrics and trained weights; `on_epoch` receives every epoch's record
    (the store writes it). `control` resumes from a checkpoint, is offered one after every epoch, and may stop the
    run between steps (raising `Stopped`)."""
    from timm.scheduler import CosineLRScheduler

    from pacebench.plan.suites import load_suite
    from pacebench.text.tasks import TASKS

    if load_suite(spec.suite).reader in TASKS:  # a text suite: same methods and records, its own loop
        from pacebench.training.text import train_text

        return train_text(spec, env, on_epoch, setup_info, control)

    generator = seed_everything(spec.seed)
    splits = load_splits(spec, env.data_root, env.cache_dir)
    mean, std = backbones.normalization(spec.backbone)
    inputs = Normalise(mean, std)  # cached uint8 images are normalised on the device; decoded ones already are
    ready = prepare(spec, SetupInfo(len(splits.train), splits.num_classes),  # type: ignore[arg-type]
                    env.device, env.weights, env.weights_dir)
    model, method, params = ready.model, ready.method, ready.params
    if env.compile:
        compile_blocks(model)
    facts = {**ready.facts, "attention": attention_kernel(model), "image_cache": image_cache_facts(splits)}
    facts["normalize"] = {"mean": list(mean), "std": list(std)}  # the mean/std the inputs were normalised with
    t = spec.train
    optimizer = make_optimizer(params, t.lr, t.weight_decay, env.device)
    schedule = CosineLRScheduler(optimizer, t_initial=t.epochs, lr_min=t.min_lr, warmup_t=t.warmup_epochs,
                                 warmup_lr_init=t.warmup_lr, t_in_epochs=True)
    method.autocast = autocast_for(t.precision, env.device)
    mixup = batch_mixup(t.augment, splits.num_classes)
    check_mixup_batch(mixup, t.batch_size, len(splits.train))  # type: ignore[arg-type]
    train_data = loader(splits.train, t.batch_size, env, True, generator)
    eval_data = {name: loader(d, t.eval_batch_size, env, False, None) for name, d in splits.evals.items()}
    # Fig. 2's readings at the training batch size, so their gradient norms compare with the optimizer's; their own
    # generator, so that taking them or not (env.diagnostics) leaves the global RNG and thus training untouched
    diag_data = {on: loader(diagnostic_subset(d), t.batch_size, env, False, torch.Generator().manual_seed(spec.seed))
                 for on, d in (("train", splits.train), ("heldout", splits.evals[heldout_split(splits.evals)]))}
    facts["image_cache"]["on_device"] = isinstance(train_data.collate_fn, DeviceBatches)
    counts = adapters.count_parameters(model)
    if setup_info:
        setup_info({"trainable_params": counts.total, "adapter_params": counts.adapter, "head_params": counts.head,
                    **facts})
    control = control or Control()
    state = TrainState(model, optimizer, schedule, method, generator)
    first_epoch, final = state.start(control, env.device)  # after a checkpoint: as if never stopped
    for epoch in range(first_epoch, t.epochs):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # what this epoch trains at: the warm-up start lr, then s(epoch - 1)
        model.train()
        stats = EpochStats(env.device)
        for x, y, idx in train_data:
            if control.should_stop():
                raise Stopped(f"stopped during epoch {epoch}")
            batch = (inputs(x.to(env.device, non_blocking=True)), y.to(env.device, non_blocking=True),
                     idx.to(env.device, non_blocking=True))
            out, targets = train_step(method, model, batch, optimizer, params, mixup)
            stats.add(out.loss, out.parts, out.logits, targets, out.grad_norm)
        row = stats.finish()
        check_finite(row, epoch)
        evals: dict[str, float] = {}
        readings: dict[str, Any] = {}
        is_eval = is_eval_epoch(epoch, t)
        if env.diagnostics == "every" or (is_eval and env.diagnostics == "eval"):
            readings = diagnose(model, diag_data, params, env.device, method.autocast, inputs)
        if is_eval:
            evals = {name: evaluate(model, d, env.device, splits.eval_classes.get(name), method.autocast, inputs)
                     for name, d in eval_data.items()}
            # the train-split FP-distance loader of earlier releases drew one base seed from the global RNG here
            # (every DataLoader iterator does); drawn still, so that existing run keys keep training the same
            torch.empty((), dtype=torch.int64).random_()
            final = {"train_acc": row["train_acc"], "evals": evals, "epoch": epoch, **readings}
        record = EpochRecord(
            epoch=epoch, lr=lr, loss=row["loss"], parts=row["parts"],
            train_acc=row["train_acc"], val_acc=evals.get("val"), test_acc=_test_acc(evals), evals=evals,
            grad_norm_mean=row["grad_norm_mean"], grad_norm_max=row["grad_norm_max"], **readings,
            wall_time=time.perf_counter() - start,
        )
        on_epoch(epoch, record)
        schedule.step(epoch)  # after the epoch, as the authors' code does
        # after the schedule step: the checkpoint holds the lr the next epoch starts with
        control.epoch_done(epoch, lambda epoch=epoch, final=final: state.capture(epoch, final))
    metrics = {**final, "val_acc": final["evals"].get("val"), "test_acc": _test_acc(final["evals"])}
    if splits.label_ids is not None:  # the data set's own label ids, in class-index order (FGVC)
        metrics["label_ids"] = splits.label_ids
    return TrainResult(metrics, adapters.trainable_state(model))


def _test_acc(evals: dict[str, float]) -> float | None:
    """The headline test number: 'test', or the mean over several target sets (domain adaptation)."""
    if "test" in evals:
        return evals["test"]
    targets = [v for k, v in evals.items() if k != "val"]
    return sum(targets) / len(targets) if targets else None
