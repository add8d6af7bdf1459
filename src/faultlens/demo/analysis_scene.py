"""The demo's analysis scene: an incident replay, its patterns, its alerts and the report.

The other scenes take a second of real time, too little for patterns to form.
This scene replays the last two hours of a (synthetic, seeded) shop as events
with explicit timestamps, written into the demo's store under a tenant of its
own (``incident-<id>``, new for each run), so the other scenes' figures, and
earlier demo runs in the same store, are left alone:

* background noise all along: a few errors a minute over many fingerprints, one
  request each; operations and first-time recovery successes;
* a **degradation** (75 to 50 minutes ago): the error rate climbs to about
  three times the usual;
* a **recurring** error (45 to 30 minutes ago): the nightly export job fails
  every 45 seconds;
* a **burst** (22 minutes ago): 45 search timeouts within 25 seconds;
* a **cascade** (4 minutes ago): the primary database refuses connections;
  three requests fail up the layers (infrastructure -> core -> service -> api),
  and the same happens across requests; the retries against it mostly fail;
* a cleanup cron job that runs outside any correlation.

The error events go through the pattern detectors in timestamp order, in
one-second batches as the recorder would hand them over, and the patterns are
saved to the store.  An :class:`~faultlens.analysis.AlertEngine` with the
built-in rules and a :class:`~faultlens.analysis.LogChannel` then evaluates
once, at the end of the replay, and the insights of the two hours are printed
as ``faultlens report`` would print them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from faultlens import store as _store
from faultlens._clock import get_clock
from faultlens._ids import new_id
from faultlens.analysis import (
    DEFAULT_RULES,
    Alert,
    AlertEngine,
    DetectorSet,
    LogChannel,
    Pattern,
    PatternType,
    insights,
    render_report,
)
from faultlens.events import Event
from faultlens.store import Store

__all__ = ["AnalysisScene", "build_incident", "run_analysis_scene"]

MINUTE = 60.0
HISTORY = 120 * MINUTE  # the replay covers the last two hours
NOISE_PER_MINUTE = 4.0
NOISE_FINGERPRINTS = 80
SEED = 6

# (type, message, category, layer, severity) of the incident's own errors.
_EXPORT = ("ExportJobError", "nightly export failed: upload rejected", "integration", "service")
_SEARCH = ("httpx.ReadTimeout", "search service timed out", "integration", "service")
_DB = ("psycopg.OperationalError", "connection to db-primary refused", "system", "infrastructure")
_REPO = ("RepositoryError", "order repository unavailable", "system", "core")
_CHECKOUT = ("CheckoutError", "could not place the order", "business", "service")
_GATEWAY = ("HTTPError", "503 Service Unavailable on POST /checkout", "integration", "api")
_NOISE_KINDS = (
    ("ValidationError", "invalid field", "validation", "api", "low"),
    ("KeyError", "missing key", "system", "core", "medium"),
    ("PermissionDenied", "not allowed", "security", "api", "low"),
    ("IntegrationError", "upstream answered 500", "integration", "service", "medium"),
    ("OSError", "temporary failure in name resolution", "system", "infrastructure", "medium"),
)


@dataclass
class AnalysisScene:
    """What the incident replay produced: events, patterns, alerts and the report."""

    url: str
    tenant_id: str = ""
    now: float = 0.0
    events: int = 0
    errors: int = 0
    patterns: list[Pattern] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    report: str = ""

    @property
    def pattern_types(self) -> set[str]:
        """The pattern types detected at least once."""
        return {str(p.type.value) for p in self.patterns}

    @property
    def healthy(self) -> bool:
        """True when each of the four pattern types was detected and at least two alerts fired."""
        fired = [a for a in self.alerts if a.status == "firing"]
        return self.pattern_types >= {t.value for t in PatternType} and len(fired) >= 2

    def render(self) -> str:
        """The patterns, the alerts and the report, as text."""
        lines = [
            f"analysis scene: incident replay of the last 2 h (tenant {self.tenant_id})",
            f"  events replayed: {self.events} ({self.errors} errors), "
            "fed to the detectors in time order",
            f"  patterns detected ({len(self.patterns)}):",
        ]
        for pattern in sorted(self.patterns, key=lambda p: (p.first_occurrence, p.id)):
            ago = (self.now - pattern.first_occurrence) / MINUTE
            title = self.titles.get(pattern.fingerprints[0], "?") if pattern.fingerprints else "?"
            if pattern.type is PatternType.CASCADE:
                about = f"root cause {title}, up {' -> '.join(pattern.layers)}"
            elif pattern.type is PatternType.RECURRING:
                about = title
            else:
                prints = len(pattern.fingerprints)
                about = f"{prints}{'+' if prints >= 16 else ''} fingerprints, all layers"
                if len(pattern.layers) < 4:
                    about = f"{prints} fingerprints in {', '.join(pattern.layers)}"
            lines.append(
                f"    {pattern.type.value:<11} {ago:4.0f} min ago  {pattern.occurrences:>4}x  "
                f"confidence {pattern.confidence:.2f}  {pattern.status.value:<7}  {about[:110]}"
            )
        fired = [a for a in self.alerts if a.status == "firing"]
        lines.append(f"  alerts fired ({len(fired)}, delivered to the log):")
        for alert in fired:
            lines.append(f"    {alert.severity:<8} {alert.rule:<22} {alert.message}")
        verdict = "every pattern type and 2+ alerts" if self.healthy else "PROBLEMS FOUND"
        lines.append(f"  verdict: {verdict}")
        return "\n".join(lines) + "\n\n" + self.report.rstrip()


class _Incident:
    """Builds the replay's events with a seeded random source."""

    def __init__(self, now: float, tenant: str, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.start = now - HISTORY
        self.tenant = tenant
        self.events: list[Event] = []
        self._requests = 0

    def _cid(self) -> str:
        self._requests += 1
        return f"{self.tenant}-req-{self._requests:05d}"

    def at(self, minutes_ago: float) -> float:
        return self.now - minutes_ago * MINUTE

    def error(
        self,
        ts: float,
        kind: tuple[str, ...],
        severity: str,
        *,
        cid: str | None = None,
        fingerprint: str | None = None,
    ) -> str:
        """Add one error event shaped like ``capture()`` builds them; return its correlation."""
        type_, message, category, layer = kind[:4]
        cid = cid or self._cid()
        user = f"user-{self.rng.randrange(1, 60)}"
        self.events.append(
            Event(
                "error",
                type_,
                {
                    "type": type_,
                    "message": message,
                    "classification": {"category": category, "severity": severity, "layer": layer},
                    "context": {"session_id": f"session-{user}", "correlation_id": cid},
                    "system": {"service": "shop"},
                    "fingerprint": [fingerprint or f"{type_}: {message}"],
                },
                correlation_id=cid,
                tenant_id=self.tenant,
                user_id=user,
                timestamp=ts,
            )
        )
        return cid

    def recovery(self, ts: float, policy: str, name: str, outcome: str, **extra: Any) -> None:
        payload: dict[str, Any] = {
            "policy": policy,
            "name": name,
            "attempt": 1,
            "outcome": outcome,
            "delay_s": 0.0,
            "duration_ms": 2.0,
            "error_type": None,
        }
        payload.update(extra)
        self.events.append(
            Event(
                "recovery",
                name,
                payload,
                correlation_id=self._cid(),
                tenant_id=self.tenant,
                timestamp=ts,
            )
        )

    def operation(self, ts: float, name: str, cid: str | None) -> None:
        for phase, at in (("start", ts), ("end", ts + 0.05)):
            self.events.append(
                Event(
                    "operation",
                    name,
                    {"phase": phase},
                    correlation_id=cid,
                    tenant_id=self.tenant,
                    timestamp=at,
                )
            )

    def poisson(self, start: float, end: float, per_minute: float) -> Iterator[float]:
        t = start
        while True:
            t += self.rng.expovariate(per_minute / MINUTE)
            if t >= end:
                return
            yield t

    def noise(self, start: float, end: float, per_minute: float) -> None:
        for ts in self.poisson(start, end, per_minute):
            self.noise_error(ts, self.rng.randrange(NOISE_FINGERPRINTS))

    def noise_error(self, ts: float, n: int) -> None:
        type_, message, category, layer, severity = _NOISE_KINDS[n % len(_NOISE_KINDS)]
        self.error(ts, (type_, f"{message} #{n}", category, layer), severity)

    def build(self) -> list[Event]:
        # Background: every noise fingerprint already seen the day before (so none is
        # "new" in the replay), then a few errors a minute all along; operations,
        # first-time recoveries and a cron job.
        yesterday = self.now - 24 * 60 * MINUTE
        for n in range(NOISE_FINGERPRINTS):
            self.noise_error(yesterday + n * 30, n)
        self.noise(self.start, self.now, NOISE_PER_MINUTE)
        ts = self.start + 3
        while ts < self.now:
            self.operation(ts, "checkout", self._cid())
            ts += 15
        ts = self.start + 30
        while ts < self.now:
            self.operation(ts, "cron.cleanup", None)  # runs outside any correlation
            ts += 2 * MINUTE
        for ts in self.poisson(self.start, self.now, 2.0):
            self.recovery(ts, "retry", "orders_db", "succeeded_first_time")
        for ts in self.poisson(self.start, self.now, 0.2):
            self.recovery(ts, "retry", "orders_db", "succeeded_after_retry", attempt=2)

        # Degradation: the error rate climbs to about three times the usual, then eases.
        for minute in range(25):
            extra = 2.0 + 8.0 * min(minute, 15) / 15
            begin = self.at(75 - minute)
            self.noise(begin, begin + MINUTE, extra)

        # Recurring: the export job fails every 45 seconds for a quarter of an hour.
        ts = self.at(45)
        while ts < self.at(30):
            self.error(ts, _EXPORT, "high")
            ts += 45 + self.rng.uniform(-5, 5)

        # Burst: 45 search timeouts within 25 seconds.
        begin = self.at(22)
        for _ in range(45):
            self.error(begin + self.rng.uniform(0, 25), _SEARCH, "medium")

        # Cascade: the primary database refuses connections.  Three requests fail up
        # the layers, and the failure climbs the layers across other requests too.
        begin = self.at(4)
        for i in range(3):
            t = begin + i * 15
            cid = self.error(t, _DB, "critical")
            self.error(t + 0.3, _REPO, "high", cid=cid)
            self.error(t + 0.8, _CHECKOUT, "high", cid=cid)
            self.error(t + 1.5, _GATEWAY, "medium", cid=cid)
        across = begin + 50
        for i in range(4):
            self.error(across + i * 1.2, _DB, "critical")
        for i in range(3):
            self.error(across + 3 + i, _REPO, "high")
        for i in range(3):
            self.error(across + 5 + i * 0.9, _CHECKOUT, "high")
        for i in range(3):
            self.error(across + 7 + i * 0.8, _GATEWAY, "medium")
        # The retries against the database mostly fail; the recommendations fall back.
        for i in range(12):
            t = begin + 2 + i * 9
            self.recovery(t, "retry", "orders_db", "retrying", duration_ms=500.0)
            if i % 3 == 0:
                self.recovery(t + 1, "retry", "orders_db", "succeeded_after_retry", attempt=2)
            else:
                self.recovery(t + 2, "retry", "orders_db", "failed_after_retry", attempt=3)
        for i in range(10):
            t = begin + 5 + i * 11
            outcome = "fell_back" if i % 2 == 0 else "not_recovered"
            self.recovery(t, "fallback", "recommendations", outcome)
        self.events.sort(key=lambda e: e.timestamp)
        return self.events


def build_incident(now: float, tenant_id: str, *, seed: int = SEED) -> list[Event]:
    """The replay's events, in time order, for the two hours before ``now``."""
    return _Incident(now, tenant_id, seed).build()


def _detect(events: list[Event]) -> dict[str, Pattern]:
    """Run the detectors over the events in one-second batches; the latest snapshot by id."""
    detectors = DetectorSet()
    found: dict[str, Pattern] = {}
    batch: list[Event] = []
    second = None
    for event in events:
        if event.kind != "error":
            continue
        now = int(event.timestamp)
        if batch and now != second:
            found.update((c.pattern.id, c.pattern) for c in detectors.observe_events(batch))
            batch = []
        second = now
        batch.append(event)
    if batch:
        found.update((c.pattern.id, c.pattern) for c in detectors.observe_events(batch))
    return found


def run_analysis_scene(
    url: str, *, now: float | None = None, tenant_id: str | None = None
) -> AnalysisScene:
    """Replay the incident into the store at ``url``; detect, alert and report on it."""
    end = get_clock().time() if now is None else now
    tenant = tenant_id or f"incident-{new_id()[:8]}"
    scene = AnalysisScene(url=url, tenant_id=tenant, now=end)
    events = build_incident(end, tenant)
    scene.events = len(events)
    scene.errors = sum(1 for e in events if e.kind == "error")
    store: Store = _store.open(url)
    try:
        store.write_events(events)
        found = _detect(events)
        # Store-wide patterns (bursts, degradations, cascades across requests) carry no
        # tenant; the replay's belong to its tenant, so that its report finds them.
        patterns = [dataclasses.replace(p, tenant_id=tenant) for p in found.values()]
        store.save_patterns(patterns)
        scene.patterns = patterns
        scene.titles = {
            issue.fingerprint: issue.title
            for issue in store.issues(limit=200, tenant_id=tenant).items
        }
        engine = AlertEngine(
            store,
            rules=DEFAULT_RULES,
            channels=[LogChannel()],
            tenant_id=tenant,
            publish=False,  # the recorder has stopped: the engine writes its events itself
            count_log_lines=False,  # this process's log lines are not the tenant's
        )
        try:
            scene.alerts = engine.run_once(now=end)
        finally:
            engine.stop()  # delivers what the log channel has queued
        data = insights(store, window="2h", now=end, tenant_id=tenant, log_lines=(0, 0))
        scene.report = render_report(data, source="the incident replay")
    finally:
        store.close()
    return scene
