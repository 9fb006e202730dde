"""The data checker (`pacebench data check`, `require_data`): a good tree is clean, each kind of fault is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import assert_ok
from fake_trees import SUITES, make_all, write_suites
from typer.testing import CliRunner

from pacebench.cli.data_cmd import app
from pacebench.data.check import check_dataset, check_suite, require_data
from pacebench.errors import DataError
from pacebench.plan.suites import DatasetDef, Suite, all_suites, load_suite


@pytest.fixture
def suites(tmp_path, monkeypatch):
    """The fake suites of fake_trees.write_suites, found through PACEBENCH_SUITES (they replace the built-in suites
    of the same names; the built-in text suites stay beside them and are left out here)."""
    monkeypatch.setenv("PACEBENCH_SUITES", str(write_suites(tmp_path / "suites")))
    all_suites.cache_clear()
    yield {name: suite for name, suite in all_suites().items() if name in SUITES}
    all_suites.cache_clear()


@pytest.fixture
def data(tmp_path) -> Path:
    return make_all(tmp_path / "data")


def only(suite: str, data: Path, full: bool = False):
    (result,) = [r for r in check_suite(load_suite(suite), data, full) if r.dataset != "dogs"]
    return result


def test_good_trees_are_clean(suites, data):
    for suite in suites.values():
        for result in check_suite(suite, data, full=True):
            assert (result.status, result.problems) == ("found", []), (suite.name, result)
    assert only("vtab", data).sizes == {"train800": 800, "val200": 200, "train800val200": 1000, "test": 30}
    assert only("fewshot", data).sizes == {
        "train_1shot_seed0": 3,
        "train_1shot_seed1": 3,
        "train_2shot_seed0": 6,
        "train_2shot_seed1": 6,
        "val": 3,
        "test": 6,
    }
    assert only("fgvc", data).sizes == {"train": 9, "val": 3, "test": 6}
    assert only("domain", data).sizes == {
        "train_16shot_seed0": 10,
        "val": 5,
        "imagenet": 10,
        "imagenet_sketch": 10,
        "imagenet_v2": 10,
        "imagenet_a": 4,
        "imagenet_r": 6,
    }


# each fault: (suite, what to break, relative to the data root; text the problem must contain)
FAULTS = {
    "missing folder": ("fgvc", lambda d: shutil.rmtree(d / "fgvc/CUB_200_2011"), "missing data folder"),
    "missing list": ("vtab", lambda d: (d / "vtab-1k/cifar/val200.txt").unlink(), "vtab-1k/cifar/val200.txt"),
    "missing test list": ("vtab", lambda d: (d / "vtab-1k/cifar/test.txt").unlink(), "vtab-1k/cifar/test.txt"),
    "missing shot list": (
        "fewshot",
        lambda d: (d / "few-shot/oxford-flowers102/annotations/train_meta.list.num_shot_2.seed_1").unlink(),
        "annotations/train_meta.list.num_shot_2.seed_1",
    ),
    "missing image": (
        "fewshot",
        lambda d: (d / "few-shot/oxford-flowers102/images/c1/img4.png").unlink(),
        "missing image",
    ),
    "missing json": ("fgvc", lambda d: (d / "fgvc/CUB_200_2011/test.json").unlink(), "CUB_200_2011/test.json"),
    "missing target": ("domain", lambda d: shutil.rmtree(d / "domain/imagenet-a"), "domain/imagenet-a"),
    "bad label": (
        "vtab",
        lambda d: _append(d / "vtab-1k/cifar/test.txt", "images/test/test0.jpg 7"),
        "test.txt:31: label 7 is outside [0, 3)",
    ),
    "wrong size": (
        "vtab",
        lambda d: _drop_last_line(d / "vtab-1k/cifar/train800.txt"),
        "lists 799 images, the protocol needs exactly 800",
    ),
}


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


def _drop_last_line(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_reported_with_its_path(suites, data, fault):
    suite, damage, text = FAULTS[fault]
    damage(data)
    result = only(suite, data)
    assert result.status == ("missing" if fault == "missing folder" else "broken")
    assert any(text in problem and str(data) in problem for problem in result.problems), result.problems


def test_missing_image_names_the_image_and_the_list(suites, data):
    (data / "few-shot/oxford-flowers102/images/c1/img4.png").unlink()
    (problem,) = only("fewshot", data).problems
    assert problem == (
        f"missing image {data}/few-shot/oxford-flowers102/images/c1/img4.png listed in "
        f"{data}/few-shot/oxford-flowers102/annotations/test_meta.list"
    )


def test_many_missing_images_are_counted_not_listed(suites, data):
    shutil.rmtree(data / "vtab-1k/cifar/images/test")
    problems = only("vtab", data).problems
    assert len(problems) == 4 and problems[-1] == f"... and 4 more missing images in {data}/vtab-1k/cifar/test.txt"


def test_corrupt_image_is_found_only_with_full(suites, data):
    bad = data / "fgvc/CUB_200_2011/images/001.class/val0.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    assert only("fgvc", data).status == "found"  # cheap check: the file exists
    result = only("fgvc", data, full=True)
    assert result.status == "broken" and any(f"cannot read image {bad}" in p for p in result.problems)


def test_missing_option_is_reported(data):
    suite = Suite("fs", "", "fewshot", "few-shot", "vit", {})
    ds = DatasetDef("flowers", 3, "oxford-flowers102", options={"shots": [1]})
    result = check_dataset(suite, ds, data)
    assert result.status == "broken" and "option 'split_seed'" in result.problems[0]


def test_readers_without_a_layout_need_nothing_on_disk(tmp_path):
    suite = Suite("demo", "", "demo", "", "vit", {})
    ds = DatasetDef("digits", 5, "digits")
    assert check_dataset(suite, ds, tmp_path / "nowhere").status == "found"
    require_data(suite, ds, tmp_path / "nowhere", "final", {})


# ------------------------------------------------------------------------------------------------------ require_data


def test_require_data_passes_on_a_good_tree_and_ignores_sizes(suites, data):
    _drop_last_line(data / "vtab-1k/cifar/train800.txt")  # a size problem is the checker's business, not a run's
    for suite in suites.values():
        for ds in suite.datasets.values():
            for phase in ("tune", "final"):
                for variant in ds.variants():
                    require_data(suite, ds, data, phase, variant)


def test_require_data_names_the_first_problem(suites, data):
    suite = load_suite("fewshot")
    ds = suite.dataset("flowers")
    (data / "few-shot/oxford-flowers102/images/c0/img0.jpg").write_bytes(b"")  # in the 1-shot list; not decoded
    (data / "few-shot/oxford-flowers102/images/c2/img4.png").unlink()  # a test image
    require_data(suite, ds, data, "tune", {"shots": 1, "split_seed": 0})  # tune reads no test list
    with pytest.raises(DataError, match=r"^missing image .*images/c2/img4.png listed in .*test_meta.list") as info:
        require_data(suite, ds, data, "final", {"shots": 1, "split_seed": 0})
    assert "\n" not in str(info.value) and "pacebench data check fewshot" in str(info.value)
    shutil.rmtree(data / "few-shot")
    with pytest.raises(DataError, match="missing data folder .*few-shot/oxford-flowers102"):
        require_data(suite, ds, data, "tune", {"shots": 1, "split_seed": 0})


def test_require_data_uses_the_datasets_data_table(suites, data):
    suite = load_suite("fgvc")
    shutil.rmtree(data / "fgvc/Stanford-dogs/Images")  # dogs reads Images/, as its `data` table says
    require_data(suite, suite.dataset("cub"), data, "tune", {})
    with pytest.raises(DataError, match="Stanford-dogs/Images/"):
        require_data(suite, suite.dataset("dogs"), data, "tune", {})


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_check_exits_0_on_good_data_and_1_on_bad(suites, data, monkeypatch):
    runner = CliRunner()
    outputs = ""
    for name in suites:  # the fake image suites (the built-in text suites have no data here)
        result = runner.invoke(app, ["check", name, "--root", str(data), "--full"])
        assert_ok(result)
        outputs += result.output
    assert all(name in outputs for name in ("cifar", "flowers", "cub", "dogs", "imagenet"))
    (data / "vtab-1k/cifar/val200.txt").unlink()
    result = runner.invoke(app, ["check", "--root", str(data)])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert "val200.txt" in result.output
    assert_ok(runner.invoke(app, ["check", "fgvc", "--root", str(data)]))  # one suite only
    monkeypatch.setenv("PACEBENCH_DATA", str(data))  # the default root
    result = runner.invoke(app, ["check", "vtab"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert "broken" in result.output
