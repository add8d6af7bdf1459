"""Insights: what the events of a time window say, in one frozen value.

``insights(store, window=timedelta(hours=24))`` reads the store (a few indexed
queries, no scan of the whole history) and returns an :class:`Insights`:

* ``trends`` — error events per time bucket by category, by layer and by issue
  (the top issues), each with a direction;
* ``top_issues``, ``new_issues`` (first seen in the window) and
  ``regressed_issues`` (resolved, then seen again in the window);
* ``recovery`` — per policy kind and name: calls, how many needed no recovery,
  were recovered, failed or were rejected, the success rate, the mean attempts
  and the mean time to recover;
* ``impact`` — distinct users, sessions and tenants that met an error;
* ``coverage`` — the share of events and log lines carrying a correlation id;
* ``health`` — the score of :mod:`faultlens.analysis._health`;
* ``patterns`` and ``recommendations`` — what the pattern detectors found in the
  window (read from the store) and what to do about it.

The window is ``[now - window, now]``.  ``docs/insights-and-alerts.md`` defines
every figure.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from faultlens import logs as _logs
from faultlens._clock import get_clock
from faultlens.analysis._health import HealthScore, health_score
from faultlens.analysis._patterns import Pattern
from faultlens.errors import ConfigurationError, Severity
from faultlens.events import ALERT, AUDIT, ERROR
from faultlens.redaction import neutralize_newlines
from faultlens.store import CountBy, Issue, Store
from faultlens.store._protocol import EventStats, RecoveryStats
from faultlens.store._types import instant

__all__ = [
    "FAILED_OUTCOMES",
    "RECOVERED_OUTCOMES",
    "REJECTED_OUTCOMES",
    "CorrelationCoverage",
    "Insights",
    "Recommendation",
    "RecoveryEffectiveness",
    "TopIssue",
    "Trend",
    "TrendDirection",
    "UserImpact",
    "duration_seconds",
    "format_duration",
    "insights",
    "log_line_counts",
    "parse_duration",
    "summarise_recovery",
]

TrendDirection = Literal["rising", "falling", "steady"]

RECOVERED_OUTCOMES: Final = frozenset({"succeeded_after_retry", "fell_back", "recovered"})
"""Recovery outcomes that mean "a failure was recovered"."""
FAILED_OUTCOMES: Final = frozenset({"failed_after_retry", "not_recovered"})
"""Recovery outcomes that mean "recovery was tried and failed"."""
REJECTED_OUTCOMES: Final = frozenset({"rejected_open", "rejected_full", "timed_out"})
"""Protective refusals (breaker open, bulkhead full, timeout): counted, not recovery attempts."""
_FIRST_TIME: Final = "succeeded_first_time"
# Events faultlens writes about itself: not part of correlation coverage.
_SYSTEM_KINDS: Final = frozenset({ALERT, AUDIT, "pattern"})
_MAX_LISTED: Final = 1000
_MAX_SCANNED: Final = 10_000
_PAGE: Final = 500
_MAX_RECOMMENDATIONS: Final = 25
_TREND_RATIO: Final = 1.5
_TREND_MIN_CHANGE: Final = 3
_LOW_RECOVERY: Final = 0.85
_LOW_RECOVERY_VOLUME: Final = 5
_MISSING_CORRELATION: Final = 0.01
_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", re.IGNORECASE)
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


# --- durations -----------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"``, ``"250ms"`` or ``"3600"``.

    Raises :class:`~faultlens.errors.ConfigurationError` for anything else.
    """
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigurationError(
            f"{text!r} is not a duration: write a number and a unit, such as 30s, 15m, 24h, 7d"
        )
    value = float(match[1]) * _UNITS[(match[2] or "s").lower()]
    if not value > 0:
        raise ConfigurationError(f"duration {text!r} must be more than zero")
    return value


def duration_seconds(value: float | timedelta | str, name: str) -> float:
    """A positive duration in seconds from seconds, a ``timedelta`` or a string like ``"15m"``."""
    if isinstance(value, str):
        return parse_duration(value)
    result = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(result, bool)
        or not isinstance(result, int | float)
        or not math.isfinite(result)
        or result <= 0
    ):
        raise ConfigurationError(
            f"{name} must be a positive number of seconds, a timedelta or a string like "
            f"'15m', not {value!r}"
        )
    return float(result)


