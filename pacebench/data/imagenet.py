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

Any of the image folders may be replaced by an HDF5 pack of it beside it (imagenet/images.hdf5, imagenet-a.hdf5, ...):
each image's bytes under its path inside the folder, as the PACE authors' convert_to_hdf5.py stores them.

The options `shots` (default 16) and `split_seed` (default 0) pick the train list, as in the few-shot layout. Phase
"tune" scores on val_meta.list and opens no target folder; phase "final" scores on all five targets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from pacebench.data.base import Layout, Source, for_phase, option, register_layout
from pacebench.data.fewshot import meta_source, train_source
from pacebench.data.images import ImageDir, Item, check_label
from pacebench.data.transforms import crop_cache, crop_eval_transform, crop_train_transform
from pacebench.errors import DataError


class ClassOrder:
    """Maps class folders to ImageNet class indices; reads classes.txt or the train folder (or its group in the
    HDF5 pack) only on first use."""

    def __init__(self, imagenet: Path, num_classes: int) -> None:
        self.listed, self.images = imagenet / "classes.txt", ImageDir(imagenet / "images")
        self.train, self.num_classes = self.images.folder / "train", num_classes

    @cached_property
    def index(self) -> dict[str, int]:
        if self.listed.is_file():
            wnids, source = [w.strip() for w in self.listed.read_text().splitlines() if w.strip()], self.listed
        elif self.train.is_dir() or self.images.packed:
            wnids, source = sorted(self.images.class_folders("train")), self.train
        else:
            raise DataError(
                f"cannot tell the ImageNet class order: neither {self.listed} nor {self.train} exists; add one of them"
            )
        if len(wnids) != self.num_classes:
            raise DataError(f"{source} gives {len(wnids)} classes, the suite says {self.num_classes}; fix one of them")
        return {wnid: i for i, wnid in enumerate(wnids)}

    def by_wnid(self, folder: Path) -> int:
        if folder.name not in self.index:
            raise DataError(f"{folder}: {folder.name!r} is not one of the ImageNet classes; remove or rename it")
        return self.index[folder.name]

    def by_number(self, folder: Path) -> int:
        if not folder.name.isdigit():
            raise DataError(f"{folder}: expected a class index 0..{self.num_classes - 1} as the folder name")
        return check_label(int(folder.name), self.num_classes, str(folder))


# eval name: (image folder under the suite folder (its HDF5 pack is <folder>.hdf5), the class folders' folder inside
# it, how class folders are named, score only on the classes present)
TARGETS: dict[str, tuple[str, str, Callable[[ClassOrder, Path], int], bool]] = {
    "imagenet": ("imagenet/images", "val", ClassOrder.by_wnid, False),
    "imagenet_sketch": ("imagenet-sketch", "", ClassOrder.by_wnid, False),
    "imagenet_v2": ("imagenetv2", "", ClassOrder.by_number, False),
    "imagenet_a": ("imagenet-a", "", ClassOrder.by_wnid, True),
    "imagenet_r": ("imagenet-r", "", ClassOrder.by_wnid, True),
}


def folder_items(images: ImageDir, sub: str, label_of: Callable[[Path], int]) -> list[Item]:
    """Images in `<images>/<sub>/<class folder>/`, labelled by `label_of(class folder)`, in sorted order."""
    folder = images.folder / sub
    items = [(image, label_of(folder / name)) for name, files in images.class_folders(sub).items() for image in files]
    if not items:
        raise DataError(f"no images in the class folders of {folder}; expected {folder}/<class>/<image>")
    return items


@register_layout(
    "imagenet",
    crop_train_transform,
    crop_eval_transform,
    cache=crop_cache,
    splits={
        "tune": ("the K-shot ImageNet train list", ("val_meta.list",)),
        "final": ("the K-shot ImageNet train list", tuple(TARGETS)),
    },
)
def layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    imagenet, classes = root / "imagenet", ClassOrder(root / "imagenet", num_classes)
    train = train_source(imagenet, option(options, "shots", 16), option(options, "split_seed", 0), num_classes)
    targets = {
        name: Source(
            name,
            root / folder / sub,
            partial(folder_items, ImageDir(root / folder), sub, partial(label_of, classes)),
            ImageDir(root / folder),
            subset=subset,
        )
        for name, (folder, sub, label_of, subset) in TARGETS.items()
    }
    evals = {"tune": {"val": meta_source(imagenet, "val", "val_meta.list", num_classes)}, "final": targets}
    return Layout((train,), for_phase(evals, phase))
