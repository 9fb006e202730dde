"""`ssf`: Scaling & Shifting your Features (Lian et al., "Scaling & Shifting Your Features: A New Baseline for
Efficient Model Tuning", NeurIPS 2022), as the official code `dongzelian/SSF` (`models/vision_transformer.py`)
places it.

y = γ ⊙ u + β per channel after an op's output u: after the patch embedding, after every LayerNorm and every Linear
inside the blocks (norm1, qkv, proj, norm2, fc1, fc2) and after the final norm; γ ~ N(1, 0.02²), β ~ N(0, 0.02²).
ViT-B/16: 2 · (768 + 12 · 8,448 + 768) = 205,824 parameters, printed 0.21 M without the head (V-PETL Bench), 0.24 M
with the mean VTAB-1k head (the SSF paper). No size: `rank` is ignored.

Where PACE's noise goes: on the learned offset, Δh = (γ - 1) ⊙ u + β, so a noisy layer computes u + z ⊙ Δh with z
per sample and channel (C = 2304 after qkv, 3072 after fc1). Because γ ≈ 1 and β ≈ 0 only approximately at the
start, Δh is small but not zero then. The patch embedding and the final norm sit outside the blocks and take block
0's position (the authors' keying: no noise on a ViT). Mergeable into the op it follows: a Linear or convolution
W' = diag(γ) W, b' = γ ⊙ b + β; a LayerNorm γ_LN' = γ ⊙ γ_LN, β_LN' = γ ⊙ β_LN + β.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from pacebench.core.adapters.base import Adapter, Kept, Noisy, keep
from pacebench.core.adapters.kinds import Kind, Settings, outside_head, positions, register, set_child
from pacebench.core.adapters.layout import Layout


class ScaleShift(Noisy, Adapter):
    """A frozen Linear, LayerNorm or convolution followed by SSF's per-channel scale and shift; merged, they fold
    into the op."""

    mergeable = True

    def __init__(self, op: nn.Module, position: int) -> None:
        super().__init__(position)
        self.op = op
        self.channels_first = isinstance(op, nn.Conv2d)  # the patch embedding's projection: [B, C, H, W]
        channels = op.normalized_shape[0] if isinstance(op, nn.LayerNorm) else cast(Tensor, op.weight).shape[0]
        self.scale = nn.Parameter(torch.empty(channels).normal_(1.0, 0.02))
        self.shift = nn.Parameter(torch.empty(channels).normal_(0.0, 0.02))

    def forward(self, x: Tensor) -> Tensor:
        u = self.op(x)
        if self.merged or not self.enabled:
            return u
        if self.channels_first:
            u = u.movedim(1, -1)
            return self.add_delta(u, u * (self.scale - 1) + self.shift).movedim(-1, 1)
        return self.add_delta(u, u * (self.scale - 1) + self.shift)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        target = self.op
        weight, bias = cast(Tensor, target.weight), cast(Tensor | None, target.bias)
        if bias is None:  # a bias-free target gets one that holds β (zero again after unmerge)
            bias = target.bias = nn.Parameter(torch.zeros_like(self.shift), requires_grad=False)
        self._kept: Kept = keep([weight, bias])
        weight.mul_(self.scale.view(-1, *[1] * (weight.ndim - 1)))
        bias.mul_(self.scale).add_(self.shift)
        self.merged = True

    def unwrapped(self) -> nn.Module:
        return self.op


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    """SSF after every LayerNorm and Linear but the head, and after the patch embedding: after its norm where it has
    one (Swin; a LayerNorm, so already counted), else after its projection (ViT; per channel, the same as after the
    flattening SSF's code applies it to)."""
    where = positions(layout)
    ops = [(name, m) for name, m in outside_head(model, layout) if isinstance(m, nn.Linear | nn.LayerNorm)]
    stem = getattr(model, "patch_embed", None)
    if stem is not None and not isinstance(getattr(stem, "norm", None), nn.LayerNorm):
        ops.insert(0, ("patch_embed.proj", stem.proj))
    for name, op in ops:
        set_child(model, name, ScaleShift(op, where.get(id(op), 0)))


register(
    Kind(
        "ssf",
        "SSF: a per-channel scale and shift after every op of the backbone (no size)",
        "SSF (Lian et al., NeurIPS 2022), official code dongzelian/SSF: after patch embedding, norm1, qkv, proj, "
        "norm2, fc1, fc2 and the final norm; γ ~ N(1, 0.02²), β ~ N(0, 0.02²)",
        "the learned offset (γ - 1) ⊙ u + β after each op",
        build,
        size=None,
        mergeable=True,
        starts_at_identity=False,
    )
)
