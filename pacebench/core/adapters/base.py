"""What every adapter kind's modules are (`Noisy`: PACE's noise by depth position; `Adapter`: switched off, merged,
counted, exported), and the paper's own family's adapted linear layer: a frozen `base` nn.Linear plus adapter parts
whose deltas add up.

    h = W0 x + b0 + noise(Δh),   Δh = ΔW x + Δb,   ΔW = Σ parts' delta_weight,  Δb = Σ parts' delta_bias

Noise acts on the adapter branch Δh only (paper Eq. 11), or on the whole output h for the PACE_h ablation
(`noise_target = "output"`). Every kind of the family folds into a plain Linear for evaluation (Eq. 13): `merge()`
adds ΔW, Δb to the base weights in place, `unmerge()` restores the base weights from copies.

Fast paths: while a layer's noise is off (the baseline, layers with σ = 0, evaluation) it computes one product with
the merged weight, F.linear(x, W0 + ΔW, b0 + Δb), instead of W0 x and ΔW x; the graph still reaches D, U, the
prompt and δb. Noise that adds to Δh (PACE_add) or acts on the whole output (PACE_h) also needs only that one
product. Multiplicative noise on Δh is folded into per-sample weights on a CPU (3 products instead of 5,
`persample.py`); elsewhere it pays for two products joined by one fused multiply-add (measured cheaper than one
stacked product, whose backward also computes the frozen W0's gradient). The noise values are those the plain path
would draw (`Noise.factors`). `plain_paths()` switches every fast path off, so tests can check that both give the
same values and gradients; `training_paths()` lets `pacebench bench --paths` measure what each one buys.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pacebench.choices import Paths
from pacebench.core.adapters.persample import PerSampleNoisyLinear
from pacebench.core.noise import ADDITIVE, Noise
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
    return functools.reduce(operator.add, present) if present else None  # no stacked copy: this runs every step


class Noisy(nn.Module):
    """Base for layers that carry a noise module and a depth position (for the σ schedule).

    `adapters.apply_noise` finds every Noisy module by type and sets its `noise` (σ by `position`) and
    `noise_target`; the module applies the noise to its adapter branch Δh only ("delta", PACE) or to its whole
    output ("output", Table 6's PACE_h); `add_delta` does either for a module whose output is frozen + Δh.
    """

    fast_paths: ClassVar[bool] = True  # see the module docstring; switched off only by `plain_paths()`
    per_sample: ClassVar[bool] = True  # CPU: multiplicative noise folded into per-sample weights (persample.py)

    def __init__(self, position: int) -> None:
        super().__init__()
        self.position = position
        self.noise: nn.Module = nn.Identity()
        self.noise_target = "delta"

    @property
    def noisy(self) -> bool:
        """Whether the next forward draws noise (a Noise module in training mode with σ > 0)."""
        noise = self.noise
        return isinstance(noise, Noise) and noise.active  # no getattr miss on nn.Identity: this runs every step

    def add_delta(self, frozen: Tensor, delta: Tensor) -> Tensor:
        """frozen + noise(Δh) (PACE: the noise multiplies the adapter's contribution only), or noise(frozen + Δh)
        for PACE_h; the channel is the last axis of both."""
        if self.noise_target == "output":
            return self.noise(frozen + delta)
        return frozen + self.noise(delta)


class Adapter(nn.Module):
    """What every module an adapter kind puts into a backbone answers, so that nothing outside the kind's own file
    needs to know the kind (merging for evaluation, the FP-distance's pre-trained side, counting, checkpoints,
    export):

    - `adapter_parameters()`: the tensors it trains (the classification head is not an adapter);
    - `set_enabled(False)`: it computes exactly what the pre-trained module did, until `set_enabled(True)`;
    - `mergeable`, `merge()`, `unmerge()`: a mergeable module folds its adapter into the frozen weights for
      evaluation (paper Eq. 13) and `unmerge()` restores them exactly (from copies: (W0 + ΔW) - ΔW is not W0 in
      floating point, and a frozen weight that drifted at every evaluation would make a resumed run differ from an
      uninterrupted one); the others run unmerged and these do nothing;
    - `unwrapped()`: after `merge()`, the plain module that takes its place in an exported timm checkpoint (None:
      nothing, the module is dropped).
    """

    mergeable: ClassVar[bool] = False
    _kept: Kept  # what `merge()` changed, as `keep` copied it

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self.merged = False

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled

    def merge(self) -> None:
        """Folds the adapter into the frozen weights; nothing for a module that cannot fold."""

    def unmerge(self) -> None:
        """Undoes `merge()` exactly: puts back the frozen tensors the merge `keep`s in `self._kept` (a module that
        never merged has nothing to undo)."""
        if not self.merged:
            return
        restore(self._kept)
        del self._kept
        self.merged = False

    def unwrapped(self) -> nn.Module | None:
        raise NotImplementedError(f"{type(self).__name__} does not fold into a plain module")


Kept = list[tuple[Tensor, Tensor]]


@torch.no_grad()
def keep(tensors: list[Tensor]) -> Kept:
    """Copies of frozen tensors that a merge is about to change, for `restore`."""
    return [(t, t.detach().clone()) for t in tensors]


@torch.no_grad()
def restore(kept: Kept) -> None:
    for tensor, value in kept:
        tensor.copy_(value)


@contextmanager
def plain_paths() -> Iterator[None]:
    """Computes every layer the plain way (W0 x + noise(ΔW x + Δb), copies duplicated at the input): the reference
    the fast paths are tested against."""
    with _switched(fast_paths=False):
        yield


@contextmanager
def training_paths(kind: str) -> Iterator[None]:
    """Trains with the fast paths `kind` names (`choices.Paths`): all of them, all but the per-sample weights, or
    none. Runs always use all; `pacebench bench --paths` measures the others."""
    settings = {Paths.fast: {}, Paths.two_products: {"per_sample": False}, Paths.plain: {"fast_paths": False}}
    with _switched(**settings[Paths(kind)]):
        yield


@contextmanager
def _switched(**flags: bool) -> Iterator[None]:
    saved = {name: getattr(Noisy, name) for name in flags}
    try:
        for name, value in flags.items():
            setattr(Noisy, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(Noisy, name, value)


class AdaptedLinear(Noisy, Adapter):
    """A frozen nn.Linear with adapter parts; see the module docstring for the computation."""

    mergeable = True

    def __init__(self, base: nn.Linear, parts: list[AdapterPart], position: int) -> None:
        super().__init__(position)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.parts = nn.ModuleList(parts)

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for part in self.parts for p in part.parameters()]

    def unwrapped(self) -> nn.Module:
        return self.base

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
        return self._delta(x, self.delta_weight(), self.delta_bias())

    def _delta(self, x: Tensor, dw: Tensor | None, db: Tensor | None) -> Tensor:
        if dw is None:
            return db.expand(*x.shape[:-1], self.out_features) if db is not None else x.new_zeros(())
        return F.linear(x, dw, db)

    def merged_weight(self) -> tuple[Tensor, Tensor | None]:
        """(W0 + ΔW, b0 + Δb) as differentiable functions of the adapter parameters."""
        dw, db = self.delta_weight(), self.delta_bias()
        w = self.base.weight if dw is None else self.base.weight + dw
        b0 = self.base.bias
        return w, (b0 if db is None else db if b0 is None else b0 + db)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged or not self.enabled:
            return self.base(x)
        if self.fast_paths:
            if not self.noisy:
                return F.linear(x, *self.merged_weight())  # one product instead of two: noise(Δh) is Δh here
            out = self._fast_noisy(x)
            if out is not None:
                return out
        h0 = self.base(x)
        if self.noise_target == "output":
            return self.noise(h0 + self.delta(x))
        return h0 + self.noise(self.delta(x))

    def _per_sample_pays(self, x: Tensor) -> bool:
        """CPU only (fp32): per-sample weights built a few at a time in cache (persample.py) measured 0.69-0.74x
        of two products (forward + backward) on vit_tiny's 192- and 768-wide layers and 0.72x on test_vit's
        64-wide ones; on a GPU the two large products win."""
        return self.per_sample and x.ndim == 3 and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")

    def _fast_noisy(self, x: Tensor) -> Tensor | None:
        """The noisy forward in its cheapest exact form, or None where the noise must see Δh itself."""
        additive = getattr(self.noise, "kind", None) in ADDITIVE
        if self.noise_target == "output" or additive:  # z ⊙ (h0 + Δh), or h0 + Δh + ε: one merged product
            h = F.linear(x, *self.merged_weight())
            factors = self.noise.factors(h)  # type: ignore[operator]
            if factors is None:
                return None
            scale, shift = factors
            return h * scale if scale is not None else h + shift
        dw, db = self.delta_weight(), self.delta_bias()
        if self._per_sample_pays(x) and dw is not None:
            shape = (x.shape[0], 1, self.out_features)
            factors = self.noise.factors(x.new_empty(shape))  # type: ignore[operator]
            if factors is not None and factors[0] is not None:
                return PerSampleNoisyLinear.apply(x, self.base.weight, self.base.bias, dw, db, factors[0])
            return None
        h0, t = self.base(x), self._delta(x, dw, db)  # ΔW and Δb as computed above, not again
        factors = self.noise.factors(t)  # type: ignore[operator]
        if factors is None or factors[0] is None:
            return None
        return torch.addcmul(h0, t, factors[0])  # h0 + t ⊙ z in one pass

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
