"""`full`: full fine-tuning, every backbone parameter trained (VTAB-1k's "Full" row, as reported by VPT: Jia et al.,
"Visual Prompt Tuning", ECCV 2022; ViT-B/16: 85,798,656 parameters, printed 85.8 M).

The trained parameters are the model's own, as in standard full fine-tuning (AdamW decays θ, not θ - θ0), and a
frozen copy θ0 is kept beside them (one more backbone's worth of memory) for PACE's noise and for the pre-trained
side of the FP-distance. Without noise every layer is its plain op on θ: the baseline is standard full fine-tuning.

Where PACE's noise goes. Full fine-tuning has no adapter branch, so Δh is what the weight update adds to a layer's
output: for every Linear, LayerNorm and convolution f, Δh = f(x; θ) - f(x; θ0) = f(x; θ - θ0) (these ops are
linear in their parameters; LayerNorm in γ and β for a fixed input), and a noisy layer computes
f(x; θ0) + z ⊙ f(x; θ - θ0): two products instead of one. The parameters that enter outside such an op (ViT's class
token and position embedding, Swin's relative-position tables) are trained but not perturbed; the authors' code would
key them with block 0, which its ViT schedule leaves without noise anyway. Trivially mergeable: the trained model is
a plain timm model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from pacebench.core.adapters.base import Adapter, Noisy
from pacebench.core.adapters.kinds import Kind, Settings, outside_head, positions, register, set_child
from pacebench.core.adapters.layout import Layout

AFFINE = (nn.Linear, nn.LayerNorm, nn.Conv2d)  # ops whose output is linear in their parameters


class Tuned(Noisy, Adapter):
    """A Linear, LayerNorm or Conv2d trained in full, with a frozen copy of its pre-trained parameters."""

    mergeable = True

    def __init__(self, op: nn.Module, position: int) -> None:
        super().__init__(position)
        self.op = op
        self.names = [name for name, _ in op.named_parameters(recurse=False)]
        for name, p in op.named_parameters(recurse=False):
            p.requires_grad_(True)
            self.register_buffer(f"pretrained_{name}", p.detach().clone(), persistent=False)
        self.channels_first = isinstance(op, nn.Conv2d)  # the noise's channel axis is the last one

    def pretrained(self) -> dict[str, Tensor]:
        return {name: getattr(self, f"pretrained_{name}") for name in self.names}

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return functional_call(self.op, self.pretrained(), (x,))
        if not self.noisy:
            return self.op(x)
        frozen = functional_call(self.op, self.pretrained(), (x,))
        own = dict(self.op.named_parameters(recurse=False))
        delta = functional_call(self.op, {k: own[k] - v for k, v in self.pretrained().items()}, (x,))
        if self.channels_first:
            return self.add_delta(frozen.movedim(1, -1), delta.movedim(1, -1)).movedim(-1, 1)
        return self.add_delta(frozen, delta)

    def unwrapped(self) -> nn.Module:
        return self.op


class PretrainedRest(Adapter):
    """The backbone parameters outside every `Tuned` op (class token, position embedding, ...): trained as they are;
    switched off, they hold their pre-trained values (swapped in place, and back)."""

    mergeable = True

    def __init__(self, owners: list[tuple[nn.Module, str]]) -> None:
        super().__init__()
        self.owners = owners  # (module, attribute): a plain list, so the parameters stay their owners' only
        for i, p in enumerate(self._params()):
            p.requires_grad_(True)
            self.register_buffer(f"pretrained_{i}", p.detach().clone(), persistent=False)

    def _params(self) -> list[nn.Parameter]:
        return [getattr(module, name) for module, name in self.owners]

    def adapter_parameters(self) -> list[nn.Parameter]:
        return self._params()

    @torch.no_grad()
    def set_enabled(self, enabled: bool) -> None:
        if enabled == self.enabled:
            return
        params = self._params()
        if not enabled:
            self._trained = [p.detach().clone() for p in params]
            for i, p in enumerate(params):
                p.copy_(getattr(self, f"pretrained_{i}"))
        else:
            for p, value in zip(params, self._trained, strict=True):
                p.copy_(value)
            del self._trained
        self.enabled = enabled

    def unwrapped(self) -> None:
        return None


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    where = positions(layout)
    ops = [
        (name, m)
        for name, m in outside_head(model, layout)
        if isinstance(m, AFFINE) and any(True for _ in m.parameters(recurse=False))
    ]
    for name, op in ops:
        set_child(model, name, Tuned(op, where.get(id(op), 0)))
    inside = {id(p) for _, op in ops for p in op.parameters()}
    owners = [
        (m, n)
        for _, m in outside_head(model, layout)
        for n, p in m.named_parameters(recurse=False)
        if id(p) not in inside
    ]
    owners += [(model, n) for n, _ in model.named_parameters(recurse=False)]
    if owners:
        model.add_module("pretrained_rest", PretrainedRest(owners))


register(
    Kind(
        "full",
        "Full fine-tuning: every backbone parameter (VTAB-1k 'Full'); PACE perturbs W - W0's output",
        "VPT (Jia et al., ECCV 2022): the VTAB-1k 'Full' row; ViT-B/16 85,798,656 parameters (printed 85.8 M)",
        "Δh = f(x; θ) - f(x; θ0) of every Linear, LayerNorm and convolution (the weight update's output); class and "
        "position embeddings unperturbed",
        build,
        size=None,
        mergeable=True,
    )
)
