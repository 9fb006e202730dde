"""Each image decoded once per data set, not once per epoch: resized uint8 pixels in a file under results/cache.

A split whose standard transform starts with a deterministic resize (`transforms.CachePlan`: VTAB-1k's square
resize; the few-shot, FGVC and ImageNet suites' short-side resize) is decoded and resized once into
`results/cache/<name>-<key>.u8` (uint8 HWC images back to back, with a `.idx.npy` of their shapes; VTAB-1k's 1,000
training images at 224 px are 150 MB). The key hashes the image paths with their sizes and modification times,
the resize recipe and the cache format, so a changed file or list builds a new cache, never a stale one (images
read from an HDF5 pack are keyed by the pack's size and time). Later epochs and runs read the file back (into memory
up to `IN_MEMORY` bytes, else memory-mapped); an item is the stored uint8 CHW tensor after the plan's tensor stage
(random crop and flip for training, centre crop for evaluation). `Normalise` turns a batch into the backbone's
normalised floats on the device, with the same arithmetic as torchvision's ToTensor + Normalize, so cached and
decoded inputs are equal.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pacebench.data.images import ImageDir, Item, load_image
from pacebench.errors import DataError

FORMAT = "u8-ragged-v2"  # bump when the stored form changes: old caches are then never read
IN_MEMORY = 4 << 30  # larger caches stay memory-mapped


def _stat(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        raise DataError(f"cannot read image {path}: no such file; restore it or remove it from its split list"
                        ) from None
    return f"{st.st_size}\0{st.st_mtime_ns}"


def cache_key(items: list[Item], recipe: str, images: ImageDir | None = None) -> str:
    packed = images is not None and images.packed
    pack = _stat(images.pack) if images is not None and packed else ""
    digest = hashlib.sha256(f"{FORMAT}:{recipe}:{pack}".encode())
    for path, label in items:
        digest.update(f"{path}\0{label}\0{'' if packed else _stat(path)}\n".encode())
    return digest.hexdigest()[:20]


class CachedImages(Dataset):
    """(uint8 CHW image, label) pairs of `items` after `resize` (cached) and `ops` (per fetch)."""

    in_memory = True  # no loader workers needed: an item is a slice of one buffer

    def __init__(self, items: list[Item], recipe: str, resize: Callable, ops: Callable, cache_dir: Path,
                 name: str = "split", images: ImageDir | None = None, threads: int = 4) -> None:
        self.labels = [label for _, label in items]
        self.ops, self.images = ops, images
        self.path = cache_dir / f"{name}-{cache_key(items, recipe, images)}.u8"
        self.index_path = self.path.with_suffix(".idx.npy")
        self.decode_seconds = 0.0
        if not (self.path.is_file() and self.index_path.is_file()):
            self.decode_seconds = self._build(items, resize, threads)
        self.shapes = np.load(self.index_path)  # [n, 3]: height, width, channels
        sizes = self.shapes.prod(axis=1)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = int(self.offsets[-1])
        self.pixels = (torch.from_numpy(np.fromfile(self.path, dtype=np.uint8, count=total)) if total <= IN_MEMORY
                       else np.memmap(self.path, dtype=np.uint8, mode="r", shape=(max(total, 1),)))
        self.stack: Tensor | None = None  # one shape for all (VTAB's square): [n, C, H, W], an item is a view
        if isinstance(self.pixels, Tensor) and len(self.shapes) and (self.shapes == self.shapes[0]).all():
            h, w, c = (int(v) for v in self.shapes[0])
            self.stack = self.pixels.view(len(self.shapes), h, w, c).permute(0, 3, 1, 2).contiguous()

    def _build(self, items: list[Item], resize: Callable, threads: int) -> float:
        start = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max(1, threads)) as pool:  # Pillow decodes and resizes without the GIL
            arrays = list(pool.map(lambda item: np.asarray(resize(load_image(item[0], self.images)), dtype=np.uint8),
                                   items))
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            for a in arrays:
                f.write(np.ascontiguousarray(a).tobytes())
        shapes = np.array([a.shape for a in arrays], dtype=np.int64).reshape(-1, 3)
        index_tmp = self.index_path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(index_tmp, shapes)
        os.replace(index_tmp, self.index_path)
        os.replace(tmp, self.path)  # the data file last: a killed build leaves no cache that looks complete
        return time.perf_counter() - start

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if self.stack is not None:
            return self.ops(self.stack[i]), self.labels[i]
        h, w, c = (int(v) for v in self.shapes[i])
        flat = self.pixels[self.offsets[i]:self.offsets[i + 1]]
        image = (flat if isinstance(flat, Tensor) else torch.from_numpy(np.array(flat))).view(h, w, c)
        return self.ops(image.permute(2, 0, 1)), self.labels[i]


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
