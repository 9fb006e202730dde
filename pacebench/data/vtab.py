"""VTAB-1k in the NOAH layout (the split lists every VTAB-1k result in the paper was trained and scored on).

    <data root>/vtab-1k/cifar/          the dataset's folder (`request.root`)
        train800.txt                    800 lines `images/train/<file>.jpg <label>`, paths relative to the folder
        val200.txt                      200 lines
        train800val200.txt              1000 lines: train800 + val200
        test.txt                        the whole test split
        images/train/*.jpg  images/test/*.jpg
        images.hdf5                     or, instead of images/, the authors' HDF5 pack of it

Phase "tune" trains on train800 and scores on val200; phase "final" trains on train800val200 and scores on test.
Phase "tune" never opens test.txt.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pacebench.data.base import Layout, Source, for_phase, register_layout
from pacebench.data.images import ImageDir, read_list
from pacebench.data.transforms import vtab_cache, vtab_transform

SPLITS = {"tune": ("train800", {"val": "val200"}), "final": ("train800val200", {"test": "test"})}
SIZES = {"train800": 800, "val200": 200, "train800val200": 1000}  # fixed by VTAB-1k; test varies by data set


def _source(root: Path, stem: str, num_classes: int) -> Source:
    path = root / f"{stem}.txt"
    return Source(stem, path, partial(read_list, path, root, num_classes), ImageDir(root / "images"), SIZES.get(stem))


@register_layout(
    "vtab",
    vtab_transform,
    cache=vtab_cache,  # no augmentation: the same transform for train and eval
    splits={phase: (train, tuple(evals.values())) for phase, (train, evals) in SPLITS.items()},
)
def layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    train, evals = for_phase(SPLITS, phase)
    return Layout(
        (_source(root, train, num_classes),), {name: _source(root, stem, num_classes) for name, stem in evals.items()}
    )
