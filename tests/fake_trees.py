"""Tiny fake data trees in the real on-disk layouts of every reader, and suite files pointing at them.

Images are 8..20 px JPEG and PNG files in the modes real benchmark folders contain (RGB, L, P, P with transparency,
RGBA, 16-bit, CMYK). The VTAB lists have the protocol's exact sizes (800 / 200 / 1000) but reuse a handful of files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("rgb", "gray", "palette", "palette_alpha", "rgba", "gray16", "cmyk")
SUFFIX = {
    "rgb": ".jpg",
    "gray": ".jpg",
    "palette": ".png",
    "palette_alpha": ".png",
    "rgba": ".png",
    "gray16": ".png",
    "cmyk": ".jpg",
}
VTAB_SIZES = {"train800": 800, "val200": 200, "train800val200": 1000, "test": 30}
WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475")
A_WNIDS, R_WNIDS = ("n01443537", "n01491361"), ("n01440764", "n01484850", "n01494475")


def make_image(path: Path, kind: str, size: int = 12) -> Path:
    """Writes one tiny image of the given kind (see KINDS); its pixels vary so that decoding errors would show."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, size * size).reshape(size, size).astype(np.uint8)
    rgb = np.stack([ramp, ramp.T, 255 - ramp], axis=-1)
    image = {
        "rgb": lambda: Image.fromarray(rgb, "RGB"),
        "gray": lambda: Image.fromarray(ramp, "L"),
        "palette": lambda: Image.fromarray(rgb, "RGB").quantize(8),
        "palette_alpha": lambda: _palette_with_transparency(rgb),
        "rgba": lambda: Image.fromarray(np.dstack([rgb, ramp]), "RGBA"),
        "gray16": lambda: Image.fromarray(ramp.astype(np.uint16) * 257),  # mode I;16, full 16-bit range
        "cmyk": lambda: Image.fromarray(rgb, "RGB").convert("CMYK"),
    }[kind]()
    image.save(path)
    return path


def _palette_with_transparency(rgb: np.ndarray) -> Image.Image:
    image = Image.fromarray(rgb, "RGB").quantize(8)
    image.info["transparency"] = 0
    return image


def _images(folder: Path, names: list[str]) -> list[str]:
    """Writes one image per name, cycling through the kinds and sizes 8..20; returns the file names."""
    files = []
    for i, name in enumerate(names):
        kind = KINDS[i % len(KINDS)]
        files.append(make_image(folder / f"{name}{SUFFIX[kind]}", kind, 8 + (i * 3) % 13).name)
    return files


