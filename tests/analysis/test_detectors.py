"""The pattern detectors' edges: exact thresholds, window boundaries, clearing, bounds."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest

from faultlens._metrics import counters
from faultlens.analysis import (
    BurstDetector,
    CascadeDetector,
    DegradationDetector,
    DetectorSet,
    ErrorSample,
    Pattern,
    PatternChange,
    PatternDetector,
    PatternStatus,
    PatternType,
    RecurringDetector,
    mann_kendall,
    pattern_event,
    rise_p_value,
)
from faultlens.analysis._patterns import confidence, pattern_id
from faultlens.errors import ConfigurationError
from faultlens.events import Event
from faultlens.store._fingerprint import fingerprint
from faultlens.testing import FakeClock

T = 1_700_000_100.0  # a multiple of 300: every detector's buckets start here


def sample(
    t: float,
    fp: str = "fp",
    layer: str | None = "service",
    cid: str | None = None,
    *,
    tenant: str | None = None,
    severity: str = "medium",
) -> ErrorSample:
    """An error sample at ``T + t``."""
    return ErrorSample(T + t, fp, layer, severity, cid, "shop", tenant)


def feed(detector: PatternDetector, samples: Iterable[ErrorSample]) -> list[PatternChange]:
    """Observe each sample and collect after each one, as a batch of one."""
    changes: list[PatternChange] = []
    for s in samples:
        detector.observe(s)
        changes.extend(detector.collect(s.timestamp))
    return changes


def kinds(changes: list[PatternChange]) -> list[str]:
    """The change kinds, in order."""
    return [c.change for c in changes]


def per_minute(counts: list[int], start: float = 0.0) -> list[ErrorSample]:
    """``counts[m]`` errors spread evenly over minute ``m`` (many fingerprints, one layer)."""
    out = []
    for m, n in enumerate(counts):
        for i in range(n):
            out.append(sample(start + 60 * m + i * 60 / n, fp=f"f{(m * 31 + i) % 97}"))
    return out


# --- the model ------------------------------------------------------------------------


def test_confidence_is_half_at_the_threshold_and_rises_above() -> None:
    """Confidence: 0.5 at the threshold, 0.75 at twice, 0.95 at ten times, 0 without evidence."""
    assert confidence(5, 5) == 0.5
    assert confidence(10, 5) == 0.75
    assert confidence(50, 5) == pytest.approx(0.95)
    assert confidence(0, 5) == 0.0
    assert confidence(math.inf, 5) == 1.0


def test_pattern_round_trips_through_a_dict() -> None:
    """to_dict/from_dict keep every field; details are read-only."""
    pattern = Pattern(
        id=pattern_id("burst", "all", T),
        type=PatternType.BURST,
        status=PatternStatus.ENDED,
        first_occurrence=T,
        last_occurrence=T + 5,
        occurrences=40,
        layers=("infrastructure", "api"),
        fingerprints=("a", "b"),
        confidence=0.6,
        suggested_actions=("look",),
        details={"peak": 40},
        tenant_id="t1",
        ended_at=T + 120,
    )
    assert Pattern.from_dict(pattern.to_dict()) == pattern
    with pytest.raises(TypeError):
        pattern.details["x"] = 1  # type: ignore[index]
    assert pattern_id("burst", "all", T) == pattern.id
    assert pattern_id("burst", "all", T, source="store") != pattern.id


def test_pattern_event_carries_the_change() -> None:
    """A change is published as a `pattern` event named after the type, with the snapshot."""
    [change] = feed(RecurringDetector(threshold=2), [sample(0, cid="c"), sample(1, cid="c")])
    event = pattern_event(change)
    assert (event.kind, event.name) == ("pattern", "recurring")
    assert event.payload["change"] == "new"
    assert event.payload["id"] == change.pattern.id
    assert event.payload["fingerprints"] == ["fp"]


def test_mann_kendall_statistics() -> None:
    """S counts ordered pairs; ties lower the variance; no rise gives p = 1."""
    s, p = mann_kendall([1, 2, 3, 4, 5, 6, 7, 8])
    assert s == 28
    assert p == pytest.approx(0.000418, rel=1e-2)
    assert mann_kendall([5, 5, 5, 5]) == (0, 1.0)
    assert mann_kendall([8, 7, 6, 5])[1] == 1.0
    s, p_ties = mann_kendall([1, 1, 2, 2, 3, 3, 4, 4])
    assert s == 24
    assert p_ties < 0.01


def test_rise_p_value() -> None:
    """No rise gives 1; a doubling of 50 errors is significant, of 5 it is not."""
    assert rise_p_value(0, 0) == 1.0
    assert rise_p_value(10, 10) == 1.0
    assert rise_p_value(100, 50) < 0.001
    assert rise_p_value(10, 5) > 0.1


# --- samples from events ------------------------------------------------------------


def _error_event(**payload: object) -> Event:
    base: dict[str, object] = {
        "type": "app.DbError",
        "message": "connection refused",
        "frames": [{"filename": "/app/db.py", "module": "app.db", "function": "q", "in_app": True}],
        "classification": {"category": "system", "severity": "high", "layer": "infrastructure"},
        "system": {"service": "shop"},
    }
    base.update(payload)
    return Event("error", "app.DbError", base, correlation_id="c1", tenant_id="t", timestamp=T)


def test_sample_from_an_error_event() -> None:
    """Layer, severity, service and the store's fingerprint come from the event."""
    event = _error_event()
    found = ErrorSample.from_event(event)
    assert found is not None
    grouping = fingerprint(event)
    assert grouping is not None
    assert found == ErrorSample(
        T, grouping.fingerprint, "infrastructure", "high", "c1", "shop", "t", 1
    )


