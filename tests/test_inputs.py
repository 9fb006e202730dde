"""Inputs in the forms users already hold: the authors' HDF5 packs, Google's .npz ViT checkpoints, and FGVC split
files whose labels are the data set's own ids (CUB's 1-based ones)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import timm
import torch
from fake_trees import WNIDS, make_domain, make_fewshot, make_fgvc, make_vtab
from torch.utils.data import DataLoader, Dataset

from pacebench.core import backbones
from pacebench.data import READERS, DataRequest
from pacebench.data.check import check_dataset
from pacebench.errors import DataError
from pacebench.plan.suites import DatasetDef, Suite

SIZE = 32


def read(reader: str, root: Path, phase: str, classes: int = 3, **options):
    return READERS.get(reader)(DataRequest(root, "fake", phase, classes, image_size=SIZE, options=options))


# ------------------------------------------------------------------------------------------------------ HDF5 packs
def pack_vtab_like_authors(images: Path, target: Path) -> None:
    """As the authors' convert_to_hdf5.py (task vtab) writes it: one group per sub-folder of images/, one dataset per
    file named by the file name, holding the file's bytes as `np.asarray(f.read())`."""
    with h5py.File(target, "w") as h5:
        for folder in sorted(p for p in images.iterdir() if not p.name.startswith(".")):
            group = h5.create_group(folder.name)
            for image in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
                group.create_dataset(image.name, data=np.asarray(image.read_bytes()))


def pack_fewshot_like_authors(images: Path, target: Path, annotations: Path) -> None:
    """As convert_to_hdf5.py (task fs) writes it: one dataset per image named in any annotation list, keyed by
    its path relative to images/ (h5py makes the class folder a group)."""
    names = {
        line.strip().rsplit(" ", 1)[0]
        for ann in annotations.iterdir()
        for line in ann.read_text().splitlines()
        if line.strip()
    }
    with h5py.File(target, "w") as h5:
        for name in sorted(names):
            h5.create_dataset(name, data=np.asarray((images / name).read_bytes()))


def tensors(dataset) -> list[torch.Tensor]:
    return [dataset[i][0] for i in range(len(dataset))]


def test_vtab_reads_the_authors_pack_exactly_as_the_folder(tmp_path):
    make_vtab(tmp_path)
    from_files = read("vtab", tmp_path, "final")
    expected = {name: tensors(d) for name, d in [("train", from_files.train), *from_files.evals.items()]}
    pack_vtab_like_authors(tmp_path / "images", tmp_path / "images.hdf5")
    shutil.rmtree(tmp_path / "images")
    packed = read("vtab", tmp_path, "final")
    for name, dataset in [("train", packed.train), *packed.evals.items()]:
        got = tensors(dataset)
        assert len(got) == len(expected[name]) and all(
            torch.equal(a, b) for a, b in zip(got, expected[name], strict=True)
        )


def test_pack_is_opened_per_dataloader_worker(tmp_path):
    make_fewshot(tmp_path, shots=(2,), seeds=(0,))
    pack_fewshot_like_authors(tmp_path / "images", tmp_path / "images.hdf5", tmp_path / "annotations")
    shutil.rmtree(tmp_path / "images")
    splits = read("fewshot", tmp_path, "final", shots=2, split_seed=0)
    dataset = splits.evals["test"]
    dataset[0]  # the parent opens the pack first: a forked worker must not reuse that handle
    assert dataset.base.images._pid == os.getpid()
    batches = list(DataLoader(PidProbe(dataset), batch_size=2, num_workers=2))
    assert sum(len(b[1]) for b in batches) == len(dataset) == 6
    assert torch.equal(torch.cat([b[0] for b in batches])[0], dataset[0][0])
    workers = {pid for b in batches for pid in b[2].tolist()}
    assert os.getpid() not in workers and len(workers) == 2  # each worker decoded with a handle of its own


class PidProbe(Dataset):
    """Items with the process id that opened the pack handle used for them."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y, _ = self.dataset[i]
        return x, y, self.dataset.base.images._pid


def pack_folder(folder: Path) -> None:
    """Replaces an image folder by its HDF5 pack beside it: every file's bytes under its path inside the folder."""
    with h5py.File(folder.with_name(folder.name + ".hdf5"), "w") as h5:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            h5.create_dataset(path.relative_to(folder).as_posix(), data=np.asarray(path.read_bytes()))
    shutil.rmtree(folder)


def test_domain_targets_and_class_order_read_from_packs(tmp_path):
    make_domain(tmp_path)
    expected = read("imagenet", tmp_path, "final", len(WNIDS))
    for folder in ("imagenet/images", "imagenet-sketch", "imagenetv2", "imagenet-a", "imagenet-r"):
        pack_folder(tmp_path / folder)
    packed = read("imagenet", tmp_path, "final", len(WNIDS))  # no classes.txt: the order comes from the pack
    assert packed.eval_classes == expected.eval_classes
    assert packed.train.base.items == expected.train.base.items  # (training crops are random: items only)
    for name, dataset in packed.evals.items():
        assert dataset.base.items == expected.evals[name].base.items, name
        assert torch.equal(dataset[len(dataset) - 1][0], expected.evals[name][len(dataset) - 1][0]), name
    suite = Suite("d", "", "imagenet", "", "vit", {})
    result = check_dataset(
        suite, DatasetDef("imagenet", len(WNIDS), ".", options={"shots": [16], "split_seed": [0]}), tmp_path, full=True
    )
    assert (result.status, result.problems) == ("found", []) and len(result.notes) == 5


