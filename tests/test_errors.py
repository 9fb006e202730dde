"""Every bad input of docs/errors.md: one `error:` line naming the problem and the fix, the documented exit code,
no exception left in the runner, and nothing lost or written where it should not be. The table in docs/errors.md
lists the same cases; a test checks that each message here is quoted there."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import pytest
from conftest import assert_ok, assert_one_line_error
from typer.testing import CliRunner

from pacebench.cli import app
from pacebench.store import Store

runner = CliRunner()
DOCS = Path(__file__).parent.parent / "docs" / "errors.md"
TINY = ["--epochs", "1", "-t", "batch_size=16", "--device", "cpu", "--seeds", "0"]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory, results) -> str:
    """A database holding one finished tiny demo run (so that report and plot get as far as writing)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db')}/demo.db"
    assert_ok(runner.invoke(app, ["run", "demo", "--methods", "baseline", *TINY, "--db", url]))
    return url


def _db(tmp_path: Path, sql: str = "") -> str:
    """A pacebench database at the newest revision, then `sql` run on it."""
    path = tmp_path / "r.db"
    Store(f"sqlite:///{path}")
    if sql:
        with sqlite3.connect(path) as con:
            con.execute(sql)
    return f"sqlite:///{path}"


def _foreign(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "other.db") as con:
        con.execute("create table runs (id integer primary key, name text)")
    return f"sqlite:///{tmp_path}/other.db"


def _pragma(pragmas: list[str], pragma: str, url: str) -> str:
    """`url`, with `PRAGMA pragma` run on every SQLite connection from now on."""
    pragmas.append(f"PRAGMA {pragma}")
    return url


def _bad_suite(tmp_path: Path, monkeypatch) -> list[str]:
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mine.toml").write_text(
        'reader = "vtab"\nbackbone = "vit_b16_in21k"\n[datasets.cifar]\nclasses = "five"\n'
    )
    monkeypatch.setenv("PACEBENCH_SUITES", str(tmp_path / "suites"))
    from pacebench.plan.suites import all_suites

    all_suites.cache_clear()
    return []


def _file(tmp_path: Path) -> str:
    (tmp_path / "a-file").write_text("not a folder, not JSON")
    return str(tmp_path / "a-file")


def _env(monkeypatch, name: str, value: str) -> list[str]:
    monkeypatch.setenv(name, value)
    return []


def _a_file(tmp_path: Path) -> str:
    (tmp_path / "a-file").write_text("")
    return str(tmp_path / "a-file")


def _user_suite(tmp_path: Path, monkeypatch, files: dict[str, bytes]) -> list[str]:
    (tmp_path / "suites").mkdir(exist_ok=True)
    for name, data in files.items():
        (tmp_path / "suites" / name).write_bytes(data)
    monkeypatch.setenv("PACEBENCH_SUITES", str(tmp_path / "suites"))
    from pacebench.plan.suites import all_suites

    all_suites.cache_clear()
    return []


def _latin_suite(tmp_path: Path, monkeypatch) -> list[str]:
    return _user_suite(
        tmp_path,
        monkeypatch,
        {"mine.toml": 'reader = "demo"\nbackbone = "vit_demo"\ndescription = "caf\u00e9"\n'.encode("latin-1")},
    )


def _twice(tmp_path: Path, monkeypatch) -> list[str]:
    text = b'name = "twice"\nreader = "demo"\nbackbone = "vit_demo"\n'
    return _user_suite(tmp_path, monkeypatch, {"a.toml": text, "b.toml": text})


def _escaping(tmp_path: Path, monkeypatch) -> list[str]:
    return _user_suite(
        tmp_path,
        monkeypatch,
        {"mine.toml": b'reader = "demo"\nbackbone = "vit_demo"\n[datasets."../../../escaped"]\nclasses = 2\n'},
    )


