"""Adapter kinds on a timm ViT or Swin, and what every kind's modules answer (found later by type, never by name).

Each kind is one module file that registers a `kinds.Kind` (its paper, size, options, where PACE's noise goes,
whether it merges) and the `base.Adapter` modules it puts into a backbone; its name in `MODULES` below makes it
known, and its place there is its place in listings. The paper's own family (`parts.py`: `lora_mul+vpt_add`, the
default "LoRA+VPT", `lora_add`, `vpt_add`, ...) wraps every Linear of every block; the other kinds follow their own
papers (full, linear, vpt_deep, adapter, houlsby, adaptformer, lora, ssf, bitfit, repadapter; docs/adapters.md).
Every kind's noisy modules are `base.Noisy`, so `apply_noise` gives each its σ by depth position, and every kind
trains the classification head, whose logits get noise too (`NoisyHead`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module

import torch
from torch import Tensor, nn

from pacebench.choices import NoiseGroup
from pacebench.core.adapters.base import (
    PARTS,
    AdaptedLinear,
    Adapter,
    AdapterPart,
    Noisy,
    NoisyHead,
    plain_paths,
    training_paths,
)
from pacebench.core.adapters.kinds import ADAPTERS, OPTIONS, Kind, Settings, set_child
from pacebench.core.adapters.layout import Layout, layout_of
from pacebench.core.noise import NOISES, Noise, schedule
from pacebench.errors import UsageError

MODULES = ("parts", "full", "linear", "vpt_deep", "adapter", "adaptformer", "peft_lora", "ssf", "bitfit", "repadapter")
for _module in MODULES:
    import_module(f"pacebench.core.adapters.{_module}")

KINDS = tuple(ADAPTERS.names())
DESCRIPTIONS = {name: kind.description for name, kind in ADAPTERS.items()}
PART_KINDS = tuple(name for name, kind in ADAPTERS.items() if kind.family == "pace")  # the paper's own family


def kind_of(name: str) -> Kind:
    """The registered kind `name` (a UsageError naming the kinds otherwise)."""
    return ADAPTERS.get(name)


def parse_kind(kind: str) -> list[str]:
    """The parts of a kind of the paper's family ("lora_mul+vpt_add" -> its two parts), or [kind] for any other
    registered kind; an unknown kind is a UsageError naming the known ones."""
    kind_of(kind)
    return kind.split("+") if kind in PART_KINDS else [kind]


def train_defaults(kind: str) -> dict[str, float | int]:
    """The training settings `kind` resolves to where no suite, dataset or user sets them: its size (`rank`) and
    the options it reads (`adapter_scale`, `adapter_dropout`)."""
    return kind_of(kind).train_defaults()


def check_settings(
    kind: str, rank: int | None, scale: float | None, dropout: float | None, rank_given: bool = False
) -> Settings:
    """The settings `kind` resolves to; refuses those it cannot take, before anything is trained: an option it does
    not read, a size it cannot have, or a rank given (`rank_given`) to a kind without a size."""
    entry = kind_of(kind)
    if rank_given and entry.size is None:
        raise UsageError(f"adapter {kind} has no size: leave rank unset")
    return entry.settings(rank, scale, dropout)


def inject(
    model: nn.Module, kind: str, rank: int | None = None, scale: float | None = None, dropout: float | None = None
) -> Layout:
    """Freezes `model`, puts adapter `kind` into it (size `rank`, options `scale` and `dropout`; None: the kind's
    defaults) and wraps the head, trained in full, in a NoisyHead."""
    entry = kind_of(kind)
    settings = entry.settings(rank, scale, dropout)
    layout = layout_of(model)
    if any(isinstance(m, NoisyHead) for m in model.modules()):
        raise UsageError(f"this {type(model).__name__} has adapters already; attach them to a fresh model")
    if layout.family not in entry.families:
        raise UsageError(f"adapter {kind} runs on {', '.join(entry.families)} backbones, not on {layout.family}")
    head = model.get_submodule(layout.head_path)
    if not isinstance(head, nn.Linear):
        raise UsageError(f"expected a Linear classification head at {layout.head_path}, got {type(head).__name__}")
    for p in model.parameters():
        p.requires_grad_(False)
    entry.build(model, layout, settings)
    for p in head.parameters():
        p.requires_grad_(True)
    set_child(model, layout.head_path, NoisyHead(head, layout.depth))
    return layout


def adapter_modules(model: nn.Module) -> Iterator[Adapter]:
    return (m for m in model.modules() if isinstance(m, Adapter))


def adapted_layers(model: nn.Module) -> Iterator[AdaptedLinear]:
    """The paper's family's adapted Linear layers."""
    return (m for m in model.modules() if isinstance(m, AdaptedLinear))


def noisy_layers(model: nn.Module) -> Iterator[Noisy]:
    return (m for m in model.modules() if isinstance(m, Noisy))


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter the adapters train (not the head), each once, in module order."""
    seen: dict[int, nn.Parameter] = {}
    for m in adapter_modules(model):
        for p in m.adapter_parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, NoisyHead) for p in m.parameters()]


