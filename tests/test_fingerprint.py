"""Data fingerprints: one string per dataset copy, from its split lists and every image's bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_trees import SUITES, make_all, write_suites
from PIL import Image
from test_inputs import pack_vtab_like_authors

import pacebench.data.fingerprint as fp
from pacebench.plan.suites import all_suites, load_suite


@pytest.fixture
def suites(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_SUITES", str(write_suites(tmp_path / "suites")))
    all_suites.cache_clear()
    yield {name: suite for name, suite in all_suites().items() if name in SUITES}
    all_suites.cache_clear()


def vtab_fingerprint(data: Path, cache: Path | None = None) -> str:
    suite = load_suite("vtab")
    return fp.dataset_fingerprint(suite, suite.dataset("cifar"), data, cache)


def test_two_copies_that_differ_in_one_jpegs_encoding_have_two_fingerprints(suites, tmp_path):
    a, b = make_all(tmp_path / "a"), tmp_path / "b"
    shutil.copytree(a, b)
    assert vtab_fingerprint(a) == vtab_fingerprint(b)  # where the data root lies does not matter
    image = b / "vtab-1k/cifar/images/train/train0.jpg"
    Image.open(image).convert("RGB").save(image, quality=50)  # the same picture, encoded again
    assert vtab_fingerprint(a) != vtab_fingerprint(b)


@pytest.mark.parametrize("change", ["label", "list order", "list"])
def test_a_changed_label_order_or_list_changes_the_fingerprint(suites, tmp_path, change):
    data = make_all(tmp_path / "d")
    before = vtab_fingerprint(data)
    path = data / "vtab-1k/cifar/test.txt"
    lines = path.read_text().splitlines()
    edits = {
        "label": lambda ls: (
            [ls[0].rsplit(" ", 1)[0] + " 2", *ls[1:]]
            if not ls[0].endswith(" 2")
            else [ls[0].rsplit(" ", 1)[0] + " 1", *ls[1:]]
        ),
        "list order": lambda ls: [ls[1], ls[0], *ls[2:]],
        "list": lambda ls: ls[:-1],
    }
    path.write_text("\n".join(edits[change](lines)) + "\n")
    assert vtab_fingerprint(data) != before


def test_every_split_of_both_phases_and_every_variant_is_covered(suites, tmp_path):
    data = make_all(tmp_path / "d")
    suite = load_suite("fewshot")
    names = {src.path.name for src in fp.sources(suite, suite.dataset("flowers"), data)}
    assert {
        "train_meta.list.num_shot_1.seed_0",
        "train_meta.list.num_shot_2.seed_1",
        "val_meta.list",
        "test_meta.list",
    } <= names
    assert (
        len({src.path.name for src in fp.sources(load_suite("vtab"), load_suite("vtab").dataset("cifar"), data)}) == 4
    )  # train800, val200, train800val200, test


def test_a_folder_and_its_pack_of_the_same_files_agree(suites, tmp_path):
    data = make_all(tmp_path / "d")
    folder = vtab_fingerprint(data)
    images = data / "vtab-1k/cifar/images"
    pack_vtab_like_authors(images, images.with_suffix(".hdf5"))
    shutil.rmtree(images)
    assert vtab_fingerprint(data) == folder


def test_the_memo_is_used_until_a_file_changes(suites, tmp_path, monkeypatch):
    data, cache = make_all(tmp_path / "d"), tmp_path / "cache"
    first = vtab_fingerprint(data, cache)
    computed = []
    real = fp.compute
    monkeypatch.setattr(fp, "compute", lambda *a, **k: computed.append(1) or real(*a, **k))
    assert vtab_fingerprint(data, cache) == first and computed == []  # read from the memo: no image read
    image = data / "vtab-1k/cifar/images/test/test0.jpg"
    Image.open(image).convert("RGB").save(image, quality=40)
    assert vtab_fingerprint(data, cache) != first and computed == [1]


def test_the_demo_has_a_fixed_fingerprint_of_its_built_in_data():
    suite = load_suite("demo")
    value = fp.dataset_fingerprint(suite, suite.dataset("digits"), Path("nowhere"))
    assert len(value) == 16 and value == fp.dataset_fingerprint(suite, suite.dataset("digits"), Path("elsewhere"))


def test_text_suites_fingerprint_their_files(tmp_path):
    """GLUE's TSVs and GSM-8K's JSON lines: one changed line is another copy."""
    import text_fixtures as tf

    tf.write_rte(tmp_path)
    tf.write_gsm8k(tmp_path)
    glue, gsm = load_suite("glue"), load_suite("gsm8k")
    rte = fp.dataset_fingerprint(glue, glue.dataset("rte"), tmp_path)
    maths = fp.dataset_fingerprint(gsm, gsm.dataset("gsm8k"), tmp_path)
    assert len({rte, maths}) == 2 and all(len(f) == 16 for f in (rte, maths))
    [dev] = [p for p in tmp_path.rglob("dev.tsv") if "RTE" in str(p)]
    dev.write_text(dev.read_text().replace("entailment", "not_entailment", 1))
    assert fp.dataset_fingerprint(glue, glue.dataset("rte"), tmp_path) != rte
