"""The database part of the SQL store: the engine, its schema (created and migrated on open), and one short
transaction at a time. Runs (`store.runs`) and the queue (`store.queue`) write through it.

Every write is one short transaction, so a crash or a kill loses at most the epoch in flight and never a finished
run. SQLite runs in WAL mode with a busy timeout, so one writer per worker and any number of readers work on one
machine; for several machines use PostgreSQL (SQLite over a network file system is not safe).

Opening a database for writing creates or migrates its schema in one transaction that holds the database's write
lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so a failed first open (disk full) leaves no half-built
schema and several processes opening a fresh database at once create it exactly once. A database that is not
pacebench's (tables but no schema revision), or whose revision this version does not know, is refused untouched.
Read-only opens (`runs`, `report`, `plot`, `db current`) never create or migrate anything.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pacebench.errors import PacebenchError, UsageError
from pacebench.store.base import StoreError
from pacebench.store.models import Base

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


_PG_LOCK = 0x70616365  # "pace": the advisory lock that serialises schema changes on PostgreSQL
FIX = "check --db / PACEBENCH_DB"


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config(None))


def head_revision() -> str:
    """The newest Alembic revision shipped with this package (what `upgrade` brings a database to)."""
    head = _script().get_current_head()
    assert head is not None
    return head


def _lock_schema(conn: Connection) -> None:
    """Takes the database's write lock for the rest of the transaction, before the revision is read."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")


def check_schema(conn: Connection, url: str) -> str | None:
    """The schema revision of the database, after refusing a foreign, unknown (newer) or damaged one."""
    current = MigrationContext.configure(conn).get_current_revision()
    tables = set(inspect(conn).get_table_names())
    if current is None:
        if tables:
            raise PacebenchError(f"{url} is not a pacebench database (it has tables {', '.join(sorted(tables))} "
                                 f"but no pacebench schema revision); {FIX} and name a new or pacebench file")
        return None
    try:
        _script().get_revision(current)
    except CommandError:
        raise PacebenchError(f"database {url} has schema revision {current!r}, which this pacebench does not know "
                             f"(made by a newer version?); upgrade pacebench or {FIX}") from None
    return current


def _check_tables(conn: Connection, url: str) -> None:
    missing = sorted(set(Base.metadata.tables) - set(inspect(conn).get_table_names()))
    if missing:
        raise PacebenchError(f"database {url} lacks the table(s) {', '.join(missing)} (damaged?); restore it from "
                             f"a backup or {FIX}")


def upgrade(engine: Engine, url: str = "") -> str | None:
    """Brings the schema to the newest revision in one transaction under the write lock, so a failure leaves the
    database as it was and concurrent first opens create it once; returns the revision it was at (None: empty)."""
    url = url or engine.url.render_as_string(hide_password=True)
    with engine.connect().execution_options(sqlite_begin="BEGIN IMMEDIATE") as conn, conn.begin():
        _lock_schema(conn)
        current = check_schema(conn, url)
        if current != head_revision():
            command.upgrade(_alembic_config(conn), "head")
        _check_tables(conn, url)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        _use_wal(engine)  # set once the file is known to be ours
    return current


def _use_wal(engine: Engine, wait_s: float = 30.0) -> None:
    """Puts the SQLite file in WAL mode (persistent in the file), outside any transaction. The switch needs every
    other connection's lock released and SQLite does not wait for that (no busy timeout), so while another process
    that opened the file at the same moment still holds its lock, the switch is retried for up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        finally:
            raw.close()
        time.sleep(0.05)


def schema_revision(url: str) -> tuple[str | None, str]:
    """(the revision of the database at `url`, the newest revision), read-only; a missing SQLite file, a foreign
    database or an unknown revision is a `PacebenchError`."""
    try:
        engine = _make_engine(url, readonly=True)
        with engine.connect() as conn:
            return check_schema(conn, url), head_revision()
    except (SQLAlchemyError, OSError) as exc:
        raise database_error(url, exc, "cannot open ") from None


def _sqlite_file(url: URL) -> Path | None:
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
        else None


def _make_engine(url: str, readonly: bool = False) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"cannot parse database URL {url!r}; use e.g. sqlite:///results/pacebench.db "
                         "or postgresql://user@host/db") from None
    path = _sqlite_file(parsed)
    if path is None:
        return create_engine(parsed, pool_pre_ping=True)
    if readonly:
        if not path.is_file():
            raise PacebenchError(f"no database at {path} ({url}); {FIX}, or make one with `pacebench run`")
        parsed = parsed.set(database=path.resolve().as_uri(), query={"mode": "ro", "uri": "true"})
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite would not BEGIN before DDL: "begin" below does it always
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine


def database_error(url: str, exc: BaseException, doing: str = "") -> StoreError:
    """A database failure as one line with its likely fix (disk full, read-only file, missing table)."""
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    hints = {"disk is full": "free disk space, then run again (finished runs are kept)",
             "readonly": "the database file or its folder is read-only; fix the permissions or " + FIX,
             "read-only": "the database file or its folder is read-only; fix the permissions or " + FIX,
             "no such table": "the database is damaged or not pacebench's; " + FIX,
             "no such column": "the database is damaged or not pacebench's; " + FIX,
             "locked": "another process holds the database too long; retry"}
    hint = next((h for key, h in hints.items() if key in reason.lower()), FIX)
    return StoreError(f"{doing}database {url}: {reason}; {hint}")




class Database:
    """An open database: its engine and one short transaction at a time. Opening it for writing creates or
    upgrades its schema; `readonly` opens an existing database at the newest revision and changes nothing (a
    missing SQLite file is an error, not a new empty database)."""

    def __init__(self, url: str, readonly: bool = False) -> None:
        self.url = url
        try:
            self.engine = _make_engine(url, readonly)
            if readonly:
                self._check_readable()
            else:
                upgrade(self.engine, url)
        except PacebenchError:
            raise
        except (SQLAlchemyError, ImportError, OSError) as exc:
            raise database_error(url, exc, "cannot open ") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _check_readable(self) -> None:
        with self.engine.connect() as conn:
            current = check_schema(conn, self.url)
            head = head_revision()
            if current is None:
                raise PacebenchError(f"{self.url} holds no pacebench results (empty database); {FIX}, or make "
                                     "one with `pacebench run`")
            if current != head:
                raise PacebenchError(f"database {self.url} is at schema revision {current}, older than this "
                                     f"pacebench's {head}; run `pacebench db upgrade --db {self.url}` first")
            _check_tables(conn, self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error, always close. A database failure (disk
        full, read-only file, damaged schema) becomes a one-line `StoreError`; an IntegrityError is the caller's."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except DBAPIError as exc:
            session.rollback()
            if isinstance(exc, IntegrityError):
                raise
            raise database_error(self.url, exc) from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
