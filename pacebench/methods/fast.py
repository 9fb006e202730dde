"""PACE_fast: consistency with the logits a sample got on its previous visit, so one forward per step.

A buffer holds each training sample's noisy logits from its last step (zeros before the first visit).
loss = CE + λ · mean_b ‖logits - stored[idx]‖²; the new logits are stored without gradient. Needs the sample index
from the data loader, and (per the authors) a larger σ and a smaller λ than PACE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pacebench.methods.base import SetupInfo, StepOutput, register
from pacebench.methods.pace import NoisyMethod, PaceConfig


@dataclass(frozen=True)
class FastConfig(PaceConfig):
    lam: float = 0.1
    sigma: float = 2.0


@register
class PaceFast(NoisyMethod):
    name = "pace_fast"
    description = "PACE against each sample's logits from its previous visit (one forward per step)"
    Config = FastConfig
    parts = ("ce", "consistency")
    needs_index = True

    def setup(self, model: nn.Module, info: SetupInfo) -> dict[str, Any]:
        self.history: Tensor | None = None
        self.num_train, self.num_classes = info.num_train, info.num_classes
        return super().setup(model, info)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        logits = model(x)
        if self.history is None:
            self.history = torch.zeros(self.num_train, logits.shape[-1], device=logits.device)
        stored = self.history[idx]
        ce, cons = self.objective.loss(logits, y), self.objective.distance(logits, stored, y)
        self.history[idx] = logits.detach().float()
        return StepOutput(ce + self.cfg.lam * cons, logits, {"ce": ce, "consistency": cons})  # type: ignore[attr-defined]