def test_sample_from_other_or_malformed_events() -> None:
    """Other kinds give None; a hostile payload still gives a sample, never an exception."""
    assert ErrorSample.from_event(Event("operation", "x", {}, timestamp=T)) is None
    odd = Event(
        "error", "E", {"classification": "nope", "system": 3, "operation": {"layer": "api"}}
    )
    found = ErrorSample.from_event(odd, fingerprint="given")
    assert found is not None
    assert (found.fingerprint, found.layer, found.service) == ("given", "api", None)
    with FakeClock(start=T) as clock:
        nan = Event("error", "E", {}, timestamp=math.nan)
        assert ErrorSample.from_event(nan, fingerprint="f").timestamp == clock.time()  # type: ignore[union-attr]


# --- recurring -------------------------------------------------------------------------


def test_recurring_needs_exactly_the_threshold() -> None:
    """Four occurrences are nothing; the fifth makes a pattern with confidence 0.5."""
    detector = RecurringDetector()
    assert feed(detector, [sample(i) for i in range(4)]) == []
    [change] = feed(detector, [sample(4)])
    assert change.change == "new"
    pattern = change.pattern
    assert (pattern.type, pattern.status, pattern.occurrences) == (
        PatternType.RECURRING,
        PatternStatus.ONGOING,
        5,
    )
    assert pattern.fingerprints == ("fp",)
    assert pattern.layers == ("service",)
    assert pattern.confidence == 0.5
    assert (pattern.first_occurrence, pattern.last_occurrence) == (T, T + 4)
    assert pattern.suggested_actions


def test_recurring_window_boundaries() -> None:
    """Occurrences window - window/buckets apart count together; more than window apart never."""
    inside = RecurringDetector()  # window 300 s in ten buckets of 30 s
    assert kinds(feed(inside, [sample(i * 67.5) for i in range(5)])) == ["new"]  # 270 s
    outside = RecurringDetector()
    assert feed(outside, [sample(i * 75.25) for i in range(5)]) == []  # 301 s


def test_recurring_updates_at_most_every_interval_then_ends() -> None:
    """Later occurrences update it (throttled); it ends once under threshold for clear_after."""
    detector = RecurringDetector()  # updates every 60 s at most
    feed(detector, [sample(i) for i in range(5)])
    assert feed(detector, [sample(10)]) == []  # reported 6 s ago: not yet
    [update] = feed(detector, [sample(70)])
    assert (update.change, update.pattern.occurrences) == ("updated", 7)
    assert detector.collect(T + 299) == []  # still 7 in the window
    assert detector.collect(T + 301) == []  # under the threshold, not yet for 300 s
    assert detector.collect(T + 598) == []
    [ended] = detector.collect(T + 600)
    assert ended.change == "ended"
    assert ended.pattern.status is PatternStatus.ENDED
    assert ended.pattern.ended_at == T + 599
    assert detector.ongoing() == []


