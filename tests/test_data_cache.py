"""The decoded-image cache: the same normalised inputs as decoding every time, built once, rebuilt when a file
changes, and the training loop's normalisation on the device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from fake_trees import make_fewshot, make_vtab

from pacebench.core.backbones import IMAGENET_MEAN, IMAGENET_STD
from pacebench.data import READERS, DataRequest
from pacebench.data.cache import CachedImages, DeviceBatches, Normalise, device_batches

SIZE = 24


CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def read(root, cache_dir=None, phase="final", stats=(IMAGENET_MEAN, IMAGENET_STD), augment="standard"):
    return READERS.get("vtab")(
        DataRequest(
            root, "cifar", phase, 3, image_size=SIZE, cache_dir=cache_dir, mean=stats[0], std=stats[1], augment=augment
        )
    )


@pytest.mark.parametrize("stats", [(IMAGENET_MEAN, IMAGENET_STD), CLIP], ids=["imagenet", "clip"])
def test_cached_splits_equal_decoded_splits(tmp_path, stats):
    root = make_vtab(tmp_path / "cifar", sizes={"train800val200": 9, "test": 5})
    plain, cached = read(root, stats=stats), read(root, tmp_path / "cache", stats=stats)
    normalise = Normalise(*stats)
    assert isinstance(cached.train.base, CachedImages) and len(cached.train) == len(plain.train) == 9
    for a, b in ((plain.train, cached.train), (plain.evals["test"], cached.evals["test"])):
        for i in range(len(a)):
            x, y, idx = a[i]
            u8, y2, idx2 = b[i]
            assert u8.dtype == torch.uint8 and u8.shape == (3, SIZE, SIZE) and (y, idx) == (y2, idx2)
            assert torch.equal(normalise(u8[None])[0], x), "same arithmetic as ToTensor + Normalize"


def test_cached_crop_suite_equals_decoded_under_the_same_seed(tmp_path):
    """Few-shot / FGVC / ImageNet: the short-side resize is cached, the random crop and flip run on the uint8
    tensor and draw the same random numbers as on the PIL image, so every item equals the decoded one."""
    make_fewshot(tmp_path / "fs")

    def fewshot(cache_dir=None):
        request = DataRequest(
            tmp_path / "fs",
            "flowers",
            "final",
            3,
            image_size=SIZE,
            cache_dir=cache_dir,
            options={"shots": 2, "split_seed": 0},
        )
        return READERS.get("fewshot")(request)

    plain, cached = fewshot(), fewshot(tmp_path / "cache")
    assert isinstance(cached.train.base, CachedImages) and len(cached.train) == len(plain.train) > 0
    normalise = Normalise(IMAGENET_MEAN, IMAGENET_STD)
    for split in ("train", "test"):
        a, b = (plain.train, cached.train) if split == "train" else (plain.evals["test"], cached.evals["test"])
        for i in range(len(a)):
            torch.manual_seed(i)
            x, y, _ = a[i]
            torch.manual_seed(i)
            u8, y2, _ = b[i]
            assert u8.shape == (3, SIZE, SIZE) and y == y2
            torch.testing.assert_close(normalise(u8[None])[0], x, rtol=0, atol=0)


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


@pytest.mark.parametrize("damage", ["truncated", "zero-filled", "index"])
def test_a_damaged_cache_is_rebuilt_and_says_so_never_trained_on(tmp_path, damage, caplog):
    """What a full disk or an interrupted copy leaves (a short file), or a file overwritten with zeros, is found by
    the cache's checksum: it is rebuilt from the images, and the reason is logged and kept in the run's facts."""
    root = make_vtab(tmp_path / "cifar", sizes={"train800val200": 4, "test": 2})
    good = read(root, tmp_path / "cache")
    expected = [good.train[i][0] for i in range(len(good.train))]
    path = good.train.base.path
    size = path.stat().st_size
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: size // 2])
    elif damage == "zero-filled":
        path.write_bytes(bytes(size))
    else:
        path.with_suffix(".idx.npy").write_bytes(b"not numpy")
    with caplog.at_level("WARNING", logger="pacebench.data.cache"):
        again = read(root, tmp_path / "cache").train
    assert again.base.rebuilt and "failed its check" in again.base.rebuilt and again.base.decode_seconds > 0
    assert any("failed its check" in r.message for r in caplog.records)
    assert all(torch.equal(again[i][0], expected[i]) for i in range(len(again)))
    assert read(root, tmp_path / "cache").train.base.rebuilt is None  # the rebuilt cache passes


def test_normalise_passes_floats_through_and_augmented_runs_decode(tmp_path):
    x = torch.randn(2, 3, 4, 4)
    assert Normalise(IMAGENET_MEAN, IMAGENET_STD)(x) is x
    root = make_vtab(tmp_path / "cifar", sizes={"train800val200": 4, "test": 2})
    strong = read(root, tmp_path / "cache", augment="strong")
    assert not isinstance(strong.train.base, CachedImages), "random augmentation needs the decoded image"


def test_training_from_the_cache_equals_training_from_decoded_files(tmp_path):
    """The trainer end to end on a VTAB tree: the same seed gives the same losses and accuracies either way."""
    import timm
    from safetensors.torch import save_file

    from pacebench.plan.spec import RunSpec, TrainConfig
    from pacebench.training import Environment, train_run

    make_vtab(tmp_path / "data" / "vtab-1k" / "cifar", classes=100, sizes={"test": 8})
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("test_vit", num_classes=0).state_dict(), str(weights))
    spec = RunSpec(
        suite="vtab",
        dataset="cifar",
        method="pace",
        seed=0,
        backbone="test_vit",
        train=TrainConfig(epochs=1, image_size=16, rank=2, precision="fp32"),
    )

    def run(cache_dir):
        epochs = []
        env = Environment(
            device=torch.device("cpu"), data_root=tmp_path / "data", weights=weights, num_workers=0, cache_dir=cache_dir
        )
        facts: dict = {}
        metrics = train_run(spec, env, lambda epoch, record: epochs.append(record), facts.update).metrics
        assert facts["image_cache"]["used"] == facts["image_cache"]["on_device"] == (cache_dir is not None)
        return metrics, [v for e in epochs for v in (e.loss, e.train_acc, e.grad_norm_mean)]

    cached, decoded = run(tmp_path / "cache"), run(None)
    assert list((tmp_path / "cache").glob("cifar-train-*.u8")) and list((tmp_path / "cache").glob("cifar-test-*.u8"))
    assert cached[1] == pytest.approx(decoded[1], rel=1e-5)
    assert cached[0]["test_acc"] == decoded[0]["test_acc"] and cached[0]["fp_distance"] == pytest.approx(
        decoded[0]["fp_distance"], rel=1e-5
    )


class ItemByItem(torch.utils.data.Dataset):
    """A split seen only through its items: the DataLoader fetches and collates them one by one."""

    in_memory = True

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i]


def batches(dataset, device_path: bool, seed: int = 0, train: bool = True, batch_size: int = 3):
    """Every batch of one epoch through the trainer's loader, built on the device or fetched item by item."""
    from pacebench.training.image import loader
    from pacebench.training.loop import Environment

    env = Environment(device=torch.device("cpu"), data_root=Path("."), num_workers=0)
    torch.manual_seed(seed)
    if not device_path:
        dataset = ItemByItem(dataset)
    data = loader(dataset, batch_size, env, train, torch.Generator().manual_seed(seed))
    assert isinstance(data.collate_fn, DeviceBatches) == device_path
    return [tuple(t.clone() for t in b) for b in data]


