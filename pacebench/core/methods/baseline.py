"""The strong baseline: the adapter trained with cross-entropy, no noise, timm's own DropPath."""

from __future__ import annotations

from pacebench.core.methods.base import TABLE6, Method, MethodConfig, register


@register
class Baseline(Method[MethodConfig]):
    name = "baseline"
    any_task = True
    description = "Adapter fine-tuning with cross-entropy only (the paper's LoRA+VPT baseline)"
    tags = frozenset({TABLE6})
    paper_row = "LoRA+VPT"
