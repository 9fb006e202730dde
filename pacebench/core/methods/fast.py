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

from pacebench.core.methods.base import EFFICIENCY_TAG, SetupInfo, StepOutput, hp, register
from pacebench.core.methods.pace import LAM_HELP, SIGMA_HELP, NoisyMethod, PaceConfig


@dataclass(frozen=True)
class FastConfig(PaceConfig):
    lam: float = hp(0.1, LAM_HELP, grid=[0.01, 0.05, 0.1, 0.5], aliases=("lambda", "λ"))
    sigma: float = hp(2.0, SIGMA_HELP, grid=[1.2, 1.6, 2.0, 3.0], aliases=("σ",))


@register
class PaceFast(NoisyMethod[FastConfig]):
    name = "pace_fast"
    any_task = True
    description = "PACE against each sample's logits from its previous visit (one forward per step)"
    Config = FastConfig
    tags = frozenset({EFFICIENCY_TAG})
    parts = ("ce", "consistency")
    needs_index = True  # the history row of each sample

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
        return StepOutput(ce + self.cfg.lam * cons, logits, {"ce": ce, "consistency": cons})
