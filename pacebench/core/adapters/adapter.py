"""`adapter` and `houlsby`: sequential bottleneck adapters (Houlsby et al., "Parameter-Efficient Transfer Learning
for NLP", ICML 2019).

`adapter` is VTAB-1k's "Adapter" row, which NOAH (Zhang, Zhou, Liu, "Neural Prompt Search", 2022) ran, and follows
NOAH's code (`ZhangYuanhan-AI/NOAH`, `model/supernet_vision_transformer_timm.py`, `model/module/adapter_super.py`):
one adapter per block, after the MLP and before the residual add,
`x + drop_path(a(mlp(norm2(x))))` with `a(h) = h + up(dropout(QuickGELU(down(h))))`; down d → h and up h → d with
biases, both weights xavier-uniform (so Δh ≠ 0 at the start), biases N(0, 1e-6²), dropout 0.1 after the
activation, h = 8 in every block (`rank`). ViT-B/16: 156,768 parameters, printed 0.16 M.
`houlsby` is Houlsby's own placement, a second adapter after attention's output projection (313,536 parameters at
h = 8; no VTAB table prints it). Houlsby also trained the LayerNorms; neither kind does here.

Where PACE's noise goes: on the adapter's branch output up(...) before `h +`, per sample and channel. Not
mergeable: the activation sits between the two projections.
"""

from __future__ import annotations

from functools import partial
from typing import cast

from torch import Tensor, nn

from pacebench.core.adapters.base import Adapter, Noisy
from pacebench.core.adapters.bottleneck import Bottleneck, QuickGELU
from pacebench.core.adapters.kinds import Kind, Settings, register
from pacebench.core.adapters.layout import Layout

WHY = "its activation sits between the down- and up-projection, so no linear layer can absorb it"


class SerialAdapter(Noisy, Adapter):
    """A frozen module (an MLP or attention) followed by a bottleneck adapter: h + noise(bottleneck(h))."""

    def __init__(self, inner: nn.Module, dim: int, width: int, position: int, dropout: float) -> None:
        super().__init__(position)
        self.inner = inner
        self.adapter = Bottleneck(dim, width, QuickGELU(), dropout)
        for linear in (self.adapter.down, self.adapter.up):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=1e-6)

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        h = self.inner(x, *args, **kwargs)
        if not self.enabled:
            return h
        return self.add_delta(h, self.adapter(h))


def build(where: tuple[str, ...], model: nn.Module, layout: Layout, settings: Settings) -> None:
    for block, position in layout.blocks:
        dim = cast(nn.LayerNorm, block.norm2).normalized_shape[0]
        for name in where:
            setattr(block, name, SerialAdapter(getattr(block, name), dim, settings.size, position, settings.dropout))


register(
    Kind(
        "adapter",
        "Adapter (NOAH's VTAB-1k 'Adapter'): one bottleneck after each block's MLP, width h = rank",
        "Houlsby et al. (ICML 2019) as NOAH ran it (ZhangYuanhan-AI/NOAH): one sequential adapter after the MLP, "
        "QuickGELU, xavier init, dropout 0.1, h = 8",
        "the adapter's branch output up(dropout(act(down(h)))) before the residual h +",
        partial(build, ("mlp",)),
        size="bottleneck width h",
        default_size=8,
        defaults={"adapter_dropout": 0.1},
        starts_at_identity=False,
        why_not_mergeable=WHY,
    )
)

register(
    Kind(
        "houlsby",
        "Houlsby adapters: a bottleneck after attention and one after the MLP in each block, h = rank",
        "Houlsby et al. (ICML 2019): two sequential adapters per block (after attention's projection and after the "
        "MLP), built as NOAH's adapter; the LayerNorms stay frozen",
        "each adapter's branch output, before the residual h +",
        partial(build, ("attn", "mlp")),
        size="bottleneck width h",
        default_size=8,
        defaults={"adapter_dropout": 0.1},
        starts_at_identity=False,
        why_not_mergeable=WHY,
    )
)
