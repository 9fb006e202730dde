"""Stochastic depth whose masks are shared by the copies of a sample, as in the authors' PACE code.

PACE runs the batch [x; x] (or M copies) through one forward pass. With timm's DropPath each copy would drop
different blocks, so the consistency term would also measure depth noise. `SharedDropPath` draws one keep-mask per
sample, repeats it for every copy, and renormalises the mask to batch mean 1 (instead of dividing by keep prob).
`SharedDropout` does the same for element-wise dropout (the text models' dropout, the adapters' own dropout), so
PACE's copies of a sample differ by their noise alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from timm.layers import DropPath
from torch import Tensor, nn


class SharedDropPath(nn.Module):
    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.copies = 1

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0:
            return x
        if x.shape[0] % self.copies:
            raise ValueError(f"batch of {x.shape[0]} is not {self.copies} equal copies")
        n = x.shape[0] // self.copies
        keep = x.new_empty((n,) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.drop_prob)
        mask = keep.repeat((self.copies,) + (1,) * (x.ndim - 1))
        # An all-dropped batch has mean 0: the clamp turns it into zeros without a CPU-GPU sync on `if mean > 0`.
        return x * (mask / mask.mean().clamp_min(1e-12))

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, copies={self.copies}"


class SharedDropout(SharedDropPath):
    """nn.Dropout whose elementwise mask is shared by the stacked copies of a sample: PACE's two copies then differ
    only by their adapters' noise, as the authors' code arranges for DropPath. Scaled by 1/(1-p), so with one copy it
    is nn.Dropout (drawn from torch's generator by a `bernoulli_`, not by nn.Dropout's kernel)."""

    @property
    def p(self) -> float:
        """nn.Dropout's name for the rate: attention layers read it to pass to their kernel's own dropout."""
        return self.drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0:
            return x
        if x.shape[0] % self.copies:
            raise ValueError(f"batch of {x.shape[0]} is not {self.copies} equal copies")
        keep = x.new_empty((x.shape[0] // self.copies, *x.shape[1:])).bernoulli_(1 - self.drop_prob)
        return x * keep.repeat((self.copies,) + (1,) * (x.ndim - 1)) / (1 - self.drop_prob)


def share_drop_path(model: nn.Module) -> int:
    """Replaces every timm DropPath in `model` by a SharedDropPath; returns how many were replaced."""
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, DropPath)]
    for name, module in targets:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, SharedDropPath(module.drop_prob))
    return len(targets)


@contextmanager
def copies(model: nn.Module, n: int) -> Iterator[None]:
    """Tells every SharedDropPath that the next forward holds `n` stacked copies of the same samples."""
    layers = [m for m in model.modules() if isinstance(m, SharedDropPath)]
    for m in layers:
        m.copies = n
    try:
        yield
    finally:
        for m in layers:
            m.copies = 1
