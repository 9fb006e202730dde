"""L1 (Table 6): sparsity regularisation on the adapter weights (not the head)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pacebench.core.adapters import adapter_parameters
from pacebench.core.methods.base import TABLE6, Method, MethodConfig, StepOutput, ce_only, hp, register


@dataclass(frozen=True)
class L1Config(MethodConfig):
    lam: float = hp(1e-4, "weight λ of Σ|adapter weights|", grid=[1e-5, 1e-4, 1e-3, 1e-2], aliases=("lambda", "λ"))

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0")]


@register
class L1(Method[L1Config]):
    name = "l1"
    description = "Table 6 L1: CE + λ·Σ|adapter weights|"
    Config = L1Config
    tags = frozenset({TABLE6})
    paper_row = "+L1"
    parts = ("ce", "l1")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        out = ce_only(model, x, y)
        l1 = torch.stack([p.abs().sum() for p in adapter_parameters(model)]).sum()
        return StepOutput(out.loss + self.cfg.lam * l1, out.logits, {**out.parts, "l1": l1})
