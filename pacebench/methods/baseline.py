"""The strong baseline: the adapter trained with cross-entropy, no noise, timm's own DropPath."""

from __future__ import annotations

from torch import Tensor, nn

from pacebench.methods.base import Method, StepOutput, register


@register
class Baseline(Method):
    name = "baseline"
    description = "Adapter fine-tuning with cross-entropy only (the paper's LoRA+VPT baseline)"
    shares_drop_path = False

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        logits = model(x)
        ce = self.objective.loss(logits, y)
        return StepOutput(ce, logits, {"ce": ce})
