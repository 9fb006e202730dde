"""Noise on the adapter branch and the σ schedules over depth.

The noise is drawn per row of the first axis of the tensor a layer sees and per output channel, and shared across
the axes in between (tokens, Swin's spatial positions): shape [B, 1, C] for token inputs [B, N, C], [B, 1, 1, C] for
[B, H, W, C], [B, C] for pooled ones. It exists only in training mode and when σ > 0. `z ~ N(1, σ²)` multiplies Δh
for PACE; the ablations swap the kind.

Swin's window attention sees [B·windows, N, C]. How the noise is grouped there (`choices.NoiseGroup`):
- "window" (default, the authors' code): one draw per row of that tensor, i.e. per window;
- "sample" (the paper's wording, "tokens within the same example share the same noise"): the windows are folded
  back to [B, windows·N, C] so every window of a sample shares one draw.
Every other layer sees one row per sample, so the two only differ inside Swin's window attention.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pacebench.choices import NoiseGroup, Schedule
from pacebench.errors import UsageError
from pacebench.registry import Registry

NoiseFn = Callable[[Tensor, float], Tensor]
NOISES: Registry[NoiseFn] = Registry("noise kind")
ADDITIVE = {"gauss_add"}  # kinds that add to t; every other kind multiplies it (see `Noise.factors`)


def noise_shape(t: Tensor) -> tuple[int, ...]:
    """One value per sample and channel, broadcast over every axis in between (tokens, H, W)."""
    return (t.shape[0],) + (1,) * (t.ndim - 2) + (t.shape[-1],)


@NOISES.register("gauss_mul")
def gauss_mul(t: Tensor, sigma: float) -> Tensor:
    """PACE: Δh ⊙ z with z ~ N(1, σ²)."""
    return t * (1 + sigma * torch.randn(noise_shape(t), device=t.device, dtype=t.dtype))


@NOISES.register("gauss_add")
def gauss_add(t: Tensor, sigma: float) -> Tensor:
    """PACE_add: Δh + ε with ε ~ N(0, σ²)."""
    return t + sigma * torch.randn(noise_shape(t), device=t.device, dtype=t.dtype)


@NOISES.register("dropout")
def dropout(t: Tensor, rate: float) -> Tensor:
    """PACE_drop: Δh ⊙ m / (1 - p), m ~ Bernoulli(1 - p); here the schedule's value is the drop rate p."""
    p = min(rate, 0.999)
    keep = torch.empty(noise_shape(t), device=t.device, dtype=t.dtype).bernoulli_(1 - p)
    return t * keep / (1 - p)


class Noise(nn.Module):
    """Applies a registered noise kind with a fixed σ, in training mode only.

    With group "sample", `batch` is the model's input batch size, set by a pre-hook (see `apply_noise`): timm
    orders Swin's windows sample by sample, so folding [B·windows, N, C] back to [B, windows·N, C] gives one draw
    per sample. With group "window" the tensor is taken as it comes.
    """

    def __init__(self, kind: str, sigma: float, group: str = NoiseGroup.window) -> None:
        super().__init__()
        if group not in set(NoiseGroup):
            raise UsageError(f"unknown noise group {group!r}; choose one of: {', '.join(NoiseGroup)}")
        self.kind, self.sigma, self.fn, self.group = kind, float(sigma), NOISES.get(kind), group
        self.batch: int | None = None

    @property
    def active(self) -> bool:
        return self.training and self.sigma != 0

    def factors(self, t: Tensor) -> tuple[Tensor | None, Tensor | None] | None:
        """(scale, shift) with noise(t) = t * scale + shift, drawn exactly as `forward(t)` would draw them (same
        shape, dtype and random numbers), so a layer can fold them into cheaper arithmetic. None where this
        module must see t itself (group "sample" folding Swin's windows back to their samples)."""
        if self._folds(t):
            return None
        unit = t.new_zeros(noise_shape(t)) if self.kind in ADDITIVE else t.new_ones(noise_shape(t))
        drawn = self.fn(unit, self.sigma)
        return (None, drawn) if self.kind in ADDITIVE else (drawn, None)

    def forward(self, t: Tensor) -> Tensor:
        if not self.active:
            return t
        if self._folds(t):
            return self.fn(t.reshape(self.batch, -1, t.shape[-1]), self.sigma).reshape(t.shape)  # type: ignore[arg-type]
        return self.fn(t, self.sigma)

    def _folds(self, t: Tensor) -> bool:
        b = self.batch
        return bool(self.group == NoiseGroup.sample and b and t.ndim > 2 and t.shape[0] != b and t.shape[0] % b == 0)

    def extra_repr(self) -> str:
        return f"{self.kind}, sigma={self.sigma:.4g}, group={self.group}"


# ---- σ schedules: (family, depth, σ) -> one value per position, blocks 0..depth-1 then the head at `depth` ----
ScheduleFn = Callable[[str, int, float], list[float]]
SCHEDULES: Registry[ScheduleFn] = Registry("sigma schedule")


@SCHEDULES.register(Schedule.code)
def code_schedule(family: str, depth: int, sigma: float) -> list[float]:
    """The authors' code. ViT: first block 0, then σ(D+1-l)/D for l = 1..D (head at l = D), so 12 blocks and
    σ = 1.2 give 0, 1.2, 1.1, ..., 0.2, 0.1. Swin (and any other family): σ(D+1-l)/(D+1) for l = 0..D."""
    if family == "vit":
        return [0.0] + [sigma * (depth + 1 - pos) / depth for pos in range(1, depth + 1)]
    return paper_schedule(family, depth, sigma)


@SCHEDULES.register(Schedule.paper)
def paper_schedule(family: str, depth: int, sigma: float) -> list[float]:
    """The paper's reading ("σ decreases linearly with depth"): σ(D+1-l)/(D+1) for every position l = 0..D."""
    return [sigma * (depth + 1 - pos) / (depth + 1) for pos in range(depth + 1)]


@SCHEDULES.register(Schedule.const)
def const_schedule(family: str, depth: int, sigma: float) -> list[float]:
    """PACE_σ=: one σ at every position that the default schedule perturbs."""
    return [sigma if s > 0 else 0.0 for s in code_schedule(family, depth, sigma)]


@SCHEDULES.register(Schedule.increasing)
def increasing_schedule(family: str, depth: int, sigma: float) -> list[float]:
    """PACE_σ↑: the default schedule's values in reverse over the perturbed positions (smallest first)."""
    values = code_schedule(family, depth, sigma)
    noisy = [i for i, s in enumerate(values) if s > 0]
    out = [0.0] * len(values)
    for i, s in zip(noisy, reversed([values[i] for i in noisy]), strict=True):
        out[i] = s
    return out


def schedule(name: str, family: str, depth: int, sigma: float) -> list[float]:
    if sigma < 0:
        raise UsageError(f"sigma must be >= 0, got {sigma}")
    return SCHEDULES.get(name)(family, depth, sigma)
