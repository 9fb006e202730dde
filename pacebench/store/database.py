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

Outages. A database that was reached once and then goes away for a moment (a PostgreSQL restart, connections
dropped by a proxy or an administrator, a SQLite file locked or made read-only) is waited out: every store call is
retried with back-off (`retried`) for up to the grace (`PACEBENCH_DB_GRACE_S`), counted from the outage's start,
and only then fails with a one-line `StoreError`. A database that cannot be reached when it is opened is an error at
once (a typo in --db must not wait minutes). Before every transaction a SQLite file is looked at: made read-only
(chmod, `chattr +i`) it is waited for like an outage, instead of being written through a handle opened before;
deleted or replaced, it is a `StoreError` at once, never a run reported done into a file nobody can open.
Every URL shown, logged or stored is `display_url`'s: its password masked.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from pacebench.errors import PacebenchError, UsageError
from pacebench.settings import WorkerSettings
from pacebench.store.base import StoreError, utcnow
from pacebench.store.models import Base

log = logging.getLogger(__name__)
T = TypeVar("T")

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
            raise PacebenchError(
                f"{url} is not a pacebench database (it has tables {', '.join(sorted(tables))} "
                f"but no pacebench schema revision); {FIX} and name a new or pacebench file"
            )
        return None
    try:
        _script().get_revision(current)
    except CommandError:
        raise PacebenchError(
            f"database {url} has schema revision {current!r}, which this pacebench does not know "
            f"(made by a newer version?); upgrade pacebench or {FIX}"
        ) from None
    return current


def _check_tables(conn: Connection, url: str) -> None:
    missing = sorted(set(Base.metadata.tables) - set(inspect(conn).get_table_names()))
    if missing:
        raise PacebenchError(
            f"database {url} lacks the table(s) {', '.join(missing)} (damaged?); restore it from a backup or {FIX}"
        )


def upgrade(engine: Engine, url: str = "") -> str | None:
    """Brings the schema to the newest revision in one transaction under the write lock, so a failure leaves the
    database as it was and concurrent first opens create it once; returns the revision it was at (None: empty)."""
    url = url or display_url(engine.url)
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
    shown = display_url(url)
    try:
        engine = _make_engine(url, readonly=True)
        with engine.connect() as conn:
            return check_schema(conn, shown), head_revision()
    except (SQLAlchemyError, OSError) as exc:
        raise database_error(shown, exc, "cannot open ") from None


def display_url(url: str | URL) -> str:
    """`url` with its password masked (also one given as a `password=` query parameter): the only form of a
    database URL that is printed, logged, stored or rendered."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads: mask anything between "user:" and "@"
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", str(url))
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _sqlite_file(url: URL) -> Path | None:
    return (
        Path(url.database)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        else None
    )


def _make_engine(url: str, readonly: bool = False) -> Engine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UsageError(
            f"cannot parse database URL {display_url(url)!r}; use e.g. sqlite:///results/pacebench.db "
            "or postgresql://user@host/db"
        ) from None
    path = _sqlite_file(parsed)
    if parsed.get_backend_name() == "sqlite" and path is None:
        raise UsageError(
            f"--db {url} is an in-memory database: its results would vanish when the "
            "command exits; name a file, e.g. sqlite:///results/pacebench.db"
        )
    if path is None:  # a server: stale pooled connections are replaced before use; an unreachable one fails fast
        timeout = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
        return create_engine(parsed, pool_pre_ping=True, connect_args=timeout)
    if readonly:
        if not path.is_file():
            raise PacebenchError(f"no database at {path} ({display_url(url)}); {FIX}, or make one with `pacebench run`")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))  # an empty file is an empty database
    # "rw"/"ro": never create a file, so a database deleted while in use is noticed instead of made again, empty
    parsed = parsed.set(database=path.resolve().as_uri(), query={"mode": "ro" if readonly else "rw", "uri": "true"})
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


def _reason(exc: BaseException) -> str:
    """The driver's message as one line (SQLAlchemy's wrapper adds the statement and a link)."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "readonly", "read-only", "disk i/o error")


class FileReadOnly(Exception):
    """The SQLite file of a store opened for writing cannot be written now (its mode, or `chattr +i`)."""


