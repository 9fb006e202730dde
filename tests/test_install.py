"""pacebench installed from its wheel, not from the source tree: the suites and reference tables ship inside the
package, and a one-epoch demo run works from any folder."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment holding only the wheel built from this checkout; the dependencies (torch, timm,
    ...) are reached through a .pth file that lists this interpreter's site-packages, so nothing is downloaded and
    the checkout's own editable install (whose finder is a .pth file of that folder) is not seen."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = tmp / "build"
    shutil.copytree(
        REPO,
        build,
        ignore=shutil.ignore_patterns(".venv", ".nox", ".git", "results", "build", "*.egg-info", "__pycache__"),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(build),
            "-w",
            str(tmp / "dist"),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp / "dist").glob("pacebench-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    [packages] = (venv / "lib").glob("python3.*/site-packages")
    (packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def pacebench(venv: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PACEBENCH_") and k != "PYTHONPATH"} | env
    return subprocess.run(
        [str(venv / "bin" / "pacebench"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**environ, "COLUMNS": "200"},
        timeout=600,
    )


def test_the_wheel_carries_the_suites_and_runs_the_demo_from_any_folder(installed, tmp_path, results):
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import pacebench; print(pacebench.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert str(installed) in where and str(REPO) not in where  # the wheel's copy, not the checkout
    listed = pacebench(installed, tmp_path, "suites")
    assert listed.returncode == 0, listed.stderr
    for suite in ("demo", "vtab", "fewshot", "fgvc", "domain", "glue", "gsm8k"):
        assert f"{suite}.toml (built in)" in listed.stdout
    shutil.copytree(results / "checkpoints", tmp_path / "out" / "checkpoints")  # the demo backbone, pre-trained
    run = pacebench(
        installed,
        tmp_path,
        "run",
        "demo",
        "--methods",
        "baseline",
        "--epochs",
        "1",
        "-t",
        "batch_size=32",
        "--device",
        "cpu",
        "--diagnostics",
        "off",
        PACEBENCH_RESULTS=str(tmp_path / "out"),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = pacebench(
        installed, tmp_path, "report", "--table", "demo", "--format", "csv", PACEBENCH_RESULTS=str(tmp_path / "out")
    )
    assert report.returncode == 0 and "baseline" in report.stdout, report.stderr
    assert (tmp_path / "out" / "pacebench.db").is_file()


def test_a_user_suite_folder_adds_suites_and_replaces_a_built_in(installed, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    demo = (REPO / "benchmarks" / "demo.toml").read_text()
    (mine / "demo.toml").write_text(demo.replace('description = "', 'description = "MY COPY: '))
    (mine / "tiny.toml").write_text(demo.replace('name = "demo"', 'name = "tiny"'))
    listed = pacebench(installed, tmp_path, "--suites", str(mine), "suites")
    assert listed.returncode == 0, listed.stderr
    assert f"{mine / 'demo.toml'} (yours, replaces the built-in)" in listed.stdout
    assert f"{mine / 'tiny.toml'} (yours)" in listed.stdout and "vtab.toml (built in)" in listed.stdout
    by_env = pacebench(installed, tmp_path, "suites", PACEBENCH_SUITES=str(mine))
    assert f"{mine / 'tiny.toml'} (yours)" in by_env.stdout
