"""The store: sustained writing against a raw floor, and query cost as the store grows.

1. Writing error events.  ``Store.write_events`` in batches (the recorder's way:
   clean and redact each payload, fingerprint it, insert idempotently, group into
   issues) against the floor: a raw ``sqlite3`` ``executemany`` of the same rows
   (columns + ``orjson.dumps(payload)``) into the same schema in one transaction.
   Goal: the store at 0.5x the floor or better.  The events look like captured
   ones: 40 exception shapes 6-12 frames deep, each event with its own id,
   correlation, order number in the message, one of 500 users.  PostgreSQL is
   measured the same way (raw floor: psycopg ``executemany`` in one transaction).
   Fresh databases each round; rounds alternate which side runs first; medians.

2. Query growth.  ``timeline(cid)``, the first page of ``issues()`` and of
   ``issue_events()`` on a store of 10k events and one of 1M (one issue per 100
   events), the big one generated with a single bulk ``INSERT ... SELECT``.
   Goal: the big store costs at most 2x the small one.

    .venv/bin/python benchmarks/bench_store.py                 # SQLite + PostgreSQL
    .venv/bin/python benchmarks/bench_store.py --sizes 10000,200000 --postgres none
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

import faultlens
from _harness import measure, report, versions
from faultlens import events
from faultlens.events import Event
from faultlens.store import Store
from faultlens.store import open as open_store
from faultlens.store._fingerprint import fingerprint
from faultlens.store._sanitize import clean_event
from faultlens.store._sql import group_event

T0 = 1_700_000_000.0
DEFAULT_POSTGRES = os.environ.get(
    "FAULTLENS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
COLUMNS = (
    "id, kind, name, timestamp, correlation_id, trace_id, span_id, tenant_id, user_id, "
    "issue_id, category, layer, payload"
)


# --- realistic error events -------------------------------------------------------------


class PaymentDeclined(Exception):
    """One of the exception types the shapes raise."""


_TYPES: list[type[Exception]] = [PaymentDeclined, KeyError, ValueError, TimeoutError]


def _raise(depth: int, shape: int, order: int) -> None:
    if depth == 0:
        raise _TYPES[shape % 4](f"shape {shape} failed for order {order}")
    _raise(depth - 1, shape, order)


def captured_shapes(count: int = 40) -> list[Event]:
    """Error events built by faultlens.capture, one per code path."""
    got: list[Event] = []
    subscription = events.subscribe(got.append, kinds=["error"])
    try:
        for shape in range(count):
            with faultlens.correlate(user_id="u", session_id="s"):
                try:
                    _raise(5 + shape % 7, shape, 0)
                except Exception as exc:
                    faultlens.capture(exc, shape=shape)
    finally:
        subscription.close()
    return got


def error_events(n: int, seed: int = 7) -> list[Event]:
    """``n`` error events: captured shapes, each with its own ids, message and user."""
    shapes = captured_shapes()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shape = shapes[i % len(shapes)]
        cid = uuid.uuid4().hex
        payload = dict(shape.payload)
        payload["message"] = f"shape {i % len(shapes)} failed for order {rng.randrange(10**6)}"
        payload["context"] = dict(payload["context"], correlation_id=cid, trace_id=cid)
        out.append(
            Event(
                "error",
                shape.name,
                payload,
                cid,
                cid,
                uuid.uuid4().hex[:16],
                None,
                f"user-{rng.randrange(500)}",
                T0 + i * 0.001,
            )
        )
    return out


def raw_rows(batch: list[Event]) -> list[tuple[Any, ...]]:
    """What a hand-written insert would write: the columns and the payload's JSON."""
    return [
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
            None,
            None,
            None,
            orjson.dumps(e.payload).decode(),
        )
        for e in batch
    ]


# --- write throughput --------------------------------------------------------------------


