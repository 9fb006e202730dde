"""PACE_lazy (the authors' "lazy half"): the consistency term only every N-th step.

On a PACE step the first half of the batch is duplicated, so the forward pass still holds B samples:
CE(first copy) + λ·consistency. On the other steps: one noisy forward over the full batch, CE only.
N = 1 makes every step a half-batch PACE step, at the baseline's cost per step.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from pacebench.core.methods.base import EFFICIENCY_TAG, StepOutput, ce_only, hp, register
from pacebench.core.methods.pace import PaceBase, PaceConfig, pace_loss


@dataclass(frozen=True)
class LazyConfig(PaceConfig):
    interval: int = hp(
        2,
        "N: the consistency term every N-th step (on the duplicated first half of the batch)",
        aliases=("N",),
        equals=("pace", 1),
    )

    def validate(self) -> list[tuple[str, bool, str]]:
        return [*super().validate(), ("interval", self.interval >= 1, "N >= 1")]


@register
class PaceLazy(PaceBase[LazyConfig]):
    name = "pace_lazy"
    any_task = True
    description = "PACE every N-th step on the duplicated first half of the batch; noisy CE on the other steps"
    Config = LazyConfig
    tags = frozenset({EFFICIENCY_TAG})

    def is_pace_step(self) -> bool:
        return self.steps % self.cfg.interval == 0

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        if self.is_pace_step():
            half = max(1, x.shape[0] // 2)
            return pace_loss(model, x[:half], y[:half], self.cfg.lam, self.objective)
        out = ce_only(model, x, y, self.objective)
        return StepOutput(out.loss, out.logits, {**out.parts, "consistency": out.loss.new_zeros(())})
