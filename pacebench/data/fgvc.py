"""FGVC (CUB-200-2011, NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars) with VPT's split files.

    <data root>/fgvc/CUB_200_2011/      the dataset's folder (`request.root`)
        train.json                      {"<image path>": <label>, ...}, paths relative to <image_dir>
        val.json
        test.json
        images/...                      <image_dir>: the option `image_dir`, "images" by default
                                        (VPT's copies differ: e.g. Stanford Dogs uses "Images")

Phase "tune" trains on train and scores on val; phase "final" trains on train + val and scores on test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pacebench.data.base import READERS, DataRequest, Splits
from pacebench.data.check import LAYOUTS, Layout, Source, for_phase
from pacebench.data.images import Item, check_label
from pacebench.data.transforms import crop_eval_transform, crop_train_transform, train_transform
from pacebench.errors import DataError

SPLITS = {"tune": (("train",), {"val": "val"}), "final": (("train", "val"), {"test": "test"})}


def read_json_split(path: Path, image_dir: Path, num_classes: int) -> list[Item]:
    """Reads a VPT split file: one JSON object mapping image paths (relative to `image_dir`) to integer labels."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"missing split file {path}; put the data set's VPT split files there") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read split file {path}: {exc}; restore the original file") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object mapping image paths to labels; restore the original file")
    items = []
    for name, label in raw.items():
        if type(label) is not int:
            raise DataError(f"{path}: the label of {name!r} is {label!r}, not an integer; fix that entry")
        items.append((image_dir / name, check_label(label, num_classes, f"{path}, entry {name!r}")))
    return items


def _source(root: Path, split: str, image_dir: Path, num_classes: int) -> Source:
    path = root / f"{split}.json"
    return Source(split, path, partial(read_json_split, path, image_dir, num_classes))


@LAYOUTS.register("fgvc")
def layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    train, evals = for_phase(SPLITS, phase)
    image_dir = root / str(options.get("image_dir", "images"))
    return Layout(tuple(_source(root, split, image_dir, num_classes) for split in train),
                  {name: _source(root, split, image_dir, num_classes) for name, split in evals.items()})


@READERS.register("fgvc")
def read(request: DataRequest) -> Splits:
    return layout(request.root, request.phase, request.options, request.num_classes).splits(
        request.num_classes, train_transform(request.augment, request.image_size, request.mean, request.std,
                                             crop_train_transform),
        crop_eval_transform(request.image_size, request.mean, request.std))
