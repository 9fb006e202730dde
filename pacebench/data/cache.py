"""Each image decoded once per data set, not once per epoch: resized uint8 pixels in a file under results/cache.

A split whose standard transform starts with a deterministic resize (`transforms.CachePlan`: VTAB-1k's square
resize; the few-shot, FGVC and ImageNet suites' short-side resize) is decoded and resized once into
`results/cache/<name>-<key>.u8` (uint8 HWC images back to back, with a `.idx.npy` of their shapes; VTAB-1k's 1,000
training images at 224 px are 150 MB). The key hashes the image paths with their sizes and modification times,
the resize recipe and the cache format, so a changed file or list builds a new cache, never a stale one (images
read from an HDF5 pack are keyed by the pack's size and time). A checksum of the bytes written is kept beside them
and checked whenever the cache is read: a truncated or overwritten file is rebuilt (and the run says so), never
trained on. Later epochs and runs read the file back (into memory
up to `IN_MEMORY` bytes, else memory-mapped). `DeviceBatches` copies a split to the training device once and builds
every batch there (gather, crop, flip); fetching an item instead gives the stored uint8 CHW tensor after the plan's
tensor stage (random crop and flip for training, centre crop for evaluation), and both draw the same random
numbers. `Normalise` turns a batch into the backbone's normalised floats on the device, with the same arithmetic as
torchvision's ToTensor + Normalize, so cached and decoded inputs are equal.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision.transforms import RandomCrop

from pacebench.data.images import ImageDir, Indexed, Item, load_image
from pacebench.data.transforms import CachePlan
from pacebench.errors import DataError

FORMAT = "u8-ragged-v3"  # bump when the stored form changes: old caches are then never read (v3: checksum)
IN_MEMORY = 4 << 30  # larger caches stay memory-mapped
log = logging.getLogger(__name__)


def _stat(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        raise DataError(
            f"cannot read image {path}: no such file; restore it or remove it from its split list"
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
    """(uint8 CHW image, label) pairs of `items` after `plan.resize` (cached) and `plan.ops(train)` (per fetch)."""

    in_memory = True  # no loader workers needed: an item is a slice of one buffer

    def __init__(
        self,
        items: list[Item],
        plan: CachePlan,
        train: bool,
        cache_dir: Path,
        name: str = "split",
        images: ImageDir | None = None,
        threads: int | None = None,
    ) -> None:
        self.labels = [label for _, label in items]
        self.crop, self.train, self.images = plan.crop, train, images
        self.ops = plan.ops(train)
        self.path = cache_dir / f"{name}-{cache_key(items, plan.recipe, images)}.u8"
        self.index_path = self.path.with_suffix(".idx.npy")
        self.sum_path = self.path.with_suffix(".sum")
        self.decode_seconds = 0.0
        self.rebuilt: str | None = None  # why a cache on disk was refused and built again
        if not (self.path.is_file() and self.index_path.is_file() and self.sum_path.is_file()):
            self.decode_seconds = self._build(items, plan.resize, threads)
        loaded = self._load(len(items))
        if isinstance(loaded, str):  # the files do not hold what they claim: never train on them
            self.rebuilt = f"image cache {self.path} failed its check ({loaded}); rebuilt it"
            log.warning(self.rebuilt)
            self.decode_seconds = self._build(items, plan.resize, threads)
            loaded = self._load(len(items))
            if isinstance(loaded, str):
                raise DataError(
                    f"image cache {self.path} fails its check right after being built ({loaded}); "
                    f"check the disk, then delete {self.path.parent}"
                )
        self.shapes, self.offsets, self.pixels = loaded
        self.resident: dict[torch.device, Tensor | list[Tensor]] = {}  # DeviceBatches' copies, per device
        self.stack: Tensor | None = None  # one shape for all (VTAB's square): [n, C, H, W], an item is a view
        if isinstance(self.pixels, Tensor) and len(self.shapes) and (self.shapes == self.shapes[0]).all():
            h, w, c = (int(v) for v in self.shapes[0])
            self.stack = self.pixels.view(len(self.shapes), h, w, c).permute(0, 3, 1, 2).contiguous()

    def _build(self, items: list[Item], resize: Callable, threads: int | None) -> float:
        start = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        threads = threads or min(32, os.cpu_count() or 4)  # Pillow decodes and resizes without the GIL
        with ThreadPoolExecutor(max(1, threads)) as pool:
            arrays = list(
                pool.map(lambda item: np.asarray(resize(load_image(item[0], self.images)), dtype=np.uint8), items)
            )
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        digest = hashlib.blake2b(digest_size=16)
        with open(tmp, "wb") as f:
            for a in arrays:
                data = np.ascontiguousarray(a).tobytes()
                digest.update(data)
                f.write(data)
        shapes = np.array([a.shape for a in arrays], dtype=np.int64).reshape(-1, 3)
        index_tmp = self.index_path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(index_tmp, shapes)
        sum_tmp = self.sum_path.with_name(f"{self.sum_path.name}.tmp{os.getpid()}")
        sum_tmp.write_text(digest.hexdigest() + "\n")
        os.replace(index_tmp, self.index_path)
        os.replace(sum_tmp, self.sum_path)
        os.replace(tmp, self.path)  # the data file last: a killed build leaves no cache that looks complete
        return time.perf_counter() - start

    def _load(self, count: int) -> tuple[np.ndarray, np.ndarray, Tensor | np.ndarray] | str:
        """(shapes, offsets, pixels) read back and checked against the checksum written with them, or what is
        wrong: a truncated file (a full disk, an interrupted copy), other bytes than were written, a damaged
        index. Checking costs one pass over the bytes (about 0.2 s for VTAB's 150 MB training split)."""
        try:
            shapes = np.load(self.index_path)  # [n, 3]: height, width, channels
            expected = self.sum_path.read_text().strip()
        except (OSError, ValueError) as exc:
            return f"unreadable index or checksum: {type(exc).__name__}"
        if shapes.ndim != 2 or shapes.shape != (count, 3) or (shapes < 0).any():
            return f"index of {len(shapes)} images for {count}"
        offsets = np.concatenate([[0], np.cumsum(shapes.prod(axis=1))]).astype(np.int64)
        total = int(offsets[-1])
        size = self.path.stat().st_size if self.path.is_file() else -1
        if size != total:
            return f"{size} bytes where {total} were written"
        pixels = (
            torch.from_numpy(np.fromfile(self.path, dtype=np.uint8, count=total))
            if total <= IN_MEMORY
            else np.memmap(self.path, dtype=np.uint8, mode="r", shape=(max(total, 1),))
        )
        digest = hashlib.blake2b(digest_size=16)
        view = pixels.numpy() if isinstance(pixels, Tensor) else pixels
        for start in range(0, total, 1 << 26):  # in 64 MB pieces: a memory-mapped cache is never read whole
            digest.update(view[start : start + (1 << 26)].data)  # the slice's bytes, as a memoryview
        if digest.hexdigest() != expected:
            return "its bytes are not those written"
        return shapes, offsets, pixels

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int, pixels: Tensor | None = None) -> Tensor:
        """Stored image i as a uint8 CHW tensor (a view of `pixels`, the buffer or its copy on a device)."""
        if pixels is None and self.stack is not None:
            return self.stack[i]
        h, w, c = (int(v) for v in self.shapes[i])
        flat = (self.pixels if pixels is None else pixels)[self.offsets[i] : self.offsets[i + 1]]
        return (flat if isinstance(flat, Tensor) else torch.from_numpy(np.array(flat))).view(h, w, c).permute(2, 0, 1)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.ops(self.image(i)), self.labels[i]


