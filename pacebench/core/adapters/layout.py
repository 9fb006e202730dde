"""Where adapters go in a backbone, and at which depth position (for the σ schedule).

A layout lists the modules whose nn.Linear children get adapters, each with its position, plus the depth and the
head's module path. ViT: block i has position i, the head position `depth`. Swin: blocks are numbered across stages,
a stage's downsample (patch merging) shares the position of that stage's first block, the head is `depth`.
`blocks` are the transformer blocks among the groups (each with `norm1`, `attn`, `norm2`, `mlp`): where the kinds
that add a module per block (bottleneck adapters, prompts) put it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from pacebench.errors import UsageError
from pacebench.registry import Registry


@dataclass(frozen=True)
class Layout:
    family: str
    depth: int
    groups: list[tuple[nn.Module, int]]
    head_path: str
    blocks: list[tuple[nn.Module, int]] = field(default_factory=list)


LAYOUTS: Registry[tuple[Callable[[nn.Module], bool], Callable[[nn.Module], Layout]]] = Registry("backbone family")


def _is(class_name: str) -> Callable[[nn.Module], bool]:
    return lambda model: any(c.__name__ == class_name for c in type(model).__mro__)


def _vit(model: nn.Module) -> Layout:
    blocks = list(model.blocks)
    groups = [(b, i) for i, b in enumerate(blocks)]
    return Layout("vit", len(blocks), groups, "head", groups)


def _swin(model: nn.Module) -> Layout:
    groups: list[tuple[nn.Module, int]] = []
    blocks: list[tuple[nn.Module, int]] = []
    position = 0
    for stage in model.layers:
        if not isinstance(getattr(stage, "downsample", None), nn.Identity | type(None)):
            groups.append((stage.downsample, position))
        for block in stage.blocks:
            groups.append((block, position))
            blocks.append((block, position))
            position += 1
    return Layout("swin", position, groups, "head.fc", blocks)


LAYOUTS.register("vit")((_is("VisionTransformer"), _vit))
LAYOUTS.register("swin")((_is("SwinTransformer"), _swin))


def layout_of(model: nn.Module) -> Layout:
    for _, (matches, build) in LAYOUTS.items():
        if matches(model):
            return build(model)
    raise UsageError(
        f"pacebench can put adapters on {', '.join(LAYOUTS.names())} backbones, not on {type(model).__name__}"
    )
