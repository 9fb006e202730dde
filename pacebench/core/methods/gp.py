"""Gradient-norm penalty (Table 6 GP) and its combination with FPA.

    loss = base_loss + λ_gp · ‖∇_θ CE‖₂

computed exactly by double back-propagation (create_graph=True) over all trainable parameters, so its gradient is
the true gradient of the penalty (a test checks it against finite differences). Fused attention kernels have no
double backward, so setup() switches timm's attention to its plain-math path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn

from pacebench.core.methods.base import TABLE6, Method, MethodConfig, SetupInfo, StepOutput, ce_only, hp, register
from pacebench.core.methods.fpa import FPA_GRID, FPA_HELP, fpa_loss


def gradient_norm_penalty(loss: Tensor, params: list[nn.Parameter]) -> Tensor:
    """‖∂loss/∂θ‖₂ as a differentiable function of θ."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    return torch.sqrt(sum((g.pow(2).sum() for g in grads if g is not None), torch.zeros((), device=loss.device)))


def use_math_attention(model: nn.Module) -> int:
    changed = 0
    for m in model.modules():
        if getattr(m, "fused_attn", False):
            m.fused_attn = False  # type: ignore[assignment]
            changed += 1
    return changed


GP_HELP = "weight λ of the gradient-norm penalty ‖∇θ CE‖₂"
GP_GRID = [0.001, 0.01, 0.1, 1.0]


@dataclass(frozen=True)
class GpConfig(MethodConfig):
    lam: float = hp(0.1, GP_HELP, grid=GP_GRID, aliases=("lambda", "λ"))

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0")]


G = TypeVar("G", bound=MethodConfig)


class PenaltyMethod(Method[G], Generic[G]):
    """`base_loss` + λ_gp·‖∇θ CE‖₂ on plain-math attention; subclasses give the base loss and the weight."""

    parts: ClassVar[tuple[str, ...]] = ("ce", "gp")

    def setup(self, model: nn.Module, info: SetupInfo) -> dict[str, Any]:
        return {**super().setup(model, info), "math_attention_modules": use_math_attention(model)}

    def base_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        return ce_only(model, x, y)

    def penalty_weight(self) -> float:
        raise NotImplementedError

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        out = self.base_loss(model, x, y)
        params = [p for p in model.parameters() if p.requires_grad]
        gp = gradient_norm_penalty(out.parts["ce"], params)
        return StepOutput(out.loss + self.penalty_weight() * gp, out.logits, {**out.parts, "gp": gp})


@register
class GradientPenalty(PenaltyMethod[GpConfig]):
    name = "gp"
    description = "Table 6 GP: CE + λ·‖∇θ CE‖₂, exact by double backprop"
    Config = GpConfig
    tags = frozenset({TABLE6})
    paper_row = "+GP"

    def penalty_weight(self) -> float:
        return self.cfg.lam


@dataclass(frozen=True)
class FpaGpConfig(MethodConfig):
    lam_fpa: float = hp(1.0, FPA_HELP, grid=FPA_GRID)
    lam_gp: float = hp(0.1, GP_HELP, grid=GP_GRID)

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam_fpa", self.lam_fpa >= 0, "λ_fpa >= 0"), ("lam_gp", self.lam_gp >= 0, "λ_gp >= 0")]


@register
class FpaGp(PenaltyMethod[FpaGpConfig]):
    name = "fpa_gp"
    description = "Table 6 FPA+GP: CE + λ_fpa·FP-distance + λ_gp·‖∇θ CE‖₂"
    Config = FpaGpConfig
    tags = frozenset({TABLE6})
    paper_row = "+FPA+GP"
    parts = ("ce", "fpa", "gp")

    def base_loss(self, model: nn.Module, x: Tensor, y: Tensor) -> StepOutput:
        return fpa_loss(model, x, y, self.cfg.lam_fpa)

    def penalty_weight(self) -> float:
        return self.cfg.lam_gp
