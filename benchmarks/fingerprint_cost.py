"""What a data set's first fingerprint costs (every list and image read and hashed once), and what a later plan pays
(the memo: one stat per file), on a generated VTAB-1k-shaped folder of JPEGs.

    python benchmarks/fingerprint_cost.py [--images 20000] [--size 224]

Numbers (2-core dev box, no GPU, page cache warm after the images were written): benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pacebench.data.fingerprint import dataset_fingerprint
from pacebench.plan.suites import load_suite


def make_tree(root: Path, images: int, size: int) -> int:
    """A VTAB-1k layout (train800, val200, train800val200, test) whose test list holds the rest of `images`."""
    rng = np.random.default_rng(0)
    folder = root / "vtab-1k" / "cifar" / "images"
    folder.mkdir(parents=True)
    names = []
    for i in range(images):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        name = f"{i:06d}.jpg"
        Image.fromarray(pixels).save(folder / name, quality=90)
        names.append(f"images/{name} {i % 100}\n")
    base = root / "vtab-1k" / "cifar"
    (base / "train800.txt").write_text("".join(names[:800]))
    (base / "val200.txt").write_text("".join(names[800:1000]))
    (base / "train800val200.txt").write_text("".join(names[:1000]))
    (base / "test.txt").write_text("".join(names[1000:]))
    return sum(p.stat().st_size for p in folder.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    suite = load_suite("vtab")
    ds = suite.dataset("cifar")
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "data", Path(tmp) / "cache"
        total = make_tree(root, args.images, args.size)
        start = time.perf_counter()
        first = dataset_fingerprint(suite, ds, root, cache)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        assert dataset_fingerprint(suite, ds, root, cache) == first
        memo = time.perf_counter() - start
    print(
        f"{args.images} JPEGs of {args.size} px, {total / 1e6:.0f} MB: first fingerprint {cold:.2f} s "
        f"({total / 1e6 / cold:.0f} MB/s, {args.images / cold:.0f} images/s); from the memo {memo:.2f} s"
    )


if __name__ == "__main__":
    main()