def test_recurring_separates_tenants_and_fingerprints() -> None:
    """The same fingerprint in two tenants is two patterns; mixed fingerprints do not add up."""
    detector = RecurringDetector(threshold=3)
    changes = feed(
        detector,
        [sample(i, tenant="a") for i in range(3)]
        + [sample(i, tenant="b") for i in range(3)]
        + [sample(i, fp=f"other{i}") for i in range(5)],
    )
    assert sorted(c.pattern.tenant_id or "" for c in changes) == ["a", "b"]


def test_recurring_memory_is_bounded_and_evictions_counted() -> None:
    """Past max_fingerprints the least recently seen fingerprint is forgotten, and counted."""
    detector = RecurringDetector(max_fingerprints=100)
    for i in range(1_000):
        detector.observe(sample(i * 0.01, fp=f"fp{i}"))
    assert detector.tracked == 100
    detector.collect(T + 10)  # evictions are added to the counter as changes are collected
    assert counters.get("analysis.recurring.evicted") == 900


def test_recurring_no_flood_under_a_sustained_stream() -> None:
    """An hour of one error every 0.36 s is one pattern, updated at most every 60 s."""
    detector = RecurringDetector()
    changes = feed(detector, [sample(i * 0.36) for i in range(10_000)])
    assert kinds(changes).count("new") == 1
    assert "ended" not in kinds(changes)
    assert len(changes) <= 1 + 3600 / 60 + 1
    assert changes[-1].pattern.occurrences >= 9_900


# --- burst -------------------------------------------------------------------------------


def test_burst_needs_exactly_the_threshold() -> None:
    """29 errors in a minute are nothing; the 30th is a burst, triggered by count."""
    detector = BurstDetector()
    assert feed(detector, [sample(i * 0.3, fp=f"f{i}") for i in range(29)]) == []
    [change] = feed(detector, [sample(29 * 0.3, fp="f29")])
    assert change.change == "new"
    pattern = change.pattern
    assert pattern.type is PatternType.BURST
    assert pattern.occurrences == 30
    assert pattern.details["trigger"] == "count"
    assert pattern.confidence == 0.5
    assert len(pattern.fingerprints) == 16  # the 16 most frequent are named
    assert pattern.details["other_fingerprint_errors"] == 14


def test_burst_window_boundaries() -> None:
    """Errors 59 s apart count together; errors 60 s apart do not (buckets of 10 s)."""
    inside = BurstDetector()
    assert kinds(feed(inside, [sample(0)] * 15 + [sample(59)] * 15)) == ["new"]
    outside = BurstDetector()
    assert feed(outside, [sample(0)] * 15 + [sample(60)] * 15) == []


def test_burst_ends_after_clearing() -> None:
    """A burst holds while its window has 30 errors, and ends 60 s after that stops."""
    detector = BurstDetector()
    feed(detector, [sample(0)] * 30)
    assert detector.collect(T + 59) == []  # still 30 in the window: holds
    assert detector.collect(T + 60) == []  # cleared, not for 60 s yet
    assert detector.collect(T + 118) == []
    [ended] = detector.collect(T + 119)
    assert ended.change == "ended"
    assert ended.pattern.ended_at == T + 119


def _steady(minutes: float, per_minute: int, start: float = 0.0) -> list[ErrorSample]:
    step = 60 / per_minute
    return [sample(start + i * step, fp=f"s{i % 50}") for i in range(int(minutes * per_minute))]


def test_burst_by_rate_against_the_baseline() -> None:
    """After warm-up, 25 errors in 10 s over a baseline of 4 a minute is a burst by rate."""
    detector = BurstDetector()
    assert feed(detector, _steady(20, 4)) == []
    assert 3.0 < detector.baseline < 4.5
    [change] = feed(detector, [sample(1200 + i * 0.4, fp=f"b{i}") for i in range(25)])
    assert change.pattern.details["trigger"] == "rate"
    assert change.pattern.occurrences < 30


def test_burst_rate_test_waits_for_warmup_and_restarts_after_silence() -> None:
    """The rate test needs baseline_tau of history; a long silence starts the warm-up again."""
    young = BurstDetector()
    feed(young, _steady(2, 4))
    assert feed(young, [sample(120 + i * 0.4, fp=f"b{i}") for i in range(25)]) == []
    rested = BurstDetector()
    feed(rested, _steady(20, 4))
    # 30 minutes without any error, then the same 25 errors
    assert feed(rested, [sample(3000 + i * 0.4, fp=f"b{i}") for i in range(25)]) == []


