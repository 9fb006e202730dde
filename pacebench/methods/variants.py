"""Table 6's noise ablations: each is PACE (or noisy CE) with one design choice changed."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from pacebench.methods.base import MethodConfig, StepOutput, cross_entropy, register
from pacebench.methods.pace import NoisyMethod, Pace, PaceConfig, group_check
from pacebench.noise import SCHEDULES


@register
class NoiseOnly(NoisyMethod):
    name = "noise"
    description = "Table 6 'Noise': the baseline with multiplicative noise on adapters, no consistency term"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        logits = model(x)
        ce = cross_entropy(logits, y)
        return StepOutput(ce, logits, {"ce": ce})


@register
class PaceAdd(Pace):
    name = "pace_add"
    description = "Table 6 PACE_add: additive Gaussian noise Δh + ε, ε ~ N(0, σ²), instead of multiplicative"
    noise_kind = "gauss_add"


@register
class PaceH(Pace):
    name = "pace_h"
    description = "Table 6 PACE_h: noise multiplies the whole layer output h, not the adapter branch Δh"
    noise_target = "output"


@dataclass(frozen=True)
class PaceDropConfig(MethodConfig):
    lam: float = 1.0
    p: float = 0.1  # drop rate at the most perturbed position; the σ schedule scales it over depth
    schedule: str = "code"
    noise_group: str = "window"

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0"), ("p", 0 <= self.p < 1, "0 <= p < 1"),
                ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES.names())}"),
                group_check(self.noise_group)]


@register
class PaceDrop(Pace):
    name = "pace_drop"
    description = "Table 6 PACE_drop: dropout noise on Δh (rate p, scaled over depth like σ) instead of Gaussian"
    Config = PaceDropConfig
    noise_kind = "dropout"

    def noise_level(self) -> float:
        return self.cfg.p  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ConstConfig(PaceConfig):
    schedule: str = "const"


@register
class PaceSigmaConst(Pace):
    name = "pace_sigma_const"
    description = "Table 6 PACE_σ=: one σ for every perturbed block instead of σ falling with depth"
    Config = ConstConfig


@dataclass(frozen=True)
class IncreasingConfig(PaceConfig):
    schedule: str = "increasing"


@register
class PaceSigmaInc(Pace):
    name = "pace_sigma_inc"
    description = "Table 6 PACE_σ↑: σ grows with depth (the default schedule reversed)"
    Config = IncreasingConfig
