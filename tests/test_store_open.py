"""Opening the results database: atomic and concurrent first opens, foreign / newer / damaged databases, read-only
opens, the ORM against the migration head, and upgrading a database made by pacebench 0.1.0."""

from __future__ import annotations

import math
import multiprocessing
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table

from pacebench.errors import PacebenchError
from pacebench.store import EpochRecord, Store
from pacebench.store.database import _script
from pacebench.store.models import Base

FIRST_RELEASE = Path(__file__).parent / "data" / "pacebench-0.1.0.db"  # made by pacebench 0.1.0 (0001_v0_1_0)


def head() -> str:
    return _script().get_current_head()


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as con:
        return {r[0] for r in con.execute("select name from sqlite_master where type='table'")}


def test_failed_first_open_leaves_a_usable_database(tmp_path, sqlite_pragmas):
    path = tmp_path / "r.db"
    sqlite_pragmas.append("PRAGMA max_page_count=4")  # the disk fills up while the schema is being created
    with pytest.raises(PacebenchError, match="cannot open database .*full") as info:
        Store(f"sqlite:///{path}")
    assert "\n" not in str(info.value)
    assert tables(path) == set()  # nothing half-built
    sqlite_pragmas.clear()
    Store(f"sqlite:///{path}")
    assert set(Base.metadata.tables) | {"alembic_version"} == tables(path)


def test_disk_full_during_a_run_is_one_line(tmp_path, sqlite_pragmas):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    from conftest import written_run
    from test_store import spec

    run = written_run(store, spec(), status="running")
    sqlite_pragmas.append("PRAGMA max_page_count=1")
    store.engine.dispose()  # new connections get the limit
    with pytest.raises(PacebenchError, match=r"database .*full; free disk space"):
        store.write_epoch(run.id, run.claim, EpochRecord(epoch=0, loss=1.0, parts={"ce": "x" * 100_000}))


def test_read_only_file_on_write_is_one_line(tmp_path, sqlite_pragmas):
    Store(f"sqlite:///{tmp_path}/r.db")
    sqlite_pragmas.append("PRAGMA query_only=ON")  # SQLite answers as for a read-only file
    with pytest.raises(PacebenchError, match="readonly database; the database file or its folder is read-only"):
        Store(f"sqlite:///{tmp_path}/r.db")


def _open(url: str, barrier, errors) -> None:
    barrier.wait()
    try:
        Store(url)
    except Exception as exc:  # reported to the test, which fails on it
        errors.put(f"{type(exc).__name__}: {exc}")


def open_at_once(url: str, processes: int = 4) -> None:
    """Opens `url` from several processes released at the same moment; fails the test on any error."""
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_open, args=(url, barrier, errors)) for _ in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0] * processes and errors.empty(), errors.get()


def test_concurrent_first_opens_create_the_schema_once(tmp_path):
    open_at_once(f"sqlite:///{tmp_path}/fresh.db")
    with sqlite3.connect(tmp_path / "fresh.db") as con:
        assert con.execute("select version_num from alembic_version").fetchall() == [(head(),)]
        assert con.execute("pragma journal_mode").fetchone() == ("wal",)


def test_foreign_database_is_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as con:
        con.execute("create table runs (id integer primary key, name text)")
        con.execute("insert into runs (name) values ('mine')")
    before = path.read_bytes()
    with pytest.raises(PacebenchError, match="is not a pacebench database .*tables runs"):
        Store(f"sqlite:///{path}")
    assert path.read_bytes() == before and tables(path) == {"runs"}  # no stray alembic_version, no WAL switch


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            "update alembic_version set version_num = '0099_future'",
            "revision '0099_future', which this pacebench does not",
        ),
        ("drop table epochs", "lacks the table.s. epochs"),
    ],
)
def test_unknown_revision_or_missing_table_is_refused(tmp_path, damage, message):
    path = tmp_path / "r.db"
    Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as con:
        con.execute(damage)
    for readonly in (False, True):
        with pytest.raises(PacebenchError, match=message):
            Store(f"sqlite:///{path}", readonly=readonly)


