"""L1 (Table 6): sparsity regularisation on the adapter weights (not the head)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pacebench.adapters import adapter_parameters
from pacebench.methods.base import Method, MethodConfig, StepOutput, cross_entropy, register


@dataclass(frozen=True)
class L1Config(MethodConfig):
    lam: float = 1e-4

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0")]


@register
class L1(Method):
    name = "l1"
    description = "Table 6 L1: CE + λ·Σ|adapter weights|"
    Config = L1Config
    parts = ("ce", "l1")
    shares_drop_path = False

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        logits = model(x)
        ce = cross_entropy(logits, y)
        l1 = torch.stack([p.abs().sum() for p in adapter_parameters(model)]).sum()
        return StepOutput(ce + self.cfg.lam * l1, logits, {"ce": ce, "l1": l1})  # type: ignore[attr-defined]
