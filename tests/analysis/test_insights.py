"""Insights on a known dataset written through the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from faultlens.analysis import Insights, insights
from faultlens.analysis._health import health_score
from faultlens.analysis._insights import format_duration, parse_duration
from faultlens.errors import ConfigurationError
from faultlens.store import Store
from faultlens.testing import FakeClock

from ._insight_data import NOW, SINCE, open_with_dataset, store_url

__all__ = ["store_url"]  # the fixture, imported for pytest


@pytest.fixture
def known(store_url: str) -> Iterator[tuple[Store, dict[str, int], Insights]]:
    """The dataset in a fresh store, and its insights over the hour before NOW."""
    store, ids = open_with_dataset(store_url)
    try:
        yield store, ids, insights(store, window="1h", now=NOW, buckets=6, log_lines=(10, 9))
    finally:
        store.close()


def test_window_and_buckets(known: tuple[Store, dict[str, int], Insights]) -> None:
    """The window is the hour before now, in 10-minute buckets aligned to the epoch."""
    _, _, data = known
    assert (data.since, data.until, data.window) == (SINCE, NOW, 3600.0)
    assert data.bucket_seconds == 600.0
    assert data.buckets == tuple(SINCE + 600 * i for i in range(7))


def test_trends_by_category_and_layer(known: tuple[Store, dict[str, int], Insights]) -> None:
    """Errors per bucket by category and by layer, biggest first, with their direction."""
    _, _, data = known
    assert [(t.key, t.counts, t.total, t.direction) for t in data.trends_by("category")] == [
        ("integration", (1, 1, 1, 1, 1, 1, 0), 6, "steady"),
        ("system", (0, 0, 0, 0, 0, 4, 0), 4, "rising"),
        ("validation", (0, 0, 0, 1, 0, 0, 0), 1, "steady"),
    ]
    assert [(t.key, t.total, t.direction) for t in data.trends_by("layer")] == [
        ("service", 6, "steady"),
        ("infrastructure", 4, "rising"),
        ("api", 1, "steady"),
    ]


def test_top_new_and_regressed_issues(known: tuple[Store, dict[str, int], Insights]) -> None:
    """Top issues count the window's events; new ones started in it; C regressed in it."""
    _, ids, data = known
    assert [(t.issue.id, t.events) for t in data.top_issues] == [
        (ids["A"], 6),
        (ids["B"], 4),
        (ids["C"], 1),
    ]
    assert [t.key for t in data.trends_by("issue")] == [ids["A"], ids["B"], ids["C"]]
    assert [i.id for i in data.new_issues] == [ids["B"], ids["A"]]
    assert [i.id for i in data.regressed_issues] == [ids["C"]]
    assert data.regressed_issues[0].regressed_at == SINCE + 2000


def test_recovery_effectiveness(known: tuple[Store, dict[str, int], Insights]) -> None:
    """Per policy and name: calls, outcomes, success rate, mean attempts, time to recover."""
    _, _, data = known
    rows = {(r.policy, r.name): r for r in data.recovery}
    retry = rows["retry", "payments"]
    assert (retry.calls, retry.first_time, retry.recovered, retry.failed, retry.rejected) == (
        5,
        3,
        1,
        1,
        0,
    )
    assert retry.success_rate == 0.5
    assert retry.mean_attempts == 2.5
    # from the first failed attempt's start (500 s - 100 ms) to the success at 502 s
    assert retry.mean_time_to_recover_ms == pytest.approx(2100.0, abs=0.01)
    cache = rows["fallback", "cache"]
    assert (cache.calls, cache.recovered, cache.failed, cache.success_rate) == (5, 3, 2, 0.6)
    assert cache.mean_attempts == 1.0
    assert cache.mean_time_to_recover_ms == pytest.approx(10.0)
    breaker = rows["circuit_breaker", "inventory"]
    assert (breaker.calls, breaker.rejected, breaker.success_rate) == (2, 2, None)
    assert breaker.mean_attempts is None
    assert data.recovery_success_rate == pytest.approx(4 / 7)


def test_user_impact_and_severities(known: tuple[Store, dict[str, int], Insights]) -> None:
    """Distinct users, sessions and tenants among the window's errors; severities counted."""
    _, _, data = known
    assert (data.impact.errors, data.impact.users, data.impact.sessions) == (11, 5, 3)
    assert data.impact.tenants == 1
    assert data.errors_by_severity == {"critical": 4, "high": 6, "low": 1}
    assert list(data.errors_by_severity) == ["critical", "high", "low"]
    assert data.operations == 300


def test_correlation_coverage(known: tuple[Store, dict[str, int], Insights]) -> None:
    """Events (not faultlens's own alert) and log lines carrying a correlation id."""
    _, _, data = known
    coverage = data.coverage
    assert (coverage.events, coverage.events_with_id) == (626, 603)
    assert (coverage.log_lines, coverage.log_lines_with_id) == (10, 9)
    assert coverage.share == pytest.approx(612 / 636)
    assert coverage.missing_share == pytest.approx(24 / 636)


