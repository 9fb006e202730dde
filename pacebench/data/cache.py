"""Each image decoded once per data set, not once per epoch: resized uint8 pixels in a file under results/cache.

A split whose transform is a fixed resize (VTAB-1k: bicubic to size x size, no augmentation) is decoded and
resized once into `results/cache/<name>-<key>.u8` ([n, size, size, 3] uint8, written through a memory map:
VTAB-1k's 1,000 training images at 224 px are 150 MB), which later runs read back whole. The key hashes the image
paths with their sizes and modification times, the image size and the resize recipe, so a changed file or list
builds a new cache, never a stale one (images read from an HDF5 pack are keyed by the pack's size and time). Items
come out as uint8 CHW tensors; `Normalise` turns a batch into the backbone's normalised floats on the device, with
the same arithmetic as torchvision's ToTensor + Normalize, so cached and decoded inputs are equal.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pacebench.data.images import ImageDir, Item, load_rgb
from pacebench.data.transforms import square_resize
from pacebench.errors import DataError

RECIPE = "square-bicubic-v1"  # bump when the decode or resize changes: old caches are then never read


def _stat(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        raise DataError(f"cannot read image {path}: no such file; restore it or remove it from its split list"
                        ) from None
    return f"{st.st_size}\0{st.st_mtime_ns}"


def cache_key(items: list[Item], size: int, images: ImageDir | None = None) -> str:
    packed = images is not None and images.packed
    digest = hashlib.sha256(f"{RECIPE}:{size}:{_stat(images.pack) if packed else ''}".encode())  # type: ignore[union-attr]
    for path, label in items:
        digest.update(f"{path}\0{label}\0{'' if packed else _stat(path)}\n".encode())
    return digest.hexdigest()[:20]


class CachedImages(Dataset):
    """(uint8 CHW image, label) pairs of `items`, resized to size x size; the file is built on first use."""

    in_memory = True  # no loader workers needed: an item is a view of one tensor

    def __init__(self, items: list[Item], size: int, cache_dir: Path, name: str = "split",
                 images: ImageDir | None = None, threads: int = 4) -> None:
        self.labels = [label for _, label in items]
        self.size, self.images = size, images
        self.path = cache_dir / f"{name}-{cache_key(items, size, images)}.u8"
        self.decode_seconds = 0.0
        if not self.path.is_file():
            self.decode_seconds = self._build(items, threads)
        # In memory as one CHW tensor (VTAB-1k's training set: 150 MB at 224 px): an item is a view, no copy.
        pixels = np.fromfile(self.path, dtype=np.uint8)[: len(items) * size * size * 3]
        self.pixels = torch.from_numpy(pixels).view(len(items), size, size, 3).permute(0, 3, 1, 2).contiguous()

    def _build(self, items: list[Item], threads: int) -> float:
        start = time.perf_counter()
        resize = square_resize(self.size)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(max(len(items), 1), self.size, self.size, 3))

        def one(i: int, out: np.memmap = out) -> None:
            path = items[i][0]
            out[i] = np.asarray(resize(self.images.load(path) if self.images else load_rgb(path)), dtype=np.uint8)

        with ThreadPoolExecutor(max(1, threads)) as pool:  # Pillow decodes and resizes without the GIL
            list(pool.map(one, range(len(items))))
        out.flush()
        os.replace(tmp, self.path)  # atomic: a killed build leaves no half-written cache behind
        return time.perf_counter() - start

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.pixels[i], self.labels[i]


class Normalise:
    """uint8 images (any device) -> floats normalised with the backbone's mean/std, as ToTensor + Normalize compute
    them; float inputs (already normalised by a transform) pass through."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean, self.std = mean, std
        self._on: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __call__(self, x: Tensor) -> Tensor:
        if x.dtype != torch.uint8:
            return x
        if x.device not in self._on:  # copied to the device once, not every step (a host-to-device copy waits)
            self._on[x.device] = (torch.tensor(self.mean, device=x.device).view(-1, 1, 1),
                                  torch.tensor(self.std, device=x.device).view(-1, 1, 1))
        mean, std = self._on[x.device]
        return x.float().div(255).sub(mean).div(std)
