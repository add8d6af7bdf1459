"""The SQLite store: one file, WAL, one writer connection per process.

Concurrency model: every write of this process goes through one connection,
serialised by a lock, in a short ``BEGIN IMMEDIATE`` transaction (a plain
``BEGIN`` would take the write lock only at the first write and fail with
"database is locked" when another writer got there first; ``IMMEDIATE`` takes it
up front, waiting up to ``busy_timeout``).  Other processes writing the same file
queue on that lock the same way.  Reads use one connection per thread and, in WAL
mode, never wait for writers.  ``synchronous=NORMAL`` is durable across
application crashes; a power loss may lose the last transactions, never corrupt
the file.  ``sqlite:///:memory:`` keeps everything in one connection (tests).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Literal

import orjson

from faultlens._clock import get_clock
from faultlens.store._migrate import SCHEMA_MIGRATIONS_SQL, pending, split_sqlite
from faultlens.store._queries import EVENT_COLUMNS, Cursor
from faultlens.store._sanitize import Cleaned
from faultlens.store._sql import Grouped, SQLStore
from faultlens.store._types import StoreError

__all__ = ["SQLiteStore"]

_MIN_VERSION: Final = (3, 35, 0)  # RETURNING
_MMAP_BYTES: Final = 256 * 1024 * 1024
_MEMBER_COLUMNS: Final = {"issue_users": "user_id", "issue_sessions": "session_id"}
_INSERT_EVENTS: Final = (
    f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)


def _json_path(path: tuple[str, ...]) -> str:
    """A JSON path (``$.a.b``) of plain keys; SQL text, so only faultlens's own key names."""
    if not path or not all(key.isidentifier() for key in path):
        raise ValueError(f"not a plain JSON key path: {path!r}")
    return "$." + ".".join(path)


class _Reader:
    """A thread's read connection; closed when its thread ends (or the store closes)."""

    __slots__ = ("__weakref__", "conn", "pid")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()