def test_health_score(known: tuple[Store, dict[str, int], Insights]) -> None:
    """The documented formula, part by part."""
    _, _, data = known
    health = data.health
    assert health.weighted_error_rate == pytest.approx((6 * 1 + 4 * 2 + 0.25) / 300)
    assert health.error_penalty == 19.0  # 40 * 0.0475 / 0.10
    assert health.recovery_penalty == 10.71  # 25 * 3/7
    assert health.correlation_penalty == 11.32  # 15 * (24/636) / 0.05
    assert health.issue_penalty == 16.0  # 4 * (2 new + 1 regressed + 1 ongoing pattern)
    assert (health.score, health.status) == (43.0, "unhealthy")


def test_patterns_and_recommendations(known: tuple[Store, dict[str, int], Insights]) -> None:
    """Patterns come from the store; recommendations are sorted most severe first."""
    _, ids, data = known
    assert [p.id for p in data.patterns] == ["cascade-1"]
    found = [(r.severity, r.source) for r in data.recommendations]
    assert found == [
        ("critical", "pattern"),
        ("critical", "issue"),
        ("high", "correlation"),
        ("high", "issue"),
        ("high", "issue"),
        ("medium", "recovery"),
    ]
    first = data.recommendations[0]
    assert "candidate root cause B" in first.message
    assert first.actions == ("fix the database first",)
    assert data.recommendations[3].message.startswith(f"issue {ids['C']} regressed")
    assert "'cache' recovered 60% of 5 failures" in data.recommendations[5].message


def test_tenant_filter(known: tuple[Store, dict[str, int], Insights]) -> None:
    """With a tenant, only that tenant's events count."""
    store, ids, _ = known
    data = insights(store, window="1h", now=NOW, tenant_id="acme", log_lines=(0, 0))
    assert [t.issue.id for t in data.top_issues] == [ids["B"]]
    assert (data.errors, data.impact.users, data.impact.tenants) == (4, 1, 1)
    assert data.coverage.events == 4


def test_to_dict_is_json(known: tuple[Store, dict[str, int], Insights]) -> None:
    """to_dict() gives JSON-ready values."""
    _, _, data = known
    decoded = orjson.loads(orjson.dumps(data.to_dict()))
    assert decoded["health"]["score"] == 43.0
    assert decoded["coverage"]["share"] == pytest.approx(612 / 636)
    assert decoded["patterns"][0]["type"] == "cascade"


def test_empty_store_defaults_to_the_clock() -> None:
    """An empty store gives empty insights, a perfect score, and now from the clock."""
    from faultlens.store import open as open_store

    with FakeClock(NOW) as clock, open_store("sqlite:///:memory:") as store:
        data = insights(store, log_lines=(0, 0))
        assert (data.until, data.window) == (clock.time(), 86_400.0)
    assert (data.trends, data.top_issues, data.recovery) == ((), (), ())
    assert (data.coverage.share, data.recovery_success_rate) == (None, None)
    assert (data.health.score, data.health.status) == (100.0, "healthy")
    assert data.recommendations == ()


def test_bad_arguments() -> None:
    """Windows and sizes are checked with a message saying what is expected."""
    from faultlens.store import open as open_store

    with open_store("sqlite:///:memory:") as store:
        with pytest.raises(ConfigurationError, match="not a duration"):
            insights(store, window="soon")
        with pytest.raises(ConfigurationError, match="buckets"):
            insights(store, buckets=0)
        with pytest.raises(ConfigurationError, match="positive"):
            insights(store, window=-5)


def test_durations() -> None:
    """Durations parse from the usual units and print back compactly."""
    assert [parse_duration(t) for t in ("90s", "15m", "24h", "7d", "2w", "250ms", "3600")] == [
        90.0,
        900.0,
        86_400.0,
        604_800.0,
        1_209_600.0,
        0.25,
        3600.0,
    ]
    assert [format_duration(s) for s in (0.25, 45, 300, 5400, 86_400, 90_061)] == [
        "250ms",
        "45s",
        "5m",
        "1h30m",
        "1d",
        "1d1h",
    ]
    with pytest.raises(ConfigurationError):
        parse_duration("0s")


def test_health_formula_edges() -> None:
    """Without operations, errors saturate the error part; without data the score is 100."""
    assert (
        health_score(
            errors_by_severity={}, operations=0, recovery_success_rate=None, missing_share=None
        ).score
        == 100.0
    )
    saturated = health_score(
        errors_by_severity={"low": 1},
        operations=0,
        recovery_success_rate=0.0,
        missing_share=1.0,
        new_issues=9,
    )
    assert (saturated.error_penalty, saturated.recovery_penalty) == (40.0, 25.0)
    assert (saturated.correlation_penalty, saturated.issue_penalty) == (15.0, 20.0)
    assert (saturated.score, saturated.status) == (0.0, "critical")


def test_log_line_counts() -> None:
    """faultlens's handler counts the lines it writes, and those without a correlation id."""
    import logging

    import faultlens
    from faultlens.analysis._insights import log_line_counts
    from faultlens.testing import capture_logs

    before_total, before_with = log_line_counts()
    with capture_logs():
        faultlens.get_logger("app").info("native, no context")
        logging.getLogger("app.std").warning("stdlib, no context")
        with faultlens.correlate("abc"):
            faultlens.get_logger("app").info("native, in a request")
            logging.getLogger("app.std").warning("stdlib, in a request")
    total, with_id = log_line_counts()
    assert (total - before_total, with_id - before_with) == (4, 2)
