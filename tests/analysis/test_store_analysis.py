"""Store-level analysis: patterns across processes, reported once, by the leader only."""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import time
import types
import uuid
from collections.abc import Iterator
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import pytest

from faultlens.analysis import (
    BurstDetector,
    DetectorSet,
    PatternType,
    StoreAnalyzer,
)
from faultlens.errors import ConfigurationError
from faultlens.events import Event
from faultlens.store import Store
from faultlens.store import open as open_store
from faultlens.testing import capture_events

T = 1_700_000_100.0
POSTGRES_URL = os.environ.get(
    "FAULTLENS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def errors(
    n: int, start: float, *, fp: str = "db-down", layer: str = "infrastructure", step: float = 0.5
) -> list[Event]:
    """``n`` error events from ``T + start``, ``step`` seconds apart, grouped by ``fp``."""
    return [
        Event(
            "error",
            "app.DbError",
            {
                "type": "app.DbError",
                "fingerprint": [fp],
                "classification": {"layer": layer, "severity": "high"},
            },
            timestamp=T + start + i * step,
        )
        for i in range(n)
    ]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite store's URL."""
    return f"sqlite:///{tmp_path / 'faultlens.db'}"


@pytest.fixture
def stores(sqlite_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on one SQLite file: two processes' view of it."""
    a, b = open_store(sqlite_url), open_store(sqlite_url)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_burst_spread_over_two_writers_is_found_once(stores: tuple[Store, Store]) -> None:
    """16 errors from each of two writers: neither alone bursts, the store-level analysis does."""
    a, b = stores
    mine, theirs = errors(16, 0, fp="x"), errors(16, 0.25, fp="y")
    a.write_events(mine)
    b.write_events(theirs)
    alone = DetectorSet([BurstDetector()])
    assert alone.observe_events(mine) == []
    with capture_events("pattern") as published, StoreAnalyzer(a) as analyzer:
        changes = analyzer.run_once(T + 20)
    bursts = [c for c in changes if c.pattern.type is PatternType.BURST]
    assert [c.change for c in bursts] == ["new"]
    burst = bursts[0].pattern
    assert burst.occurrences == 32
    assert burst.details["source"] == "store"
    assert burst.layers == ("infrastructure",)
    assert [p.id for p in a.patterns(type="burst")] == [burst.id]
    assert [e.payload["id"] for e in published if e.name == "burst"] == [burst.id]


def test_only_the_leader_reports(stores: tuple[Store, Store]) -> None:
    """Two analyzers on one SQLite file: one holds the lock and reports, the other waits."""
    a, b = stores
    a.write_events(errors(32, 0))
    with StoreAnalyzer(a) as first, StoreAnalyzer(b) as second:
        assert [c.change for c in first.run_once(T + 20)] == ["new", "new"]  # burst, recurring
        assert second.run_once(T + 20) == []
        assert (first.is_leader, second.is_leader) == (True, False)
        assert second.ongoing() == []
    assert len(a.patterns()) == 2


def test_a_new_leader_resumes_instead_of_reporting_again(stores: tuple[Store, Store]) -> None:
    """When the leader goes, the next one takes its ongoing patterns over: no second `new`."""
    a, b = stores
    a.write_events(errors(32, 0))
    first = StoreAnalyzer(a)
    reported = first.run_once(T + 20)
    first.close()
    b.write_events(errors(10, 25))
    with StoreAnalyzer(b) as second:
        changes = second.run_once(T + 40)
        assert second.is_leader
        assert "new" not in [c.change for c in changes]
        ids = {c.pattern.id for c in reported}
        assert {p.id for p in second.ongoing()} == ids
        ended = second.run_once(T + 800)
    assert sorted(c.change for c in ended) == ["ended", "ended"]
    assert {p.id for p in a.patterns(status="ended")} == ids
    burst = a.patterns(type="burst")[0]
    assert burst.occurrences == 42


def test_late_writes_are_fed_as_deltas(stores: tuple[Store, Store]) -> None:
    """Counts that grow between runs are fed once: occurrences add up, nothing doubles."""
    a, _ = stores
    a.write_events(errors(30, 0))
    with StoreAnalyzer(a, recurring=False) as analyzer:
        analyzer.run_once(T + 20)
        a.write_events(errors(12, 10, fp="late"))
        analyzer.run_once(T + 30)
        analyzer.run_once(T + 35)
        [burst] = analyzer.ongoing()
    assert burst.occurrences == 42


def test_recurring_across_writers_names_the_issue_fingerprint(
    stores: tuple[Store, Store],
) -> None:
    """Three occurrences in each of two writers: recurring at store level, by issue."""
    a, b = stores
    a.write_events(errors(3, 0, fp="same", step=20))
    b.write_events(errors(3, 10, fp="same", step=20))
    with StoreAnalyzer(a, burst=False, degradation=False) as analyzer:
        [change] = analyzer.run_once(T + 60)
    pattern = change.pattern
    assert pattern.type is PatternType.RECURRING
    [issue] = a.issues()
    assert pattern.fingerprints == (issue.fingerprint,)
    assert pattern.details["issue_id"] == issue.id
    assert pattern.occurrences == 6


def test_store_degradation(stores: tuple[Store, Store]) -> None:
    """Ten minutes at 10 errors a minute then five at 30, over two writers: a degradation."""
    a, b = stores
    for minute in range(15):
        per_writer = 5 if minute < 10 else 15
        step = 60 / per_writer
        a.write_events(errors(per_writer, minute * 60, fp=f"a{minute}", step=step))
        b.write_events(errors(per_writer, minute * 60 + step / 2, fp=f"b{minute}", step=step))
    with StoreAnalyzer(a, burst=False, recurring=False) as analyzer:
        changes = analyzer.run_once(T + 15 * 60 + 1)
    assert [c.pattern.type for c in changes] == [PatternType.DEGRADATION]


def test_background_loop_runs_and_stops(stores: tuple[Store, Store]) -> None:
    """start() analyses every interval on a daemon thread; close() stops it and unlocks."""
    a, b = stores
    analyzer = StoreAnalyzer(a).start(interval=0.01)
    deadline = time.monotonic() + 30  # a ceiling for a loaded machine, not a delay
    while analyzer.runs < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert analyzer.runs >= 3
    analyzer.close()
    assert not analyzer.is_leader
    with StoreAnalyzer(b) as other:
        other.run_once()
        assert other.is_leader


def test_a_url_is_opened_and_closed(sqlite_url: str) -> None:
    """A URL is opened by the analyzer and closed with it."""
    analyzer = StoreAnalyzer(sqlite_url)
    assert analyzer.run_once(T) == []
    analyzer.close()
    analyzer.close()


def test_refuses_what_is_not_a_store() -> None:
    """An object without the store's methods is refused with a clear error."""
    with pytest.raises(ConfigurationError, match="counts"):
        StoreAnalyzer(object())


# --- PostgreSQL: several processes, one database ------------------------------------


@functools.cache
def _postgres_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install 'faultlens[postgres]'"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except Exception as exc:
        return (
            f"no PostgreSQL answers at {POSTGRES_URL} ({type(exc).__name__}): start one or "
            "set FAULTLENS_TEST_POSTGRES_URL"
        )
    return None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL store URL in a schema of its own, dropped afterwards."""
    reason = _postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    import psycopg
    from psycopg import sql

    schema = f"faultlens_analysis_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{separator}schema={schema}"
    with open_store(url) as store:
        store.migrate()
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def spawn(monkeypatch: pytest.MonkeyPatch) -> SpawnContext:
    """A spawn context whose children do not re-run the parent's ``__main__``."""
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    return multiprocessing.get_context("spawn")


def _write_share(url: str, index: int) -> int:
    """One process's share of the burst; returns the bursts its own detectors saw (none)."""
    events = errors(10, index * 0.1, fp=f"process-{index}", step=2.0)
    with open_store(url) as store:
        store.write_events(events)
    detectors = DetectorSet([BurstDetector()])
    return sum(c.pattern.type is PatternType.BURST for c in detectors.observe_events(events))


def _analyse(url: str, barrier: Any) -> list[str]:
    """Run the store-level analysis once, all processes at the same moment."""
    with open_store(url) as store:
        analyzer = StoreAnalyzer(store, publish=False)
        barrier.wait(120)  # a ceiling: spawned processes start slowly on a loaded machine
        changes = analyzer.run_once(T + 30)
        barrier.wait(120)  # hold the lock until every process has tried
        analyzer.close()
    return [f"{c.change}:{c.pattern.type.value}" for c in changes]


@pytest.mark.postgres
@pytest.mark.timeout(600)  # seven spawned processes: 15 s here, 55 s on a loaded machine
def test_burst_across_processes_is_reported_once(postgres_url: str, spawn: SpawnContext) -> None:
    """Four processes write 10 errors each; of three analysing processes one reports one burst."""
    with spawn.Pool(4) as pool:
        own = pool.starmap(_write_share, [(postgres_url, i) for i in range(4)])
    assert own == [0, 0, 0, 0]  # no process saw a burst in its own errors
    manager = spawn.Manager()
    try:
        barrier = manager.Barrier(3)
        with spawn.Pool(3) as pool:
            reports = pool.starmap(_analyse, [(postgres_url, barrier)] * 3)
    finally:
        manager.shutdown()
    bursts = [r for report in reports for r in report if r.endswith(":burst")]
    assert bursts == ["new:burst"]
    assert sorted(len(r) > 0 for r in reports) == [False, False, True]
    with open_store(postgres_url) as store:
        [pattern] = store.patterns(type="burst")
        assert pattern.occurrences == 40
        assert pattern.details["source"] == "store"


@pytest.mark.postgres
def test_postgres_leader_lock_passes_on(postgres_url: str) -> None:
    """The advisory lock is held per analyzer; closing the leader lets the next one lead."""
    with open_store(postgres_url) as store:
        store.write_events(errors(32, 0))
        first, second = StoreAnalyzer(store), StoreAnalyzer(store)
        assert first.run_once(T + 20)
        assert second.run_once(T + 20) == []
        first.close()
        changes = second.run_once(T + 40)
        assert second.is_leader
        assert "new" not in [c.change for c in changes]
        second.close()
