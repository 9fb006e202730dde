"""SAM (Table 6): sharpness-aware minimisation with radius ρ (Foret et al.), on the trainable parameters.

One step: gradient g at θ; ascend to θ + ρ g/‖g‖; gradient there; restore θ exactly; the optimizer steps with
the second gradient. The logged gradient norm is ‖g‖ at θ, comparable with the other methods'. Only `backward()`
changes: the shared `step()` then applies the optimizer to whatever gradient it left.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pacebench.core.methods.base import TABLE6, Method, MethodConfig, StepOutput, hp, register


@dataclass(frozen=True)
class SamConfig(MethodConfig):
    rho: float = hp(0.05, "radius ρ of the sharpness-aware ascent step", grid=[0.01, 0.02, 0.05, 0.1], aliases=("ρ",))

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("rho", self.rho >= 0, "ρ >= 0")]


@register
class Sam(Method[SamConfig]):
    name = "sam"
    description = "Table 6 SAM: sharpness-aware minimisation with radius ρ (two forward/backward passes)"
    Config = SamConfig
    tags = frozenset({TABLE6})
    paper_row = "+SAM"

    def backward(
        self,
        model: nn.Module,
        batch: tuple[Tensor, Tensor, Tensor],
        optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
    ) -> StepOutput:
        out = super().backward(model, batch, optimizer, params)  # g at θ; out.grad_norm = ‖g‖
        assert out.grad_norm is not None
        scale = self.cfg.rho / (out.grad_norm + 1e-12)
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]  # (θ + e) - e is not θ in floating point: keep θ itself
            for p in params:
                if p.grad is not None:
                    p.add_(p.grad * scale)
        super().backward(model, batch, optimizer, params)  # the gradient at θ + e, which the optimizer applies
        with torch.no_grad():
            for p, old in zip(params, saved, strict=True):
                p.copy_(old)
        return out
