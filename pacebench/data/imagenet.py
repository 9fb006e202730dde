"""Domain adaptation: train on 16-shot ImageNet, score on ImageNet val, -Sketch, -V2, -A and -R.

    <data root>/domain/                           the suite folder (`request.root`; the suite's dataset has folder ".")
        imagenet/
            classes.txt                           optional: the wnids, one a line, in class-index order
            images/train/<wnid>/*.JPEG            without classes.txt, class index = position in sorted wnids here
            images/val/<wnid>/*.JPEG              target "imagenet"
            annotations/train_meta.list.num_shot_16.seed_0   `<path relative to imagenet/images/> <label>` lines
            annotations/val_meta.list                        the validation list of phase "tune"
        imagenet-sketch/<wnid>/*                  target "imagenet_sketch"
        imagenetv2/<class index 0..999>/*         target "imagenet_v2"
        imagenet-a/<wnid>/*                       target "imagenet_a" (200 classes: logits restricted to them)
        imagenet-r/<wnid>/*                       target "imagenet_r" (200 classes: logits restricted to them)

The options `shots` (default 16) and `split_seed` (default 0) pick the train list, as in the few-shot layout. Phase
"tune" scores on val_meta.list and opens no target folder; phase "final" scores on all five targets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from pacebench.data.base import READERS, DataRequest, Splits
from pacebench.data.check import LAYOUTS, Layout, Source, for_phase, option
from pacebench.data.fewshot import meta_source, train_source
from pacebench.data.images import IMAGE_SUFFIXES, Item, check_label
from pacebench.data.transforms import crop_eval_transform, crop_train_transform, train_transform
from pacebench.errors import DataError


class ClassOrder:
    """Maps class folders to ImageNet class indices; reads classes.txt or the train folder only on first use."""

    def __init__(self, imagenet: Path, num_classes: int) -> None:
        self.listed, self.train, self.num_classes = imagenet / "classes.txt", imagenet / "images" / "train", num_classes

    @cached_property
    def index(self) -> dict[str, int]:
        if self.listed.is_file():
            wnids, source = [w.strip() for w in self.listed.read_text().splitlines() if w.strip()], self.listed
        elif self.train.is_dir():
            wnids, source = sorted(p.name for p in self.train.iterdir() if p.is_dir()), self.train
        else:
            raise DataError(f"cannot tell the ImageNet class order: neither {self.listed} nor {self.train} exists; "
                            "add one of them")
        if len(wnids) != self.num_classes:
            raise DataError(f"{source} gives {len(wnids)} classes, the suite says {self.num_classes}; "
                            "fix one of them")
        return {wnid: i for i, wnid in enumerate(wnids)}

    def by_wnid(self, folder: Path) -> int:
        if folder.name not in self.index:
            raise DataError(f"{folder}: {folder.name!r} is not one of the ImageNet classes; remove or rename it")
        return self.index[folder.name]

    def by_number(self, folder: Path) -> int:
        if not folder.name.isdigit():
            raise DataError(f"{folder}: expected a class index 0..{self.num_classes - 1} as the folder name")
        return check_label(int(folder.name), self.num_classes, str(folder))


# eval name: (folder under the suite folder, how its class folders are named, score only on the classes present)
TARGETS: dict[str, tuple[str, Callable[[ClassOrder, Path], int], bool]] = {
    "imagenet": ("imagenet/images/val", ClassOrder.by_wnid, False),
    "imagenet_sketch": ("imagenet-sketch", ClassOrder.by_wnid, False),
    "imagenet_v2": ("imagenetv2", ClassOrder.by_number, False),
    "imagenet_a": ("imagenet-a", ClassOrder.by_wnid, True),
    "imagenet_r": ("imagenet-r", ClassOrder.by_wnid, True),
}


def folder_items(folder: Path, label_of: Callable[[Path], int]) -> list[Item]:
    """Images in `folder/<class folder>/`, labelled by `label_of(class folder)`, in sorted order."""
    if not folder.is_dir():
        raise DataError(f"missing data folder {folder}; put that data set there")
    items = [(image, label_of(class_dir))
             for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
             for image in sorted(class_dir.iterdir()) if image.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise DataError(f"no images in the class folders of {folder}; expected {folder}/<class>/<image>")
    return items


@LAYOUTS.register("imagenet")
def layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    imagenet, classes = root / "imagenet", ClassOrder(root / "imagenet", num_classes)
    train = train_source(imagenet, option(options, "shots", 16), option(options, "split_seed", 0), num_classes)
    targets = {name: Source(name, root / folder, partial(folder_items, root / folder, partial(label_of, classes)),
                            subset=subset)
               for name, (folder, label_of, subset) in TARGETS.items()}
    evals = {"tune": {"val": meta_source(imagenet, "val", "val_meta.list", num_classes)}, "final": targets}
    return Layout((train,), for_phase(evals, phase))


@READERS.register("imagenet")
def read(request: DataRequest) -> Splits:
    return layout(request.root, request.phase, request.options, request.num_classes).splits(
        request.num_classes, train_transform(request.augment, request.image_size, request.mean, request.std,
                                             crop_train_transform),
        crop_eval_transform(request.image_size, request.mean, request.std))
