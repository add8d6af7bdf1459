"""Escalation per correlation and per service, with the seed's thresholds and weights."""

from __future__ import annotations

import threading

import pytest

from faultlens._metrics import counters
from faultlens.analysis import (
    CRITICAL_PATTERN_CONFIDENCE,
    ErrorSample,
    Escalation,
    EscalationTracker,
    Pattern,
    PatternStatus,
    PatternType,
    should_escalate,
)
from faultlens.errors import ConfigurationError
from faultlens.recovery import ErrorContext, EscalationLevel, LayerPolicy

T = 1_700_000_100.0


def error(
    t: float = 0.0,
    *,
    layer: str | None = "infrastructure",
    severity: str = "low",
    cid: str | None = "c1",
    service: str | None = "shop",
    count: int = 1,
) -> ErrorSample:
    """An error sample at ``T + t``."""
    return ErrorSample(T + t, "fp", layer, severity, cid, service, None, count)


def pattern(
    type: PatternType = PatternType.CASCADE,
    confidence: float = 0.85,
    status: PatternStatus = PatternStatus.ONGOING,
    correlation_ids: tuple[str, ...] = ("c1",),
) -> Pattern:
    """A pattern snapshot."""
    return Pattern(
        id=f"{type.value}-1",
        type=type,
        status=status,
        first_occurrence=T,
        last_occurrence=T,
        occurrences=3,
        confidence=confidence,
        details={"correlation_ids": list(correlation_ids)},
    )


def test_correlation_escalates_at_the_seed_threshold() -> None:
    """The api layer escalates at its 10th error (the seed's threshold), not before."""
    tracker = EscalationTracker()
    for i in range(9):
        tracker.observe(error(i, layer="api"))
    found = tracker.correlation("c1")
    assert found is not None
    assert found.level is EscalationLevel.ELEVATED
    assert not found.should_escalate
    tracker.observe(error(9, layer="api"))
    found = tracker.correlation("c1")
    assert found is not None
    assert found.should_escalate
    assert found.level is EscalationLevel.HIGH
    assert found.layers["api"]["count"] == 10
    assert "threshold 10" in found.reasons[0]
    assert tracker.should_escalate(correlation_id="c1")
    assert tracker.should_escalate(correlation_id="c1", layer="api")
    assert not tracker.should_escalate(correlation_id="c1", layer="core")


def test_infrastructure_escalates_sooner_by_its_weights() -> None:
    """Two low infrastructure errors weigh 6, the score threshold (twice 3): escalate."""
    tracker = EscalationTracker()
    tracker.observe(error(0))
    assert not tracker.should_escalate(correlation_id="c1")
    tracker.observe(error(1))
    found = tracker.correlation("c1")
    assert found is not None
    assert found.level is EscalationLevel.HIGH
    assert found.layers["infrastructure"] == {"count": 2, "score": 6.0, "ratio": 1.0}


def test_correlation_escalates_on_weighted_severity() -> None:
    """One high infrastructure error weighs 12, twice the score threshold of 6: escalate."""
    tracker = EscalationTracker()
    tracker.observe(error(severity="high"))
    found = tracker.correlation("c1")
    assert found is not None
    assert found.level is EscalationLevel.CRITICAL
    assert found.layers["infrastructure"]["score"] == 12.0
    api = EscalationTracker()
    api.observe(error(layer="api", severity="high"))  # weighs 4 against 20 in the api layer
    assert not api.should_escalate(correlation_id="c1")


def test_unknown_correlation_and_errors_without_one() -> None:
    """A correlation never seen has no escalation; errors without one count for the service."""
    tracker = EscalationTracker()
    tracker.observe(error(cid=None))
    assert tracker.correlation("nope") is None
    assert not tracker.should_escalate(correlation_id="nope")
    assert tracker.service("shop").layers["infrastructure"]["errors_last_minute"] == 1


def test_service_escalates_on_errors_per_minute() -> None:
    """20 api errors a minute (the layer's budget) make the service high; it falls back."""
    tracker = EscalationTracker()
    for i in range(9):
        tracker.observe(error(i, layer="api", cid=f"r{i}"))
    assert tracker.service("shop").level is EscalationLevel.NONE
    tracker.observe(error(9, layer="api", cid="r9"))
    assert tracker.service("shop").level is EscalationLevel.ELEVATED
    for i in range(10, 20):
        tracker.observe(error(i, layer="api", cid=f"r{i}"))
    found = tracker.service("shop")
    assert found.level is EscalationLevel.HIGH
    assert found.should_escalate
    assert found.layers["api"]["ratio"] == 1.0
    assert [e.key for e in tracker.escalated()] == ["shop"]
    assert tracker.service("shop", now=T + 120).level is EscalationLevel.NONE