def test_burst_no_flood_under_a_sustained_burst() -> None:
    """An hour at 100 errors a minute is one burst, updated every 10 s at most, ended once."""
    detector = BurstDetector()
    changes = feed(detector, [sample(i * 0.6, fp=f"f{i % 5}") for i in range(6_000)])
    changes += detector.collect(T + 3600 + 200)
    assert kinds(changes).count("new") == 1
    assert kinds(changes).count("ended") == 1
    assert kinds(changes).count("updated") <= 3600 / 10 + 1
    assert changes[-1].pattern.occurrences == 6_000


# --- cascade -----------------------------------------------------------------------------


def test_cascade_within_one_correlation() -> None:
    """infrastructure, then service, then api in one request: a cascade rooted in the lowest."""
    detector = CascadeDetector()
    changes = feed(
        detector,
        [
            sample(0, "db", "infrastructure", "c1"),
            sample(1, "svc", "service", "c1"),
            sample(2, "api", "api", "c1"),
        ],
    )
    assert kinds(changes) == ["new"]
    pattern = changes[0].pattern
    assert pattern.type is PatternType.CASCADE
    assert pattern.root_fingerprint == "db"
    assert pattern.fingerprints == ("db", "svc")  # reported at the second layer
    assert pattern.details["scopes"] == ["correlation"]
    assert pattern.details["correlation_id"] == "c1"
    [extended] = detector.ongoing()
    assert extended.layers == ("infrastructure", "service", "api")
    assert extended.fingerprints == ("db", "svc", "api")
    assert extended.details["max_layers"] == 3


def test_cascade_edges_direction_window_and_min_layers() -> None:
    """Down the layers is no cascade; 30 s from the first error is the limit; min_layers holds."""
    down = CascadeDetector()
    assert feed(down, [sample(0, "a", "api", "c"), sample(1, "d", "infrastructure", "c")]) == []
    at_limit = CascadeDetector()
    changes = feed(at_limit, [sample(0, "d", "infrastructure", "c"), sample(30, "a", "api", "c")])
    assert kinds(changes) == ["new"]
    too_late = CascadeDetector()
    assert (
        feed(too_late, [sample(0, "d", "infrastructure", "c"), sample(30.5, "a", "api", "c")]) == []
    )
    three = CascadeDetector(min_layers=3)
    assert feed(three, [sample(0, "d", "infrastructure", "c"), sample(1, "a", "api", "c")]) == []
    assert kinds(
        feed(
            three,
            [
                sample(2, "d", "infrastructure", "e"),
                sample(3, "s", "core", "e"),
                sample(4, "a", "api", "e"),
            ],
        )
    ) == ["new"]
    unknown = CascadeDetector()
    assert feed(unknown, [sample(0, "d", None, "c"), sample(1, "u", "ui", "c")]) == []


def test_cascades_with_one_root_are_one_pattern() -> None:
    """Three requests failing from the same database error: one pattern, three occurrences."""
    detector = CascadeDetector()
    changes: list[PatternChange] = []
    for i in range(3):
        cid = f"c{i}"
        changes += feed(
            detector,
            [sample(i * 40, "db", "infrastructure", cid), sample(i * 40 + 1, "api", "api", cid)],
        )
    assert kinds(changes) == ["new", "updated", "updated"]  # cascades 40 s apart
    [pattern] = detector.ongoing()
    assert pattern.occurrences == 3
    assert pattern.details["correlation_ids"] == ["c0", "c1", "c2"]
    assert pattern.confidence == pytest.approx(1 - 0.5 * 2 / (2 * math.sqrt(3)), abs=1e-3)


def test_cascade_across_correlations() -> None:
    """A database surge in jobs, then service and API surges in other requests, in order."""
    detector = CascadeDetector()
    changes = feed(
        detector,
        [sample(i * 1.2, "db", "infrastructure") for i in range(4)]
        + [sample(3 + i, "svc", "service") for i in range(3)]
        + [sample(5 + i * 0.8, "api", "api") for i in range(3)],
    )
    assert kinds(changes) == ["new"]
    [pattern] = detector.ongoing()
    assert pattern.root_fingerprint == "db"
    assert pattern.layers == ("infrastructure", "service", "api")
    assert pattern.details["scopes"] == ["across"]


