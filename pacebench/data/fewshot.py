"""Few-shot learning (FGVC-Aircraft, Food-101, Oxford Flowers-102, Oxford Pets, Stanford Cars) in the NOAH layout.

    <data root>/few-shot/oxford-flowers102/             the dataset's folder (`request.root`)
        annotations/train_meta.list.num_shot_16.seed_0  K-shot train lists for K in {1,2,4,8,16}, seeds {0,1,2}
        annotations/val_meta.list
        annotations/test_meta.list
        images/<relative image path>                    every list line is `<relative image path> <label>`,
                                                        the path relative to images/
        images.hdf5                                     or, instead of images/, the authors' HDF5 pack of it

The options `shots` (K) and `split_seed` (S) pick the train list. Phase "tune" scores on val_meta.list, phase "final"
on test_meta.list; both train on the same K-shot list, as in the paper (there is no larger train set to add).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pacebench.data.base import Layout, Source, for_phase, option, register_layout
from pacebench.data.images import ImageDir, read_list
from pacebench.data.transforms import crop_cache, crop_eval_transform, crop_train_transform

EVALS = {"tune": {"val": "val_meta.list"}, "final": {"test": "test_meta.list"}}


def meta_source(root: Path, name: str, filename: str, num_classes: int) -> Source:
    """A list in `<root>/annotations/` whose image paths are relative to `<root>/images/`."""
    path = root / "annotations" / filename
    return Source(name, path, partial(read_list, path, root / "images", num_classes), ImageDir(root / "images"))


def train_source(root: Path, shots: int, seed: int, num_classes: int) -> Source:
    return meta_source(
        root, f"train_{shots}shot_seed{seed}", f"train_meta.list.num_shot_{shots}.seed_{seed}", num_classes
    )


@register_layout(
    "fewshot",
    crop_train_transform,
    crop_eval_transform,
    cache=crop_cache,
    splits={phase: ("the K-shot train list", tuple(evals.values())) for phase, evals in EVALS.items()},
)
def layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    train = train_source(root, option(options, "shots"), option(options, "split_seed"), num_classes)
    return Layout(
        (train,),
        {name: meta_source(root, name, filename, num_classes) for name, filename in for_phase(EVALS, phase).items()},
    )
