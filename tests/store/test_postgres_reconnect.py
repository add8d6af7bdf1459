"""The PostgreSQL store after its server went away: a fresh pool at the next call, no backoff.

The outage itself (a server stopped under load, then restarted) is
``tests/recorder/test_postgres_outage.py``; these tests pin the mechanism on the
shared server, terminating only the store's own backend.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from faultlens._metrics import counters
from faultlens.store import StoreError
from faultlens.store import open as open_store
from faultlens.store._postgres import PostgresStore

from ._helpers import error
from .conftest import POSTGRES_URL, drop_schema, postgres_schema_url, postgres_unavailable


@pytest.fixture
def url() -> Iterator[str]:
    """A PostgreSQL store URL in a schema of its own (dropped afterwards)."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"faultlens_test_{uuid.uuid4().hex[:12]}"
    try:
        yield postgres_schema_url(schema)
    finally:
        drop_schema(schema)


def _backend_pid(store: PostgresStore) -> int:
    with store._read() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def _terminate(pid: int) -> None:
    """End one backend and wait (bounded) until the server has let it go."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=10) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} still there after 30 s"
            time.sleep(0.01)


@pytest.mark.postgres
def test_a_killed_connection_costs_a_new_pool_not_an_error(url: str) -> None:
    """The next call finds the dead connection, replaces the pool at once and succeeds."""
    store = open_store(url, timeout=5, pool_size=1)  # one connection: the one terminated
    assert isinstance(store, PostgresStore)
    try:
        assert store.write_events([error(event_id="before")]) == 1
        pool = store._pool
        _terminate(_backend_pid(store))

        started = time.monotonic()
        assert store.write_events([error(event_id="after")]) == 1
        # One failed check, one connect: no pool backoff (its first retry alone is 1 s).
        assert time.monotonic() - started < 5
        assert store._pool is not pool
        assert counters.get("store.reconnects") == 1
        assert store.issues().items[0].count == 2
    finally:
        store.close()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_pool_that_found_no_server_is_replaced_at_the_next_call() -> None:
    """Each call after a failed one starts a fresh pool: its first connect is immediate."""
    pytest.importorskip("psycopg_pool")
    store = open_store(f"postgresql://nobody@127.0.0.1:{_closed_port()}/db", timeout=0.5)
    assert isinstance(store, PostgresStore)
    try:
        with pytest.raises(StoreError, match="no connection within"):
            store.write_events([error(event_id="a")])
        first = store._pool
        assert counters.get("store.reconnects") == 0
        with pytest.raises(StoreError, match="no connection within"):
            store.write_events([error(event_id="a")])
        assert store._pool is not first
        assert counters.get("store.reconnects") == 1
    finally:
        store.close()