@pytest.mark.parametrize("suite", ["vtab", "fewshot"])
def test_device_batches_equal_item_by_item_batches_under_the_same_seed(tmp_path, suite):
    """The batch builder draws the crop offsets and flips exactly as fetching items does, so the same seed gives the
    same batches, order, labels and indices, for training (random crops) and evaluation (centre crops)."""
    if suite == "vtab":
        splits = read(make_vtab(tmp_path / "cifar", sizes={"train800val200": 8, "test": 5}), tmp_path / "cache")
    else:
        make_fewshot(tmp_path / "fs")
        splits = READERS.get("fewshot")(
            DataRequest(
                tmp_path / "fs",
                "flowers",
                "final",
                3,
                image_size=SIZE,
                cache_dir=tmp_path / "cache",
                options={"shots": 2, "split_seed": 0},
            )
        )
    for dataset, train in ((splits.train, True), (splits.evals["test"], False)):
        for seed in (0, 1):
            built, fetched = batches(dataset, True, seed, train), batches(dataset, False, seed, train)
            assert len(built) == len(fetched) > 0
            for a, b in zip(built, fetched, strict=True):
                assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    if suite == "fewshot":  # the random crop and flip really vary: two seeds give other pixels
        assert not all(
            torch.equal(a[0], b[0])
            for a, b in zip(batches(splits.train, True, 0), batches(splits.train, True, 1), strict=True)
        )


def test_device_batches_serve_a_subset_and_skip_what_is_not_in_memory(tmp_path, monkeypatch):
    import pacebench.data.cache as cache

    root = make_vtab(tmp_path / "cifar", sizes={"train800val200": 6, "test": 2})
    splits = read(root, tmp_path / "cache")
    subset = torch.utils.data.Subset(splits.train, [4, 1])
    built = device_batches(subset, torch.device("cpu"))
    x, y, idx = built([0, 1])
    assert (
        idx.tolist() == [4, 1]
        and torch.equal(x[0], splits.train[4][0])
        and y.tolist() == [splits.train[4][1], splits.train[1][1]]
    )
    assert device_batches(read(root).train, torch.device("cpu")) is None, "decoded images: the DataLoader fetches"
    monkeypatch.setattr(cache, "IN_MEMORY", 0)  # a cache this large stays memory-mapped on the host
    assert device_batches(read(root, tmp_path / "cache").train, torch.device("cpu")) is None
