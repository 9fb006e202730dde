"""PACE (paper Eq. 12, authors' code): two noisy copies in one forward pass, CE on the first, consistency between.

    loss = CE(f1(x), y) + λ · mean_b Σ_c (f1(x) - f2(x))²

f1 and f2 share weights but not noise: the batch is concatenated with itself, so each row gets its own z. Neither
half is detached. DropPath masks are shared by the two copies of a sample; the noise-free prefix (patch embedding,
block 0 under the authors' ViT schedule) runs once and is duplicated after (`prefix.forward_copies`). Table 6's
"Noise" (noisy CE, no consistency) is defined here too; the other noise ablations are PACE with another noise kind,
target or σ schedule (see variants.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from torch import Tensor, nn

from pacebench.choices import NoiseGroup, Schedule
from pacebench.core.adapters import apply_noise
from pacebench.core.methods.base import (
    CLASSIFICATION,
    TABLE6,
    Method,
    MethodConfig,
    Objective,
    SetupInfo,
    StepOutput,
    hp,
    register,
)
from pacebench.core.prefix import forward_copies

SIGMA_HELP = "noise scale σ at the most perturbed position (the schedule scales it over depth)"
SCHEDULE_HELP = f"σ over depth: {', '.join(Schedule)} (code: the authors', falling with depth)"
LAM_HELP = "weight λ of the consistency term"
SIGMA_GRID = [0.5, 0.8, 1.2, 1.6]  # multiplicative noise: z ~ N(1, σ²), σ of order 1
LAM_GRID = [0.1, 0.5, 1.0, 2.0]


NOISE_GROUP_HELP = (
    "which rows share a noise draw in Swin's window attention: window (the authors' code) or sample "
    "(the paper's wording); ViT draws per sample either way"
)


@dataclass(frozen=True)
class ScheduledConfig(MethodConfig):
    """Base of every noisy method's config: the noise level's schedule over depth and how draws are grouped."""

    schedule: str = hp(Schedule.code.value, SCHEDULE_HELP)
    noise_group: str = hp(NoiseGroup.window.value, NOISE_GROUP_HELP)

    def validate(self) -> list[tuple[str, bool, str]]:
        return [
            ("schedule", self.schedule in set(Schedule), f"one of {', '.join(Schedule)}"),
            ("noise_group", self.noise_group in set(NoiseGroup), f"one of {', '.join(NoiseGroup)}"),
        ]


@dataclass(frozen=True)
class NoiseConfig(ScheduledConfig):
    sigma: float = hp(1.2, SIGMA_HELP, grid=SIGMA_GRID, aliases=("σ",))

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("sigma", self.sigma >= 0, "σ >= 0"), *super().validate()]


@dataclass(frozen=True)
class PaceConfig(NoiseConfig):
    lam: float = hp(1.0, LAM_HELP, grid=LAM_GRID, aliases=("lambda", "λ"))

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0"), *super().validate()]


S = TypeVar("S", bound=ScheduledConfig)


class NoisyMethod(Method[S], Generic[S]):
    """A method whose adapters (and head) get noise during training. `level` names the config field that sets the
    noise level at the most perturbed position (σ; the drop rate p for dropout noise)."""

    noise_kind: ClassVar[str] = "gauss_mul"
    noise_target: ClassVar[str] = "delta"
    level: ClassVar[str] = "sigma"
    shares_drop_path = True  # the authors' code shares DropPath masks between the copies of every noisy method

    def setup(self, model: nn.Module, info: SetupInfo) -> dict[str, Any]:
        level = float(getattr(self.cfg, self.level))
        sigmas = apply_noise(model, self.noise_kind, level, self.cfg.schedule, self.noise_target, self.cfg.noise_group)
        return {"sigmas": sigmas}


def split_copies(logits: Tensor, n: int) -> list[Tensor]:
    return list(logits.chunk(n))


def pace_loss(model: nn.Module, x: Tensor, y: Tensor, lam: float, objective: Objective = CLASSIFICATION) -> StepOutput:
    """CE on the first of two noisy copies + λ·consistency between them, in one forward pass over [x; x]
    (a text task's own loss and output distance in their place)."""
    logits1, logits2 = split_copies(forward_copies(model, x, 2), 2)
    ce, cons = objective.loss(logits1, y), objective.distance(logits1, logits2, y)
    return StepOutput(ce + lam * cons, logits1, {"ce": ce, "consistency": cons})


@register
class NoiseOnly(NoisyMethod[NoiseConfig]):
    name = "noise"
    description = "Table 6 'Noise': the baseline with multiplicative noise on adapters, no consistency term"
    Config = NoiseConfig
    tags = frozenset({TABLE6})
    paper_row = "+Noise"


P = TypeVar("P", bound=PaceConfig)


class PaceBase(NoisyMethod[P], Generic[P]):
    """The PACE objective; subclasses change the noise, the config or which steps use it (and carry no tags)."""

    Config = PaceConfig
    parts = ("ce", "consistency")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        return pace_loss(model, x, y, self.cfg.lam, self.objective)


@register
class Pace(PaceBase[PaceConfig]):
    name = "pace"
    any_task = True
    description = "PACE: multiplicative noise on adapters, CE + λ·consistency between two noisy copies"
    tags = frozenset({TABLE6})
    paper_row = "+PACE"
