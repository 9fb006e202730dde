"""Adapters on every nn.Linear inside the blocks of a timm ViT or Swin, found later by type, never by name.

An adapter kind is a '+'-joined list of registered parts: `lora_mul+vpt_add` is the paper's default "LoRA+VPT".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pacebench.choices import NoiseGroup
from pacebench.core.adapters import lora, vpt  # noqa: F401  (registration)
from pacebench.core.adapters.base import (
    PARTS,
    AdaptedLinear,
    AdapterPart,
    Noisy,
    NoisyHead,
    plain_paths,
    training_paths,
)
from pacebench.core.adapters.layout import Layout, layout_of
from pacebench.core.noise import NOISES, Noise, schedule
from pacebench.errors import UsageError


def _kinds() -> dict[str, str]:
    """Every adapter kind with its description, from the registered parts: each weight part with each prompt part
    (the paper's LoRA+VPT family first), then each part alone."""
    weights = [cls for _, cls in PARTS.items() if not cls.prompt]
    prompts = [cls for _, cls in PARTS.items() if cls.prompt]
    pairs = {f"{w.name}+{p.name}": f"{w.description} + {p.description}" for w in weights for p in prompts}
    return {**pairs, **{name: cls.description for name, cls in PARTS.items()}}


DESCRIPTIONS = _kinds()
KINDS = tuple(DESCRIPTIONS)


def parse_kind(kind: str) -> list[str]:
    parts = kind.split("+")
    unknown = [p for p in parts if p not in PARTS]
    if unknown or len(set(parts)) != len(parts):
        raise UsageError(f"unknown adapter {kind!r}; choose one of: {', '.join(KINDS)}")
    return parts


def _set_child(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def inject(model: nn.Module, kind: str, rank: int) -> Layout:
    """Freezes `model`, wraps every Linear of every block in an AdaptedLinear and the head in a NoisyHead."""
    if rank < 1:
        raise UsageError(f"adapter rank must be >= 1, got {rank}")
    names = parse_kind(kind)
    layout = layout_of(model)
    if any(isinstance(m, AdaptedLinear) for m in model.modules()):
        raise UsageError(f"this {type(model).__name__} has adapters already; attach them to a fresh model")
    for p in model.parameters():
        p.requires_grad_(False)
    for group, position in layout.groups:
        targets = [(n, m) for n, m in group.named_modules() if isinstance(m, nn.Linear)]
        for name, linear in targets:
            parts = [PARTS.get(n)(linear, rank) for n in names]
            _set_child(group, name, AdaptedLinear(linear, parts, position))
    head = model.get_submodule(layout.head_path)
    if not isinstance(head, nn.Linear):
        raise UsageError(f"expected a Linear classification head at {layout.head_path}, got {type(head).__name__}")
    for p in head.parameters():
        p.requires_grad_(True)
    _set_child(model, layout.head_path, NoisyHead(head, layout.depth))
    return layout


def adapted_layers(model: nn.Module) -> Iterator[AdaptedLinear]:
    return (m for m in model.modules() if isinstance(m, AdaptedLinear))


def noisy_layers(model: nn.Module) -> Iterator[Noisy]:
    return (m for m in model.modules() if isinstance(m, Noisy))


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, AdapterPart) for p in m.parameters()]


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
    for layer in adapted_layers(model):
        layer.merge()


def unmerge(model: nn.Module) -> None:
    for layer in adapted_layers(model):
        layer.unmerge()


@contextmanager
def merged(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation on folded weights (paper Eq. 13): the model costs exactly what the frozen one does."""
    merge(model)
    try:
        yield model
    finally:
        unmerge(model)


@contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """The pre-trained side of the FP-distance: adapters switched off, the current head kept."""
    layers = list(adapted_layers(model))
    for layer in layers:
        layer.enabled = False
    try:
        yield model
    finally:
        for layer in layers:
            layer.enabled = True


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


def apply_noise(model: nn.Module, kind: str | None, sigma: float = 0.0, schedule_name: str = "code",
                target: str = "delta", group: str = NoiseGroup.window) -> list[float]:
    """Puts noise of `kind` on every adapted layer and the head, σ by position, drawn per `group` (a
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
    "DESCRIPTIONS", "KINDS", "AdaptedLinear", "Layout", "NoisyHead", "ParamCount", "adapted_layers",
    "adapter_parameters", "apply_noise", "count_parameters", "disabled", "head_parameters", "inject", "merge", "merged",
    "noisy_layers", "parse_kind", "pretrained_logits", "plain_paths", "trainable_state", "training_paths", "unmerge",
]