class SQLiteWrites:
    """Fresh SQLite files for the store and the raw floor."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def fresh(self, name: str) -> str:
        path = self.directory / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        with open_store(f"sqlite:///{path}") as store:
            store.migrate()
        return str(path)

    def raw(self, batch: list[Event]) -> float:
        path = self.fresh("raw")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        placeholders = ", ".join("?" * 13)
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO events ({COLUMNS}) VALUES ({placeholders})", raw_rows(batch))
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed

    def store(self, batch: list[Event], size: int) -> float:
        with open_store(f"sqlite:///{self.fresh('store')}") as store:
            store.migrate()
            start = time.perf_counter()
            for i in range(0, len(batch), size):
                store.write_events(batch[i : i + size])
            return time.perf_counter() - start


class PostgresWrites:
    """Fresh PostgreSQL schemas for the store and the raw floor."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.schemas: list[str] = []

    def fresh(self) -> str:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        self.schemas.append(schema)
        url = f"{self.url}{'&' if '?' in self.url else '?'}schema={schema}"
        with open_store(url) as store:
            store.migrate()
        return url

    def raw(self, batch: list[Event]) -> float:
        import psycopg

        url = self.fresh()
        schema = self.schemas[-1]
        with psycopg.connect(self.url) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.commit()
            placeholders = ", ".join(["%s"] * 12 + ["%s::jsonb"])
            start = time.perf_counter()
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO events ({COLUMNS}) VALUES ({placeholders})", raw_rows(batch)
                )
            conn.commit()
            elapsed = time.perf_counter() - start
        del url
        return elapsed

    def store(self, batch: list[Event], size: int) -> float:
        with open_store(self.fresh()) as store:
            store.migrate()
            start = time.perf_counter()
            for i in range(0, len(batch), size):
                store.write_events(batch[i : i + size])
            return time.perf_counter() - start

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def write_rounds(
    title: str,
    *,
    raw: Callable[[list[Event]], float],
    store: Callable[[list[Event], int], float],
    batch: list[Event],
    size: int,
    rounds: int,
) -> float:
    """Alternate raw and store rounds; print medians; return store / raw throughput."""
    raw_times: list[float] = []
    store_times: list[float] = []
    for r in range(rounds):
        gc.collect()
        if r % 2:
            store_times.append(store(batch, size))
            raw_times.append(raw(batch))
        else:
            raw_times.append(raw(batch))
            store_times.append(store(batch, size))
    raw_rate = len(batch) / statistics.median(raw_times)
    store_rate = len(batch) / statistics.median(store_times)
    print(f"\n## {title}: {len(batch)} error events, store batches of {size}, {rounds} rounds")
    print(f"  raw executemany, one transaction  {raw_rate:10,.0f} events/s")
    print(f"  Store.write_events                {store_rate:10,.0f} events/s")
    print(f"  store / raw                       {store_rate / raw_rate:10.2f}x  (goal >= 0.50x)")
    sys.stdout.flush()
    return store_rate / raw_rate


def write_breakdown(batch: list[Event], size: int) -> None:
    """Where a store write's Python time goes, per event (no database).

    Grouping is timed twice: the way ``Store.write_events`` does it (``group_event``:
    the stack part memoised, a title made only for the newest event of each issue in
    a batch of ``size``), and ``fingerprint()`` from scratch, which the store calls
    only for legacy grouping versions.
    """
    sample = batch[: min(len(batch), 5000)]
    start = time.perf_counter()
    cleaned = [clean_event(e) for e in sample]
    clean = (time.perf_counter() - start) / len(sample) * 1e6
    start = time.perf_counter()
    for i in range(0, len(cleaned), size):
        newest = {}
        for c in cleaned[i : i + size]:
            grouped = group_event(c.event)
            newest[grouped.fingerprint] = grouped
        for grouped in newest.values():
            grouped.title  # noqa: B018 - made on first read, as the store does
    store_grouping = (time.perf_counter() - start) / len(sample) * 1e6
    start = time.perf_counter()
    for c in cleaned:
        fingerprint(c.event)
    grouping = (time.perf_counter() - start) / len(sample) * 1e6
    start = time.perf_counter()
    raw_rows(sample)
    encode = (time.perf_counter() - start) / len(sample) * 1e6
    print("\n## Per-event Python work in a store write (no database)")
    print(f"  clean + redact (store/_sanitize)     {clean:7.1f} µs")
    print(f"  grouping as the store does it        {store_grouping:7.1f} µs")
    print(f"  (fingerprint() from scratch          {grouping:7.1f} µs: legacy versions only)")
    print(f"  raw floor's row building + dumps     {encode:7.1f} µs")