def format_duration(seconds: float) -> str:
    """A duration as people write it: ``"250ms"``, ``"45s"``, ``"5m"``, ``"1h30m"``, ``"2d"``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    rest = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


# --- the result ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trend:
    """Error events of one category, layer or issue per bucket (``Insights.buckets``).

    ``direction`` compares the second half of the buckets with the first:
    ``rising`` when it has at least 1.5 times as many and at least 3 more,
    ``falling`` the other way round, else ``steady``.
    """

    by: CountBy
    key: str | int | None
    counts: tuple[int, ...]
    total: int
    direction: TrendDirection


@dataclass(frozen=True, slots=True)
class TopIssue:
    """An issue and how many of its error events fell in the window."""

    issue: Issue
    events: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryEffectiveness:
    """How well one recovery policy (kind and name) did in the window.

    ``calls`` = ``first_time`` (succeeded at once) + ``recovered`` + ``failed``
    + ``rejected`` (breaker open, bulkhead full, timed out).  ``success_rate``
    is ``recovered / (recovered + failed)``, ``None`` when nothing needed
    recovering; ``mean_attempts`` is over the recovered and failed calls;
    ``mean_time_to_recover_ms`` over the recovered calls whose time is known
    (see :class:`faultlens.store._protocol.RecoveryStats`).
    """

    policy: str
    name: str
    calls: int
    first_time: int
    recovered: int
    failed: int
    rejected: int
    success_rate: float | None
    mean_attempts: float | None
    mean_time_to_recover_ms: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserImpact:
    """Who met an error in the window: error events and distinct users, sessions, tenants."""

    errors: int
    users: int
    sessions: int
    tenants: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CorrelationCoverage:
    """How many events (in the window) and log lines carry a correlation id.

    Events exclude what faultlens writes about itself (alerts, patterns, audit).
    Log lines are not stored: they are the lines this process wrote since it
    started (zero in a process that only reads a store, like ``faultlens report``).
    """

    events: int
    events_with_id: int
    log_lines: int
    log_lines_with_id: int

    @property
    def total(self) -> int:
        """Events and log lines counted."""
        return self.events + self.log_lines

    @property
    def with_id(self) -> int:
        """Events and log lines carrying a correlation id."""
        return self.events_with_id + self.log_lines_with_id

    @property
    def share(self) -> float | None:
        """The share carrying one (0 to 1), ``None`` when nothing was counted."""
        return self.with_id / self.total if self.total else None

    @property
    def missing_share(self) -> float | None:
        """The share without one: the ``correlation_id_missing`` alert metric."""
        share = self.share
        return None if share is None else 1.0 - share


@dataclass(frozen=True, slots=True, kw_only=True)
class Recommendation:
    """Something worth doing, with why (``message``) and how (``actions``)."""

    severity: str
    source: Literal["pattern", "correlation", "recovery", "issue"]
    message: str
    actions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Insights:
    """What the events of ``[since, until]`` say; see the module docstring."""

    since: float
    until: float
    tenant_id: str | None
    bucket_seconds: float
    buckets: tuple[float, ...]
    """Start of each trend bucket (epoch seconds, multiples of ``bucket_seconds``)."""
    trends: tuple[Trend, ...]
    top_issues: tuple[TopIssue, ...]
    new_issues: tuple[Issue, ...]
    regressed_issues: tuple[Issue, ...]
    errors: int
    errors_by_severity: Mapping[str, int]
    operations: int
    recovery: tuple[RecoveryEffectiveness, ...]
    recovery_success_rate: float | None
    impact: UserImpact
    coverage: CorrelationCoverage
    health: HealthScore
    patterns: tuple[Pattern, ...]
    recommendations: tuple[Recommendation, ...]

    @property
    def window(self) -> float:
        """The window's length in seconds."""
        return self.until - self.since

    def trends_by(self, by: CountBy) -> tuple[Trend, ...]:
        """The trends of one dimension (``category``, ``layer`` or ``issue``), biggest first."""
        return tuple(t for t in self.trends if t.by == by)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values (for an API or ``faultlens report --json``)."""
        data = _jsonable(self)
        assert isinstance(data, dict)
        return data


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, CorrelationCoverage):
            out["share"] = value.share
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- computing it ----------------------------------------------------------------------------


def log_line_counts() -> tuple[int, int]:
    """``(lines, lines with a correlation id)`` this process's faultlens handler wrote."""
    total, without = _logs._line_counts
    return total, total - without