def _write_list(path: Path, lines: list[tuple[str, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{rel} {label}\n" for rel, label in lines))
    return path


def make_vtab(root: Path, classes: int = 3, sizes: dict[str, int] | None = None) -> Path:
    """`root/{train800,val200,train800val200,test}.txt` with `sizes` lines each, cycling over 7 train and 7 test
    images; label of line i is i % classes."""
    sizes = {**VTAB_SIZES, **(sizes or {})}
    files = {
        split: _images(root / "images" / split, [f"{split}{i}" for i in range(len(KINDS))])
        for split in ("train", "test")
    }
    for stem, n in sizes.items():
        split = "test" if stem == "test" else "train"
        _write_list(
            root / f"{stem}.txt",
            [(f"images/{split}/{files[split][i % len(files[split])]}", i % classes) for i in range(n)],
        )
    return root


def make_fewshot(
    root: Path,
    classes: int = 3,
    shots: tuple[int, ...] = (1, 2),
    seeds: tuple[int, ...] = (0, 1),
    val: int = 1,
    test: int = 2,
) -> Path:
    """`root/images/c<k>/*` plus the annotations lists: K images per class in each K-shot list, `val` and `test`
    per class in val_meta.list and test_meta.list."""
    per_class = max(shots) + val + test
    names = {c: _images(root / "images" / f"c{c}", [f"img{i}" for i in range(per_class)]) for c in range(classes)}
    ann = root / "annotations"
    for k in shots:
        for seed in seeds:
            picks = [(f"c{c}/{names[c][(seed + i) % max(shots)]}", c) for c in range(classes) for i in range(k)]
            _write_list(ann / f"train_meta.list.num_shot_{k}.seed_{seed}", picks)
    first = max(shots)
    _write_list(ann / "val_meta.list", [(f"c{c}/{names[c][first + i]}", c) for c in range(classes) for i in range(val)])
    _write_list(
        ann / "test_meta.list", [(f"c{c}/{names[c][first + val + i]}", c) for c in range(classes) for i in range(test)]
    )
    return root


def make_fgvc(root: Path, classes: int = 3, image_dir: str = "images", sizes: tuple[int, int, int] = (3, 1, 2)) -> Path:
    """`root/{train,val,test}.json` mapping `<class>/<file>` (relative to `root/image_dir`) to labels; `sizes` are
    images per class in train, val and test."""
    splits = dict(zip(("train", "val", "test"), sizes, strict=True))
    for split, n in splits.items():
        mapping = {}
        for c in range(classes):
            for name in _images(root / image_dir / f"{c:03d}.class", [f"{split}{i}" for i in range(n)]):
                mapping[f"{c:03d}.class/{name}"] = c
        (root / f"{split}.json").write_text(json.dumps(mapping))
    return root


def make_domain(root: Path, shots: int = 16, seed: int = 0) -> Path:
    """The domain-adaptation suite folder with len(WNIDS) classes: imagenet/ (train, val, few-shot lists) and the
    four target folders; -A and -R hold only A_WNIDS and R_WNIDS. The train list holds 2 train images per class,
    val_meta.list a third one (held out from train, so that phase "tune" reads no target image)."""
    imagenet = root / "imagenet" / "images"
    counts = {"train": 3, "val": 2}
    files = {
        (split, wnid): _images(imagenet / split / wnid, [f"{wnid}_{split}{i}" for i in range(n)])
        for split, n in counts.items()
        for wnid in WNIDS
    }
    ann = root / "imagenet" / "annotations"
    for stem, picks in ((f"train_meta.list.num_shot_{shots}.seed_{seed}", slice(0, 2)), ("val_meta.list", slice(2, 3))):
        _write_list(
            ann / stem,
            [(f"train/{wnid}/{name}", c) for c, wnid in enumerate(WNIDS) for name in files["train", wnid][picks]],
        )
    folders = {
        "imagenet-sketch": WNIDS,
        "imagenet-a": A_WNIDS,
        "imagenet-r": R_WNIDS,
        "imagenetv2": tuple(str(i) for i in range(len(WNIDS))),
    }
    for folder, classes in folders.items():
        for name in classes:
            _images(root / folder / name, [f"{folder}_{name}_{i}" for i in range(2)])
    return root


SUITES = {
    "vtab": ('reader = "vtab"\ndata_dir = "vtab-1k"\n', "[datasets.cifar]\nclasses = 3\n"),
    "fewshot": (
        'reader = "fewshot"\ndata_dir = "few-shot"\n',
        '[datasets.flowers]\nclasses = 3\nfolder = "oxford-flowers102"\n'
        "options = { shots = [1, 2], split_seed = [0, 1] }\n",
    ),
    "fgvc": (
        'reader = "fgvc"\ndata_dir = "fgvc"\n',
        '[datasets.cub]\nclasses = 3\nfolder = "CUB_200_2011"\ndata = { image_dir = "images" }\n'
        '[datasets.dogs]\nclasses = 3\nfolder = "Stanford-dogs"\ndata = { image_dir = "Images" }\n',
    ),
    "domain": (
        'reader = "imagenet"\ndata_dir = "domain"\n',
        f'[datasets.imagenet]\nclasses = {len(WNIDS)}\nfolder = "."\noptions = {{ shots = [16], split_seed = [0] }}\n',
    ),
}


def write_suites(folder: Path) -> Path:
    """One small suite file per reader, named like the paper's suites; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (head, datasets) in SUITES.items():
        (folder / f"{name}.toml").write_text(
            f'name = "{name}"\ndescription = "fake {name}"\n{head}backbone = "vit_tiny"\n\n{datasets}'
        )
    return folder


def make_all(data_root: Path) -> Path:
    """A good data root for the suites of `write_suites`."""
    make_vtab(data_root / "vtab-1k" / "cifar")
    make_fewshot(data_root / "few-shot" / "oxford-flowers102")
    make_fgvc(data_root / "fgvc" / "CUB_200_2011")
    make_fgvc(data_root / "fgvc" / "Stanford-dogs", image_dir="Images")
    make_domain(data_root / "domain")
    return data_root
