"""The results store: runs and their epochs in any SQLAlchemy database (SQLite by default).

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

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, select, update
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec
from pacebench.store.models import Base, EpochRow, RunRow, RunWeightsRow, SpeedRow
from pacebench.store.queue import QueueMixin
from pacebench.store.records import EpochRecord, RunRecord
from pacebench.store.rows import decode_tensors, epoch_record, new_run_row, put_epoch, put_weights, run_record, utcnow

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


_PG_LOCK = 0x70616365  # "pace": the advisory lock that serialises schema changes on PostgreSQL
FIX = "check --db / PACEBENCH_DB"


def _script() -> Any:
    from alembic.script import ScriptDirectory

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
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

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
    from alembic import command

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
    import sqlite3

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


def database_error(url: str, exc: BaseException, doing: str = "") -> PacebenchError:
    """A database failure as one line with its likely fix (disk full, read-only file, missing table)."""
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    hints = {"disk is full": "free disk space, then run again (finished runs are kept)",
             "readonly": "the database file or its folder is read-only; fix the permissions or " + FIX,
             "read-only": "the database file or its folder is read-only; fix the permissions or " + FIX,
             "no such table": "the database is damaged or not pacebench's; " + FIX,
             "no such column": "the database is damaged or not pacebench's; " + FIX,
             "locked": "another process holds the database too long; retry"}
    hint = next((h for key, h in hints.items() if key in reason.lower()), FIX)
    return PacebenchError(f"{doing}database {url}: {reason}; {hint}")


class Store(QueueMixin):
    """Opens the database at `url`: for writing, creating or upgrading its schema; `readonly`, an existing database
    at the newest revision, changing nothing (a missing SQLite file is an error, not a new empty database)."""

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
        full, read-only file, damaged schema) becomes a one-line `PacebenchError`."""
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

    # ---- runs -------------------------------------------------------------------------------------------------
    def add_run(self, spec: RunSpec, origin: str = "direct") -> RunRecord:
        """Inserts `spec` as a queued run, or returns the existing run with the same key (whatever its status)."""
        key = run_key(spec)
        existing = self.get_run(key)
        if existing is not None:
            return existing
        try:
            with self.session() as s:
                s.add(new_run_row(spec, origin, key))
        except IntegrityError:  # another worker inserted the same key first
            pass
        record = self.get_run(key)
        assert record is not None
        return record

    def get_run(self, key_or_id: str | int) -> RunRecord | None:
        column = RunRow.id if isinstance(key_or_id, int) else RunRow.key
        with self.session() as s:
            row = s.scalars(select(RunRow).where(column == key_or_id)).one_or_none()
            return None if row is None else run_record(row)

    def runs(self, **filters: Any) -> list[RunRecord]:
        """Runs matching equality filters on run columns (a list or tuple value means 'any of')."""
        query = select(RunRow).order_by(RunRow.id)
        for name, value in filters.items():
            if value is None:
                continue
            column = getattr(RunRow, name, None)
            if column is None:
                raise UsageError(f"cannot filter runs by {name!r}")
            query = query.where(column.in_(value) if isinstance(value, list | tuple) else column == value)
        with self.session() as s:
            return [run_record(r) for r in s.scalars(query)]

    def update_run(self, run_id: int, **values: Any) -> None:
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(**values))

    def finish_run(self, run_id: int, metrics: dict[str, Any], weights: dict[str, Any] | None = None) -> None:
        """Marks the run done; `weights` (its trained adapter and head tensors) are stored in the same transaction,
        so a done run always has its weights when it was given any."""
        now = utcnow()
        with self.session() as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(
                status="done", metrics=metrics, finished_at=now, heartbeat_at=now, error=None))
            if weights is not None:
                put_weights(s, run_id, weights, now)

    def run_weights(self, run_id: int) -> dict[str, Any] | None:
        """The trained adapter and head tensors of a finished run (CPU tensors by name), or None if none were kept."""
        with self.session() as s:
            data = s.scalars(select(RunWeightsRow.data).where(RunWeightsRow.run_id == run_id)).one_or_none()
        return None if data is None else decode_tensors(data)

    def fail_run(self, run_id: int, error: str) -> None:
        self.update_run(run_id, status="failed", error=error, finished_at=utcnow())

    # ---- epochs -----------------------------------------------------------------------------------------------
    def add_epoch(self, run_id: int, record: EpochRecord) -> None:
        """Writes one epoch row (replacing a row for the same epoch left by an interrupted attempt)."""
        with self.session() as s:
            put_epoch(s, run_id, record)
            s.execute(update(RunRow).where(RunRow.id == run_id).values(heartbeat_at=utcnow()))

    def epochs(self, run_id: int) -> list[EpochRecord]:
        with self.session() as s:
            rows = s.scalars(select(EpochRow).where(EpochRow.run_id == run_id).order_by(EpochRow.epoch))
            return [epoch_record(r) for r in rows]

    def epochs_of(self, run_ids: Iterable[int]) -> list[EpochRecord]:
        with self.session() as s:
            rows = s.scalars(select(EpochRow).where(EpochRow.run_id.in_(list(run_ids)))
                             .order_by(EpochRow.run_id, EpochRow.epoch))
            return [epoch_record(r) for r in rows]

    # ---- speed measurements (`pacebench bench`) ---------------------------------------------------------------
    def add_speed(self, rows: Iterable[dict[str, Any]]) -> None:
        """Stores one bench measurement (a row per method) in one transaction."""
        with self.session() as s:
            s.add_all(SpeedRow(created_at=utcnow(), **row) for row in rows)

    def speed(self) -> list[dict[str, Any]]:
        """Every stored bench row as a plain dict, oldest first."""
        columns = [c.name for c in SpeedRow.__table__.columns]
        with self.session() as s:
            return [{c: getattr(r, c) for c in columns} for r in s.scalars(select(SpeedRow).order_by(SpeedRow.id))]