def is_transient(exc: BaseException, dialect: str) -> bool:
    """Whether `exc` is the database being away for a moment (a restart, a dropped or refused connection, a lock,
    a SQLite file made read-only) rather than a fault that would come back on every try (a full disk, a missing
    table, a constraint)."""
    if isinstance(exc, DisconnectionError | PoolTimeout | FileReadOnly):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    return dialect != "sqlite" or any(word in _reason(exc).lower() for word in SQLITE_TRANSIENT)


def database_error(url: str, exc: BaseException, doing: str = "") -> StoreError:
    """A database failure as one line with its likely fix (disk full, read-only file, missing table); `url` is
    the one shown (`display_url`)."""
    reason = _reason(exc)
    hints = {
        "disk is full": "free disk space, then run again (finished runs are kept)",
        "readonly": "the database file or its folder is read-only; fix the permissions or " + FIX,
        "read-only": "the database file or its folder is read-only; fix the permissions or " + FIX,
        "no such table": "the database is damaged or not pacebench's; " + FIX,
        "no such column": "the database is damaged or not pacebench's; " + FIX,
        "locked": "another process holds the database too long; retry",
    }
    hint = next((h for key, h in hints.items() if key in reason.lower()), FIX)
    return StoreError(f"{doing}database {url}: {reason}; {hint}")


