"""The data readers: image decoding to RGB, the four on-disk layouts, and the tune phase never touching test data."""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_trees import (
    A_WNIDS,
    KINDS,
    R_WNIDS,
    SUFFIX,
    WNIDS,
    make_domain,
    make_fewshot,
    make_fgvc,
    make_image,
    make_vtab,
)
from PIL import Image
from torch.utils.data import DataLoader

from pacebench.data import READERS, DataRequest, Indexed
from pacebench.data.images import ListDataset, load_rgb, to_rgb
from pacebench.errors import DataError

SIZE = 32


def read(reader: str, root: Path, phase: str, classes: int = 3, **options):
    return READERS.get(reader)(DataRequest(root, "fake", phase, classes, image_size=SIZE, options=options))


def labels(dataset) -> list[int]:
    return [y for _, y in dataset.base.items]


def assert_item(dataset, index: int = 0) -> None:
    assert isinstance(dataset, Indexed)
    x, y, i = dataset[index]
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert isinstance(y, int) and i == index


# ------------------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize("kind", KINDS)
def test_load_rgb_gives_8bit_rgb_for_every_mode(tmp_path, kind):
    path = make_image(tmp_path / f"x{SUFFIX[kind]}", kind, 16)
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (16, 16)


def test_16bit_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 255, 256).reshape(16, 16).astype(np.uint8)
    path = make_image(tmp_path / "x.png", "gray16", 16)
    assert Image.open(path).mode in ("I;16", "I")
    got = np.asarray(load_rgb(path))
    assert np.array_equal(got[..., 0], ramp) and np.array_equal(got[..., 1], ramp)  # 257*v / 257 = v exactly
    as_int32 = Image.fromarray(ramp.astype(np.int32) * 257)  # Pillow's mode "I" (older Pillows open 16-bit PNGs so)
    assert as_int32.mode == "I" and np.array_equal(np.asarray(to_rgb(as_int32))[..., 2], ramp)


def test_float_images_in_0_1_are_scaled(tmp_path):
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values, "F").save(tmp_path / "x.tiff")
    got = np.asarray(load_rgb(tmp_path / "x.tiff"))[..., 0]
    assert got.min() == 0 and got.max() == 255
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(values * 255, "F")))[..., 0], got)


def test_transparent_pixels_become_white(tmp_path):
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.save(tmp_path / "p.png", transparency=0)
    got = np.asarray(load_rgb(tmp_path / "p.png"))
    assert tuple(got[0, 0]) == (255, 255, 255) and tuple(got[1, 1]) == (10, 20, 30)
    half = Image.new("LA", (2, 2), (0, 128))  # black at half opacity over white
    assert abs(int(np.asarray(to_rgb(half))[0, 0, 0]) - 127) <= 1


def test_cmyk_and_palette_keep_their_colours(tmp_path):
    reference = np.asarray(load_rgb(make_image(tmp_path / "rgb.png", "rgb", 16))).astype(int)
    for kind, tolerance in (("palette", 40), ("cmyk", 40)):
        got = np.asarray(load_rgb(make_image(tmp_path / f"x{SUFFIX[kind]}", kind, 16))).astype(int)
        assert np.abs(got - reference).mean() < tolerance, kind


@pytest.mark.parametrize("content", [None, b"", b"not an image", "truncated"])
def test_missing_or_corrupt_image_names_the_file(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        make_image(path, "rgb", 20)
        path.write_bytes(path.read_bytes()[:200])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match="cannot read image .*bad.jpg") as info:
        load_rgb(path)
    assert "\n" not in str(info.value)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is DataError and str(again) == str(info.value)


def test_corrupt_image_error_crosses_dataloader_workers(tmp_path):
    good = make_image(tmp_path / "good.png", "rgb")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    batches = iter(DataLoader(ListDataset([(good, 0), (tmp_path / "bad.png", 1)], to_tensor), num_workers=1))
    try:
        assert next(batches)[1].tolist() == [0]
        with pytest.raises(DataError, match="bad.png"):
            next(batches)
    finally:
        batches._shutdown_workers()  # else the worker is joined at garbage collection, after a 5 s timeout


