"""The adapted linear layer: a frozen `base` nn.Linear plus adapter parts whose deltas add up.

    h = W0 x + b0 + noise(Δh),   Δh = ΔW x + Δb,   ΔW = Σ parts' delta_weight,  Δb = Σ parts' delta_bias

Noise acts on the adapter branch Δh only (paper Eq. 11), or on the whole output h for the PACE_h ablation
(`noise_target = "output"`). Every kind folds into a plain Linear for evaluation (Eq. 13): `merge()` adds ΔW, Δb
to the base weights in place, `unmerge()` subtracts them again.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pacebench.registry import Registry


class AdapterPart(nn.Module):
    """Trainable parameters of one adapter kind for one frozen Linear. Subclasses compute ΔW and Δb from `base`."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line: what it adds (`pacebench adapters`, the adapter kinds' descriptions)
    prompt: ClassVar[bool] = False  # a prompt part (VPT) combines with one weight part (LoRA): "lora_mul+vpt_add"

    def delta_weight(self, base: nn.Linear) -> Tensor | None:
        return None

    def delta_bias(self, base: nn.Linear) -> Tensor | None:
        return None


PARTS: Registry[type[AdapterPart]] = Registry("adapter part")


def _sum(tensors: list[Tensor | None]) -> Tensor | None:
    present = [t for t in tensors if t is not None]
    return torch.stack(present).sum(0) if len(present) > 1 else (present[0] if present else None)


class Noisy(nn.Module):
    """Base for layers that carry a noise module and a depth position (for the σ schedule)."""

    def __init__(self, position: int) -> None:
        super().__init__()
        self.position = position
        self.noise: nn.Module = nn.Identity()
        self.noise_target = "delta"


class AdaptedLinear(Noisy):
    """A frozen nn.Linear with adapter parts; see the module docstring for the computation."""

    def __init__(self, base: nn.Linear, parts: list[AdapterPart], position: int) -> None:
        super().__init__(position)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.parts = nn.ModuleList(parts)
        self.merged = False
        self.enabled = True

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> Tensor | None:
        return _sum([p.delta_weight(self.base) for p in self.parts])

    def delta_bias(self) -> Tensor | None:
        return _sum([p.delta_bias(self.base) for p in self.parts])

    def delta(self, x: Tensor) -> Tensor:
        """The adapter branch output Δh for input x."""
        dw, db = self.delta_weight(), self.delta_bias()
        if dw is None:
            return db.expand(*x.shape[:-1], self.out_features) if db is not None else x.new_zeros(())
        return F.linear(x, dw, db)

    def forward(self, x: Tensor) -> Tensor:
        h0 = self.base(x)
        if self.merged or not self.enabled:
            return h0
        if self.noise_target == "output":
            return self.noise(h0 + self.delta(x))
        return h0 + self.noise(self.delta(x))

    @torch.no_grad()
    def merge(self) -> None:
        """Folds the adapter into the base weights (W0 += ΔW, b0 += Δb); evaluation then costs a plain Linear."""
        if self.merged:
            return
        dw, db = self.delta_weight(), self.delta_bias()
        # unmerge restores W0 and b0 themselves: (W0 + ΔW) - ΔW is not W0 in floating point, and a frozen weight
        # that drifted at every evaluation would make a run resumed from a checkpoint (which rebuilds W0 exactly)
        # differ from an uninterrupted one.
        bias = self.base.bias
        self._unmerged = (self.base.weight.detach().clone(), None if bias is None else bias.detach().clone())
        if dw is not None:
            self.base.weight.add_(dw)
        if db is not None:
            if self.base.bias is None:
                self.base.bias = nn.Parameter(torch.zeros_like(db), requires_grad=False)
            self.base.bias.add_(db)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.merged = False
        weight, bias = self._unmerged
        self.base.weight.copy_(weight)
        if bias is not None:
            self.base.bias.copy_(bias)
        elif self.base.bias is not None:  # a bias merge created: it stays, holding zero (exactly no bias)
            self.base.bias.zero_()
        del self._unmerged

    def extra_repr(self) -> str:
        kinds = "+".join(p.name for p in self.parts)
        return f"{self.in_features} -> {self.out_features}, adapter={kinds}, position={self.position}"


class NoisyHead(Noisy):
    """The classification head: trained in full and, as in the authors' code, its logits get noise too
    (the head is treated as an adapter whose base is zero)."""

    def __init__(self, linear: nn.Linear, position: int) -> None:
        super().__init__(position)
        self.linear = linear

    def forward(self, x: Tensor) -> Tensor:
        return self.noise(self.linear(x))
