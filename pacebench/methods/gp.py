"""Gradient-norm penalty (Table 6 GP) and its combination with FPA.

    loss = base_loss + λ_gp · ‖∇_θ CE‖₂

computed exactly by double back-propagation (create_graph=True) over all trainable parameters, so its gradient is
the true gradient of the penalty (a test checks it against finite differences). Fused attention kernels have no
double backward, so setup() switches timm's attention to its plain-math path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pacebench.methods.base import Method, MethodConfig, SetupInfo, StepOutput, cross_entropy, register
from pacebench.methods.fpa import fpa_loss


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


@dataclass(frozen=True)
class GpConfig(MethodConfig):
    lam: float = 0.1

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0")]


@register
class GradientPenalty(Method):
    name = "gp"
    description = "Table 6 GP: CE + λ·‖∇θ CE‖₂, exact by double backprop"
    Config: ClassVar[type[MethodConfig]] = GpConfig
    parts: ClassVar[tuple[str, ...]] = ("ce", "gp")
    shares_drop_path = False

    def setup(self, model: nn.Module, info: SetupInfo) -> dict[str, Any]:
        return {**super().setup(model, info), "math_attention_modules": use_math_attention(model)}

    def base_loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        logits = model(x)
        ce = cross_entropy(logits, y)
        return StepOutput(ce, logits, {"ce": ce})

    def penalty_weight(self) -> float:
        return self.cfg.lam  # type: ignore[attr-defined]

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        out = self.base_loss(model, x, y, idx)
        params = [p for p in model.parameters() if p.requires_grad]
        gp = gradient_norm_penalty(out.parts["ce"], params)
        return StepOutput(out.loss + self.penalty_weight() * gp, out.logits, {**out.parts, "gp": gp})


@dataclass(frozen=True)
class FpaGpConfig(MethodConfig):
    lam_fpa: float = 1.0
    lam_gp: float = 0.1

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam_fpa", self.lam_fpa >= 0, "λ_fpa >= 0"), ("lam_gp", self.lam_gp >= 0, "λ_gp >= 0")]


@register
class FpaGp(GradientPenalty):
    name = "fpa_gp"
    description = "Table 6 FPA+GP: CE + λ_fpa·FP-distance + λ_gp·‖∇θ CE‖₂"
    Config = FpaGpConfig
    parts = ("ce", "fpa", "gp")

    def base_loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        return fpa_loss(model, x, y, self.cfg.lam_fpa)  # type: ignore[attr-defined]

    def penalty_weight(self) -> float:
        return self.cfg.lam_gp  # type: ignore[attr-defined]

