"""FGVC (CUB-200-2011, NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars) with VPT's split files.

    <data root>/fgvc/CUB_200_2011/      the dataset's folder (`request.root`)
        train.json                      {"<image path>": <label>, ...}, paths relative to <image_dir>
        val.json
        test.json
        images/...                      <image_dir>: the option `image_dir`, "images" by default
                                        (VPT's copies differ: e.g. Stanford Dogs uses "Images")
        images.hdf5                     or, instead of <image_dir>/, an HDF5 pack of it ("<image_dir>.hdf5";
                                        "images.hdf5" when image_dir is "")

Phase "tune" trains on train and scores on val; phase "final" trains on train + val and scores on test.

VPT's split files keep each data set's own label ids (CUB's are 1-based, from its class file). As VPT's loader and
the authors' do, the sorted set of ids in train.json becomes 0..K-1, and that one mapping serves every split: a val
or test label absent from train.json is an error naming it. A run records the ids it mapped (`label_ids`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any

from pacebench.data.base import Layout, Source, for_phase, register_layout
from pacebench.data.images import ImageDir, Item
from pacebench.data.transforms import crop_cache, crop_eval_transform, crop_train_transform
from pacebench.errors import DataError

SPLITS = {"tune": (("train",), {"val": "val"}), "final": (("train", "val"), {"test": "test"})}


def read_json(path: Path) -> dict[str, int]:
    """Reads a VPT split file: one JSON object mapping image paths to integer labels."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"missing split file {path}; put the data set's VPT split files there") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read split file {path}: {exc}; restore the original file") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object mapping image paths to labels; restore the original file")
    for name, label in raw.items():
        if type(label) is not int:
            raise DataError(f"{path}: the label of {name!r} is {label!r}, not an integer; fix that entry")
    return raw


@cache
def _label_ids(train: Path, mtime_ns: int, num_classes: int) -> tuple[int, ...]:
    ids = tuple(sorted(set(read_json(train).values())))
    if len(ids) > num_classes:
        raise DataError(
            f"{train} has {len(ids)} distinct labels, the suite says {num_classes} classes; fix the "
            "dataset's 'classes' in the suite file"
        )
    return ids


def label_ids(train: Path, num_classes: int) -> list[int]:
    """The sorted label ids of train.json: class index i is the i-th of them."""
    try:
        mtime = train.stat().st_mtime_ns
    except FileNotFoundError:
        raise DataError(f"missing split file {train}; put the data set's VPT split files there") from None
    return list(_label_ids(train, mtime, num_classes))


def read_json_split(path: Path, image_dir: Path, train: Path, num_classes: int) -> list[Item]:
    """The items of one split, labels renumbered by the sorted ids of `train` (train.json)."""
    raw = read_json(path)
    index = {label: i for i, label in enumerate(label_ids(train, num_classes))}
    unknown = sorted({label for label in raw.values() if label not in index})
    if unknown:
        name = next(n for n, label in raw.items() if label == unknown[0])
        raise DataError(
            f"{path}: label {unknown[0]} (of {name!r}) does not occur in {train}, so it has no class "
            "index; fix that entry or restore the original split files"
        )
    return [(image_dir / name, index[label]) for name, label in raw.items()]


def _source(root: Path, split: str, images: ImageDir, num_classes: int) -> Source:
    path = root / f"{split}.json"
    return Source(split, path, partial(read_json_split, path, images.folder, root / "train.json", num_classes), images)


@register_layout(
    "fgvc",
    crop_train_transform,
    crop_eval_transform,
    cache=crop_cache,
    splits={phase: ("+".join(train), tuple(evals.values())) for phase, (train, evals) in SPLITS.items()},
)
def layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    train, evals = for_phase(SPLITS, phase)
    folder = str(options.get("image_dir", "images"))
    images = ImageDir(root / folder, root / f"{folder or 'images'}.hdf5")
    return Layout(
        tuple(_source(root, split, images, num_classes) for split in train),
        {name: _source(root, split, images, num_classes) for name, split in evals.items()},
        label_ids=partial(label_ids, root / "train.json", num_classes),
    )
