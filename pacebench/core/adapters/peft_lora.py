"""`lora`: standard additive LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) on
each block's attention projection, with Hugging Face peft's LoRA layer (`peft.tuners.lora.Linear`) doing the work.

VTAB-1k's "LoRA" row is NOAH's run of it (`ZhangYuanhan-AI/NOAH`, `model/supernet_vision_transformer_timm.py`,
class `Attention`): a rank-r update of the fused qkv projection (q, k and v), A kaiming-uniform and B zero (Δh = 0
at the start), dropout 0.1 on the branch's input, no scaling, r = 8 in every block: 12 · 8 · (768 + 2304) =
294,912 parameters on ViT-B/16, printed 0.29 M. peft's layer on timm's fused `qkv` Linear computes exactly that
with scale α/r = `adapter_scale` (default 1: α = r, the LoRA paper's usual choice and NOAH's unscaled update);
`rank` is r (default 8), `adapter_dropout` the dropout (default 0.1, masks shared by PACE's copies).

Where PACE's noise goes: on the branch output B A x (before the α/r scalar, which commutes with it), per sample and
channel, through a forward hook on peft's `lora_B`: the same mechanism the text suites use (pacebench/text/models.py
imports `BranchNoise` and `hook_branch_noise` from here). Mergeable: W = W0 + (α/r) B A (peft's merge); unmerge
restores W0 from a copy. peft is imported when a model gets this kind, not before (it imports transformers).
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import torch
from torch import Tensor, nn

from pacebench.core.adapters.base import Adapter, Kept, Noisy, keep
from pacebench.core.adapters.kinds import Kind, Settings, register
from pacebench.core.adapters.layout import Layout
from pacebench.core.droppath import SharedDropout
from pacebench.errors import UsageError


class BranchNoise(Noisy):
    """The PACE noise of one peft LoRA layer that is not itself a `Noisy` module (the text models' layers)."""


def _noisy_output(holder: Noisy, _module: nn.Module, _inputs: Any, output: Tensor) -> Tensor:
    return holder.noise(output) if holder.noise_target == "delta" else output


def hook_branch_noise(layer: nn.Module, holder: Noisy) -> None:
    """Applies `holder`'s noise to the output of every `lora_B` of peft LoRA layer `layer` (its branch Δh)."""
    for branch in layer.lora_B.values():
        branch.register_forward_hook(partial(_noisy_output, holder))


class LoRA(Noisy, Adapter):
    """A peft LoRA layer on a frozen Linear, with PACE's noise on its branch."""

    mergeable = True

    def __init__(self, layer: nn.Module, position: int) -> None:
        super().__init__(position)
        self.layer = layer
        hook_branch_noise(layer, self)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return self.layer.base_layer(x)
        out = self.layer(x)
        return self.noise(out) if self.noise_target == "output" else out

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for branch in (self.layer.lora_A, self.layer.lora_B) for p in branch.parameters()]

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self._kept: Kept = keep([cast(nn.Linear, self.layer.base_layer).weight])
        self.layer.merge()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.layer.unmerge()  # peft's own unfold first, then the exact frozen tensors kept before the merge
        super().unmerge()

    def unwrapped(self) -> nn.Module:
        return cast(nn.Linear, self.layer.base_layer)


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    import peft.tuners.lora as peft_lora  # lazy: peft imports transformers (seconds); `requires` checked it is there

    r, alpha = settings.size, settings.scale * settings.size
    config = peft_lora.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["qkv"], bias="none")
    for block, position in layout.blocks:
        qkv = block.attn.qkv
        if not isinstance(qkv, nn.Linear):
            raise UsageError(f"adapter lora expects a fused qkv nn.Linear in every block, got {type(qkv).__name__}")
        layer = peft_lora.Linear(qkv, "default", config, r=r, lora_alpha=alpha)
        if settings.dropout > 0:
            layer.lora_dropout["default"] = SharedDropout(settings.dropout)
        block.attn.qkv = LoRA(layer, position)


register(
    Kind(
        "lora",
        "LoRA (VTAB-1k 'LoRA', via peft): ΔW = (α/r) B A on each block's fused qkv, r = rank",
        "LoRA (Hu et al., ICLR 2022) as NOAH ran it (ZhangYuanhan-AI/NOAH): fused qkv, kaiming/zero init, dropout 0.1, "
        "r = 8, no scaling (α = r); peft's LoRA layer",
        "the branch output B A x (a forward hook on peft's lora_B, as the text suites do)",
        build,
        size="rank r",
        default_size=8,
        defaults={"adapter_scale": 1.0, "adapter_dropout": 0.1},
        mergeable=True,
        requires=(("peft", "pip install 'pacebench[text]' (or pip install peft)"),),
    )
)