# --- query growth -----------------------------------------------------------------------

PER_CORRELATION = 8
EVENTS_PER_ISSUE = 100

SQLITE_BULK = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count)
INSERT INTO events ({COLUMNS})
SELECT printf('%032x', i),
       CASE WHEN i % 4 = 0 THEN 'error' ELSE 'operation' END,
       CASE WHEN i % 4 = 0 THEN 'KeyError' ELSE 'checkout' END,
       :t0 + i * 0.01,
       printf('c%010d', i / {PER_CORRELATION}),
       NULL, NULL, NULL,
       printf('user-%d', i % 5000),
       CASE WHEN i % 4 = 0 THEN 1 + (i / 4) % :issues END,
       CASE WHEN i % 4 = 0 THEN 'data' END,
       'service',
       '{{"type": "KeyError", "message": "missing key", "frames": []}}'
FROM n
"""

SQLITE_ISSUES = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i + 1 <= :issues)
INSERT INTO issues (id, fingerprint, grouping_version, title, category, layer, severity,
                    status, first_seen, last_seen, event_count, user_count, session_count)
SELECT i, printf('%040x', i), 1, printf('KeyError: %d', i), 'data', 'service', 'high',
       CASE WHEN i % 10 = 0 THEN 'resolved' ELSE 'unresolved' END,
       :t0 + i, :t0 + :count * 0.01 - (i * 37 % :issues), (i * 7919) % 1000 + 1, 1, 1
FROM n
"""

POSTGRES_BULK = f"""
INSERT INTO events ({COLUMNS})
SELECT lpad(to_hex(i), 32, '0'),
       CASE WHEN i % 4 = 0 THEN 'error' ELSE 'operation' END,
       CASE WHEN i % 4 = 0 THEN 'KeyError' ELSE 'checkout' END,
       %(t0)s + i * 0.01,
       'c' || lpad((i / {PER_CORRELATION})::text, 10, '0'),
       NULL, NULL, NULL,
       'user-' || (i % 5000),
       CASE WHEN i % 4 = 0 THEN 1 + (i / 4) %% %(issues)s END,
       CASE WHEN i % 4 = 0 THEN 'data' END,
       'service',
       '{{"type": "KeyError", "message": "missing key", "frames": []}}'::jsonb
FROM generate_series(0, %(count)s - 1) AS i
""".replace("i % 4", "i %% 4").replace("i % 5000", "i %% 5000")

POSTGRES_ISSUES = """
INSERT INTO issues (id, fingerprint, grouping_version, title, category, layer, severity,
                    status, first_seen, last_seen, event_count, user_count, session_count)
OVERRIDING SYSTEM VALUE
SELECT i, lpad(to_hex(i), 40, '0'), 1, 'KeyError: ' || i, 'data', 'service', 'high',
       CASE WHEN i %% 10 = 0 THEN 'resolved' ELSE 'unresolved' END,
       %(t0)s + i, %(t0)s + %(count)s * 0.01 - (i * 37 %% %(issues)s), (i * 7919) %% 1000 + 1, 1, 1
FROM generate_series(1, %(issues)s) AS i
"""


