"""PACE (paper Eq. 12, authors' code): two noisy copies in one forward pass, CE on the first, consistency between.

    loss = CE(f1(x), y) + λ · mean_b Σ_c (f1(x) - f2(x))²

f1 and f2 share weights but not noise: the batch is concatenated with itself, so each row gets its own z. Neither
half is detached. DropPath masks are shared by the two copies of a sample. The Table-6 noise ablations are this
class with another noise kind, target or σ schedule (see variants.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pacebench.droppath import copies
from pacebench.methods.base import Method, MethodConfig, SetupInfo, StepOutput, register
from pacebench.noise import SCHEDULES, apply_noise


@dataclass(frozen=True)
class NoiseConfig(MethodConfig):
    sigma: float = 1.2
    schedule: str = "code"  # "code": the authors' σ schedule; "paper": linear over every position

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("sigma", self.sigma >= 0, "σ >= 0"),
                ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES.names())}")]


@dataclass(frozen=True)
class PaceConfig(NoiseConfig):
    lam: float = 1.0

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0"), *super().validate()]


class NoisyMethod(Method):
    """A method whose adapters (and head) get noise during training."""

    Config: ClassVar[type[MethodConfig]] = NoiseConfig
    noise_kind: ClassVar[str] = "gauss_mul"
    noise_target: ClassVar[str] = "delta"

    def noise_level(self) -> float:
        return self.cfg.sigma  # type: ignore[attr-defined]

    def setup(self, model: nn.Module, info: SetupInfo) -> dict[str, Any]:
        sigmas = apply_noise(model, self.noise_kind, self.noise_level(), self.cfg.schedule,  # type: ignore[attr-defined]
                             self.noise_target)
        return {"sigmas": sigmas}


def split_copies(logits: Tensor, n: int) -> list[Tensor]:
    return list(logits.chunk(n))


@register
class Pace(NoisyMethod):
    name = "pace"
    description = "PACE: multiplicative noise on adapters, CE + λ·consistency between two noisy copies"
    Config: ClassVar[type[MethodConfig]] = PaceConfig
    parts = ("ce", "consistency")

    def pace_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        with copies(model, 2):
            logits1, logits2 = split_copies(model(torch.cat([x, x])), 2)
        ce, cons = self.objective.loss(logits1, y), self.objective.distance(logits1, logits2, y)
        return StepOutput(ce + self.cfg.lam * cons, logits1, {"ce": ce, "consistency": cons})  # type: ignore[attr-defined]

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        return self.pace_loss(model, x, y)
