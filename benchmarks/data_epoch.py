"""One training epoch fed from image files against the same epoch on synthetic tensors (CPU or GPU).

    python benchmarks/data_epoch.py --images 512 --source-px 256 --image-size 32 --arch test_vit --patch-size 4

Writes `--images` JPEG files (`--source-px` square, like VTAB's downscaled originals) in a VTAB-1k list layout under
a temporary folder, then times, with the trainer's own loader and step: the first epoch that builds the decoded-image
cache (decode cost included), a cached epoch (batches built on the device, `data.cache.DeviceBatches`), an epoch
decoding every file (no cache, `--workers` processes), and an epoch over synthetic batches already on the device (a
different one each step). Each timed epoch is the median of `--repeats`; the cached data path alone (no training) is
timed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from pacebench.core.backbones import IMAGENET_MEAN, IMAGENET_STD
from pacebench.core.methods import SetupInfo
from pacebench.core.prepare import attach
from pacebench.data import READERS, DataRequest
from pacebench.data.cache import Normalise
from pacebench.training.image import loader
from pacebench.training.loop import Environment, make_optimizer


def write_tree(root: Path, n: int, px: int, classes: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images" / "train").mkdir(parents=True)
    lines = []
    for i in range(n):
        name = f"images/train/{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (px, px, 3), dtype=np.uint8)).save(root / name, quality=90)
        lines.append(f"{name} {i % classes}\n")
    for stem in ("train800val200", "train800", "val200", "test"):
        (root / f"{stem}.txt").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--source-px", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--arch", default="test_vit")
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--method", default="baseline")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    classes = 10
    model = timm.create_model(
        args.arch,
        pretrained=False,
        num_classes=classes,
        img_size=args.image_size,
        patch_size=args.patch_size,
        drop_path_rate=0.1,
    )
    ready = attach(model, args.method, SetupInfo(args.images, classes), device=device)
    optimizer = make_optimizer(ready.params, 1e-3, 1e-4, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    normalise = Normalise(IMAGENET_MEAN, IMAGENET_STD)  # what DataRequest's defaults normalise decoded images with

    def epoch(batches) -> float:
        sync()
        start = time.perf_counter()
        for x, y, idx in batches:
            batch = (
                normalise(x.to(device, non_blocking=True)),
                y.to(device, non_blocking=True),
                idx.to(device, non_blocking=True),
            )
            ready.method.step(ready.model, batch, optimizer, ready.params)
        sync()
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_tree(root, args.images, args.source_px, classes)
        env = Environment(device=device, data_root=root, num_workers=args.workers)
        generator = torch.Generator().manual_seed(0)

        def splits(cache: bool):
            request = DataRequest(
                root,
                "synthetic",
                "final",
                classes,
                image_size=args.image_size,
                cache_dir=Path(tmp) / "cache" if cache else None,
            )
            return READERS.get("vtab")(request).train

        start = time.perf_counter()
        cached = splits(cache=True)
        first = time.perf_counter() - start + epoch(loader(cached, args.batch, env, True, generator))
        decode = cached.base.decode_seconds
        steps = len(cached) // args.batch
        # a different batch every step, already on the device, as normalised floats: what a free data path would give
        synthetic = [
            (
                torch.randn(args.batch, 3, args.image_size, args.image_size, device=device),
                torch.randint(0, classes, (args.batch,), device=device),
                torch.arange(args.batch, device=device),
            )
            for _ in range(steps)
        ]
        times: dict[str, list[float]] = {"cached": [], "decoded": [], "synthetic": [], "loader": []}
        for _ in range(args.repeats):  # interleaved, so a busy machine slows all three alike
            times["cached"].append(epoch(loader(cached, args.batch, env, True, generator)))
            times["decoded"].append(epoch(loader(splits(cache=False), args.batch, env, True, generator)))
            times["synthetic"].append(epoch(synthetic))
            sync()
            start = time.perf_counter()
            for x, _, _ in loader(cached, args.batch, env, True, generator):  # the cached data path alone
                normalise(x)
            sync()
            times["loader"].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.arch} {args.image_size}px patch {args.patch_size}, {args.method}, {args.images} images of "
        f"{args.source_px}px JPEG, batch {args.batch}, {steps} steps/epoch, {args.device}, {args.threads} thread(s),"
        f" median of {args.repeats} interleaved epochs"
    )
    print("| epoch | seconds | vs synthetic |\n|---|---:|---:|")
    print(f"| first (builds the cache; decode {decode:.2f} s) | {first:.2f} | {first / med['synthetic']:.2f} |")
    for name in ("cached", "decoded", "synthetic"):
        print(f"| {name} | {med[name]:.2f} | {med[name] / med['synthetic']:.2f} |")
    print(f"cached data path alone (batches built and normalised, no training): {med['loader'] * 1e3:.1f} ms per epoch")


if __name__ == "__main__":
    main()