def retried(method: Callable[..., T]) -> Callable[..., T]:
    """A store method that waits out an outage: called again after a transient error (`Database.retrying`). The
    methods of the store's parts carry it; each is short and safe to repeat."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        return self.db.retrying(lambda: method(self, *args, **kwargs))

    return wrapper


class Database:
    """An open database: its engine, one short transaction at a time, and the patience to wait out an outage.

    Opening it for writing creates or upgrades its schema; `readonly` opens an existing database at the newest
    revision and changes nothing (a missing SQLite file is an error, not a new empty database). `grace_s`: how long
    an outage is waited out (default `PACEBENCH_DB_GRACE_S`)."""

    BACKOFF_MAX_S = 2.0  # the longest wait between two tries: well under any lease, so a holder beats in time

    def __init__(self, url: str, readonly: bool = False, grace_s: float | None = None) -> None:
        self.url, self.display_url = url, display_url(url)
        settings = WorkerSettings.from_env()
        self.grace_s = settings.db_grace_s if grace_s is None else grace_s
        # A transaction that took longer than half a lease is counted as an outage too: a paused or overloaded
        # server hangs its clients instead of failing them, and the holders' heartbeats hung with ours.
        self.stall_s = settings.lease_s / 2
        self._watched_since: datetime | None = None  # the end of this process's last outage
        self._open: dict[int, float] = {}  # monotonic start of each transaction in flight, by its session's id
        self._outage_lock = threading.Lock()
        self._outage_start: float | None = None  # monotonic time of the current outage's first failure
        try:
            self.engine = _make_engine(url, readonly)
            if readonly:
                self._check_readable()
            else:
                upgrade(self.engine, self.display_url)
        except PacebenchError:
            raise
        except (SQLAlchemyError, ImportError, OSError) as exc:
            raise database_error(self.display_url, exc, "cannot open ") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._file = _sqlite_file(make_url(url))
        self._identity = self._file_identity()
        self._writes = not readonly

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def with_grace(self, grace_s: float) -> Database:
        """The same database (engine, file) with another grace: 0 fails at once, for a display."""
        other = copy.copy(self)
        other.grace_s = grace_s
        return other

    def _check_readable(self) -> None:
        shown = self.display_url
        with self.engine.connect() as conn:
            current = check_schema(conn, shown)
            head = head_revision()
            if current is None:
                raise PacebenchError(
                    f"{shown} holds no pacebench results (empty database); {FIX}, or make one with `pacebench run`"
                )
            if current != head:
                raise PacebenchError(
                    f"database {shown} is at schema revision {current}, older than this "
                    f"pacebench's {head}; run `pacebench db upgrade --db {shown}` first"
                )
            _check_tables(conn, shown)

    # ---- a SQLite file that vanishes or is made read-only ---------------------------------------------------------
    def _file_identity(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            stat = self._file.stat()
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _check_file(self) -> None:
        """Raises when the SQLite file was deleted or replaced since it was opened: what was written since went to a
        file nobody can open again, so the run must not be reported done."""
        if self._identity is not None and self._file_identity() != self._identity:
            raise StoreError(
                f"database {self.display_url}: the file was deleted or replaced while pacebench was "
                "using it, and what was written since is lost; restore it from a backup (or start a "
                "new one) and rerun"
            )

    def _check_writable(self) -> None:
        """A file its owner made read-only is not written to, though pooled connections opened before still could:
        the store waits for it like for an outage (`os.access` sees `chattr +i` even as root)."""
        if self._file is not None and self._writes and not os.access(self._file, os.W_OK):
            raise FileReadOnly(f"the file {self._file} is read-only")

    # ---- transactions ---------------------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error, always close. A transient error (see
        `is_transient`) is raised as it is, for `retrying`; an IntegrityError is the caller's; any other database
        failure (disk full, damaged schema) becomes a one-line `StoreError`. One that hung past `stall_s` moves
        `watched_since`, like the end of an outage."""
        self._check_file()
        self._check_writable()
        session = self._sessions()
        self._opened(session)
        try:
            yield session
            session.commit()
            self._closed(session, answered=True)
        except DBAPIError as exc:
            with suppress(Exception):  # the connection may be gone with the server
                session.rollback()
            if isinstance(exc, IntegrityError) or is_transient(exc, self.dialect):
                raise
            raise database_error(self.display_url, exc) from None
        except BaseException:
            with suppress(Exception):
                session.rollback()
            raise
        finally:
            self._closed(session, answered=False)
            with suppress(Exception):
                session.close()
        self._check_file()

    def _opened(self, session: Session) -> None:
        with self._outage_lock:
            self._open[id(session)] = time.monotonic()

    def _closed(self, session: Session, answered: bool) -> None:
        with self._outage_lock:
            started = self._open.pop(id(session), None)
            if answered and started is not None and time.monotonic() - started > self.stall_s:
                self._watched_since = utcnow()

    @property
    def watched_since(self) -> datetime | None:
        """When this process last saw the database come back after an outage, or answer after hanging past
        `stall_s`; now, while an outage lasts or one of its transactions hangs (the call that rides out an outage
        judges holders before its end is recorded, and another thread may judge a holder whose heartbeat hangs the
        same way). `base.holder_gone` counts a holder's silence only from then."""
        with self._outage_lock:
            oldest = min(self._open.values(), default=None)
            if self._outage_start is not None or (oldest is not None and time.monotonic() - oldest > self.stall_s):
                return utcnow()
            return self._watched_since

    def retrying(self, work: Callable[[], T]) -> T:
        """`work()`, tried again with back-off while it fails with a transient error, until the outage has lasted
        `grace_s`; then a one-line `StoreError`. The first failure of an outage and its end are logged."""
        delay = 0.1
        while True:
            try:
                result = work()
            except Exception as exc:
                if not is_transient(exc, self.dialect):
                    raise
                self._check_file()  # a deleted file is no outage: it will not come back
                started = self._outage_began(exc)
                waited = time.monotonic() - started
                if waited >= self.grace_s:
                    raise StoreError(
                        f"database {self.display_url}: {_reason(exc)}, for {waited:.0f} s (the grace, "
                        f"PACEBENCH_DB_GRACE_S={self.grace_s:g}, is over); rerun once it is back: finished runs "
                        "and checkpoints are kept"
                    ) from None
                time.sleep(min(delay, self.grace_s - waited))  # the last try falls on the grace's end
                delay = min(2 * delay, self.BACKOFF_MAX_S)
            else:
                self._outage_ended()
                return result

    def _outage_began(self, exc: BaseException) -> float:
        """When the outage that `exc` belongs to began (now, for its first failure, which is logged)."""
        with self._outage_lock:
            if self._outage_start is None:
                self._outage_start = time.monotonic()
                if self.grace_s > 0:
                    log.warning(
                        f"database {self.display_url} unreachable ({_reason(exc)}); waiting for it "
                        f"for up to {self.grace_s:g} s (PACEBENCH_DB_GRACE_S)"
                    )
            return self._outage_start

    def _outage_ended(self) -> None:
        if self._outage_start is None:
            return
        with self._outage_lock:
            if self._outage_start is not None:
                if self.grace_s > 0:
                    log.info(f"database {self.display_url} is back after {time.monotonic() - self._outage_start:.0f} s")
                self._outage_start, self._watched_since = None, utcnow()
