"""Table 6's noise ablations: each is PACE with one design choice changed (Table 6's "Noise" is in pace.py)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from pacebench.choices import Schedule
from pacebench.core.methods.base import TABLE6, StepOutput, hp, register
from pacebench.core.methods.pace import (
    LAM_GRID,
    LAM_HELP,
    SCHEDULE_HELP,
    NoisyMethod,
    PaceBase,
    PaceConfig,
    ScheduledConfig,
    pace_loss,
)


@register
class PaceAdd(PaceBase[PaceConfig]):
    name = "pace_add"
    description = "Table 6 PACE_add: additive Gaussian noise Δh + ε, ε ~ N(0, σ²), instead of multiplicative"
    tags = frozenset({TABLE6})
    paper_row = "+PACE_add"
    noise_kind = "gauss_add"
    grid = {"sigma": [0.01, 0.03, 0.1, 0.3]}  # ε is added to Δh, whose scale is far below 1: σ must be small


@register
class PaceH(PaceBase[PaceConfig]):
    name = "pace_h"
    description = "Table 6 PACE_h: noise multiplies the whole layer output h, not the adapter branch Δh"
    tags = frozenset({TABLE6})
    paper_row = "+PACE_h"
    noise_target = "output"
    grid = {"sigma": [0.05, 0.1, 0.2, 0.4]}  # h carries the frozen signal too: σ near 1 would swamp it


@dataclass(frozen=True)
class PaceDropConfig(ScheduledConfig):
    lam: float = hp(1.0, LAM_HELP, grid=LAM_GRID, aliases=("lambda", "λ"))
    p: float = hp(
        0.1, "drop rate at the most perturbed position; the σ schedule scales it over depth", grid=[0.05, 0.1, 0.2, 0.3]
    )

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0"), ("p", 0 <= self.p < 1, "0 <= p < 1"), *super().validate()]


@register
class PaceDrop(NoisyMethod[PaceDropConfig]):
    name = "pace_drop"
    description = "Table 6 PACE_drop: dropout noise on Δh (rate p, scaled over depth like σ) instead of Gaussian"
    Config = PaceDropConfig
    tags = frozenset({TABLE6})
    paper_row = "+PACE_drop"
    parts = ("ce", "consistency")
    noise_kind = "dropout"
    level = "p"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        return pace_loss(model, x, y, self.cfg.lam)


@dataclass(frozen=True)
class ConstConfig(PaceConfig):
    schedule: str = hp(Schedule.const.value, SCHEDULE_HELP)


@register
class PaceSigmaConst(PaceBase[ConstConfig]):
    name = "pace_sigma_const"
    description = "Table 6 PACE_σ=: one σ for every perturbed block instead of σ falling with depth"
    Config = ConstConfig
    tags = frozenset({TABLE6})
    paper_row = "+PACE_sigma_const"


@dataclass(frozen=True)
class IncreasingConfig(PaceConfig):
    schedule: str = hp(Schedule.increasing.value, SCHEDULE_HELP)


@register
class PaceSigmaInc(PaceBase[IncreasingConfig]):
    name = "pace_sigma_inc"
    description = "Table 6 PACE_σ↑: σ grows with depth (the default schedule reversed)"
    Config = IncreasingConfig
    tags = frozenset({TABLE6})
    paper_row = "+PACE_sigma_inc"