def build_sqlite(path: Path, count: int) -> Store:
    """A SQLite store of ``count`` generated events."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = open_store(f"sqlite:///{path}")
    store.migrate()
    issues = max(1, count // EVENTS_PER_ISSUE)
    conn = sqlite3.connect(path, isolation_level=None)
    params = {"count": count, "t0": T0, "issues": issues}
    conn.execute("BEGIN")
    conn.execute(SQLITE_BULK, params)
    conn.execute(SQLITE_ISSUES, params)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return store


def build_postgres(url: str, count: int, pg: PostgresWrites) -> Store:
    """A PostgreSQL store (own schema) of ``count`` generated events."""
    import psycopg

    store_url = pg.fresh()
    schema = pg.schemas[-1]
    issues = max(1, count // EVENTS_PER_ISSUE)
    with psycopg.connect(url) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        params = {"count": count, "t0": T0, "issues": issues}
        conn.execute(POSTGRES_BULK, params)
        conn.execute(POSTGRES_ISSUES, params)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE events")
        conn.execute("VACUUM ANALYZE issues")
    return open_store(store_url)


def query_growth(title: str, small: Store, big: Store, sizes: tuple[int, int]) -> None:
    """Time the queries on both stores, interleaved; print the big/small ratios."""
    cid_small = f"c{(sizes[0] // PER_CORRELATION // 2):010d}"
    cid_big = f"c{(sizes[1] // PER_CORRELATION // 2):010d}"
    assert len(small.timeline(cid_small)) == PER_CORRELATION
    assert len(big.timeline(cid_big)) == PER_CORRELATION
    issue_small = small.issues().items[0].id
    issue_big = big.issues().items[0].id
    cases: dict[str, Callable[[], object]] = {
        f"timeline(cid) @ {sizes[0]:,}": lambda: small.timeline(cid_small),
        f"timeline(cid) @ {sizes[1]:,}": lambda: big.timeline(cid_big),
        f"issues() page 1 @ {sizes[0]:,}": small.issues,
        f"issues() page 1 @ {sizes[1]:,}": big.issues,
        f"issue_events() page 1 @ {sizes[0]:,}": lambda: small.issue_events(issue_small),
        f"issue_events() page 1 @ {sizes[1]:,}": lambda: big.issue_events(issue_big),
    }
    results = measure(cases, number=20, rounds=9)
    report(f"{title}: query cost, {sizes[0]:,} vs {sizes[1]:,} events", results)
    names = list(results)
    for i in range(0, len(names), 2):
        label = names[i].split(" @ ")[0]
        growth = results[names[i + 1]] / results[names[i]]
        print(f"  {label:<24} big / small {growth:5.2f}x  (goal <= 2x)")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per write round")
    parser.add_argument("--batch", type=int, default=500, help="events per write_events call")
    parser.add_argument("--rounds", type=int, default=5, help="write rounds per side")
    parser.add_argument(
        "--sizes", default="10000,1000000", help="store sizes for query growth: SMALL,BIG"
    )
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL URL, or 'none' to skip PostgreSQL (default: the test server)",
    )
    args = parser.parse_args()
    small_size, big_size = (int(s) for s in args.sizes.split(","))
    print(versions("faultlens", "orjson", "psycopg", "psycopg-pool"), end="")
    print(f", SQLite {sqlite3.sqlite_version}")

    pg: PostgresWrites | None = None
    if args.postgres != "none":
        try:
            import psycopg

            with psycopg.connect(args.postgres, connect_timeout=3) as conn:
                server = conn.execute("SHOW server_version").fetchone()
            print(f"PostgreSQL {server[0] if server else '?'}")
            pg = PostgresWrites(args.postgres)
        except Exception as exc:
            print(f"PostgreSQL skipped: {type(exc).__name__}: {exc}")

    batch = error_events(args.events)
    directory = Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        sqlite_writes = SQLiteWrites(directory)
        sizes = {"batch": batch, "size": args.batch, "rounds": args.rounds}
        write_rounds("SQLite writes", raw=sqlite_writes.raw, store=sqlite_writes.store, **sizes)
        if pg is not None:
            write_rounds("PostgreSQL writes", raw=pg.raw, store=pg.store, **sizes)
        write_breakdown(batch, args.batch)

        start = time.perf_counter()
        small = build_sqlite(directory / "small.db", small_size)
        big = build_sqlite(directory / "big.db", big_size)
        print(f"\n(SQLite stores generated in {time.perf_counter() - start:.1f} s)")
        query_growth("SQLite", small, big, (small_size, big_size))
        small.close()
        big.close()
        if pg is not None:
            start = time.perf_counter()
            small = build_postgres(args.postgres, small_size, pg)
            big = build_postgres(args.postgres, big_size, pg)
            print(f"\n(PostgreSQL stores generated in {time.perf_counter() - start:.1f} s)")
            query_growth("PostgreSQL", small, big, (small_size, big_size))
            small.close()
            big.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if pg is not None:
            pg.drop()


if __name__ == "__main__":
    main()
