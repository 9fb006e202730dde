"""What a set-up costs before any GPU hour is spent: trainable parameters and the σ schedule by position, and each
adapter kind's count at its source's setting beside the number its source prints (a check on the implementation).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from functools import cache
from statistics import fmean
from typing import cast

import timm
import torch

from pacebench.core import adapters, noise
from pacebench.core.backbones import BACKBONES, arch_of
from pacebench.errors import DataError, UsageError
from pacebench.plan.suites import load_suite

PRINTED_ON = "vit_base_patch16_224"  # the printed counts are ViT-B/16's
PRINTED_SUITE = "vtab"  # ... on VTAB-1k: the suite whose [reference] adapter_params file holds them


@dataclass(frozen=True)
class SetupDescription:
    family: str
    depth: int
    adapter: int
    head: int
    sigmas: list[float]
    layers: list[int]  # noisy modules per position (the head counts 1)
    rank: int  # the size the count is at (the kind's default where none was given)
    size: str | None  # what the kind's rank sets ("rank r", "bottleneck width h", ...), None for no size


def describe(
    backbone: str,
    adapter: str,
    rank: int | None,
    classes: int,
    sigma: float,
    schedule: str,
    image_size: int = 224,
    scale: float | None = None,
    dropout: float | None = None,
) -> SetupDescription:
    """Builds the architecture on the meta device (no memory, no weights) and counts; `rank` None is the kind's
    own size."""
    checks = {
        "--classes": (classes, classes >= 1),
        "--rank": (rank, rank is None or rank >= 1),
        "--image-size": (image_size, image_size >= 1),
        "--sigma": (sigma, 0 <= sigma < float("inf")),
    }
    for option, (value, ok) in checks.items():
        if not ok:
            raise UsageError(f"{option} must be {'finite and >= 0' if option == '--sigma' else '>= 1'}, got {value}")
    if backbone in BACKBONES and BACKBONES.get(backbone).folder:
        raise UsageError(
            f"{backbone} is a text model: this counts image adapters; a text run stores its LoRA and "
            "head counts (`pacebench runs`, setup)"
        )
    arch, kwargs = (
        (BACKBONES.get(backbone).arch, BACKBONES.get(backbone).kwargs) if backbone in BACKBONES else (backbone, {})
    )
    if not timm.is_model(arch):
        raise UsageError(f"unknown backbone {backbone!r}; use one of {', '.join(BACKBONES.names())} or a timm name")
    size = adapters.check_settings(adapter, rank, scale, dropout, rank_given=rank is not None).size
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False, num_classes=classes, img_size=image_size, **kwargs)
        layout = adapters.inject(model, adapter, size, scale, dropout)
    count = adapters.count_parameters(model)
    sigmas = noise.schedule(schedule, layout.family, layout.depth, sigma)
    per_position = Counter(layer.position for layer in adapters.noisy_layers(model))
    return SetupDescription(
        layout.family,
        layout.depth,
        count.adapter,
        count.head,
        sigmas,
        [per_position[p] for p in range(layout.depth + 1)],
        size,
        adapters.kind_of(adapter).size,
    )


# ---- printed counts --------------------------------------------------------------------------------------------

HEADS = ("none", "vtab-mean")  # the printed number counts no head, or the mean VTAB-1k head (NOAH's, SSF's tables)


@dataclass(frozen=True)
class PrintedCount:
    """One printed "Params (M)" of an adapter kind on ViT-B/16 / VTAB-1k, and pacebench's count at the same setting.

    `rank` is the source's setting ("" for the kind's default, "vtab" for the per-dataset values of the vtab suite,
    averaged over its datasets as the tables average); `head` says whether the printed number includes the head.
    """

    kind: str
    rank: str
    printed: str  # as printed, e.g. "0.29"
    head: str
    source: str
    note: str
    counted: float  # parameters at that setting, the mean VTAB-1k head added where `head` says so

    @property
    def decimals(self) -> int:
        return len(self.printed.partition(".")[2])

    @property
    def counted_m(self) -> str:
        """The count in millions at the printed precision."""
        return f"{self.counted / 1e6:.{self.decimals}f}"

    @property
    def reproduced(self) -> bool:
        return self.counted_m == self.printed


@cache
def _adapter_count(kind: str, rank: int | None) -> int:
    return describe(PRINTED_ON, kind, rank, 1, 0.0, "code").adapter


def _count(kind: str, rank: str, head: str) -> float:
    suite = load_suite(PRINTED_SUITE)
    datasets = list(suite.datasets.values())
    if rank == "vtab":
        ranks = [suite.resolve_train(ds, {"adapter": kind}, adapters.train_defaults).rank for ds in datasets]
        count = fmean(_adapter_count(kind, r) for r in ranks)
    else:
        count = float(_adapter_count(kind, int(rank) if rank else None))
    if head == "vtab-mean":
        model = timm.create_model(PRINTED_ON, pretrained=False, num_classes=0, device="meta")
        features = cast(int, model.num_features)  # every timm model has it
        count += fmean((features + 1) * ds.classes for ds in datasets)
    return count


def printed_counts(kind: str) -> list[PrintedCount]:
    """Every printed count of `kind` in the vtab suite's adapter_params CSV, each with pacebench's count at the
    source's setting (empty when no source prints one)."""
    adapters.kind_of(kind)
    suite = load_suite(PRINTED_SUITE)
    name = suite.reference.get("adapter_params")
    if name is None or suite.path is None:
        return []
    path = suite.path.parent / name
    try:
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["kind"] == kind]
    except (OSError, KeyError) as exc:
        raise DataError(f"cannot read the printed adapter counts {path}: {exc}") from None
    bad = [r["head"] for r in rows if r["head"] not in HEADS]
    if bad:
        raise DataError(f"{path}: head must be one of {', '.join(HEADS)}, got {bad[0]!r}")
    return [
        PrintedCount(
            kind, r["rank"], r["params_m"], r["head"], r["source"], r["note"], _count(kind, r["rank"], r["head"])
        )
        for r in rows
    ]


def counts_printed_for(backbone: str) -> bool:
    """Whether `backbone` is the architecture the printed counts are for (ViT-B/16)."""
    return arch_of(backbone) == PRINTED_ON
