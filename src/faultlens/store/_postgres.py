"""The PostgreSQL store: psycopg 3, a connection pool, COPY for batches, jsonb payloads.

Several processes (and machines) can write at once.  A batch is copied into a
temporary table and inserted with ``INSERT ... SELECT ... ON CONFLICT (id) DO
NOTHING RETURNING id``, which says exactly which events are new even when two
writers replay the same batch.  Issues are locked (``SELECT ... FOR UPDATE``) in
one global order while they are updated, and the primary key of
``issue_fingerprints`` decides which writer creates a new issue, so counts stay
exact under concurrency.  Migrations run under ``pg_advisory_lock``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Final, Literal

import orjson

from faultlens._clock import get_clock
from faultlens._metrics import counters
from faultlens.errors import MissingExtraError
from faultlens.store._migrate import SCHEMA_MIGRATIONS_SQL, pending
from faultlens.store._queries import Cursor
from faultlens.store._sanitize import Cleaned
from faultlens.store._sql import Grouped, SQLStore

__all__ = ["PostgresStore"]


def _close_later(pool: Any) -> None:
    """Close a replaced pool on a thread of its own: its workers may sit in a connect."""
    threading.Thread(target=pool.close, name="faultlens-store-close", daemon=True).start()


_MEMBER_COLUMNS: Final = {"issue_users": "user_id", "issue_sessions": "session_id"}
_INCOMING: Final = "faultlens_incoming"
_INCOMING_DDL: Final = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_INCOMING} ("
    "id text, kind text, name text, timestamp double precision, correlation_id text, "
    "trace_id text, span_id text, tenant_id text, user_id text, category text, layer text, "
    "payload jsonb) ON COMMIT DELETE ROWS"
)
_COPY_COLUMNS: Final = (
    "id, kind, name, timestamp, correlation_id, trace_id, span_id, tenant_id, user_id, "
    "category, layer, payload"
)
_INSERT_FROM_INCOMING: Final = (
    f"INSERT INTO events ({_COPY_COLUMNS}) SELECT {_COPY_COLUMNS} FROM {_INCOMING} "
    # Sorted: concurrent writers of overlapping batches take row locks in one order.
    "ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id"
)


def _json_path(path: tuple[str, ...]) -> str:
    """A jsonb path (``{a,b}``) of plain keys; SQL text, so only faultlens's own key names."""
    if not path or not all(key.isidentifier() for key in path):
        raise ValueError(f"not a plain JSON key path: {path!r}")
    return "{" + ",".join(path) + "}"


@lru_cache(maxsize=512)
def _translate(text: str) -> str:
    return text.replace("?j", "%s::jsonb").replace("?", "%s")


