"""PACE in your own training loop: attach adapters with PACE's noise and a training method to your model, then step,
merge for evaluation, save and load, as peft's `get_peft_model` gives a model LoRA.

Nothing here is a second implementation: `attach` builds the model with `core.prepare.attach`, the function every
image run of `pacebench run` builds its model with; `attach_text` with the text trainer's `text.models.adapt` and
`text.models.attach` (peft's LoRA, PACE's noise on its branch); `Tuner.step` is the method's own `step()`, the call
the trainers make every batch. So for the same weights, batch and random state a loss here is the run's, bit for bit
(tests/test_api.py checks it with `==`). The reference, argument by argument: docs/api.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from pacebench.choices import Precision
from pacebench.core import adapters
from pacebench.core.adapters.layout import layout_of
from pacebench.core.methods import CLASSIFICATION, METHODS, Method, SetupInfo, StepOutput
from pacebench.core.prepare import Prepared
from pacebench.core.prepare import attach as attach_backbone
from pacebench.errors import DataError, UsageError
from pacebench.execution.devices import resolve_device
from pacebench.plan.spec import DEFAULT_ADAPTER
from pacebench.text import models as text_models
from pacebench.text.tasks import REGRESSION, Glue
from pacebench.training.loop import autocast_for
from pacebench.values import parse_value
from pacebench.version import __version__

FORMAT = "pacebench-adapter"  # the `format` metadata of every file `Tuner.save` writes
IMAGE, TEXT = "image", "text"  # what a Tuner adapts; a saved file loads only into a Tuner of its own kind


@dataclass(repr=False)
class Tuner:
    """A model with adapters and a training method attached, made by `attach` or `attach_text`.

    `model` is the model itself (the one you passed, adapted in place; for text, peft's model behind pacebench's
    [B, 2, T] input convention), `method` the training objective, `facts` what its set-up reported (σ at every depth
    position). `signature` is what a saved file must match to load: kind, adapter and rank (and LoRA's α).
    """

    model: nn.Module
    method: Method
    device: torch.device
    signature: dict[str, str]
    params: list[nn.Parameter]
    facts: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        config = ", ".join(f"{k}={v}" for k, v in self.method.cfg.as_dict().items())
        adapter = ", ".join(f"{k}={v}" for k, v in self.signature.items() if k != "kind")
        return (
            f"{type(self).__name__}({type(self.model).__name__}, method={self.method.name}({config}), {adapter}, "
            f"trainable={sum(p.numel() for p in self.params)}, device={self.device})"
        )

    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters (adapters and head), in the order a run gives them to its optimizer."""
        return list(self.params)

    def step(self, x: Tensor, y: Tensor, idx: Tensor | None = None, *, optimizer: torch.optim.Optimizer) -> StepOutput:
        """One training step on a batch, the very call the trainers make: zero_grad, the method's loss (under the
        precision's autocast), backward, the gradient norm, `optimizer.step()`. `idx` holds each sample's position in
        the training set (pace_fast keeps a history row per sample; other methods ignore it). Returns the total
        loss, the logits of the first copy, the named loss parts (`ce`, `consistency`, ...) and the gradient norm."""
        self.model.train()  # noise and DropPath on, whatever an evaluation in between left
        return self.method.step(self.model, self._batch(x, y, idx), optimizer, self.params)

    def loss(self, x: Tensor, y: Tensor, idx: Tensor | None = None) -> StepOutput:
        """The method's loss on a batch without backward or optimizer step, for a loop that owns those (a gradient
        scaler, accumulation). It counts as one step (pace_lazy's every N-th step, pace_fast's history are
        advanced): call it once per optimizer step. Methods that need several backward passes (SAM) refuse it."""
        cls = type(self.method)
        if cls.backward is not Method.backward or cls.step is not Method.step:
            raise UsageError(
                f"method {self.method.name} takes more than one backward pass per step, so it has no "
                "single loss to return; use tuner.step(x, y, idx, optimizer=...)"
            )
        self.model.train()
        x, y, idx = self._batch(x, y, idx)
        with self.method.autocast():
            out = self.method.loss(self.model, x, y, idx)
        self.method.steps += 1  # what Method.step counts after its optimizer step
        return out

    @contextmanager
    def merged(self) -> Iterator[nn.Module]:
        """Evaluation mode on folded weights (paper Eq. 13: every adapter added into its frozen layer, so the model
        costs what the frozen one does); afterwards the adapters are unfolded, the frozen weights restored exactly,
        and the mode put back."""
        was_training = self.model.training
        self.model.eval()
        try:
            with self._folded():
                yield self.model
        finally:
            self.model.train(was_training)

    def _folded(self) -> AbstractContextManager[Any]:
        return adapters.merged(self.model)

    def state(self) -> dict[str, Tensor]:
        """The trained tensors (adapters and head) by name, detached on the CPU: what `save` writes."""
        return adapters.trainable_state(self.model)

    def save(self, path: str | Path) -> Path:
        """Writes the trained tensors as safetensors; the metadata names the kind, adapter, rank, method and its
        hyperparameters and the pacebench version. Returns the path."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise UsageError(f"{path}: adapters are saved as safetensors; end the file name in .safetensors")
        meta = {
            "format": FORMAT,
            **self.signature,
            "method": self.method.name,
            "method_config": json.dumps(self.method.cfg.as_dict()),
            "pacebench": __version__,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state().items()}, str(path), metadata=meta)
        return path

    def load(self, path: str | Path) -> None:
        """Copies the tensors of a file `save` wrote into the trainable parameters. A file made for another kind,
        adapter or rank (or tensors of other names or shapes, e.g. another class count) is refused, and nothing is
        copied."""
        path = Path(path)
        meta, tensors = read_adapter_file(path)
        made = {k: meta.get(k, "?") for k in self.signature}
        if made != self.signature:
            theirs = ", ".join(f"{k}={v}" for k, v in made.items())
            ours = ", ".join(f"{k}={v}" for k, v in self.signature.items())
            raise DataError(
                f"{path} holds an adapter with {theirs}, but this model has {ours}; attach with the "
                "file's settings to load it"
            )
        own = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        if set(tensors) != set(own):
            odd = sorted(set(tensors) ^ set(own))[0]
            where = "the file" if odd in tensors else "this model"
            raise DataError(f"{path} does not fit this model: {odd} is only in {where}; is it the same architecture?")
        for name, tensor in tensors.items():
            if tensor.shape != own[name].shape:
                raise DataError(
                    f"{path} does not fit this model: {name} has shape {tuple(tensor.shape)} there and "
                    f"{tuple(own[name].shape)} here (another class count?)"
                )
        with torch.no_grad():
            for name, tensor in tensors.items():
                own[name].copy_(tensor)

    def _batch(self, x: Tensor, y: Tensor, idx: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if idx is None:
            if self.method.needs_index:
                raise UsageError(
                    f"method {self.method.name} needs each sample's position in the training set: pass "
                    "idx (e.g. a TensorDataset with torch.arange(len(train_set)) as its last tensor)"
                )
            idx = torch.arange(x.shape[0])
        return (
            x.to(self.device, non_blocking=True),
            y.to(self.device, non_blocking=True),
            idx.to(self.device, non_blocking=True),
        )


class TextTuner(Tuner):
    """A Tuner for a Hugging Face classifier; `model` takes x of shape [B, 2, T]: input ids and attention mask
    stacked (`torch.stack([ids, mask], dim=1)`), so PACE's copies are one `torch.cat([x, x])` as for images."""

    def _folded(self) -> AbstractContextManager[Any]:
        return self.model.merged()  # type: ignore[operator]


def read_adapter_file(path: Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    """The metadata and tensors of a file `Tuner.save` wrote; a one-line error for anything else."""
    if not path.is_file():
        raise DataError(f"adapter file {path} not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError) as exc:
        raise DataError(f"cannot read adapter file {path}: {str(exc).splitlines()[0]}") from None
    if meta.get("format") != FORMAT:
        raise DataError(
            f"{path} is not an adapter file saved by pacebench (no format={FORMAT} in its metadata); "
            "save one with tuner.save(path)"
        )
    return meta, tensors


def _method(name: str, num_train: int | None, hyperparameters: dict[str, Any]) -> type[Method]:
    """The method class, with its hyperparameters and arguments checked before any model is touched."""
    cls = METHODS.get(name)
    if not cls.trains:
        raise UsageError(f"method {name} trains nothing; attach a method that trains (`pacebench methods`)")
    cls.make_config(hyperparameters)  # an unknown name lists the known ones; a bad value names its rule
    if cls.needs_index and (num_train is None or num_train < 1):
        raise UsageError(f"method {name} keeps a row per training sample: give num_train=len(train_set)")
    return cls


def _check_rank(rank: Any, required: bool) -> None:
    """A rank is a whole number >= 1 (None, where `required` is False: the kind's own), checked before the model is
    touched: a float would fail half-way through building the adapters."""
    if rank is None and not required:
        return
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise UsageError(f"rank must be a whole number >= 1, got {rank!r}")


def _device(model: nn.Module | str | Path, device: torch.device | str | None) -> torch.device:
    """`device` checked as the command line's --device (auto, cpu, cuda, cuda:N); None: where the model is (the CPU
    for a model still to be loaded from a folder)."""
    if device is not None:
        return resolve_device(str(device))
    first = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return first.device if first is not None else torch.device("cpu")


def _tuner(
    cls: type[Tuner], ready: Prepared, device: torch.device, precision: Precision, signature: dict[str, str]
) -> Tuner:
    ready.method.autocast = autocast_for(precision, device)  # the trainers' own choice of autocast
    return cls(ready.model, ready.method, device, signature, ready.params, ready.facts)


def attach(
    model: nn.Module,
    method: str = "pace",
    *,
    adapter: str = DEFAULT_ADAPTER,
    rank: int | None = None,
    adapter_scale: float | None = None,
    adapter_dropout: float | None = None,
    num_train: int | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    **hyperparameters: Any,
) -> Tuner:
    """Puts adapters with PACE's noise on every Linear of every block of a timm ViT or Swin and attaches `method`.

    The model is adapted in place: frozen, adapters injected, its head trained in full (and noised, as the
    authors' code does), DropPath shared between PACE's copies, moved to `device` (default: where it is), set to
    training mode. Exactly what a run of `pacebench run` builds from its backbone.

    Args:
        model: a timm VisionTransformer or SwinTransformer with its classification head for your task.
        method: a registered method (`pacebench methods`): pace, pace_lazy, pace_fast, baseline, or an ablation.
        adapter: the adapter kind, '+'-joined parts ('lora_mul+vpt_add' is the paper's LoRA+VPT).
        rank: the adapters' size (LoRA's rank r, a bottleneck's width, the number of prompts); None: the kind's own
            default (`pacebench methods`); a kind without a size (ssf, bitfit, full, linear) takes none.
        adapter_scale, adapter_dropout: the options of the kinds that read them (adaptformer's scale s, the
            bottleneck adapters' dropout); None: the kind's defaults.
        num_train: the size of the training set; needed by pace_fast (a logit row per sample).
        device: where to train: cpu, cuda, cuda:N or auto (CUDA when present); None keeps the model's device.
        precision: fp32, bf16 (autocast on the forward pass) or auto (bf16 on CUDA, what `pacebench run` uses).
        **hyperparameters: the method's own (lam, sigma, interval, ...), checked by its config; an unknown name is
            an error listing the known ones.
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"attach takes a timm ViT or Swin model (an nn.Module), not a {type(model).__name__}")
    cls = _method(method, num_train, hyperparameters)
    mixed = parse_value(Precision, precision, "precision")
    _check_rank(rank, required=False)
    settings = adapters.check_settings(adapter, rank, adapter_scale, adapter_dropout, rank_given=rank is not None)
    kind = adapters.kind_of(adapter)
    head = model.get_submodule(layout_of(model).head_path)
    info = SetupInfo(num_train or 0, int(getattr(head, "out_features", 0)))
    where = _device(model, device)
    options = {"adapter_scale": adapter_scale, "adapter_dropout": adapter_dropout}
    ready = attach_backbone(model, cls.name, info, adapter, rank, hyperparameters, where, options)
    signature = {"kind": IMAGE, "adapter": adapter, "rank": str(settings.size) if kind.size else "none"}
    if "adapter_scale" in kind.defaults:  # it changes what the trained tensors compute
        signature["adapter_scale"] = str(settings.scale)
    return _tuner(Tuner, ready, where, mixed, signature)


def attach_text(
    model: nn.Module | str | Path,
    method: str = "pace",
    *,
    num_labels: int | None = None,
    adapter: str = "lora:query,value",
    rank: int = 8,
    alpha: float = 8.0,
    num_train: int | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    **hyperparameters: Any,
) -> TextTuner:
    """Puts peft's LoRA with PACE's noise on a Hugging Face sequence classifier and attaches `method`, as the text
    trainer does for GLUE: the LoRA branch output is noised per sample and channel, dropout masks are shared by
    PACE's copies, the head is trained in full; the loss is cross-entropy (MSE for one label: regression).

    Args:
        model: an `AutoModelForSequenceClassification` model (LoRA goes into it in place), or a local model folder
            (then `num_labels` is required).
        method: baseline, pace, pace_lazy or pace_fast (the methods that take a task's own objective).
        num_labels: the classes of a model loaded from a folder (1: regression).
        adapter: 'lora:' and the names of the modules LoRA goes on ('lora:query,value' for RoBERTa).
        rank, alpha: LoRA's rank r and scale α (ΔW = (α/r)·B·A); the LoRA paper's GLUE values by default.
        num_train, device, precision, **hyperparameters: as for `attach`.
    """
    text_models.require_text_extra()
    _check_rank(rank, required=True)
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
        raise UsageError(f"alpha (LoRA's scale) must be a finite number > 0, got {alpha!r}")
    if method not in Glue.methods():
        raise UsageError(f"method {method} does not run on text models; choose from {', '.join(Glue.methods())}")
    cls = _method(method, num_train, hyperparameters)
    mixed = parse_value(Precision, precision, "precision")
    where = _device(model, device)
    if isinstance(model, str | Path):
        if num_labels is None:
            raise UsageError(f"give num_labels= for the model in {model} (its classes; 1 for regression)")
        net = text_models.build(Path(model), Glue.kind, adapter, rank, alpha, num_labels)
    else:
        if not type(model).__name__.endswith("ForSequenceClassification"):
            raise UsageError(
                f"attach_text takes a Hugging Face sequence classifier (AutoModelForSequence"
                f"Classification) or its folder, not a {type(model).__name__}"
            )
        net = text_models.adapt(model, Glue.kind, adapter, rank, alpha)
    labels = net.num_labels
    objective = REGRESSION if labels == 1 else CLASSIFICATION
    ready = text_models.attach(net, cls.name, SetupInfo(num_train or 0, labels), objective, hyperparameters, where)
    signature = {"kind": TEXT, "adapter": adapter, "rank": str(rank), "alpha": str(float(alpha))}
    return _tuner(TextTuner, ready, where, mixed, signature)  # type: ignore[return-value]


__all__ = ["FORMAT", "TextTuner", "Tuner", "attach", "attach_text", "read_adapter_file"]
