"""The contract between data readers and the training loop.

A reader turns one on-disk layout into `Splits`: a training set and one or more evaluation sets, each yielding
`(image, label, index)` (the index lets `pace_fast` keep a per-sample history). Which splits are read depends on
the protocol phase: phase "tune" trains on the train split and scores on the validation split, phase "final" trains
on train+val and scores on test. A reader for phase "tune" must never open a test list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from pacebench.backbones import IMAGENET_MEAN, IMAGENET_STD
from pacebench.registry import Registry


@dataclass(frozen=True)
class DataRequest:
    """What the training loop asks a reader for."""

    root: Path  # the dataset's own folder, e.g. <data root>/vtab-1k/cifar
    dataset: str  # canonical dataset name of the suite
    phase: str  # "tune" or "final"
    num_classes: int
    image_size: int = 224
    options: dict[str, Any] = field(default_factory=dict)  # e.g. shots, split_seed for few-shot
    mean: tuple[float, ...] = IMAGENET_MEAN  # the backbone's normalisation (see backbones.normalization)
    std: tuple[float, ...] = IMAGENET_STD
    augment: str = "standard"  # training augmentation (see pacebench.data.transforms)


@dataclass
class Splits:
    """Datasets for one run. `evals` maps a name ("val", "test", "imagenet_r", ...) to a dataset; `eval_classes`
    optionally restricts the logits of an evaluation set to a subset of classes (ImageNet-A and -R)."""

    train: Dataset
    evals: dict[str, Dataset]
    num_classes: int
    eval_classes: dict[str, Sequence[int]] = field(default_factory=dict)


class Indexed(Dataset):
    """Wraps a dataset of (x, y) pairs so that items are (x, y, index)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x, y, i


Reader = Callable[[DataRequest], Splits]
READERS: Registry[Reader] = Registry("data reader")
