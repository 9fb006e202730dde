"""VTAB-1k in the NOAH layout (the split lists every VTAB-1k result in the paper was trained and scored on).

    <data root>/vtab-1k/cifar/          the dataset's folder (`request.root`)
        train800.txt                    800 lines `images/train/<file>.jpg <label>`, paths relative to the folder
        val200.txt                      200 lines
        train800val200.txt              1000 lines: train800 + val200
        test.txt                        the whole test split
        images/train/*.jpg  images/test/*.jpg

Phase "tune" trains on train800 and scores on val200; phase "final" trains on train800val200 and scores on test.
Phase "tune" never opens test.txt.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pacebench.data.base import READERS, DataRequest, Splits
from pacebench.data.check import LAYOUTS, Layout, Source, for_phase
from pacebench.data.images import read_list
from pacebench.data.transforms import train_transform, vtab_transform

SPLITS = {"tune": ("train800", {"val": "val200"}), "final": ("train800val200", {"test": "test"})}
SIZES = {"train800": 800, "val200": 200, "train800val200": 1000}  # fixed by VTAB-1k; test varies by data set


def _source(root: Path, stem: str, num_classes: int) -> Source:
    path = root / f"{stem}.txt"
    return Source(stem, path, partial(read_list, path, root, num_classes), SIZES.get(stem))


@LAYOUTS.register("vtab")
def layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    train, evals = for_phase(SPLITS, phase)
    return Layout((_source(root, train, num_classes),),
                  {name: _source(root, stem, num_classes) for name, stem in evals.items()})


@READERS.register("vtab")
def read(request: DataRequest) -> Splits:
    size, mean, std = request.image_size, request.mean, request.std
    train = train_transform(request.augment, size, mean, std, vtab_transform)  # standard: the same as eval
    return layout(request.root, request.phase, request.options, request.num_classes).splits(
        request.num_classes, train, vtab_transform(size, mean, std))
