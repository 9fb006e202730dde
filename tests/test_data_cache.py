"""The decoded-image cache: the same normalised inputs as decoding every time, built once, rebuilt when a file
changes, and the training loop's normalisation on the device."""

from __future__ import annotations

import os

import torch
from fake_trees import make_vtab

from pacebench.data import READERS, DataRequest
from pacebench.data.cache import CachedImages, normalise

SIZE = 24


def read(root, cache_dir=None, phase="final"):
    return READERS.get("vtab")(DataRequest(root, "cifar", phase, 3, image_size=SIZE, cache_dir=cache_dir))


def test_cached_splits_equal_decoded_splits(tmp_path):
    root = make_vtab(tmp_path / "cifar", sizes={"train800val200": 9, "test": 5})
    plain, cached = read(root), read(root, tmp_path / "cache")
    assert isinstance(cached.train.base, CachedImages) and len(cached.train) == len(plain.train) == 9
    for a, b in ((plain.train, cached.train), (plain.evals["test"], cached.evals["test"])):
        for i in range(len(a)):
            x, y, idx = a[i]
            u8, y2, idx2 = b[i]
            assert u8.dtype == torch.uint8 and u8.shape == (3, SIZE, SIZE) and (y, idx) == (y2, idx2)
            assert torch.equal(normalise(u8[None])[0], x), "same arithmetic as ToTensor + Normalize"


def test_cache_is_built_once_and_rebuilt_when_a_file_changes(tmp_path):
    root = make_vtab(tmp_path / "cifar", sizes={"train800val200": 4, "test": 2})
    first = read(root, tmp_path / "cache").train.base
    again = read(root, tmp_path / "cache").train.base
    assert first.decode_seconds > 0 and again.decode_seconds == 0 and again.path == first.path
    image = next((root / "images" / "train").iterdir())
    os.utime(image, ns=(1, 1))  # the same bytes, another modification time: the key must change
    changed = read(root, tmp_path / "cache").train.base
    assert changed.path != first.path and changed.decode_seconds > 0
    assert not list((tmp_path / "cache").glob("*.tmp*")), "no half-written cache left behind"


def test_normalise_passes_floats_through():
    x = torch.randn(2, 3, 4, 4)
    assert normalise(x) is x
