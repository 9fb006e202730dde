"""What a set-up costs before any GPU hour is spent: trainable parameters and the σ schedule by position."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import timm
import torch

from pacebench.core import adapters, noise
from pacebench.core.backbones import BACKBONES
from pacebench.errors import UsageError


@dataclass(frozen=True)
class SetupDescription:
    family: str
    depth: int
    adapter: int
    head: int
    sigmas: list[float]
    layers: list[int]  # adapted Linear layers per position (the head counts 1)


def describe(backbone: str, adapter: str, rank: int, classes: int, sigma: float, schedule: str,
             image_size: int = 224) -> SetupDescription:
    """Builds the architecture on the meta device (no memory, no weights) and counts."""
    checks = {"--classes": (classes, classes >= 1), "--rank": (rank, rank >= 1),
              "--image-size": (image_size, image_size >= 1), "--sigma": (sigma, 0 <= sigma < float("inf"))}
    for option, (value, ok) in checks.items():
        if not ok:
            raise UsageError(f"{option} must be {'finite and >= 0' if option == '--sigma' else '>= 1'}, got {value}")
    if backbone in BACKBONES and BACKBONES.get(backbone).folder:
        raise UsageError(f"{backbone} is a text model: this counts image adapters; a text run stores its LoRA and "
                         "head counts (`pacebench runs`, setup)")
    arch, kwargs = (BACKBONES.get(backbone).arch, BACKBONES.get(backbone).kwargs) if backbone in BACKBONES else (
        backbone, {})
    if not timm.is_model(arch):
        raise UsageError(f"unknown backbone {backbone!r}; use one of {', '.join(BACKBONES.names())} or a timm name")
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False, num_classes=classes, img_size=image_size, **kwargs)
        layout = adapters.inject(model, adapter, rank)
    count = adapters.count_parameters(model)
    sigmas = noise.schedule(schedule, layout.family, layout.depth, sigma)
    per_position = Counter(layer.position for layer in adapters.noisy_layers(model))
    return SetupDescription(layout.family, layout.depth, count.adapter, count.head, sigmas,
                            [per_position[p] for p in range(layout.depth + 1)])