def insights(
    store: Store,
    *,
    window: float | timedelta | str = 86_400.0,
    now: float | datetime | None = None,
    buckets: int = 24,
    top: int = 10,
    tenant_id: str | None = None,
    log_lines: tuple[int, int] | None = None,
) -> Insights:
    """The :class:`Insights` of the ``window`` (default 24 h) ending at ``now`` (default: now).

    ``buckets`` trend buckets span the window (aligned to multiples of their
    size, so the first and last may be partial); ``top`` issues are listed.
    ``log_lines`` is ``(lines, lines with a correlation id)`` for the coverage;
    by default this process's counts (:func:`log_line_counts`).  Store failures
    raise :class:`~faultlens.store.StoreError`; a bad argument
    :class:`~faultlens.errors.ConfigurationError`.
    """
    span = duration_seconds(window, "window")
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 1000:
        raise ConfigurationError(f"buckets must be an int from 1 to 1000, not {buckets!r}")
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 1000:
        raise ConfigurationError(f"top must be an int from 1 to 1000, not {top!r}")
    end = instant(now, "now")
    until = get_clock().time() if end is None else end
    since = until - span
    read_until = math.nextafter(until, math.inf)  # the window includes `now`
    bucket = span / buckets
    first = math.floor(since / bucket)
    last = math.floor(until / bucket)
    grid = tuple(n * bucket for n in range(first, last + 1))

    trends: list[Trend] = []
    for by in ("category", "layer"):
        series = _series(
            store,
            by=by,
            bucket=bucket,
            since=since,
            until=read_until,
            first=first,
            size=len(grid),
            tenant_id=tenant_id,
        )
        trends.extend(_trend(by, key, counts) for key, counts in _biggest(series))
    issue_series = _series(
        store,
        by="issue",
        bucket=bucket,
        since=since,
        until=read_until,
        first=first,
        size=len(grid),
        tenant_id=tenant_id,
    )
    top_issues: list[TopIssue] = []
    for key, counts in _biggest(issue_series):
        if len(top_issues) >= top:
            break
        if not isinstance(key, int):
            continue
        issue = store.issue(key, tenant_id=tenant_id)
        if issue is None:
            continue
        top_issues.append(TopIssue(issue, sum(counts)))
        trends.append(_trend("issue", key, counts))

    new = _new_issues(store, since, read_until, tenant_id)
    regressed = _regressed_issues(store, since, read_until, tenant_id)
    stats = store.event_stats(since=since, until=read_until, tenant_id=tenant_id)
    recovery = summarise_recovery(
        store.recovery_stats(since=since, until=read_until, tenant_id=tenant_id)
    )
    recovered = sum(r.recovered for r in recovery)
    attempted = recovered + sum(r.failed for r in recovery)
    success_rate = recovered / attempted if attempted else None
    coverage = _coverage(stats, log_line_counts() if log_lines is None else log_lines)
    patterns = read_patterns(store, since=since, tenant_id=tenant_id)
    health = health_score(
        errors_by_severity=stats.errors_by_severity,
        operations=stats.operations_ended,
        recovery_success_rate=success_rate,
        missing_share=coverage.missing_share,
        new_issues=len(new),
        regressed_issues=len(regressed),
        ongoing_patterns=sum(1 for p in patterns if p.ongoing),
    )
    errors = stats.events.get(ERROR, 0)
    return Insights(
        since=since,
        until=until,
        tenant_id=tenant_id,
        bucket_seconds=bucket,
        buckets=grid,
        trends=tuple(trends),
        top_issues=tuple(top_issues),
        new_issues=tuple(new),
        regressed_issues=tuple(regressed),
        errors=errors,
        errors_by_severity=dict(sorted(stats.errors_by_severity.items(), key=_severity_order)),
        operations=stats.operations_ended,
        recovery=tuple(recovery),
        recovery_success_rate=success_rate,
        impact=UserImpact(
            errors=errors, users=stats.users, sessions=stats.sessions, tenants=stats.tenants
        ),
        coverage=coverage,
        health=health,
        patterns=patterns,
        recommendations=recommend(
            patterns=patterns,
            coverage=coverage,
            recovery=recovery,
            new_issues=new,
            regressed_issues=regressed,
        ),
    )


def _severity_order(item: tuple[str, int]) -> tuple[int, str]:
    try:
        return (-Severity(item[0]).rank, item[0])
    except ValueError:
        return (1, item[0])


def _series(
    store: Store,
    *,
    by: CountBy,
    bucket: float,
    since: float,
    until: float,
    first: int,
    size: int,
    tenant_id: str | None,
) -> dict[str | int | None, list[int]]:
    series: dict[str | int | None, list[int]] = {}
    for count in store.counts(
        bucket_seconds=bucket, since=since, until=until, by=by, tenant_id=tenant_id
    ):
        index = round(count.bucket / bucket) - first
        if 0 <= index < size:
            series.setdefault(count.key, [0] * size)[index] += count.count
    return series