def test_data_check_reads_packs_and_names_a_missing_entry(tmp_path):
    make_fewshot(tmp_path / "few-shot" / "flowers", shots=(1,), seeds=(0,))
    root = tmp_path / "few-shot" / "flowers"
    pack_fewshot_like_authors(root / "images", root / "images.hdf5", root / "annotations")
    shutil.rmtree(root / "images")
    suite = Suite("fs", "", "fewshot", "few-shot", "vit", {})
    ds = DatasetDef("flowers", 3, "flowers", options={"shots": [1], "split_seed": [0]})
    result = check_dataset(suite, ds, tmp_path, full=True)
    assert (result.status, result.problems) == ("found", []), result
    assert any("images.hdf5" in note for note in result.notes)
    with h5py.File(root / "images.hdf5", "a") as h5:
        del h5["c1"][sorted(h5["c1"])[-1]]
        h5["c0"][sorted(h5["c0"])[-1]][...] = np.asarray(b"not an image, but as long as the jpeg was")[()]
    result = check_dataset(suite, ds, tmp_path, full=True)
    assert result.status == "broken"
    assert any(p.startswith("missing image c1/") and "images.hdf5 listed in" in p for p in result.problems), result
    assert any(p.startswith("cannot read image c0/") for p in result.problems), result


def test_neither_folder_nor_pack_is_one_problem(tmp_path):
    make_vtab(tmp_path / "vtab-1k" / "cifar")
    shutil.rmtree(tmp_path / "vtab-1k" / "cifar" / "images")
    suite = Suite("v", "", "vtab", "vtab-1k", "vit", {})
    result = check_dataset(suite, DatasetDef("cifar", 3, "cifar"), tmp_path)
    assert result.status == "broken" and result.problems[0].startswith("missing image folder")
    assert "images.hdf5" in result.problems[0] and len(result.problems) == 1


def test_corrupt_pack_is_a_data_error(tmp_path):
    make_vtab(tmp_path)
    shutil.rmtree(tmp_path / "images")
    (tmp_path / "images.hdf5").write_bytes(b"not hdf5")
    splits = read("vtab", tmp_path, "tune")
    with pytest.raises(DataError, match="cannot open HDF5 pack .*images.hdf5"):
        splits.train[0]


# ------------------------------------------------------------------------------------------------------ FGVC labels
def one_based(root: Path) -> None:
    """Rewrites the fake FGVC split files with CUB's 1-based label ids."""
    for split in ("train", "val", "test"):
        path = root / f"{split}.json"
        path.write_text(json.dumps({k: v + 1 for k, v in json.loads(path.read_text()).items()}))


def test_one_based_fgvc_labels_map_to_class_indices(tmp_path):
    make_fgvc(tmp_path)
    zero = read("fgvc", tmp_path, "final")
    one_based(tmp_path)
    mapped = read("fgvc", tmp_path, "final")
    assert mapped.label_ids == [1, 2, 3] and zero.label_ids is None
    assert mapped.train.base.items == zero.train.base.items
    assert mapped.evals["test"].base.items == zero.evals["test"].base.items


def test_fgvc_label_absent_from_train_is_named(tmp_path):
    make_fgvc(tmp_path)
    one_based(tmp_path)
    split = json.loads((tmp_path / "test.json").read_text())
    name = next(iter(split))
    split[name] = 17
    (tmp_path / "test.json").write_text(json.dumps(split))
    with pytest.raises(DataError, match=rf"test.json: label 17 \(of '{name}'\) does not occur in .*train.json"):
        read("fgvc", tmp_path, "final")


def test_data_check_shows_the_fgvc_mapping(tmp_path):
    make_fgvc(tmp_path / "fgvc" / "CUB")
    one_based(tmp_path / "fgvc" / "CUB")
    suite = Suite("f", "", "fgvc", "fgvc", "vit", {})
    result = check_dataset(suite, DatasetDef("cub", 3, "CUB"), tmp_path)
    assert result.status == "found" and result.notes == [
        "labels renumbered (sorted train ids -> class index): 1->0, 2->1, 3->2"
    ]