def test_read_only_open_creates_and_migrates_nothing(tmp_path):
    with pytest.raises(PacebenchError, match="no database at .*typo.db"):
        Store(f"sqlite:///{tmp_path}/typo.db", readonly=True)
    assert not (tmp_path / "typo.db").exists()
    old = tmp_path / "old.db"
    shutil.copy(FIRST_RELEASE, old)
    with pytest.raises(PacebenchError, match="older than this pacebench.*pacebench db upgrade"):
        Store(f"sqlite:///{old}", readonly=True)
    assert old.read_bytes() == FIRST_RELEASE.read_bytes()
    Store(f"sqlite:///{old}")
    runs = Store(f"sqlite:///{old}", readonly=True).runs()
    assert [r.status for r in runs] == ["done"]


def test_upgrade_from_the_first_release_keeps_every_value(tmp_path):
    path = tmp_path / "r.db"
    shutil.copy(FIRST_RELEASE, path)
    store = Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as con:
        assert con.execute("select version_num from alembic_version").fetchall() == [(head(),)]
    (run,) = store.runs()
    assert (run.key, run.status, run.method, run.method_config) == (
        "100004b6d5d7309d",
        "done",
        "pace",
        {"lam": 1.0, "sigma": 1.2},
    )
    assert run.metrics["test_acc"] == 87.5 and run.metrics["fp_distance"] == math.inf
    first, last = store.epochs(run.id)
    assert math.isnan(first.loss) and last.fp_distance == math.inf and last.evals == {"test": 87.5}


def test_orm_models_equal_the_migration_head(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = Store(f"sqlite:///{tmp_path}/r.db")
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        assert compare_metadata(context, Base.metadata) == []
        changed = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(changed)
        Table("extra", changed)
        assert compare_metadata(context, changed)  # the comparison sees a difference when there is one


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on a loopback port (skipped where no server binaries or driver are installed).
    initdb refuses to run as root, so as root the server runs as `nobody` in a world-writable temporary folder."""
    import glob
    import os
    import socket
    import subprocess
    import tempfile

    pytest.importorskip("psycopg")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("no PostgreSQL server installed")
    bindir = Path(bins[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="pacebench-pg-"))
    folder.chmod(0o777)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_user = ["su", "nobody", "-s", "/bin/sh", "-c"] if os.geteuid() == 0 else ["sh", "-c"]
    start = (
        f"{bindir}/initdb -D {folder}/data -A trust -U postgres >{folder}/init.log 2>&1 && {bindir}/pg_ctl -w "
        f"-D {folder}/data -o '-p {port} -k {folder} -c listen_addresses=127.0.0.1' -l {folder}/log start"
    )
    if subprocess.run([*as_user, start], capture_output=True).returncode != 0:
        pytest.skip(f"could not start PostgreSQL: {(folder / 'init.log').read_text()[-300:]}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, f"{bindir}/pg_ctl -D {folder}/data -m immediate stop"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def test_postgres_concurrent_first_opens_and_refusals(postgres_url):
    open_at_once(postgres_url)
    assert Store(postgres_url, readonly=True).runs() == []
    from sqlalchemy import create_engine, text

    with create_engine(postgres_url).begin() as conn:
        conn.execute(text("update alembic_version set version_num = '0099_future'"))
    with pytest.raises(PacebenchError, match="which this pacebench does not know"):
        Store(postgres_url)


def test_the_wal_switch_waits_for_another_opener_to_let_go(tmp_path):
    """Switching a file to WAL needs every other connection's lock released, and SQLite does not wait for it: a
    process still inside its first open (here: a held write lock, released after 0.3 s) made a concurrent first
    open fail with "database is locked" about one time in twenty under load. The switch now retries."""
    import threading
    import time

    from sqlalchemy import create_engine

    from pacebench.store.database import _use_wal

    path = tmp_path / "w.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("create table t (x)")
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    start = time.monotonic()
    _use_wal(create_engine(f"sqlite:///{path}"), wait_s=10)
    release.join()
    holder.close()
    assert time.monotonic() - start >= 0.25, "it waited for the lock"
    with sqlite3.connect(path) as con:
        assert con.execute("pragma journal_mode").fetchone() == ("wal",)
