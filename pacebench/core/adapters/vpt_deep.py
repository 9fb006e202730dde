"""`vpt_deep`: VPT-Deep (Jia et al., "Visual Prompt Tuning", ECCV 2022), as the official code `KMnP/vpt`
(`src/models/vit_prompt/vit.py`) does it.

p learnable tokens per block, placed after the class token and before the patch tokens (`cat(cls, prompts,
patches)`), with no position embedding. Block 0 receives them inserted; at every later block the previous block's
outputs at the prompt positions are discarded and replaced by that block's own prompts; after the last block they
are removed again, so the final norm, the pooling (class token) and the head see the usual tokens. 12 sets on a
ViT-B: p · 768 · 12 parameters. Initialisation uniform(-v, v) with v = sqrt(6 / (3 · patch² + dim)) (0.0625 for
ViT-B/16); prompt dropout 0.1 (`adapter_dropout`), the value of VPT's deep runs, with masks shared by PACE's copies.
The prompt length p is `rank` (default 10); VPT chose it per task, and `benchmarks/vtab.toml` holds VPT's lengths
per dataset (`[datasets.NAME.adapters.vpt_deep]`).

Where PACE's noise goes. The prompts are VPT's adapter weights and they enter the network as they are (no product
in between), so perturbing the weights (PACE's Eq. 7) and perturbing the features coincide: each block's prompt
tokens become z ⊙ P, z ~ N(1, σ²) drawn per sample and channel and shared by the p tokens, after the prompt
dropout. A Δh = h(prompts) - h(no prompts) cannot be isolated without rewriting attention (a zero prompt still takes
attention weight), so this is the "prompt tokens' contribution" the noise acts on. LayerNorm normalises each
prompt token, so a common scale of z is removed there and a larger σ than LoRA's may be needed. Not mergeable: the
extra tokens cost at inference. ViT only (VPT's Swin variant replicates prompts into every window).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn

from pacebench.core.adapters.base import Adapter, Noisy
from pacebench.core.adapters.kinds import Kind, Settings, register
from pacebench.core.adapters.layout import Layout
from pacebench.core.droppath import SharedDropout


class PromptedBlock(Noisy, Adapter):
    """A frozen transformer block whose input carries this block's prompt tokens (see the module docstring)."""

    def __init__(
        self,
        block: nn.Module,
        length: int,
        dim: int,
        position: int,
        prefix: int,
        first: bool,
        last: bool,
        bound: float,
        dropout: float,
    ) -> None:
        super().__init__(position)
        self.block = block
        self.prompts = nn.Parameter(torch.empty(length, dim).uniform_(-bound, bound))
        self.dropout = SharedDropout(dropout)
        self.prefix, self.first, self.last = prefix, first, last

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        if not self.enabled:
            return self.block(x, *args, **kwargs)
        n, length = self.prefix, self.prompts.shape[0]
        prompts = self.noise(self.dropout(self.prompts.expand(x.shape[0], -1, -1).to(x.dtype)))
        rest = x[:, n:] if self.first else x[:, n + length :]
        y = self.block(torch.cat([x[:, :n], prompts, rest], dim=1), *args, **kwargs)
        return torch.cat([y[:, :n], y[:, n + length :]], dim=1) if self.last else y

    def extra_repr(self) -> str:
        return f"prompts={tuple(self.prompts.shape)}, position={self.position}"


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    dim = model.embed_dim
    patch = math.prod(model.patch_embed.patch_size)
    bound = math.sqrt(6.0 / (3 * patch + dim))
    blocks = cast(nn.Sequential, model.blocks)
    for i, (block, position) in enumerate(layout.blocks):
        blocks[i] = PromptedBlock(
            block,
            settings.size,
            dim,
            position,
            model.num_prefix_tokens,
            i == 0,
            i == len(layout.blocks) - 1,
            bound,
            settings.dropout,
        )


register(
    Kind(
        "vpt_deep",
        "VPT-Deep: p prompt tokens per block after the class token (VTAB-1k 'VPT-Deep'); p = rank",
        "VPT (Jia et al., ECCV 2022), official code KMnP/vpt: deep prompts after CLS, replaced at every block, uniform "
        "init, prompt dropout 0.1, CLS pooling",
        "the prompt tokens themselves (z ⊙ P per block, one z per sample and channel shared by the p tokens)",
        build,
        size="prompt length p",
        default_size=10,
        defaults={"adapter_dropout": 0.1},
        families=("vit",),
        starts_at_identity=False,
        why_not_mergeable="its prompt tokens are extra inputs of every block, which no timm ViT weight can hold",
    )
)