class PostgresStore(SQLStore):
    """The PostgreSQL store; get one with ``faultlens.store.open("postgresql://...")``."""

    backend: Literal["sqlite", "postgres"] = "postgres"
    _for_update = " FOR UPDATE"

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None,
        url: str,
        shown: str,
        auto_migrate: bool,
        pool_size: int,
        timeout: float,
    ) -> None:
        super().__init__(url=url, shown=shown, auto_migrate=auto_migrate)
        try:
            import psycopg
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("postgres", "the PostgreSQL store") from exc
        self._psycopg = psycopg
        self._db_errors = (psycopg.Error,)
        self._conninfo = conninfo
        self._schema = schema
        self._pool_size = pool_size
        self._timeout = timeout
        self._pool: Any = None
        self._pid = os.getpid()
        self._pool_lock = threading.Lock()
        self._stale: list[Any] = []
        self._broken: Any = None  # the pool that failed; replaced on next use
        self._lent = 0  # connections our callers hold now
        self._lent_lock = threading.Lock()

    # -- connections -------------------------------------------------------------------

    def _configure(self, conn: Any) -> None:
        from psycopg import sql
        from psycopg.types.json import set_json_loads

        with conn.cursor() as cur:
            if self._schema is not None:
                cur.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
            cur.execute(_INCOMING_DDL)
        conn.commit()
        set_json_loads(orjson.loads, conn)

    def _connections(self) -> Any:
        pool = self._pool
        if pool is not None and self._pid == os.getpid() and pool is not self._broken:
            return pool
        with self._pool_lock:
            if self._pool is not None and self._pid != os.getpid():
                # Forked: the parent's connections are not ours to use or close.
                self._stale.append(self._pool)
                self._pool = None
            elif self._pool is not None and self._pool is self._broken:
                # Every idle connection of that pool predates the failure, and its
                # reconnect backoff (1 s, doubling up to minutes) is not ours to wait
                # out: a new pool connects at once, when the caller (the recorder's
                # own retry) comes around.
                _close_later(self._pool)
                self._pool = None
                counters.incr("store.reconnects")
            if self._pool is None:
                self._pool = self._new_pool()
                self._pid = os.getpid()
            self._broken = None
            return self._pool

    def _new_pool(self) -> Any:
        from psycopg.conninfo import conninfo_to_dict
        from psycopg_pool import ConnectionPool

        kwargs: dict[str, Any] = {"application_name": "faultlens"}
        if "connect_timeout" not in conninfo_to_dict(self._conninfo):
            kwargs["connect_timeout"] = max(1, round(self._timeout))
        pool = ConnectionPool(
            self._conninfo,
            kwargs=kwargs,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            configure=self._configure,
            # Checked here (_checked), not by the pool: the pool sleeps 1 s, 2 s, ...
            # between stale connections it finds, where one failed check is enough
            # to know the server went away and every idle connection with it.
            timeout=self._timeout,
            # A pool nobody calls gives up reconnecting soon; the next caller starts
            # a fresh pool (see _connections) instead of waiting for a backoff.
            reconnect_timeout=max(self._timeout, 1.0),
            name="faultlens-store",
        )
        pool.open(wait=False)
        return pool

    def _checked(self, deadline: float) -> tuple[Any, Any]:
        """A pool and a connection of it that just answered; a dead pool is replaced once."""
        from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

        for attempt in (1, 2):
            pool = self._connections()
            try:
                conn = pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
            except (PoolTimeout, PoolClosed):
                if not self._lent:
                    # Nobody holds a connection, yet none came within the timeout: the
                    # server is unreachable, start afresh next time.  (With connections
                    # lent out, the pool may only be exhausted by slow callers.)
                    self._broken = pool
                raise
            try:
                ConnectionPool.check_connection(conn)
            except self._psycopg.Error:
                pool.putconn(conn)  # broken: the pool closes it
                self._broken = pool
                if attempt == 2 or time.monotonic() >= deadline:
                    raise
                continue
            return pool, conn
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A checked connection in a transaction: committed on success, rolled back otherwise."""
        pool, conn = self._checked(time.monotonic() + self._timeout)
        with self._lent_lock:
            self._lent += 1
        try:
            with conn:  # the pool's connections stay open on exit: they go back to it
                yield conn
        except self._psycopg.Error:
            if conn.broken or conn.closed:  # the server went away mid-transaction
                self._broken = pool
            raise
        finally:
            with self._lent_lock:
                self._lent -= 1
            pool.putconn(conn)

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        with self._connection() as conn, conn.cursor() as cur:
            yield cur

    _read = _write

    def _release(self) -> None:
        with self._pool_lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None
            self._broken = None

    def _hint(self, exc: BaseException) -> str:
        from psycopg_pool import PoolTimeout

        if isinstance(exc, PoolTimeout):
            return (
                f" (no connection within {self._timeout:g}s: is the server up, reachable "
                "and accepting this user?)"
            )
        return ""

    # -- dialect -----------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return _translate(text)

    def _load_json(self, value: Any) -> Any:
        return value  # jsonb arrives parsed (by orjson, see _configure)

    def _bucket_sql(self) -> str:
        return "floor(timestamp / ?)::bigint"

    def _json_text_sql(self, column: str, *path: str) -> str:
        return f"({column} #>> '{_json_path(path)}')"

    def _json_number_sql(self, column: str, *path: str) -> str:
        at = _json_path(path)
        return (
            f"(CASE WHEN jsonb_typeof({column} #> '{at}') = 'number' "
            f"THEN ({column} #>> '{at}')::double precision END)"
        )

    # -- schema ------------------------------------------------------------------------

    def _schema_is_current(self) -> bool:
        with self._read() as cur:
            cur.execute("SELECT to_regclass('schema_migrations')")
            if cur.fetchone()[0] is None:
                return False
            cur.execute("SELECT version, checksum FROM schema_migrations")
            return not pending("postgres", cur.fetchall())

    def _apply_migrations(self) -> list[int]:
        from psycopg import sql

        key = f"faultlens.migrate:{self._schema or ''}"
        with self._connection() as conn:
            # A session lock taken before the migration's transaction starts: that
            # transaction then sees everything an earlier holder committed (with a
            # transaction-scoped lock, CREATE ... IF NOT EXISTS could still race).
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            conn.commit()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if self._schema is not None:
                        cur.execute(
                            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                                sql.Identifier(self._schema)
                            )
                        )
                    cur.execute(SCHEMA_MIGRATIONS_SQL)
                    cur.execute("SELECT version, checksum FROM schema_migrations")
                    todo = pending("postgres", cur.fetchall())
                    for migration in todo:
                        cur.execute(migration.sql)
                        cur.execute(
                            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                            "VALUES (%s, %s, %s, %s)",
                            (
                                migration.version,
                                migration.name,
                                migration.checksum,
                                get_clock().time(),
                            ),
                        )
            finally:
                try:
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
                    conn.commit()
                except self._psycopg.Error:  # a broken connection: the server released it
                    pass
            return [m.version for m in todo]

    # -- writing -----------------------------------------------------------------------

    def _write_chunk(self, cur: Cursor, chunk: list[Cleaned], groups: dict[str, Grouped]) -> int:
        pg: Any = cur
        with pg.copy(f"COPY {_INCOMING} ({_COPY_COLUMNS}) FROM STDIN") as copy:
            for c in chunk:
                e = c.event
                copy.write_row(
                    (
                        e.id,
                        e.kind,
                        e.name,
                        e.timestamp,
                        e.correlation_id,
                        e.trace_id,
                        e.span_id,
                        e.tenant_id,
                        e.user_id,
                        c.category,
                        c.layer,
                        c.payload_json,
                    )
                )
        cur.execute(_INSERT_FROM_INCOMING)
        new_ids = {row[0] for row in cur.fetchall()}
        if groups and new_ids:
            assignments = self._upsert_issues(
                cur,
                (
                    (c, groups[c.event.id])
                    for c in chunk
                    if c.event.id in groups and c.event.id in new_ids
                ),
            )
            if assignments:
                cur.execute(
                    "UPDATE events AS e SET issue_id = v.issue_id "
                    "FROM unnest(%s::text[], %s::bigint[]) AS v(id, issue_id) WHERE e.id = v.id",
                    (list(assignments), list(assignments.values())),
                )
        return len(new_ids)

    def _add_members(self, cur: Cursor, table: str, issue_id: int, values: Iterable[str]) -> int:
        column = _MEMBER_COLUMNS[table]
        cur.execute(
            f"INSERT INTO {table} (issue_id, {column}) SELECT %s, unnest(%s::text[]) "
            "ON CONFLICT DO NOTHING",
            (issue_id, list(values)),
        )
        return int(cur.rowcount)