def _biggest(
    series: Mapping[str | int | None, list[int]],
) -> list[tuple[str | int | None, list[int]]]:
    return sorted(series.items(), key=lambda item: (-sum(item[1]), str(item[0])))


def _trend(by: CountBy, key: str | int | None, counts: Sequence[int]) -> Trend:
    half = len(counts) // 2
    before = sum(counts[:half])
    after = sum(counts[len(counts) - half :])
    direction: TrendDirection = "steady"
    if half:
        if after >= _TREND_RATIO * before and after - before >= _TREND_MIN_CHANGE:
            direction = "rising"
        elif before >= _TREND_RATIO * after and before - after >= _TREND_MIN_CHANGE:
            direction = "falling"
    return Trend(by, key, tuple(counts), sum(counts), direction)


def _new_issues(store: Store, since: float, until: float, tenant_id: str | None) -> list[Issue]:
    found: list[Issue] = []
    after: str | None = None
    while len(found) < _MAX_LISTED:
        page = store.issues(
            since=since,
            until=until,
            sort="first_seen",
            limit=_PAGE,
            after=after,
            tenant_id=tenant_id,
        )
        for issue in page:
            if issue.first_seen < since:
                return found
            found.append(issue)
        if page.next_cursor is None:
            break
        after = page.next_cursor
    return found[:_MAX_LISTED]


def _regressed_issues(
    store: Store, since: float, until: float, tenant_id: str | None
) -> list[Issue]:
    found: list[Issue] = []
    after: str | None = None
    scanned = 0
    while scanned < _MAX_SCANNED and len(found) < _MAX_LISTED:
        page = store.issues(
            status="unresolved",
            since=since,
            until=until,
            limit=_PAGE,
            after=after,
            tenant_id=tenant_id,
        )
        scanned += len(page)
        found.extend(
            issue
            for issue in page
            if issue.regressed
            and issue.regressed_at is not None
            and since <= issue.regressed_at < until
        )
        if page.next_cursor is None:
            break
        after = page.next_cursor
    return found[:_MAX_LISTED]


def summarise_recovery(rows: Iterable[RecoveryStats]) -> list[RecoveryEffectiveness]:
    """Recovery effectiveness per policy kind and name from the store's per-outcome rows."""
    groups: dict[tuple[str, str], list[RecoveryStats]] = {}
    for row in rows:
        groups.setdefault((row.policy, row.name), []).append(row)
    out: list[RecoveryEffectiveness] = []
    for (policy, name), items in sorted(groups.items()):
        first_time = sum(r.events for r in items if r.outcome == _FIRST_TIME)
        recovered = sum(r.events for r in items if r.outcome in RECOVERED_OUTCOMES)
        failed = sum(r.events for r in items if r.outcome in FAILED_OUTCOMES)
        rejected = sum(r.events for r in items if r.outcome in REJECTED_OUTCOMES)
        attempted = recovered + failed
        attempts = sum(
            r.attempts for r in items if r.outcome in RECOVERED_OUTCOMES | FAILED_OUTCOMES
        )
        timed = [r for r in items if r.outcome in RECOVERED_OUTCOMES]
        timed_count = sum(r.recover_count for r in timed)
        out.append(
            RecoveryEffectiveness(
                policy=policy,
                name=name,
                calls=first_time + attempted + rejected,
                first_time=first_time,
                recovered=recovered,
                failed=failed,
                rejected=rejected,
                success_rate=recovered / attempted if attempted else None,
                mean_attempts=attempts / attempted if attempted else None,
                mean_time_to_recover_ms=(
                    sum(r.recover_seconds for r in timed) * 1000.0 / timed_count
                    if timed_count
                    else None
                ),
            )
        )
    return out


def _coverage(stats: EventStats, lines: tuple[int, int]) -> CorrelationCoverage:
    events = sum(n for kind, n in stats.events.items() if kind not in _SYSTEM_KINDS)
    carried = sum(n for kind, n in stats.with_correlation.items() if kind not in _SYSTEM_KINDS)
    total, with_id = lines
    return CorrelationCoverage(
        events=events,
        events_with_id=carried,
        log_lines=max(0, int(total)),
        log_lines_with_id=max(0, min(int(with_id), int(total))),
    )


def read_patterns(
    store: Store, *, since: float, tenant_id: str | None = None, limit: int = 100
) -> tuple[Pattern, ...]:
    """Patterns whose last occurrence is at or after ``since``, if the store keeps them."""
    reader = getattr(store, "patterns", None)
    if not callable(reader):
        return ()
    try:
        found = reader(since=since, limit=limit, tenant_id=tenant_id)
    except TypeError:  # a store of another shape: no patterns rather than no insights
        return ()
    return tuple(p for p in found if isinstance(p, Pattern))