def test_no_cross_cascade_from_a_burst_or_the_wrong_order() -> None:
    """Many errors everywhere at once, or the upper layer first: no cascade."""
    burst = CascadeDetector()
    layers = ("infrastructure", "core", "service", "api")
    assert feed(burst, [sample(i * 0.1, f"f{i}", layers[i % 4]) for i in range(80)]) == []
    upside_down = CascadeDetector()
    assert (
        feed(
            upside_down,
            [sample(i, "api", "api") for i in range(4)]
            + [sample(5 + i, "db", "infrastructure") for i in range(4)],
        )
        == []
    )


def test_cascade_ends_clear_after_its_last_occurrence() -> None:
    """A cascade pattern ends 300 s after the last cascade with its root."""
    detector = CascadeDetector()
    feed(detector, [sample(0, "db", "infrastructure", "c"), sample(1, "a", "api", "c")])
    assert detector.collect(T + 300) == []
    [ended] = detector.collect(T + 301)
    assert ended.change == "ended"


def test_cascade_memory_is_bounded() -> None:
    """Past max_correlations the least recently seen correlation is forgotten, and counted."""
    detector = CascadeDetector(max_correlations=10)
    for i in range(100):
        detector.observe(sample(i, "a", "api", f"c{i}"))
    assert detector.tracked == 10
    detector.collect(T + 100)
    assert counters.get("analysis.cascade.evicted") == 90


# --- degradation -------------------------------------------------------------------------


def test_degradation_at_exactly_the_factor() -> None:
    """20 errors a minute, then 30: exactly 1.5 times, detected; 29 a minute is not."""
    rising = DegradationDetector()
    changes = feed(rising, per_minute([20] * 10 + [30] * 6))
    assert kinds(changes) == ["new"]
    pattern = changes[0].pattern
    assert pattern.details["trigger"] == "ratio"
    assert pattern.first_occurrence == T + 600
    assert pattern.last_occurrence == T + 900
    assert pattern.confidence == 0.5
    short = DegradationDetector()
    assert feed(short, per_minute([20] * 10 + [29] * 6)) == []


def test_degradation_needs_minimum_volumes() -> None:
    """From 4 errors per window (under min_previous 5) nothing counts as a degradation."""
    from_nothing = DegradationDetector()
    assert feed(from_nothing, per_minute([1, 1, 1, 1, 0] * 2 + [10] * 6)) == []
    from_five = DegradationDetector()
    changes = feed(from_five, per_minute([1] * 10 + [10] * 6))
    assert kinds(changes)[0] == "new"
    assert kinds(changes).count("new") == 1


def test_a_slow_rise_is_one_degradation_updated_until_it_clears() -> None:
    """A rise from 6 to 18 errors a minute over 40 minutes: one pattern, updated, ended once."""
    import random

    for seed in range(6):
        rng = random.Random(seed)
        samples = []
        t = 0.0
        for minute in range(100):  # 20 minutes flat, 40 rising, 40 back to the start
            rate = 6 + (12 * min(max(minute - 20, 0), 40) / 40 if minute < 60 else 0)
            end = (minute + 1) * 60.0
            while True:
                t += rng.expovariate(rate / 60)
                if t >= end:
                    t = end
                    break
                samples.append(sample(t, fp=f"f{rng.randrange(50)}"))
        detector = DegradationDetector()
        changes = feed(detector, samples)
        changes += detector.collect(T + 100 * 60 + 1200)
        assert kinds(changes).count("new") == 1, (seed, kinds(changes))
        assert kinds(changes).count("ended") == 1, (seed, kinds(changes))
        assert len({c.pattern.id for c in changes}) == 1
        assert kinds(changes)[-1] == "ended"


def test_degradation_is_not_a_burst() -> None:
    """One minute of 60 errors over a steady 5 a minute is a burst, not a degradation."""
    detector = DegradationDetector()
    assert feed(detector, per_minute([5] * 12 + [60] + [5] * 8)) == []


def test_degradation_by_trend() -> None:
    """A rise of 1.2x per window, never 1.5x, over eight windows is found by Mann-Kendall."""
    detector = DegradationDetector()
    counts: list[int] = []
    for w in range(9):
        counts += [round(6 * 1.2**w)] * 5
    changes = feed(detector, per_minute(counts))
    assert kinds(changes)[0] == "new"
    assert kinds(changes).count("new") == 1
    pattern = changes[0].pattern
    assert pattern.details["trigger"] == "trend"
    assert pattern.confidence > 0.99