DEVICE_SHARE = 0.5  # of a GPU's free memory that one split's images may take; beyond it batches are built on the host


class DeviceBatches:
    """A DataLoader `collate_fn` that builds each batch from the cache on the training device: loader positions in,
    (uint8 images, labels, indices) out, all on the device. The images are copied there once (VTAB-1k's training
    split at 224 px is 150 MB); a batch is then one gather (whole images, or the centre crops cut once), or for
    training with a crop one stacked slice per image and one batched flip. The crop offsets and flips come from
    torchvision's own `RandomCrop.get_params` and the same `torch.rand(1) < 0.5` as `RandomHorizontalFlip`, drawn
    per image in batch order from the global generator, exactly as fetching items one by one draws them: a run
    gets the same batches either way (tested)."""

    def __init__(self, images: CachedImages, device: torch.device, indices: list[int] | None = None) -> None:
        self.device, self.indices, self.crop = device, indices, images.crop
        self.labels = torch.tensor(images.labels, device=device)
        self.random = images.train and images.crop is not None
        if device not in images.resident:  # once per split and device (the diagnostics' subset shares it)
            images.resident[device] = _resident(images, device, self.random)
        self.resident = images.resident[device]

    def __call__(self, positions: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        rows = positions if self.indices is None else [self.indices[p] for p in positions]
        idx = torch.tensor(rows).to(self.device, non_blocking=True)
        if isinstance(self.resident, Tensor):
            return self.resident.index_select(0, idx), self.labels[idx], idx
        crops, flips = [], []
        size = (self.crop, self.crop)
        for r in rows:
            image = self.resident[r]
            top, left, h, w = RandomCrop.get_params(image, size)  # type: ignore[arg-type]
            crops.append(image[:, top : top + h, left : left + w])
            flips.append(bool(torch.rand(1) < 0.5))
        x = torch.stack(crops)
        flip = torch.tensor(flips).to(self.device, non_blocking=True).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(-1), x), self.labels[idx], idx


def _resident(images: CachedImages, device: torch.device, random: bool) -> Tensor | list[Tensor]:
    """The split's images on `device`: every stored image as it is (views of one buffer) where crops are random,
    else what every fetch would give, cut once into one [n, C, H, W] tensor (whole images or centre crops)."""
    if random:
        pixels = images.pixels.to(device)  # type: ignore[union-attr]
        return [images.image(i, pixels) for i in range(len(images))]
    stack = images.stack if images.crop is None else None
    if stack is None:
        stack = torch.stack([images.ops(images.image(i)) for i in range(len(images))])
    return stack.to(device)


def device_batches(dataset: Dataset, device: torch.device) -> DeviceBatches | None:
    """The batch builder for `dataset` (a split of cached images, or a Subset of one) on `device`; None for any other
    data set, a cache too large for memory (memory-mapped) or for the GPU's free memory (`DEVICE_SHARE`)."""
    indices: list[int] | None = None
    if isinstance(dataset, Subset):
        indices = list(dataset.indices)
        dataset = dataset.dataset
    images = dataset.base if isinstance(dataset, Indexed) else None
    if not isinstance(images, CachedImages) or not isinstance(images.pixels, Tensor) or not len(images):
        return None
    if device.type == "cuda" and images.pixels.numel() > DEVICE_SHARE * torch.cuda.mem_get_info(device)[0]:
        return None
    return DeviceBatches(images, device, indices)


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
            self._on[x.device] = (
                torch.tensor(self.mean, device=x.device).view(-1, 1, 1),
                torch.tensor(self.std, device=x.device).view(-1, 1, 1),
            )
        mean, std = self._on[x.device]
        return x.float().div(255).sub(mean).div(std)