def test_service_critical_with_a_critical_error_or_twice_the_budget() -> None:
    """At its budget with a critical error, or at twice the budget, a service is critical."""
    tracker = EscalationTracker()
    for i in range(19):
        tracker.observe(error(i, layer="api", cid=None))
    tracker.observe(error(19, layer="api", cid=None, severity="critical"))
    assert tracker.service("shop").level is EscalationLevel.CRITICAL
    flood = EscalationTracker()
    flood.observe(error(0, layer="api", cid=None, count=40))
    assert flood.service("shop").level is EscalationLevel.CRITICAL


def test_services_are_separate_and_bounded() -> None:
    """Each service has its own window; past max_services the oldest is forgotten, counted."""
    tracker = EscalationTracker(max_services=2)
    tracker.observe(error(layer="api", service="a", count=20, cid=None))
    tracker.observe(error(service="b", cid=None))
    tracker.observe(error(service=None, cid=None))
    assert tracker.services() == ["b", "default"]
    assert counters.get("analysis.escalation.services_evicted") == 1
    assert tracker.service("a").layers == {}  # forgotten
    assert tracker.service(None).layers["infrastructure"]["errors_last_minute"] == 1


def test_critical_patterns_escalate() -> None:
    """An ongoing cascade or degradation above 0.8 confidence escalates (the seed's rule)."""
    tracker = EscalationTracker()
    tracker.observe(error(layer="api", cid="c1"))
    assert not tracker.should_escalate(correlation_id="c1")
    tracker.observe_pattern(pattern(confidence=CRITICAL_PATTERN_CONFIDENCE))  # not above
    assert not tracker.should_escalate(service="shop")
    tracker.observe_pattern(pattern(confidence=0.85))
    assert tracker.should_escalate(correlation_id="c1")
    assert tracker.service("shop").patterns == ("cascade-1",)
    assert "cascade" in tracker.service("shop").reasons[0]
    other = EscalationTracker()
    other.observe(error(layer="api", cid="c2"))
    other.observe_pattern(pattern(confidence=0.9))
    assert not other.should_escalate(correlation_id="c2")  # the cascade names c1 only
    tracker.observe_pattern(pattern(status=PatternStatus.ENDED))
    assert not tracker.should_escalate(correlation_id="c1")


def test_bursts_and_recurring_patterns_do_not_escalate_on_their_own() -> None:
    """Only cascades and degradations are critical patterns."""
    tracker = EscalationTracker()
    tracker.observe_pattern(pattern(PatternType.BURST, confidence=0.99))
    tracker.observe_pattern(pattern(PatternType.RECURRING, confidence=0.99))
    assert not tracker.should_escalate(service="shop")


def test_should_escalate_function() -> None:
    """should_escalate works on a recovery ErrorContext and on an Escalation, with patterns."""
    context = ErrorContext("c1")
    policy = LayerPolicy(escalation_threshold=2)
    context.record("core", "low", policy)
    assert not should_escalate(context)
    assert should_escalate(context, patterns=[pattern(PatternType.DEGRADATION, 0.95)])
    context.record("core", "low", policy)
    assert should_escalate(context)
    assert should_escalate(context, layer="core")
    assert not should_escalate(context, layer="api")
    escalation = Escalation(
        scope="service",
        key="shop",
        level=EscalationLevel.HIGH,
        layers={"api": {"ratio": 1.2}, "core": {"ratio": 0.4}},
    )
    assert should_escalate(escalation)
    assert should_escalate(escalation, layer="api")
    assert not should_escalate(escalation, layer="core")
    assert escalation.to_dict()["level"] == "high"


def test_custom_policies() -> None:
    """Policies given to the tracker replace the process-wide ones."""
    tracker = EscalationTracker(policies={"api": LayerPolicy(escalation_threshold=1)})
    tracker.observe(error(layer="api"))
    assert tracker.should_escalate(correlation_id="c1")


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"window": True}, {"max_services": 0}])
def test_invalid_settings(kwargs: dict[str, object]) -> None:
    """Bad tracker settings raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        EscalationTracker(**kwargs)  # type: ignore[arg-type]


def test_tracker_is_thread_safe() -> None:
    """Feeding from one thread while another asks loses no error."""
    tracker = EscalationTracker()

    def feed() -> None:
        for i in range(2_000):
            tracker.observe(error(i * 0.001, layer="api", cid=None))

    thread = threading.Thread(target=feed)
    thread.start()
    while thread.is_alive():
        tracker.service("shop")
        tracker.escalated()
    thread.join()
    assert tracker.service("shop").layers["api"]["errors_last_minute"] == 2_000