def test_degradation_ends_when_the_rate_stops_rising() -> None:
    """A step that stays up is a degradation for a while, then ends: the new level is normal."""
    detector = DegradationDetector()
    changes = feed(detector, per_minute([20] * 10 + [60] * 40))
    assert kinds(changes)[0] == "new"
    assert kinds(changes)[-1] == "ended"
    assert kinds(changes).count("new") == 1


def test_degradation_history_restarts_after_a_silence() -> None:
    """After ten silent minutes the windows before the silence are not compared with."""
    detector = DegradationDetector()
    assert feed(detector, per_minute([20] * 10 + [0] * 10 + [40] * 9)) == []


# --- the set of detectors ----------------------------------------------------------------


def test_detector_set_runs_the_four_detectors() -> None:
    """DetectorSet() runs recurring, burst, cascade and degradation, and gathers changes."""
    detectors = DetectorSet()
    assert [d.type for d in detectors.detectors] == list(PatternType)
    changes = detectors.observe([sample(i * 0.1, "db", "infrastructure", "c") for i in range(30)])
    assert sorted(c.pattern.type.value for c in changes) == ["burst", "recurring"]
    assert detectors.watermark == T + 2.9
    assert detectors.samples == 30
    assert detectors.observe([]) == []


def test_detector_set_takes_time_from_events_and_ticks_with_the_clock() -> None:
    """A late batch is judged by its timestamps; tick() moves on with the clock."""
    with FakeClock(start=T + 3600) as clock:
        detectors = DetectorSet([BurstDetector()])
        events = [
            Event("error", "E", {"fingerprint": [f"f{i}"]}, timestamp=T + i * 0.2)
            for i in range(30)
        ] + [Event("operation", "op", {}, timestamp=T)]
        [change] = detectors.observe_events(events)
        assert change.change == "new"
        [ended] = detectors.tick()
        assert ended.change == "ended"
        assert ended.pattern.ended_at == T + 5.8 + 60
        clock.advance(10)
        assert detectors.tick() == []


def test_detector_set_accepts_custom_detectors_and_refuses_others() -> None:
    """Anything with type, observe, collect and ongoing is a detector; other objects are refused."""

    class Counting:
        type = PatternType.RECURRING

        def __init__(self) -> None:
            self.seen = 0

        def observe(self, sample: ErrorSample) -> None:
            self.seen += 1

        def collect(self, now: float) -> list[PatternChange]:
            return []

        def ongoing(self) -> list[Pattern]:
            return []

    custom = Counting()
    DetectorSet([custom]).observe([sample(0), sample(1)])
    assert custom.seen == 2
    with pytest.raises(ConfigurationError):
        DetectorSet([object()])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (RecurringDetector, {"threshold": 0}),
        (RecurringDetector, {"window": -1}),
        (BurstDetector, {"ratio": 0.5}),
        (BurstDetector, {"window": math.nan}),
        (CascadeDetector, {"min_layers": 1}),
        (CascadeDetector, {"layers": ("api",)}),
        (DegradationDetector, {"trend_windows": 2}),
        (DegradationDetector, {"factor": True}),
    ],
)
def test_invalid_settings_raise_configuration_error(
    factory: type, kwargs: dict[str, object]
) -> None:
    """Bad detector settings are refused with a ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        factory(**kwargs)


def test_every_detector_is_a_pattern_detector() -> None:
    """The built-in detectors satisfy the PatternDetector protocol."""
    for detector in DetectorSet().detectors:
        assert isinstance(detector, PatternDetector)


def test_memory_stays_bounded_whatever_the_traffic() -> None:
    """100 000 errors with distinct fingerprints and correlations keep every table bounded."""
    recurring = RecurringDetector(max_fingerprints=1_000)
    cascade = CascadeDetector(max_correlations=1_000)
    detectors = DetectorSet([recurring, cascade, BurstDetector(), DegradationDetector()])
    layers = ("infrastructure", "core", "service", "api")
    batch: list[ErrorSample] = []
    for i in range(100_000):
        batch.append(sample(i * 0.01, f"fp{i}", layers[i % 4], f"c{i}"))
        if len(batch) == 500:
            detectors.observe(batch)
            batch = []
    assert recurring.tracked == 1_000
    assert cascade.tracked == 1_000
    assert len(detectors.ongoing()) <= 3