# ------------------------------------------------------------------------------------------------------ Google .npz
def save_google_npz(model: torch.nn.Module, path: Path) -> None:
    """Writes a timm ViT in the key layout of Google's ViT-B_16.npz: the inverse of timm's `_load_weights`."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    dim = model.embed_dim
    heads = model.blocks[0].attn.num_heads
    out = {
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),  # OIHW -> HWIO
        "embedding/bias": sd["patch_embed.proj.bias"],
        "cls": sd["cls_token"],
        "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    for i in range(len(model.blocks)):
        b, p = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        out[p + "LayerNorm_0/scale"], out[p + "LayerNorm_0/bias"] = sd[b + "norm1.weight"], sd[b + "norm1.bias"]
        out[p + "LayerNorm_2/scale"], out[p + "LayerNorm_2/bias"] = sd[b + "norm2.weight"], sd[b + "norm2.bias"]
        qkv_w, qkv_b = np.split(sd[b + "attn.qkv.weight"], 3), np.split(sd[b + "attn.qkv.bias"], 3)
        for name, w, bias in zip(("query", "key", "value"), qkv_w, qkv_b, strict=True):
            out[mha + f"{name}/kernel"] = w.T.reshape(dim, heads, dim // heads)
            out[mha + f"{name}/bias"] = bias.reshape(heads, dim // heads)
        out[mha + "out/kernel"] = sd[b + "attn.proj.weight"].reshape(dim, heads, dim // heads).transpose(1, 2, 0)
        out[mha + "out/bias"] = sd[b + "attn.proj.bias"]
        for r in range(2):
            out[p + f"MlpBlock_3/Dense_{r}/kernel"] = sd[b + f"mlp.fc{r + 1}.weight"].T
            out[p + f"MlpBlock_3/Dense_{r}/bias"] = sd[b + f"mlp.fc{r + 1}.bias"]
    np.savez(path, **out)


ARCH = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def google_npz(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    source = timm.create_model(ARCH, pretrained=False, num_classes=5, img_size=SIZE).eval()
    path = tmp_path_factory.mktemp("w") / "ViT-Ti_16.npz"
    save_google_npz(source, path)
    return source, path


def test_google_npz_loads_to_the_same_logits(google_npz):
    source, path = google_npz
    model, sha = backbones.build(ARCH, num_classes=5, image_size=SIZE, drop_path=0.0, weights=path)
    model.eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), source.forward_features(x), atol=1e-5)
        model.head.load_state_dict(source.head.state_dict())  # the task head is always fresh; copy it to compare
        assert torch.allclose(model(x), source(x), atol=1e-5)
    assert len(sha) == 64


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", b"\x93NUMPY garbage"])
def test_corrupt_npz_is_a_data_error(tmp_path, content):
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="cannot read weights file .*w.npz"):
        backbones.build(ARCH, num_classes=5, image_size=SIZE, drop_path=0.0, weights=path)


def test_npz_of_another_architecture_is_a_data_error(tmp_path):
    np.savez(tmp_path / "w.npz", **{"embedding/kernel": np.zeros((16, 16, 3, 192), np.float32)})
    with pytest.raises(DataError, match="does not fit VisionTransformer"):
        backbones.build(ARCH, num_classes=5, image_size=SIZE, drop_path=0.0, weights=tmp_path / "w.npz")


# ------------------------------------------------------------------------------------------------------ end to end
def test_pack_one_based_labels_and_npz_through_data_check_and_run(tmp_path, monkeypatch, google_npz):
    """FGVC images only in an HDF5 pack, CUB-style 1-based labels, Google .npz weights: `data check` approves and
    shows the mapping, `run` trains (loader workers reading the pack) and records the mapping with the run."""
    import sqlite3

    from conftest import assert_ok
    from fake_trees import write_suites
    from typer.testing import CliRunner

    from pacebench.cli import app
    from pacebench.plan.suites import all_suites

    root = tmp_path / "data" / "fgvc" / "CUB_200_2011"
    make_fgvc(root)
    one_based(root)
    names = [f"{c.name}/{f.name}" for c in sorted((root / "images").iterdir()) for f in sorted(c.iterdir())]
    with h5py.File(root / "images.hdf5", "w") as h5:
        for name in names:
            h5.create_dataset(name, data=np.asarray((root / "images" / name).read_bytes()))
    shutil.rmtree(root / "images")
    monkeypatch.setenv("PACEBENCH_SUITES", str(write_suites(tmp_path / "suites")))
    all_suites.cache_clear()
    runner, db = CliRunner(), f"sqlite:///{tmp_path}/r.db"
    try:
        check = runner.invoke(app, ["data", "check", "fgvc", "--root", str(tmp_path / "data")])
        run = runner.invoke(
            app,
            [
                "run",
                "fgvc",
                "--datasets",
                "cub",
                "-m",
                "pace",
                "--backbone",
                ARCH,
                "--weights",
                str(google_npz[1]),
                "-t",
                f"image_size={SIZE}",
                "-t",
                "batch_size=4",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--workers",
                "2",
                "--data-root",
                str(tmp_path / "data"),
                "--db",
                db,
            ],
        )
    finally:
        all_suites.cache_clear()
    assert "cub: labels renumbered (sorted train ids -> class index): 1->0, 2->1, 3->2" in check.output
    assert "cub: images from the HDF5 pack" in check.output
    assert re.search(r"\bcub\s+found", check.output), check.output  # (dogs has no folder here: "missing")
    assert_ok(run)
    with sqlite3.connect(tmp_path / "r.db") as con:
        ((status, metrics),) = con.execute("select status, metrics from runs").fetchall()
    assert status == "done" and json.loads(metrics)["label_ids"] == [1, 2, 3]
