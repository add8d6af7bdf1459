"""A known dataset for insights, the report and alerts, and the stores to write it to.

The window is the hour before ``NOW`` (both multiples of 600 s, so six ten-minute
buckets start at ``SINCE`` and a seventh at ``NOW``).  What it holds, and so what
the tests expect:

* issue A (integration/service/high): 6 errors, one per bucket, users u1-u3,
  sessions s1-s2, all with a correlation id;
* issue B (system/infrastructure/critical, tenant acme): 4 errors in the sixth
  bucket, user u4, session s3, one without a correlation id;
* issue C (validation/api/low): first seen two hours before the window, resolved,
  then one error inside it (a regression), user u5;
* 300 operations (start and end events), 10 of them without a correlation id;
* recovery: retry ``payments`` (3 first-time successes, one call recovered at its
  2nd attempt 2.1 s after it started, one failed after 3 attempts), fallback
  ``cache`` (3 fell back in 10 ms, 2 not recovered), circuit breaker
  ``inventory`` (2 rejections, no correlation id);
* an alert event (faultlens's own: not counted in the coverage) and an ongoing
  cascade pattern with confidence 0.9.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultlens.analysis import Pattern, PatternStatus, PatternType
from faultlens.events import Event
from faultlens.store import Store
from faultlens.store import open as open_store
from faultlens.testing import FakeClock

NOW = 1_700_002_800.0
SINCE = NOW - 3600.0

POSTGRES_URL = os.environ.get(
    "FAULTLENS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@functools.cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'faultlens.db'}"
        return
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    import psycopg
    from psycopg import sql

    schema = f"faultlens_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def error(
    fingerprint: str,
    timestamp: float,
    *,
    category: str,
    layer: str,
    severity: str,
    correlation_id: str | None = None,
    user: str | None = None,
    session: str | None = None,
    tenant: str | None = None,
    title: str = "failure",
) -> Event:
    """An error event shaped like capture() builds them, grouped by ``fingerprint``."""
    return Event(
        "error",
        f"app.{fingerprint}",
        {
            "type": f"app.{fingerprint}",
            "message": title,
            "classification": {"category": category, "severity": severity, "layer": layer},
            "context": {"session_id": session, "correlation_id": correlation_id},
            "fingerprint": [fingerprint],
        },
        correlation_id=correlation_id,
        tenant_id=tenant,
        user_id=user,
        timestamp=timestamp,
    )


def recovery(
    policy: str,
    name: str,
    outcome: str,
    timestamp: float,
    *,
    attempt: int = 1,
    duration_ms: float = 1.0,
    correlation_id: str | None = None,
) -> Event:
    """A recovery event with the payload policies record."""
    return Event(
        "recovery",
        name,
        {
            "policy": policy,
            "name": name,
            "attempt": attempt,
            "outcome": outcome,
            "delay_s": 0.0,
            "duration_ms": duration_ms,
            "error_type": None,
        },
        correlation_id=correlation_id,
        timestamp=timestamp,
    )


def operations(count: int, *, without_id: int) -> list[Event]:
    """``count`` operations (a start and an end event each), the first ``without_id`` bare."""
    out: list[Event] = []
    for i in range(count):
        cid = None if i < without_id else f"op-{i}"
        ts = SINCE + 10 + i * 10
        out.append(Event("operation", "checkout", {"phase": "start"}, cid, timestamp=ts))
        out.append(Event("operation", "checkout", {"phase": "end"}, cid, timestamp=ts))
    return out


def write_dataset(store: Store) -> dict[str, int]:
    """Write the module docstring's dataset; return the issue ids by letter."""
    with FakeClock(SINCE - 7200) as clock:
        store.write_events(
            [
                error(
                    "C",
                    SINCE - 7200,
                    category="validation",
                    layer="api",
                    severity="low",
                    correlation_id="c-old",
                    user="u5",
                )
            ]
        )
        (old,) = store.issues(status="unresolved").items
        clock.advance(3600)
        store.set_issue_status(old.id, "resolved", actor="test")
        clock.advance(3600 + 3599)
        events: list[Event] = []
        for i in range(6):
            events.append(
                error(
                    "A",
                    SINCE + 100 + i * 600,
                    category="integration",
                    layer="service",
                    severity="high",
                    correlation_id=f"c-a{i}",
                    user=f"u{i % 3 + 1}",
                    session=f"s{i % 2 + 1}",
                    title="payment declined",
                )
            )
        for i in range(4):
            events.append(
                error(
                    "B",
                    SINCE + 3000 + i * 100,
                    category="system",
                    layer="infrastructure",
                    severity="critical",
                    correlation_id=None if i == 0 else f"c-b{i}",
                    user="u4",
                    session="s3",
                    tenant="acme",
                    title="database down",
                )
            )
        events.append(
            error(
                "C",
                SINCE + 2000,
                category="validation",
                layer="api",
                severity="low",
                correlation_id="c-c",
                user="u5",
            )
        )
        events += operations(300, without_id=10)
        events += [
            recovery("retry", "payments", "succeeded_first_time", SINCE + 400, correlation_id="r0"),
            recovery("retry", "payments", "succeeded_first_time", SINCE + 401, correlation_id="r0"),
            recovery("retry", "payments", "succeeded_first_time", SINCE + 402, correlation_id="r0"),
            recovery(
                "retry", "payments", "retrying", SINCE + 500, duration_ms=100, correlation_id="r1"
            ),
            recovery(
                "retry",
                "payments",
                "succeeded_after_retry",
                SINCE + 502,
                attempt=2,
                duration_ms=50,
                correlation_id="r1",
            ),
            recovery(
                "retry", "payments", "retrying", SINCE + 800, duration_ms=200, correlation_id="r2"
            ),
            recovery(
                "retry", "payments", "retrying", SINCE + 801.5, attempt=2, correlation_id="r2"
            ),
            recovery(
                "retry",
                "payments",
                "failed_after_retry",
                SINCE + 803,
                attempt=3,
                correlation_id="r2",
            ),
        ]
        events += [
            recovery(
                "fallback",
                "cache",
                "fell_back",
                SINCE + 900 + i,
                duration_ms=10,
                correlation_id=f"f{i}",
            )
            for i in range(3)
        ]
        events += [
            recovery("fallback", "cache", "not_recovered", SINCE + 910 + i, correlation_id=f"g{i}")
            for i in range(2)
        ]
        events += [
            recovery("circuit_breaker", "inventory", "rejected_open", SINCE + 1000 + i)
            for i in range(2)
        ]
        events.append(Event("alert", "old_rule", {"status": "firing"}, timestamp=SINCE + 50))
        store.write_events(events)
        store.save_patterns(
            [
                Pattern(
                    id="cascade-1",
                    type=PatternType.CASCADE,
                    status=PatternStatus.ONGOING,
                    first_occurrence=SINCE + 3000,
                    last_occurrence=SINCE + 3300,
                    occurrences=3,
                    layers=("infrastructure", "service"),
                    fingerprints=("B", "A"),
                    confidence=0.9,
                    suggested_actions=("fix the database first",),
                )
            ]
        )
    # Titles are "<type>: <message>", the type named after the fingerprint letter.
    return {issue.title.split(":")[0]: issue.id for issue in store.issues()}


def open_with_dataset(url: str) -> tuple[Store, dict[str, int]]:
    """Open ``url``, write the dataset, return the store and the issue ids."""
    store = open_store(url)
    return store, write_dataset(store)