def _demo_shots(tmp_path: Path, monkeypatch, shots: int) -> list[str]:
    demo = (Path(__file__).parent.parent / "benchmarks" / "demo.toml").read_text()
    _user_suite(tmp_path, monkeypatch, {"demo.toml": demo.replace("shots = [20]", f"shots = [{shots}]").encode()})
    return []


def _corrupt(tmp_path: Path, suffix: str) -> str:
    path = tmp_path / f"w{suffix}"
    path.write_bytes(b"\x93NUMPY this is no checkpoint" * 4)
    return str(path)


WEIGHTS = ["--backbone", "vit_tiny_patch16_224", "-t", "image_size=16"]

# name: (args(tmp_path, monkeypatch, pragmas, demo_db) -> CLI arguments, exit code, message on the error line)
Args = Callable[..., list[str]]


def _without_peft(monkeypatch) -> list[str]:
    """The optional peft as if it were not installed (the base install has no [text] extra)."""
    from pacebench.core.adapters import kinds

    monkeypatch.setattr(kinds, "find_spec", lambda name: None if name == "peft" else find_spec(name))
    return []


CASES: dict[str, tuple[Args, int, str]] = {
    "revision newer or unknown": (
        lambda t, m, p, d: ["runs", "--db", _db(t, "update alembic_version set version_num = '0099_future'")],
        1,
        "which this pacebench does not know (made by a newer version?)",
    ),
    "db current on an unknown revision": (
        lambda t, m, p, d: ["db", "current", "--db", _db(t, "update alembic_version set version_num = '0099_future'")],
        1,
        "which this pacebench does not know",
    ),
    "missing table": (
        lambda t, m, p, d: ["runs", "--db", _db(t, "drop table epochs")],
        1,
        "lacks the table(s) epochs (damaged?)",
    ),
    "read-only database file on write": (
        lambda t, m, p, d: ["db", "upgrade", "--db", _pragma(p, "query_only=ON", _db(t))],
        1,
        "attempt to write a readonly database",
    ),
    "disk full": (
        lambda t, m, p, d: ["db", "upgrade", "--db", _pragma(p, "max_page_count=4", f"sqlite:///{t}/n.db")],
        1,
        "database or disk is full; free disk space",
    ),
    "foreign SQLite file": (
        lambda t, m, p, d: ["db", "upgrade", "--db", _foreign(t)],
        1,
        "is not a pacebench database (it has tables runs",
    ),
    "in-memory database": (
        lambda t, m, p, d: ["run", "demo", "--db", "sqlite://"],
        2,
        "--db sqlite:// is an in-memory database: its results would vanish when the command exits",
    ),
    "unparsable database URL": (
        lambda t, m, p, d: ["runs", "--db", "postgresql://me:pw@host:port/db"],
        2,
        "cannot parse database URL 'postgresql://me:***@host:port/db'",
    ),
    "no database for a read-only command": (
        lambda t, m, p, d: ["runs", "--db", f"sqlite:///{t}/typo.db"],
        1,
        "no database at",
    ),
    "report --out a directory": (
        lambda t, m, p, d: ["report", "--table", "demo", "--format", "csv", "--out", str(t), "--db", d],
        1,
        "cannot write",
    ),
    "report --out under /proc": (
        lambda t, m, p, d: ["report", "--table", "demo", "--format", "md", "--out", "/proc/t.md", "--db", d],
        1,
        "cannot write /proc/t.md",
    ),
    "plot --out under /proc": (
        lambda t, m, p, d: ["plot", "grad-norm", "--out", "/proc/g.png", "--db", d],
        1,
        "cannot write /proc/g.png",
    ),
    "plot --out g.jpg": (
        lambda t, m, p, d: ["plot", "grad-norm", "--out", f"{t}/g.jpg", "--db", d],
        2,
        "name the file .png, .pdf or .svg",
    ),
    "--seeds out of range": (
        lambda t, m, p, d: ["run", "demo", "--seeds", "99999999999", "--db", d],
        2,
        "--seeds: 99999999999 is out of range",
    ),
    "bad value in a suite file": (
        lambda t, m, p, d: ["suites", *_bad_suite(t, m)],
        2,
        "[datasets.cifar]: classes must be a positive integer, got 'five'",  # brackets printed, not read as markup
    ),
    "inspect --image-size 0": (lambda t, m, p, d: ["inspect", "--image-size", "0"], 2, "--image-size must be >= 1"),
    "inspect --classes 0": (lambda t, m, p, d: ["inspect", "--classes", "0"], 2, "--classes must be >= 1"),
    "inspect --sigma nan": (lambda t, m, p, d: ["inspect", "--sigma", "nan"], 2, "--sigma must be finite and >= 0"),
    "lr inf": (
        lambda t, m, p, d: ["run", "demo", "-t", "lr=inf", "--db", d],
        2,
        "training setting lr must be a finite number, got 'inf'",
    ),
    "weight decay inf": (
        lambda t, m, p, d: ["run", "demo", "-t", "weight_decay=inf", "--db", d],
        2,
        "training setting weight_decay must be a finite number",
    ),
    "λ inf": (
        lambda t, m, p, d: ["run", "demo", "--hp", "lam=inf", "--db", d],
        2,
        "hyperparameter lam must be a finite number, got 'inf'",
    ),
    "σ inf": (
        lambda t, m, p, d: ["run", "demo", "--hp", "sigma=inf", "--db", d],
        2,
        "hyperparameter sigma must be a finite number",
    ),
    "copies unbounded": (
        lambda t, m, p, d: ["run", "demo", "-m", "pace_multi", "--hp", "copies=1000", "--db", d],
        2,
        "copies=1000: needs 2 <= M <= 16",
    ),
    "min_lr < 0": (
        lambda t, m, p, d: ["run", "demo", "-t", "min_lr=-1", "--db", d],
        2,
        "invalid training setting min_lr=-1.0",
    ),
    "corrupt .safetensors": (
        lambda t, m, p, d: [
            "run",
            "demo",
            "-m",
            "baseline",
            *WEIGHTS,
            "--weights",
            _corrupt(t, ".safetensors"),
            *TINY,
            "--db",
            f"sqlite:///{t}/w.db",
        ],
        1,
        "cannot read weights file",
    ),
    "corrupt .npz": (
        lambda t, m, p, d: [
            "run",
            "demo",
            "-m",
            "baseline",
            *WEIGHTS,
            "--weights",
            _corrupt(t, ".npz"),
            *TINY,
            "--db",
            f"sqlite:///{t}/w.db",
        ],
        1,
        "is it Google's .npz ViT checkpoint",
    ),
    "unknown adapter": (
        lambda t, m, p, d: ["run", "demo", "-t", "adapter=nosuch", "--db", f"sqlite:///{t}/a.db"],
        2,
        "unknown adapter 'nosuch'",
    ),
    "a suite's name given as ablate's data set": (
        lambda t, m, p, d: ["ablate", "glue", "--db", f"sqlite:///{t}/a.db"],  # told before vtab's missing weights
        2,
        "unknown dataset 'glue' in suite vtab (glue is a suite: pass --suite glue)",
    ),
    "a hyperparameter given twice": (
        lambda t, m, p, d: [
            "run",
            "demo",
            "-m",
            "pace",
            "--hp",
            "lam=1",
            "--hp",
            "lambda=0.5",
            "--db",
            f"sqlite:///{t}/a.db",
        ],
        2,
        "method pace hyperparameter lam is given twice ('lam' and 'lambda'); give it once",
    ),
    "a kind whose library is missing": (
        lambda t, m, p, d: [
            *_without_peft(m),
            "run",
            "demo",
            "--adapters",
            "lora",
            *TINY,
            "--db",
            f"sqlite:///{t}/a.db",
        ],
        2,
        "adapter lora needs peft, which is not installed: pip install 'pacebench[text]' (or pip install peft)",
    ),
    "inspect a kind without a size at a rank": (
        lambda t, m, p, d: ["inspect", "--adapter", "ssf", "--rank", "4"],
        2,
        "adapter ssf has no size",
    ),
    "compare sized for no difference": (
        lambda t, m, p, d: ["compare", "pace", "baseline", "--delta", "nan", "--db", d],
        2,
        "--delta must be a finite number > 0 and --boot at least 100, got nan and 2000",
    ),
    "a worker with no threads": (
        lambda t, m, p, d: ["worker", "--device", "cpu", "--threads", "0", "--db", f"sqlite:///{t}/w0.db"],
        2,
        "--jobs and --threads must be >= 1, got 1 and 0",
    ),
    "a worker with negative loader processes": (
        lambda t, m, p, d: ["worker", "--device", "cpu", "--workers", "-1", "--db", f"sqlite:///{t}/w0.db"],
        2,
        "--workers (data-loading processes) must be >= 0, got -1",
    ),
    "bench at an image size its patches do not divide": (
        lambda t, m, p, d: ["bench", "--backbone", "test_vit", "--image-size", "30", "--patch-size", "4", "--no-store"],
        2,
        "image_size=30 does not fit backbone test_vit (Input height (30) should be divisible by patch size (4).); "
        "set --image-size (and --patch-size)",
    ),
    "a job array of no tasks": (
        lambda t, m, p, d: [
            "run",
            "demo",
            "--executor",
            "submitit-local",
            "--array",
            "0",
            "--db",
            f"sqlite:///{t}/dev.db",
        ],
        2,
        "--array must be >= 1, got 0",
    ),
    "rank for a kind without a size": (
        lambda t, m, p, d: ["run", "demo", "--adapters", "ssf", "-t", "rank=4", "--db", f"sqlite:///{t}/a.db"],
        2,
        "adapter ssf has no size",
    ),
    "an option the kind does not read": (
        lambda t, m, p, d: [
            "run",
            "demo",
            "--adapters",
            "adapter",
            "-t",
            "adapter_scale=0.5",
            "--db",
            f"sqlite:///{t}/a.db",
        ],
        2,
        "adapter adapter has no adapter_scale setting",
    ),
    "--adapters and -t adapter": (
        lambda t, m, p, d: ["run", "demo", "--adapters", "lora", "-t", "adapter=ssf", "--db", f"sqlite:///{t}/a.db"],
        2,
        "give the adapter once",
    ),
    "tune over several adapters": (
        lambda t, m, p, d: ["tune", "demo", "--adapters", "lora,ssf", "--db", f"sqlite:///{t}/a.db"],
        2,
        "tune compares methods within one adapter kind",
    ),
    "plot --kind step --on heldout": (
        lambda t, m, p, d: ["plot", "grad-norm", "--kind", "step", "--on", "heldout", "--out", f"{t}/g.png", "--db", d],
        2,
        "--kind step is measured on the training batches only",
    ),
    "plot a λ sweep that was not run": (
        lambda t, m, p, d: ["plot", "lambda-sweep", "--out", f"{t}/g.png", "--db", d],
        1,
        "no λ sweep among the finished",
    ),
    "report --all without html": (
        lambda t, m, p, d: ["report", "--all", "--db", d],
        2,
        "--all writes one HTML page: add --format html --out report.html",
    ),
    "sweep an unknown name": (lambda t, m, p, d: ["sweep", "figure9", "--db", d], 2, "unknown sweep 'figure9'"),
    "sweep --grid over what it does not search": (
        lambda t, m, p, d: ["sweep", "figure5", "--suite", "demo", "--grid", "lam=1,2", "--db", d],
        2,
        "--grid lam: no method of this sweep searches it",
    ),
    "export --format xlsx": (
        lambda t, m, p, d: ["export", "--format", "xlsx", "--out", str(t), "--db", d],
        2,
        "--format must be one of csv, parquet, json",
    ),
    "export-model to a .pt file": (
        lambda t, m, p, d: ["export-model", "1", "--out", f"{t}/m.pt", "--db", d],
        2,
        "export-model writes a .safetensors file",
    ),
    "export-model of no such run": (
        lambda t, m, p, d: ["export-model", "999", "--out", f"{t}/m.safetensors", "--db", d],
        2,
        "no run '999' in",
    ),
    "export-model of a run number beyond any id": (
        lambda t, m, p, d: ["export-model", "99999999999999999999", "--out", f"{t}/m.safetensors", "--db", d],
        2,
        "no run '99999999999999999999' in",
    ),
    "export --out onto a file": (
        lambda t, m, p, d: ["export", "--out", _file(t), "--db", d],
        2,
        "is a file; export writes runs.csv, epochs.csv and predictions.csv into a folder",
    ),
    "export --out where nothing can be written": (
        lambda t, m, p, d: ["export", "--out", "/proc/x", "--db", d],
        1,
        "cannot write /proc/x",
    ),
    "--seeds with no number": (
        lambda t, m, p, d: ["run", "demo", "--seeds", ",,,", "--db", d],
        2,
        "--seeds takes comma-separated integers, e.g. 0,1,2; got ',,,'",
    ),
    "an integer setting beyond the database's columns": (
        lambda t, m, p, d: ["run", "demo", "-t", "epochs=99999999999999999999", "--db", d],
        2,
        "training setting epochs = 99999999999999999999 is out of range",
    ),
    "image smaller than a patch": (
        lambda t, m, p, d: ["run", "demo", "-t", "image_size=3", "--db", d],
        2,
        "image_size=3 does not fit backbone vit_demo",
    ),
    "demo shots that do not fit the digits": (
        lambda t, m, p, d: ["run", "demo", "--db", d, *_demo_shots(t, m, -3)],
        2,
        "demo option shots=-3 does not fit the digits",
    ),
    "an augmentation the data cannot take": (
        lambda t, m, p, d: ["run", "demo", "--epochs", "1", "-t", "augment=strong", "--db", f"sqlite:///{t}/dev.db"],
        2,
        "suite demo's reader (demo) cannot apply augment=strong; use augment=standard",
    ),
    "--device tpu": (
        lambda t, m, p, d: ["run", "demo", "--device", "tpu", "--db", f"sqlite:///{t}/dev.db"],
        2,
        "invalid --device 'tpu'",
    ),
    "--device tpu in a dry run or a plan for elsewhere": (
        lambda t, m, p, d: ["run", "demo", "--device", "tpu", "--enqueue-only", "--db", f"sqlite:///{t}/dev.db"],
        2,
        "invalid --device 'tpu'",
    ),
    "--threads 0 in a dry run": (
        lambda t, m, p, d: ["run", "demo", "--threads", "0", "--dry-run", "--db", f"sqlite:///{t}/dev.db"],
        2,
        "--jobs and --threads must be >= 1",
    ),
    "--device cuda without CUDA": (
        lambda t, m, p, d: ["run", "demo", "--device", "cuda", "--db", f"sqlite:///{t}/dev.db"],
        2,
        "CUDA is not available here",
    ),
    "--jobs 0": (
        lambda t, m, p, d: ["run", "demo", "--device", "cpu", "--jobs", "0", "--db", f"sqlite:///{t}/dev.db"],
        2,
        "--jobs and --threads must be >= 1, got 0 and 1",
    ),
    "worker --keys-file missing": (
        lambda t, m, p, d: ["worker", "--keys-file", f"{t}/none.json", "--db", d],
        2,
        "cannot read --keys-file",
    ),
    "worker --keys-file not JSON": (
        lambda t, m, p, d: ["worker", "--keys-file", _file(t), "--db", d],
        2,
        "is not JSON; it holds a list of run keys",
    ),
    "a worker setting that is not a number": (
        lambda t, m, p, d: ["status", "--db", d, *_env(m, "PACEBENCH_HEARTBEAT_S", "abc")],
        2,
        "$PACEBENCH_HEARTBEAT_S must be float, got 'abc'",
    ),
    "a results folder that is a file": (
        lambda t, m, p, d: ["run", "demo", "--epochs", "1", *_env(m, "PACEBENCH_RESULTS", _a_file(t))],
        2,
        "is a file, not a folder; point PACEBENCH_RESULTS at a folder",
    ),
    "bench on a named backbone": (
        lambda t, m, p, d: ["bench", "--backbone", "vit_demo", "--no-store"],
        2,
        "unknown timm architecture 'vit_demo' (vit_demo is a named backbone",
    ),
    "a suite file that is not UTF-8": (lambda t, m, p, d: ["suites", *_latin_suite(t, m)], 2, "is not UTF-8 text"),
    "two suite files of one name": (lambda t, m, p, d: ["suites", *_twice(t, m)], 2, "both define suite 'twice'"),
    "a dataset name that is a path": (
        lambda t, m, p, d: ["suites", *_escaping(t, m)],
        2,
        "dataset name '../../../escaped' is not a plain name",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_with_its_exit_code(case, tmp_path, monkeypatch, sqlite_pragmas, demo_db):
    from pacebench.plan.suites import all_suites

    args, code, message = CASES[case]
    result = runner.invoke(app, args(tmp_path, monkeypatch, sqlite_pragmas, demo_db))
    all_suites.cache_clear()  # a case may have pointed PACEBENCH_SUITES elsewhere
    assert_one_line_error(result, code, message)


def test_each_case_is_in_the_documented_table():
    table = DOCS.read_text()
    for case, (_, code, message) in CASES.items():
        rows = [line for line in table.splitlines() if line.startswith("|") and message in line]
        assert rows, f"docs/errors.md has no row quoting {message!r} ({case})"
        assert any(line.rstrip(" |").endswith(f"| {code}") for line in rows), f"{case}: exit code {code} not in {rows}"


def test_nothing_is_written_where_it_should_not_be(tmp_path, monkeypatch, sqlite_pragmas, demo_db):
    foreign = _foreign(tmp_path)
    before = (tmp_path / "other.db").read_bytes()
    for command in (["db", "upgrade"], ["runs"], ["db", "current"]):
        runner.invoke(app, [*command, "--db", foreign])
    assert (tmp_path / "other.db").read_bytes() == before
    for command in (["runs"], ["report"], ["db", "current"], ["plot", "grad-norm"]):
        runner.invoke(app, [*command, "--db", f"sqlite:///{tmp_path}/typo.db"])
    assert not (tmp_path / "typo.db").exists()
    for case in ("unknown adapter", "a kind whose library is missing"):
        runner.invoke(app, CASES[case][0](tmp_path, monkeypatch, sqlite_pragmas, demo_db))
        assert not (tmp_path / "a.db").exists(), case  # refused while planning: no database, no failed run row
    for case in (
        "an augmentation the data cannot take",
        "--device tpu",
        "--device tpu in a dry run or a plan for elsewhere",
        "--device cuda without CUDA",
        "--jobs 0",
        "a job array of no tasks",
    ):
        runner.invoke(app, CASES[case][0](tmp_path, monkeypatch, sqlite_pragmas, demo_db))
        assert not (tmp_path / "dev.db").exists(), case  # refused before the plan is written
    runner.invoke(app, CASES["corrupt .npz"][0](tmp_path, monkeypatch, sqlite_pragmas, demo_db))
    with sqlite3.connect(tmp_path / "w.db") as con:
        ((status, error),) = con.execute("select status, error from runs").fetchall()
    assert status == "failed" and "cannot read weights file" in error and "\n" not in error  # no stored traceback
