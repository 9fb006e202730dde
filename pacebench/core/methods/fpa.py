"""FPA (Table 6): align the fine-tuned with the pre-trained model by minimising the FP-distance (paper Eq. 5).

    FP-distance = mean_b ‖f(θ0 + Δθ)(x) - f(θ0)(x)‖²   on the logits

The pre-trained side f(θ0) is the same network with the backbone's adapters switched off and the current head
kept (the pre-trained model has no head for the task). It is computed in eval mode and without gradient: it is the
target the fine-tuned model is pulled towards, not a second network to train (otherwise the head could shrink to
zero and make both sides agree trivially). The trainer logs the same quantity for every method (Fig. 2b).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from pacebench.core.adapters import pretrained_logits
from pacebench.core.methods.base import TABLE6, Method, MethodConfig, StepOutput, ce_only, consistency, hp, register

FPA_HELP = "weight λ of the FP-distance to the pre-trained model"
FPA_GRID = [0.01, 0.1, 1.0, 10.0]  # the paper sweeps FPA's λ over 1e-3 .. 5e4 (Fig. 4)


def fpa_loss(model: nn.Module, x: Tensor, y: Tensor, lam: float) -> StepOutput:
    """CE + λ·FP-distance on one batch."""
    reference = pretrained_logits(model, x)
    out = ce_only(model, x, y)
    fpa = consistency(out.logits, reference)
    return StepOutput(out.loss + lam * fpa, out.logits, {**out.parts, "fpa": fpa})


@dataclass(frozen=True)
class FpaConfig(MethodConfig):
    lam: float = hp(1.0, FPA_HELP, grid=FPA_GRID, aliases=("lambda", "λ"))

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0")]


@register
class Fpa(Method[FpaConfig]):
    name = "fpa"
    description = "Table 6 FPA: CE + λ·FP-distance to the pre-trained model (adapters off, current head), no noise"
    Config = FpaConfig
    tags = frozenset({TABLE6})
    paper_row = "+FPA"
    parts = ("ce", "fpa")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        return fpa_loss(model, x, y, self.cfg.lam)