class SQLiteStore(SQLStore):
    """The SQLite store; get one with ``faultlens.store.open("sqlite:///path.db")``."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    _db_errors = (sqlite3.Error,)
    _delete_batch_sql = (
        "DELETE FROM events WHERE rowid IN "
        "(SELECT rowid FROM events WHERE kind = ? AND timestamp < ? LIMIT ?)"
    )

    def __init__(
        self, path: str, *, url: str, shown: str, auto_migrate: bool, busy_timeout: float
    ) -> None:
        super().__init__(url=url, shown=shown, auto_migrate=auto_migrate)
        if sqlite3.sqlite_version_info < _MIN_VERSION:
            raise StoreError(
                f"the SQLite store needs SQLite 3.35 or newer; this Python has "
                f"{sqlite3.sqlite_version}: use a newer Python build or the PostgreSQL store"
            )
        self._path = path
        self._memory = path == ":memory:"
        self._timeout = busy_timeout
        self._lock = threading.RLock()
        self._writer: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()

    # -- connections -------------------------------------------------------------------

    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._timeout,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            if writer and not self._memory:
                self._switch_to_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            # Reads through a memory map: rows of a big store scattered over the file
            # (an issue's events) cost page-cache hits, not one read() call per page.
            conn.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
            if not writer:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new database to WAL takes an exclusive lock, and SQLite answers
        # "database is locked" at once, without its busy handler, when another process
        # is opening or switching the same file at that moment: retry until busy_timeout.
        deadline = time.monotonic() + self._timeout
        pause = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                busy = "locked" in text or "busy" in text
                if not busy or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)  # real time: another process holds the lock
            pause = min(pause * 2, 0.1)

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer is None or self._pid != os.getpid():
            # After a fork the parent's connection must not be used (nor closed: that
            # would release the parent's locks): the child opens its own.
            self._writer = self._connect(writer=True)
            self._pid = os.getpid()
        return self._writer

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        with self._lock:
            conn = self._writer_connection()
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.cursor()
            try:
                yield cur
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                # Closed under the lock: a cursor the caller still references would
                # otherwise reset its statement whenever it is freed, possibly while
                # another thread writes on this shared connection ("API misuse").
                cur.close()

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        if self._memory:  # one in-memory database: one connection
            with self._lock:
                cur = self._writer_connection().cursor()
                try:
                    yield cur
                finally:
                    cur.close()  # under the lock, as in _write
            return
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is None or reader.pid != os.getpid():
            reader = _Reader(self._connect(writer=False))
            self._local.reader = reader
            self._readers.add(reader)
        cur = reader.conn.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def _release(self) -> None:
        with self._lock:
            if self._writer is not None and self._pid == os.getpid():
                self._writer.close()
            self._writer = None
            for reader in list(self._readers):
                if reader.pid == os.getpid():
                    reader.conn.close()
            self._readers = weakref.WeakSet()
            self._local = threading.local()

    def _hint(self, exc: BaseException) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return (
                f" (another connection held the write lock for more than busy_timeout="
                f"{self._timeout:g}s: raise busy_timeout, or use PostgreSQL for heavy "
                "concurrent writing)"
            )
        if "unable to open" in text:
            return f" (does the directory of {self._path!r} exist, and is it writable?)"
        return ""

    # -- dialect -----------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text.replace("?j", "?")

    def _load_json(self, value: Any) -> Any:
        return orjson.loads(value)

    def _bucket_sql(self) -> str:
        return "CAST(timestamp / ? AS INTEGER)"

    def _json_text_sql(self, column: str, *path: str) -> str:
        return f"json_extract({column}, '{_json_path(path)}')"

    def _json_number_sql(self, column: str, *path: str) -> str:
        at = _json_path(path)
        return (
            f"(CASE WHEN json_type({column}, '{at}') IN ('integer', 'real') "
            f"THEN json_extract({column}, '{at}') END)"
        )

    # -- schema ------------------------------------------------------------------------

    def _schema_is_current(self) -> bool:
        with self._read() as cur:
            cur.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            )
            if cur.fetchone() is None:
                return False
            cur.execute("SELECT version, checksum FROM schema_migrations")
            return not pending("sqlite", cur.fetchall())

    def _apply_migrations(self) -> list[int]:
        with self._write() as cur:
            cur.execute(SCHEMA_MIGRATIONS_SQL)
            cur.execute("SELECT version, checksum FROM schema_migrations")
            todo = pending("sqlite", cur.fetchall())
            for migration in todo:
                for statement in split_sqlite(migration.sql):
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                    "VALUES (?, ?, ?, ?)",
                    (migration.version, migration.name, migration.checksum, get_clock().time()),
                )
            return [m.version for m in todo]

    # -- writing -----------------------------------------------------------------------

    def _write_chunk(self, cur: Cursor, chunk: list[Cleaned], groups: dict[str, Grouped]) -> int:
        # Under BEGIN IMMEDIATE nobody else writes: the ids found here are exactly the
        # ones already stored, so issues are counted once and each row written once.
        cur.execute(
            "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))",
            (orjson.dumps([c.event.id for c in chunk]).decode(),),
        )
        existing = {row[0] for row in cur.fetchall()}
        new = [c for c in chunk if c.event.id not in existing] if existing else chunk
        if not new:
            return 0
        assignments = self._upsert_issues(
            cur, ((c, groups[c.event.id]) for c in new if c.event.id in groups)
        )
        get = assignments.get
        cur.executemany(
            _INSERT_EVENTS,
            [
                (
                    (e := c.event).id,
                    e.kind,
                    e.name,
                    e.timestamp,
                    e.correlation_id,
                    e.trace_id,
                    e.span_id,
                    e.tenant_id,
                    e.user_id,
                    get(e.id),
                    c.category,
                    c.layer,
                    c.payload_json,
                )
                for c in new
            ],
        )
        return len(new)

    def _add_members(self, cur: Cursor, table: str, issue_id: int, values: Iterable[str]) -> int:
        column = _MEMBER_COLUMNS[table]
        cur.executemany(
            f"INSERT INTO {table} (issue_id, {column}) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(issue_id, value) for value in values],
        )
        return int(cur.rowcount)
