"""Every bad input of docs/errors.md: one `error:` line naming the problem and the fix, the documented exit code,
no exception left in the runner, and nothing lost or written where it should not be. The table in docs/errors.md
lists the same cases; a test checks that each message here is quoted there."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
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
    (tmp_path / "suites" / "mine.toml").write_text('reader = "vtab"\nbackbone = "vit_b16_in21k"\n'
                                                   '[datasets.cifar]\nclasses = "five"\n')
    monkeypatch.setenv("PACEBENCH_SUITES", str(tmp_path / "suites"))
    from pacebench.plan.suites import all_suites

    all_suites.cache_clear()
    return []


def _corrupt(tmp_path: Path, suffix: str) -> str:
    path = tmp_path / f"w{suffix}"
    path.write_bytes(b"\x93NUMPY this is no checkpoint" * 4)
    return str(path)


WEIGHTS = ["--backbone", "vit_tiny_patch16_224", "-t", "image_size=16"]

# name: (args(tmp_path, monkeypatch, pragmas, demo_db) -> CLI arguments, exit code, message on the error line)
Args = Callable[..., list[str]]
CASES: dict[str, tuple[Args, int, str]] = {
    "revision newer or unknown": (lambda t, m, p, d: ["runs", "--db", _db(t, "update alembic_version set "
                                                                          "version_num = '0099_future'")],
                                  1, "which this pacebench does not know (made by a newer version?)"),
    "db current on an unknown revision": (lambda t, m, p, d: ["db", "current", "--db", _db(
        t, "update alembic_version set version_num = '0099_future'")], 1, "which this pacebench does not know"),
    "missing table": (lambda t, m, p, d: ["runs", "--db", _db(t, "drop table epochs")], 1,
                      "lacks the table(s) epochs (damaged?)"),
    "read-only database file on write": (lambda t, m, p, d: ["db", "upgrade", "--db", _pragma(p, "query_only=ON",
                                                                                              _db(t))],
                                         1, "attempt to write a readonly database"),
    "disk full": (lambda t, m, p, d: ["db", "upgrade", "--db", _pragma(p, "max_page_count=4", f"sqlite:///{t}/n.db")],
                  1, "database or disk is full; free disk space"),
    "foreign SQLite file": (lambda t, m, p, d: ["db", "upgrade", "--db", _foreign(t)], 1,
                            "is not a pacebench database (it has tables runs"),
    "in-memory database": (lambda t, m, p, d: ["run", "demo", "--db", "sqlite://"], 2,
                           "--db sqlite:// is an in-memory database: its results would vanish when the command exits"),
    "unparsable database URL": (lambda t, m, p, d: ["runs", "--db", "postgresql://me:pw@host:port/db"], 2,
                                "cannot parse database URL 'postgresql://me:***@host:port/db'"),
    "PACEBENCH_DB_GRACE_S not a number": (lambda t, m, p, d: [m.setenv("PACEBENCH_DB_GRACE_S", "soon"), "runs",
                                                              "--db", d][1:], 2,
                                          "PACEBENCH_DB_GRACE_S='soon' is not a number"),
    "no database for a read-only command": (lambda t, m, p, d: ["runs", "--db", f"sqlite:///{t}/typo.db"], 1,
                                            "no database at"),
    "report --out a directory": (lambda t, m, p, d: ["report", "--table", "demo", "--format", "csv", "--out",
                                                     str(t), "--db", d], 1, "cannot write"),
    "report --out under /proc": (lambda t, m, p, d: ["report", "--table", "demo", "--format", "md", "--out",
                                                     "/proc/t.md", "--db", d], 1, "cannot write /proc/t.md"),
    "plot --out under /proc": (lambda t, m, p, d: ["plot", "grad-norm", "--out", "/proc/g.png", "--db", d], 1,
                               "cannot write /proc/g.png"),
    "plot --out g.jpg": (lambda t, m, p, d: ["plot", "grad-norm", "--out", f"{t}/g.jpg", "--db", d], 2,
                         "name the file .png, .pdf or .svg"),
    "--seeds out of range": (lambda t, m, p, d: ["run", "demo", "--seeds", "99999999999", "--db", d], 2,
                             "--seeds: 99999999999 is out of range"),
    "bad value in a suite file": (lambda t, m, p, d: ["suites", *_bad_suite(t, m)], 2,
                                  "classes must be a positive integer, got 'five'"),
    "inspect --image-size 0": (lambda t, m, p, d: ["inspect", "--image-size", "0"], 2, "--image-size must be >= 1"),
    "inspect --classes 0": (lambda t, m, p, d: ["inspect", "--classes", "0"], 2, "--classes must be >= 1"),
    "inspect --sigma nan": (lambda t, m, p, d: ["inspect", "--sigma", "nan"], 2, "--sigma must be finite and >= 0"),
    "lr inf": (lambda t, m, p, d: ["run", "demo", "-t", "lr=inf", "--db", d], 2,
               "training setting lr must be a finite number, got 'inf'"),
    "weight decay inf": (lambda t, m, p, d: ["run", "demo", "-t", "weight_decay=inf", "--db", d], 2,
                         "training setting weight_decay must be a finite number"),
    "λ inf": (lambda t, m, p, d: ["run", "demo", "--hp", "lam=inf", "--db", d], 2,
              "hyperparameter lam must be a finite number, got 'inf'"),
    "σ inf": (lambda t, m, p, d: ["run", "demo", "--hp", "sigma=inf", "--db", d], 2,
              "hyperparameter sigma must be a finite number"),
    "copies unbounded": (lambda t, m, p, d: ["run", "demo", "-m", "pace_multi", "--hp", "copies=1000", "--db", d], 2,
                         "copies=1000: needs 2 <= M <= 16"),
    "min_lr < 0": (lambda t, m, p, d: ["run", "demo", "-t", "min_lr=-1", "--db", d], 2,
                   "invalid training setting min_lr=-1.0"),
    "corrupt .safetensors": (lambda t, m, p, d: ["run", "demo", "-m", "baseline", *WEIGHTS, "--weights",
                                                 _corrupt(t, ".safetensors"), *TINY, "--db", f"sqlite:///{t}/w.db"],
                             1, "cannot read weights file"),
    "corrupt .npz": (lambda t, m, p, d: ["run", "demo", "-m", "baseline", *WEIGHTS, "--weights", _corrupt(t, ".npz"),
                                         *TINY, "--db", f"sqlite:///{t}/w.db"], 1,
                     "is it Google's .npz ViT checkpoint"),
    "unknown adapter": (lambda t, m, p, d: ["run", "demo", "-t", "adapter=nosuch", "--db", f"sqlite:///{t}/a.db"], 2,
                        "unknown adapter 'nosuch'"),
    "plot --kind step --on heldout": (lambda t, m, p, d: ["plot", "grad-norm", "--kind", "step", "--on", "heldout",
                                                          "--out", f"{t}/g.png", "--db", d], 2,
                                      "--kind step is measured on the training batches only"),
    "plot a λ sweep that was not run": (lambda t, m, p, d: ["plot", "lambda-sweep", "--out", f"{t}/g.png", "--db", d],
                                        1, "no λ sweep among the finished"),
    "report --all without html": (lambda t, m, p, d: ["report", "--all", "--db", d], 2,
                                  "--all writes one HTML page: add --format html --out report.html"),
    "sweep an unknown name": (lambda t, m, p, d: ["sweep", "figure9", "--db", d], 2, "unknown sweep 'figure9'"),
    "sweep --grid over what it does not search": (lambda t, m, p, d: ["sweep", "figure5", "--suite", "demo", "--grid",
                                                                      "lam=1,2", "--db", d], 2,
                                                  "--grid lam: no method of this sweep searches it"),
    "export --format xlsx": (lambda t, m, p, d: ["export", "--format", "xlsx", "--out", str(t), "--db", d], 2,
                             "--format must be one of csv, parquet, json"),
    "export-model to a .pt file": (lambda t, m, p, d: ["export-model", "1", "--out", f"{t}/m.pt", "--db", d], 2,
                                   "export-model writes a .safetensors file"),
    "export-model of no such run": (lambda t, m, p, d: ["export-model", "999", "--out", f"{t}/m.safetensors", "--db",
                                                        d], 2, "no run '999' in"),
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
    runner.invoke(app, CASES["unknown adapter"][0](tmp_path, monkeypatch, sqlite_pragmas, demo_db))
    assert not (tmp_path / "a.db").exists()  # refused while planning: no database, no failed run row
    runner.invoke(app, CASES["corrupt .npz"][0](tmp_path, monkeypatch, sqlite_pragmas, demo_db))
    with sqlite3.connect(tmp_path / "w.db") as con:
        ((status, error),) = con.execute("select status, error from runs").fetchall()
    assert status == "failed" and "cannot read weights file" in error and "\n" not in error  # no stored traceback