# --- recommendations -------------------------------------------------------------------------

_PATTERN_ADVICE: Final[Mapping[str, tuple[str, str, tuple[str, ...]]]] = {
    "recurring": (
        "medium",
        "the same error keeps recurring",
        ("fix the root cause of the recurring issue", "add a test that reproduces it"),
    ),
    "burst": (
        "high",
        "errors arrived in a burst",
        (
            "check recent deploys and the health of the dependencies involved",
            "consider a circuit breaker or rate limiting in front of the failing call",
        ),
    ),
    "cascade": (
        "high",
        "errors cascaded up the layers",
        (
            "start from the candidate root cause in the lowest layer",
            "contain it: a breaker or a fallback at that layer stops the cascade",
        ),
    ),
    "degradation": (
        "high",
        "the error rate is rising",
        (
            "compare with the previous window: deploys, traffic, dependency latency",
            "watch the resources the failing operations use",
        ),
    ),
}
_SEVERITY_RANK: Final = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def _clip(text: str, limit: int = 80) -> str:
    text = neutralize_newlines(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pattern_recommendation(pattern: Pattern) -> Recommendation:
    kind = pattern.type.value
    severity, summary, defaults = _PATTERN_ADVICE.get(
        kind, ("medium", f"a {kind} pattern", ("look into the errors involved",))
    )
    if not pattern.ongoing:
        severity = "low"
    elif kind in ("cascade", "degradation") and pattern.confidence >= 0.8:
        severity = "critical"
    layers = ", ".join(pattern.layers) or "unknown layers"
    message = (
        f"{kind} pattern ({pattern.status.value}): {summary}; {pattern.occurrences} "
        f"occurrences in {layers}, confidence {pattern.confidence:.0%}"
    )
    root = pattern.root_fingerprint
    if kind == "cascade" and root:
        message += f"; candidate root cause {root[:16]}"
    return Recommendation(
        severity=severity,
        source="pattern",
        message=message,
        actions=pattern.suggested_actions or defaults,
    )


def recommend(
    *,
    patterns: Iterable[Pattern] = (),
    coverage: CorrelationCoverage | None = None,
    recovery: Iterable[RecoveryEffectiveness] = (),
    new_issues: Iterable[Issue] = (),
    regressed_issues: Iterable[Issue] = (),
) -> tuple[Recommendation, ...]:
    """Recommendations from patterns and the window's figures, most severe first (at most 25)."""
    out = [_pattern_recommendation(p) for p in patterns]
    missing = None if coverage is None else coverage.missing_share
    if missing is not None and missing > _MISSING_CORRELATION:
        out.append(
            Recommendation(
                severity="high",
                source="correlation",
                message=f"{missing:.1%} of events and log lines carry no correlation id",
                actions=(
                    "run every entry point (requests, jobs, CLI commands) inside "
                    "faultlens.correlate() or the ASGI/WSGI middleware",
                    "propagate across threads with faultlens.wrap() and across services "
                    "with faultlens.outgoing_headers()",
                ),
            )
        )
    for item in recovery:
        rate = item.success_rate
        attempted = item.recovered + item.failed
        if rate is not None and rate < _LOW_RECOVERY and attempted >= _LOW_RECOVERY_VOLUME:
            out.append(
                Recommendation(
                    severity="medium",
                    source="recovery",
                    message=(
                        f"{item.policy} {_clip(item.name, 40)!r} recovered {rate:.0%} of "
                        f"{attempted} failures"
                    ),
                    actions=(
                        "review its strategy: more attempts, a longer backoff, a fallback",
                        "fix the dependency it protects if it fails for good",
                    ),
                )
            )
    for issue in list(regressed_issues)[:5]:
        out.append(
            Recommendation(
                severity="high",
                source="issue",
                message=f"issue {issue.id} regressed: {_clip(issue.title)}",
                actions=("reopen the fix: the error came back after it was resolved",),
            )
        )
    for issue in [i for i in new_issues if i.severity in ("high", "critical")][:5]:
        out.append(
            Recommendation(
                severity=issue.severity or "high",
                source="issue",
                message=f"new {issue.severity} issue {issue.id}: {_clip(issue.title)}",
                actions=("triage it: assign, fix or ignore",),
            )
        )
    out.sort(key=lambda r: -_SEVERITY_RANK.get(r.severity, 1))
    return tuple(out[:_MAX_RECOMMENDATIONS])
