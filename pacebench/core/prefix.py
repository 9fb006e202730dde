"""n copies of a batch in one forward pass, with the noise-free prefix computed once.

PACE and its variants run [x; x] (or M copies) through the model. The copies only start to differ at the first
layer that draws noise: with the authors' ViT schedule block 0 has σ = 0, and DropPath masks are shared by the
copies, so the patch embedding and every leading block without noise give the copies identical activations.
`forward_copies` runs that prefix on the B real images and duplicates its output in a pre-hook of the first
noisy block: the same values, in the same random order (the prefix's shared DropPath draws one mask per sample
either way), for less work. Only timm ViTs get the fast path (their blocks form one sequence); any other model,
a stochastic stem (dropout, patch dropout, unshared DropPath) or `plain_paths()` takes the plain path.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from timm.layers import DropPath, PatchDropout
from torch import Tensor, nn

from pacebench.core.adapters import noisy_layers
from pacebench.core.adapters.base import Noisy
from pacebench.core.droppath import SharedDropPath, copies
from pacebench.core.noise import Noise

STEM = ("patch_embed", "pos_drop", "patch_drop", "norm_pre")  # what a timm ViT runs before its blocks


def _stochastic(module: nn.Module) -> bool:
    """Whether two copies of a sample could leave `module` with different values."""
    for m in module.modules():
        if (
            (isinstance(m, Noisy) and m.noisy)
            or (isinstance(m, nn.Dropout) and m.p > 0)
            or (isinstance(m, DropPath) and m.drop_prob > 0)
            or (isinstance(m, PatchDropout) and m.prob > 0)
        ):
            return True
    return False


def noise_free_blocks(model: nn.Module) -> int:
    """How many leading blocks of a timm ViT give every copy the same output (0: no shareable prefix)."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential) or not all(hasattr(model, name) for name in STEM):
        return 0
    if any(_stochastic(getattr(model, name)) for name in STEM):
        return 0
    count = 0
    for block in blocks:
        if _stochastic(block):
            break
        count += 1
    return count


class _Duplicate:
    """The pre-hook that turns the prefix's [B, ...] activations into n stacked copies."""

    def __init__(self, n: int, noises: Iterable[Noise]) -> None:
        self.n, self.noises = n, list(noises)

    def __call__(self, _block: nn.Module, args: tuple) -> tuple:
        x = torch.cat([args[0]] * self.n)
        for noise in self.noises:  # noise folds Swin windows by batch size: it must see the duplicated batch
            noise.batch = x.shape[0]
        return (x, *args[1:])


def forward_copies(model: nn.Module, x: Tensor, n: int) -> Tensor:
    """model(cat([x] * n)) with DropPath masks shared by the copies; the noise-free prefix runs once."""
    split = noise_free_blocks(model) if Noisy.fast_paths and model.training else 0
    blocks = getattr(model, "blocks", [])
    if not 0 < split < len(blocks):
        with copies(model, n):
            return model(torch.cat([x] * n))
    tail = [m for block in blocks[split:] for m in block.modules() if isinstance(m, SharedDropPath)]
    noises = [layer.noise for layer in noisy_layers(model) if isinstance(layer.noise, Noise)]
    handle = blocks[split].register_forward_pre_hook(_Duplicate(n, noises))
    for m in tail:
        m.copies = n
    try:
        return model(x)
    finally:
        handle.remove()
        for m in tail:
            m.copies = 1
