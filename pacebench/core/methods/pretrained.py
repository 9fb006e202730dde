"""No fine-tuning at all: the pre-trained model evaluated as it is (the slides' GSM-8K "Pre-trained" row).

Only a generation task can score a model without training it (a classifier would need a trained head), so only the
text trainer accepts it; it never reaches `loss()`.
"""

from __future__ import annotations

from torch import Tensor, nn

from pacebench.core.methods.base import Method, MethodConfig, StepOutput, register
from pacebench.errors import UsageError


@register
class Pretrained(Method[MethodConfig]):
    name = "pretrained"
    any_task = True
    description = "No training: the pre-trained model evaluated as is (generation suites such as gsm8k only)"
    trains = False

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        raise UsageError(
            "method pretrained trains nothing: use it with a generation suite (gsm8k), where the "
            "untuned model is scored as it is"
        )
