"""`repadapter`: RepAdapter (Luo et al., "Towards Efficient Visual Adaption via Structural Re-parameterization",
arXiv 2302.08106, 2023), the "repblock" variant the official code `luogen1996/RepAdapter` (`repadapter.py`,
`configs/repblock/*.yaml`) runs on VTAB-1k.

Two adapters per block, each in front of a projection it can be folded into: on the norm1 output before attention's
qkv and on the norm2 output before the MLP's fc1, `x + s · B(dropout(A x + a)) + s · b`, with A a dense d → h
1×1 convolution (xavier-uniform, bias zero), B an h → d one in 2 groups (weight and bias zero, so Δh = 0 at the
start), dropout 0.1 (`adapter_dropout`), h = 8 (`rank`, even) and s per task (`adapter_scale`, default 1;
`benchmarks/vtab.toml` holds the code's per-dataset values). ViT-B/16: 24 · (6,152 + 3,840) = 239,808 parameters
with the biases the code trains; V-PETL Bench prints 0.22 M, which is the weights alone (221,184): no setting of
the code reproduces it.

Where PACE's noise goes: on the adapter's 768-wide output s · (B(...) + b) before it enters qkv or fc1, per
sample and channel. Mergeable (the point of the method): with B written as a dense block-diagonal matrix,
M = I + s B A and c = s (B a + b), so qkv(x + Δ) = W (M x + c) + b_W gives W' = W M, b' = b_W + W c.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pacebench.core.adapters.base import Adapter, Kept, Noisy, keep
from pacebench.core.adapters.kinds import Kind, Settings, register
from pacebench.core.adapters.layout import Layout
from pacebench.core.droppath import SharedDropout

GROUPS = 2  # conv_B's groups in the official code


class RepLinear(Noisy, Adapter):
    """A frozen Linear whose input first passes RepAdapter: base(x + noise(Δ(x)))."""

    mergeable = True

    def __init__(self, base: nn.Linear, width: int, scale: float, position: int, dropout: float) -> None:
        super().__init__(position)
        dim = base.in_features
        self.base = base
        self.down = nn.Linear(dim, width)  # conv_A
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        self.dropout = SharedDropout(dropout)
        self.up_weight = nn.Parameter(torch.zeros(dim, width // GROUPS))  # conv_B, one block per group
        self.up_bias = nn.Parameter(torch.zeros(dim))
        self.scale = scale

    def up_dense(self) -> Tensor:
        """conv_B as a dense d x h matrix (block-diagonal over the groups)."""
        return torch.block_diag(*self.up_weight.view(GROUPS, -1, self.up_weight.shape[1]))

    def delta(self, x: Tensor) -> Tensor:
        h = self.dropout(self.down(x))
        groups = h.view(*h.shape[:-1], GROUPS, -1)  # [..., g, h/g]
        blocks = self.up_weight.view(GROUPS, -1, self.up_weight.shape[1])  # [g, d/g, h/g]
        up = torch.einsum("...gj,goj->...go", groups, blocks).reshape(*h.shape[:-1], -1)
        return self.scale * (up + self.up_bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged or not self.enabled:
            return self.base(x)
        if self.noise_target == "output":
            return self.noise(self.base(x + self.delta(x)))
        return self.base(x + self.noise(self.delta(x)))

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        weight, bias = self.base.weight, self.base.bias
        if bias is None:
            bias = self.base.bias = nn.Parameter(weight.new_zeros(weight.shape[0]), requires_grad=False)
        self._kept: Kept = keep([weight, bias])
        up = self.up_dense()
        m = torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device) + self.scale * up @ self.down.weight
        c = self.scale * (up @ self.down.bias + self.up_bias)
        bias.add_(weight @ c)
        weight.copy_(weight @ m)
        self.merged = True

    def unwrapped(self) -> nn.Module:
        return self.base


def _check(settings: Settings) -> str | None:
    return (
        None
        if settings.size % GROUPS == 0
        else f"the bottleneck width (rank) must be a multiple of {GROUPS}, "
        f"the groups of its up-projection; got {settings.size}"
    )


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    for block, position in layout.blocks:
        for owner, name in ((block.attn, "qkv"), (block.mlp, "fc1")):
            setattr(
                owner, name, RepLinear(getattr(owner, name), settings.size, settings.scale, position, settings.dropout)
            )


register(
    Kind(
        "repadapter",
        "RepAdapter: a re-parameterisable adapter in front of qkv and fc1 in each block, h = rank",
        "RepAdapter (Luo et al., 2023), official code luogen1996/RepAdapter, 'repblock': dense A, 2-group B "
        "(zero-init), dropout 0.1, h = 8, s per task",
        "the adapter's output s · (B(dropout(A x + a)) + b) before it enters qkv / fc1",
        build,
        size="bottleneck width h",
        default_size=8,
        defaults={"adapter_scale": 1.0, "adapter_dropout": 0.1},
        mergeable=True,
        check=_check,
    )
)