def to_tensor(image):
    return torch.from_numpy(np.asarray(image).copy())


# ------------------------------------------------------------------------------------------------------ readers


def test_vtab_reads_both_phases(tmp_path):
    make_vtab(tmp_path)
    tune = read("vtab", tmp_path, "tune")
    assert len(tune.train) == 800 and set(tune.evals) == {"val"} and len(tune.evals["val"]) == 200
    assert labels(tune.train)[:4] == [0, 1, 2, 0] and tune.num_classes == 3 and not tune.eval_classes
    final = read("vtab", tmp_path, "final")
    assert len(final.train) == 1000 and set(final.evals) == {"test"} and len(final.evals["test"]) == 30
    for index in range(len(KINDS)):  # every kind of image, through the transform
        assert_item(final.train, index)
    assert_item(final.evals["test"], 3)
    x, *_ = final.train[0]
    assert torch.equal(x, final.train[0][0]), "the VTAB transform has no augmentation"


def test_vtab_label_out_of_range_names_file_and_line(tmp_path):
    make_vtab(tmp_path)
    lines = (tmp_path / "val200.txt").read_text().splitlines()
    lines[4] = "images/train/train0.jpg 3"
    (tmp_path / "val200.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"val200.txt:5: label 3 is outside \[0, 3\)"):
        read("vtab", tmp_path, "tune")


def test_malformed_list_line_is_named(tmp_path):
    make_vtab(tmp_path)
    (tmp_path / "train800.txt").write_text("images/train/train0.jpg\n")
    with pytest.raises(DataError, match=r"train800.txt:1: expected '<image path> <label>'"):
        read("vtab", tmp_path, "tune")


def test_corrupt_image_in_a_reader_names_the_file(tmp_path):
    make_vtab(tmp_path)
    (tmp_path / "images" / "test" / "test0.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    test = read("vtab", tmp_path, "final").evals["test"]
    with pytest.raises(DataError, match=r"cannot read image .*images/test/test0.jpg"):
        test[0]


def test_fewshot_reads_the_chosen_list(tmp_path):
    make_fewshot(tmp_path)
    tune = read("fewshot", tmp_path, "tune", shots=2, split_seed=1)
    assert len(tune.train) == 6 and set(tune.evals) == {"val"} and len(tune.evals["val"]) == 3
    assert sorted(labels(tune.train)) == [0, 0, 1, 1, 2, 2]
    assert tune.train.base.items[0][0] == tmp_path / "images" / "c0" / (tune.train.base.items[0][0].name)
    final = read("fewshot", tmp_path, "final", shots=1, split_seed=0)
    assert len(final.train) == 3 and set(final.evals) == {"test"} and len(final.evals["test"]) == 6
    for index in range(3):
        assert_item(final.train, index)
        assert_item(final.evals["test"], index)


@pytest.mark.parametrize("missing", ["shots", "split_seed"])
def test_fewshot_needs_its_options(tmp_path, missing):
    make_fewshot(tmp_path)
    options = {"shots": 1, "split_seed": 0}
    del options[missing]
    with pytest.raises(DataError, match=f"option '{missing}'"):
        read("fewshot", tmp_path, "tune", **options)


@pytest.mark.parametrize("image_dir", ["images", "Images", ""])
def test_fgvc_reads_json_splits(tmp_path, image_dir):
    make_fgvc(tmp_path, image_dir=image_dir)
    tune = read("fgvc", tmp_path, "tune", image_dir=image_dir)
    assert len(tune.train) == 9 and set(tune.evals) == {"val"} and len(tune.evals["val"]) == 3
    final = read("fgvc", tmp_path, "final", image_dir=image_dir)
    assert len(final.train) == 12 and len(final.evals["test"]) == 6
    assert sorted(labels(final.evals["test"])) == [0, 0, 1, 1, 2, 2]
    assert_item(final.train, 11)
    assert_item(final.evals["test"], 5)


@pytest.mark.parametrize("label", [5, -1, "2", 1.0])
def test_fgvc_bad_label_names_the_entry(tmp_path, label):
    make_fgvc(tmp_path)
    split = json.loads((tmp_path / "val.json").read_text())
    split[next(iter(split))] = label
    (tmp_path / "val.json").write_text(json.dumps(split))
    with pytest.raises(DataError, match=r"val.json.*000.class/"):
        read("fgvc", tmp_path, "tune")


def test_imagenet_domain_targets(tmp_path):
    make_domain(tmp_path)
    classes = len(WNIDS)
    tune = read("imagenet", tmp_path, "tune", classes)
    assert len(tune.train) == 2 * classes and set(tune.evals) == {"val"} and len(tune.evals["val"]) == classes
    final = read("imagenet", tmp_path, "final", classes)
    assert len(final.train) == 2 * classes
    assert set(final.evals) == {"imagenet", "imagenet_sketch", "imagenet_v2", "imagenet_a", "imagenet_r"}
    assert final.eval_classes == {
        "imagenet_a": [WNIDS.index(w) for w in A_WNIDS],
        "imagenet_r": [WNIDS.index(w) for w in R_WNIDS],
    }
    for name in ("imagenet", "imagenet_sketch", "imagenet_v2"):
        assert labels(final.evals[name]) == [c for c in range(classes) for _ in range(2)], name
    for dataset in final.evals.values():
        assert_item(dataset, len(dataset) - 1)


def test_imagenet_classes_txt_sets_the_order(tmp_path):
    make_domain(tmp_path)
    (tmp_path / "imagenet" / "classes.txt").write_text("\n".join(reversed(WNIDS)) + "\n")
    final = read("imagenet", tmp_path, "final", len(WNIDS))
    assert labels(final.evals["imagenet_sketch"]) == [c for c in reversed(range(len(WNIDS))) for _ in range(2)]
    assert final.eval_classes["imagenet_a"] == sorted(len(WNIDS) - 1 - WNIDS.index(w) for w in A_WNIDS)


def test_imagenet_missing_target_is_named(tmp_path):
    make_domain(tmp_path)
    shutil.rmtree(tmp_path / "imagenet-r")
    with pytest.raises(DataError, match=r"missing data folder .*imagenet-r"):
        read("imagenet", tmp_path, "final", len(WNIDS))


def test_imagenet_class_count_must_match(tmp_path):
    make_domain(tmp_path)
    with pytest.raises(DataError, match=r"gives 5 classes, the suite says 7"):
        read("imagenet", tmp_path, "final", 7)


# ------------------------------------------------------------------------------------------------------ tune phase

TUNE_CASES = {  # reader: (tree builder, options, test data the tune phase must not touch)
    "vtab": (make_vtab, {}, ["test.txt", "images/test"]),
    "fewshot": (make_fewshot, {"shots": 1, "split_seed": 0}, ["annotations/test_meta.list"]),
    "fgvc": (make_fgvc, {}, ["test.json"]),
    "imagenet": (make_domain, {}, ["imagenet/images/val", "imagenet-sketch", "imagenetv2", "imagenet-a", "imagenet-r"]),
}


@pytest.mark.parametrize("reader", sorted(TUNE_CASES))
def test_tune_phase_never_touches_test_data(tmp_path, monkeypatch, reader):
    build, options, test_paths = TUNE_CASES[reader]
    build(tmp_path)
    classes = len(WNIDS) if reader == "imagenet" else 3
    assert reader in READERS
    for rel in test_paths:  # gone, so any attempt to read them would fail
        target = tmp_path / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    touched: list[Path] = []
    for name in ("open", "read_text", "iterdir", "exists", "is_file", "is_dir", "stat"):
        original = getattr(pathlib.Path, name)
        monkeypatch.setattr(pathlib.Path, name, spy(original, touched))
    splits = read(reader, tmp_path, "tune", classes, **options)
    assert set(splits.evals) == {"val"}
    assert_item(splits.train)
    assert_item(splits.evals["val"])
    leaked = [p for p in touched if any(str(p).startswith(str(tmp_path / rel)) for rel in test_paths)]
    assert not leaked, f"phase tune touched {leaked}"
    assert touched, "the spy saw nothing: it would prove nothing"


def spy(original, touched: list[Path]):
    def wrapper(self, *args, **kwargs):
        touched.append(self)
        return original(self, *args, **kwargs)

    return wrapper
