"""`bitfit`: BitFit (Ben Zaken, Ravfogel, Goldberg, "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models", ACL 2022): every bias of the backbone trained, the rest frozen.

Every bias: each Linear's, the patch embedding's convolution's and each LayerNorm's β. ViT-B/16: 102,912
parameters, printed 0.10 M by V-PETL Bench (VPT's VTAB-1k "Bias" row; 0.08 M without the LayerNorms' β, so the
printed number includes them). There is no official vision code; the biases are trained as they are (AdamW decays
b, as plain BitFit does), a frozen copy b0 kept beside each. No size: `rank` is ignored.

Where PACE's noise goes: on the learned offset δb = b - b0, which the op adds to every token, so a noisy op computes
W0 x + b0 + z ⊙ δb with z per sample and channel (as op(x) + (z - 1) ⊙ δb: one product). Layers outside the blocks
(the patch embedding, the final norm) take block 0's position. Trivially mergeable: the trained model is a plain
timm model with new biases.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import functional_call

from pacebench.core.adapters.base import Adapter, Noisy
from pacebench.core.adapters.kinds import Kind, Settings, outside_head, positions, register, set_child
from pacebench.core.adapters.layout import Layout

BIASED = (nn.Linear, nn.LayerNorm, nn.Conv2d)


class BiasTuned(Noisy, Adapter):
    """An op whose bias is trained, with a frozen copy of the pre-trained bias."""

    mergeable = True
    pretrained_bias: Tensor  # a buffer (typed here: torch's Module.__getattr__ gives `Tensor | Module`)

    def __init__(self, op: nn.Module, position: int) -> None:
        super().__init__(position)
        self.op = op
        op.bias.requires_grad_(True)
        self.register_buffer("pretrained_bias", op.bias.detach().clone(), persistent=False)
        self.channels_first = isinstance(op, nn.Conv2d)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return functional_call(self.op, {"bias": self.pretrained_bias}, (x,))
        out = self.op(x)
        if not self.noisy:
            return out
        if self.noise_target == "output":
            return self.noise(out.movedim(1, -1)).movedim(-1, 1) if self.channels_first else self.noise(out)
        delta = (self.op.bias - self.pretrained_bias).expand(out.shape[0], 1, -1)
        offset = self.noise(delta) - delta  # (z - 1) ⊙ δb, [B, 1, C]
        if self.channels_first:
            return out + offset.transpose(1, 2).unsqueeze(-1)
        return out + offset.view(out.shape[0], *[1] * (out.ndim - 2), out.shape[-1])

    def unwrapped(self) -> nn.Module:
        return self.op


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    where = positions(layout)
    ops = [
        (name, m)
        for name, m in outside_head(model, layout)
        if isinstance(m, BIASED) and isinstance(getattr(m, "bias", None), nn.Parameter)
    ]
    for name, op in ops:
        set_child(model, name, BiasTuned(op, where.get(id(op), 0)))


register(
    Kind(
        "bitfit",
        "BitFit: every bias of the backbone, LayerNorms' β included (VPT's VTAB-1k 'Bias'; no size)",
        "BitFit (Ben Zaken et al., ACL 2022); VTAB-1k 'Bias' row from VPT (Jia et al., ECCV 2022): all biases, "
        "LayerNorm β included",
        "the learned offset δb = b - b0 that each op adds to every token",
        build,
        size=None,
        mergeable=True,
    )
)
