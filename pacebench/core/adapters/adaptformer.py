"""`adaptformer`: AdaptFormer (Chen et al., "AdaptFormer: Adapting Vision Transformers for Scalable Visual
Recognition", NeurIPS 2022), as the official code `ShoufaChen/AdaptFormer` (`models/adapter.py`, its ViT block) does
it with `ffn_option="parallel"`, `ffn_adapter_layernorm_option="none"`, `init_option="lora"`.

A bottleneck beside each block's MLP, fed by the residual stream x after the attention residual (before norm2),
scaled by s and added after the MLP's drop path, which it does not go through:
`x + drop_path(mlp(norm2(x))) + s · up(dropout(ReLU(down(x))))`. down d → h and up h → d with biases; down
kaiming-uniform, up and both biases zero (so Δh = 0 at the start); dropout 0.1; s = 0.1 (`adapter_scale`, the
code's `ffn_adapter_scalar`). The official default width is 64 (1.19 M parameters on ViT-B/16); the VTAB-1k
comparison row (first printed in the PETL-ViT line of work, e.g. FacT) uses h = 8, which gives 156,768 parameters,
printed 0.16 M: `rank` defaults to 8. That line of work also searched s per dataset; pacebench keeps the code's
fixed 0.1 unless a suite sets `adapter_scale`.

Where PACE's noise goes: on the scaled branch output s · up(...), per sample and channel, before it joins the
residual stream. Not mergeable (ReLU between the projections). The block's norm2 is wrapped to hand the stream to
the adapter, whose module sits in place of the block's second drop path; timm's ViT and Swin blocks both compute
`x + drop_path2(mlp(norm2(x)))`.
"""

from __future__ import annotations

import math
from typing import cast

from torch import Tensor, nn

from pacebench.core.adapters.base import Adapter, Noisy
from pacebench.core.adapters.bottleneck import Bottleneck
from pacebench.core.adapters.kinds import Kind, Settings, register
from pacebench.core.adapters.layout import Layout


class ParallelAdapter(Noisy, Adapter):
    """The block's second drop path (around the MLP's output) plus the scaled adapter branch of the stream that
    entered norm2 (`StreamTap` hands it over)."""

    def __init__(self, drop_path: nn.Module, dim: int, width: int, scale: float, position: int, dropout: float) -> None:
        super().__init__(position)
        self.drop_path = drop_path
        self.adapter = Bottleneck(dim, width, nn.ReLU(), dropout)
        nn.init.kaiming_uniform_(self.adapter.down.weight, a=math.sqrt(5))
        for tensor in (self.adapter.down.bias, self.adapter.up.weight, self.adapter.up.bias):
            nn.init.zeros_(tensor)
        self.scale = scale
        self.stream: Tensor | None = None

    def forward(self, y: Tensor) -> Tensor:
        out = self.drop_path(y)
        x, self.stream = self.stream, None
        if not self.enabled or x is None:
            return out
        return self.add_delta(out, self.scale * self.adapter(x))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, position={self.position}"


class StreamTap(nn.Module):
    """norm2, which also hands its input (the residual stream) to the block's ParallelAdapter."""

    def __init__(self, norm: nn.Module, adapter: ParallelAdapter) -> None:
        super().__init__()
        self.norm = norm
        object.__setattr__(self, "target", adapter)  # not a submodule: the adapter lives at drop_path2

    def forward(self, x: Tensor) -> Tensor:
        self.target.stream = x
        return self.norm(x)


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    for block, position in layout.blocks:
        dim = cast(nn.LayerNorm, block.norm2).normalized_shape[0]
        adapter = ParallelAdapter(block.drop_path2, dim, settings.size, settings.scale, position, settings.dropout)
        block.drop_path2 = adapter
        block.norm2 = StreamTap(block.norm2, adapter)


register(
    Kind(
        "adaptformer",
        "AdaptFormer: a scaled bottleneck beside each block's MLP (VTAB-1k 'AdaptFormer'), h = rank",
        "AdaptFormer (Chen et al., NeurIPS 2022), official code ShoufaChen/AdaptFormer: parallel, fed before norm2, "
        "outside the drop path, ReLU, LoRA-style init (up = 0), dropout 0.1, s = 0.1; h = 8 as in the VTAB-1k row",
        "the scaled branch output s · up(dropout(ReLU(down(x)))) before it joins the residual stream",
        build,
        size="bottleneck width h",
        default_size=8,
        defaults={"adapter_scale": 0.1, "adapter_dropout": 0.1},
        why_not_mergeable="its ReLU sits between the down- and up-projection, so no linear layer can absorb it",
    )
)
