"""SAM (Table 6): sharpness-aware minimisation with radius ρ (Foret et al.), on the trainable parameters.

One step: gradient g at θ; ascend to θ + ρ g/‖g‖; gradient there; restore θ exactly; the optimizer steps with
the second gradient. The logged gradient norm is ‖g‖ at θ, comparable with the other methods'.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pacebench.methods.base import Method, MethodConfig, StepOutput, cross_entropy, grad_norm, register


@dataclass(frozen=True)
class SamConfig(MethodConfig):
    rho: float = 0.05

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("rho", self.rho >= 0, "ρ >= 0")]


@register
class Sam(Method):
    name = "sam"
    description = "Table 6 SAM: sharpness-aware minimisation with radius ρ (two forward/backward passes)"
    Config = SamConfig
    shares_drop_path = False

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        logits = model(x)
        ce = cross_entropy(logits, y)
        return StepOutput(ce, logits, {"ce": ce})

    def step(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], optimizer: torch.optim.Optimizer,
             params: list[nn.Parameter]) -> StepOutput:
        x, y, idx = batch
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.loss(model, x, y, idx)
        out.loss.backward()
        norm = grad_norm(params)
        scale = self.cfg.rho / (norm + 1e-12)  # type: ignore[attr-defined]
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]  # (θ + e) - e is not θ in floating point: keep θ itself
            shifts = [p.grad * scale if p.grad is not None else None for p in params]
            for p, e in zip(params, shifts, strict=True):
                if e is not None:
                    p.add_(e)
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            self.loss(model, x, y, idx).loss.backward()
        with torch.no_grad():
            for p, old in zip(params, saved, strict=True):
                p.copy_(old)
        optimizer.step()
        self.steps += 1
        out.grad_norm = norm
        return out