@dataclass(frozen=True)
class ParamCount:
    adapter: int
    head: int

    @property
    def total(self) -> int:
        return self.adapter + self.head


def count_parameters(model: nn.Module) -> ParamCount:
    return ParamCount(sum(p.numel() for p in adapter_parameters(model)), sum(p.numel() for p in head_parameters(model)))


def trainable_state(model: nn.Module) -> dict[str, Tensor]:
    """The trained tensors of a run (adapters and head) by their names in the model, detached on the CPU: what a
    finished run keeps so that it can be evaluated again or exported without the optimizer state."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def merge(model: nn.Module) -> None:
    """Folds every adapter that can into its frozen weights; the others stay as they are (and run unmerged)."""
    for m in adapter_modules(model):
        if m.mergeable:
            m.merge()


def unmerge(model: nn.Module) -> None:
    for m in adapter_modules(model):
        if m.mergeable:
            m.unmerge()


@contextmanager
def merged(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation on folded weights (paper Eq. 13) where the kind allows it: a mergeable model costs exactly what
    the frozen one does; a kind that cannot fold (prompts, nonlinear bottlenecks) is evaluated as it trains."""
    merge(model)
    try:
        yield model
    finally:
        unmerge(model)


@contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """The pre-trained side of the FP-distance: adapters switched off, the current head kept."""
    modules = list(adapter_modules(model))
    for m in modules:
        m.set_enabled(False)
    try:
        yield model
    finally:
        for m in modules:
            m.set_enabled(True)


@torch.no_grad()
def pretrained_logits(model: nn.Module, x: Tensor) -> Tensor:
    """The logits of the pre-trained side of the FP-distance (paper Eq. 5): adapters off, current head, eval mode
    (no noise, no DropPath), without gradient; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with disabled(model):
            return model(x)
    finally:
        model.train(was_training)


def fold(model: nn.Module) -> nn.Module:
    """Merges every adapter into the frozen weights and unwraps it (and the head) in place: a plain timm module tree.

    Raises:
        UsageError: an adapter that cannot fold (the error says why).
    """
    modules = [(path, m) for path, m in model.named_modules() if isinstance(m, Adapter)]
    for _, m in modules:
        if not m.mergeable:
            raise UsageError(f"{type(m).__name__} does not fold into a plain timm model")
    merge(model)
    for path, m in modules:
        plain = m.unwrapped()
        if plain is None:
            parent, _, name = path.rpartition(".")
            delattr(model.get_submodule(parent) if parent else model, name)
        else:
            set_child(model, path, plain)
    for path, m in list(model.named_modules()):
        if isinstance(m, NoisyHead):
            set_child(model, path, m.linear)
    return model


def apply_noise(
    model: nn.Module,
    kind: str | None,
    sigma: float = 0.0,
    schedule_name: str = "code",
    target: str = "delta",
    group: str = NoiseGroup.window,
) -> list[float]:
    """Puts noise of `kind` on every noisy adapter module and the head, σ by position, drawn per `group` (a
    `choices.NoiseGroup`); kind None removes all noise.

    Returns the per-position σ list (empty when kind is None).
    """
    layers = list(noisy_layers(model))
    if kind is None:
        for layer in layers:
            layer.noise, layer.noise_target = nn.Identity(), "delta"
        _set_hook(model, None)
        return []
    NOISES.get(kind)
    layout = layout_of(model)
    sigmas = schedule(schedule_name, layout.family, layout.depth, sigma)
    modules = []
    for layer in layers:
        layer.noise, layer.noise_target = Noise(kind, sigmas[layer.position], group).train(layer.training), target
        modules.append(layer.noise)
    if group != NoiseGroup.sample:
        _set_hook(model, None)
        return sigmas

    def record_batch(_model: nn.Module, args: tuple) -> None:
        for m in modules:
            m.batch = args[0].shape[0]

    _set_hook(model, model.register_forward_pre_hook(record_batch))
    return sigmas


def _set_hook(model: nn.Module, handle: object | None) -> None:
    """Keeps at most one batch-recording hook on the model (setup may run more than once)."""
    old = getattr(model, "_pacebench_noise_hook", None)
    if old is not None:
        old.remove()
    model._pacebench_noise_hook = handle  # type: ignore[assignment]


__all__ = [
    "ADAPTERS",
    "DESCRIPTIONS",
    "KINDS",
    "MODULES",
    "OPTIONS",
    "PARTS",
    "PART_KINDS",
    "AdaptedLinear",
    "Adapter",
    "AdapterPart",
    "Kind",
    "Layout",
    "NoisyHead",
    "ParamCount",
    "adapted_layers",
    "adapter_modules",
    "adapter_parameters",
    "apply_noise",
    "check_settings",
    "count_parameters",
    "disabled",
    "fold",
    "head_parameters",
    "inject",
    "kind_of",
    "layout_of",
    "merge",
    "merged",
    "noisy_layers",
    "parse_kind",
    "pretrained_logits",
    "plain_paths",
    "train_defaults",
    "trainable_state",
    "training_paths",
    "unmerge",
]
