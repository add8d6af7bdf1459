"""Recovery events: one per attempt and decision, with the documented payload."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import threading
from typing import Any

import pytest

from faultlens import correlate, events
from faultlens._metrics import counters
from faultlens.events import Event
from faultlens.recovery import CircuitBreaker, _record, _retry, fallback, pipeline, retry
from faultlens.testing import FakeClock, capture_events

KEYS = {"policy", "name", "attempt", "outcome", "delay_s", "duration_ms", "error_type"}


class Flaky:
    """Fails ``failures`` times (each attempt taking ``takes`` fake seconds), then succeeds."""

    def __init__(self, clock: FakeClock, failures: int, takes: float = 0.25) -> None:
        self.clock = clock
        self.failures = failures
        self.takes = takes
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        self.clock.advance(self.takes)
        if self.calls <= self.failures:
            raise ConnectionError("down")
        return "ok"


def payloads(captured: list[Event]) -> list[dict[str, Any]]:
    """The payloads of the captured events, as dicts."""
    return [dict(e.payload) for e in captured]


def test_succeeded_first_time() -> None:
    """A first-time success is one event with the attempt's duration and the correlation id."""
    with FakeClock() as clock, capture_events("recovery") as captured, correlate() as ctx:
        retry(name="api")(Flaky(clock, 0))()
    (event,) = captured
    assert event.kind == "recovery"
    assert event.name == "api"
    assert event.correlation_id == ctx.correlation_id
    assert event.trace_id == ctx.trace_id
    assert event.timestamp == clock.time()
    assert set(event.payload) >= KEYS
    assert payloads(captured) == [
        {
            "policy": "retry",
            "name": "api",
            "attempt": 1,
            "outcome": "succeeded_first_time",
            "delay_s": 0.0,
            "duration_ms": 250.0,
            "error_type": None,
        }
    ]


def test_retrying_then_succeeded_after_retry() -> None:
    """Each failed attempt is a retrying event with its delay; the success closes the series."""
    with FakeClock() as clock, capture_events("recovery") as captured:
        retry(name="api", wait_initial=1.0, jitter=None)(Flaky(clock, 2))()
    got = [(p["attempt"], p["outcome"], p["delay_s"], p["error_type"]) for p in payloads(captured)]
    assert got == [
        (1, "retrying", 1.0, "builtins.ConnectionError"),
        (2, "retrying", 2.0, "builtins.ConnectionError"),
        (3, "succeeded_after_retry", 0.0, None),
    ]
    assert [p["duration_ms"] for p in payloads(captured)] == [250.0, 250.0, 250.0]


def test_failed_after_retry_names_the_reason() -> None:
    """Giving up is a failed_after_retry event saying why."""
    with FakeClock() as clock, capture_events("recovery") as captured:
        with pytest.raises(ConnectionError):
            retry(name="api", attempts=2, wait_initial=0, wait_max=0)(Flaky(clock, 9))()
    last = payloads(captured)[-1]
    assert (last["attempt"], last["outcome"], last["reason"]) == (
        2,
        "failed_after_retry",
        "attempts",
    )


def test_not_retryable_failure_is_recorded() -> None:
    """A non-retryable error is one failed_after_retry event with reason not_retryable."""

    def bad() -> None:
        raise KeyError("x")

    with FakeClock(), capture_events("recovery") as captured, pytest.raises(KeyError):
        retry(name="api")(bad)()
    assert [(p["outcome"], p["reason"], p["error_type"]) for p in payloads(captured)] == [
        ("failed_after_retry", "not_retryable", "builtins.KeyError")
    ]


def test_fell_back_follows_the_failed_retries() -> None:
    """fallback ▸ retry: the retry's events then the fallback's, all in one correlation."""
    with FakeClock() as clock, capture_events("recovery") as captured, correlate() as ctx:
        policy = fallback("cached", name="profile")
        policy(retry(name="profile", attempts=2, wait_initial=0, wait_max=0)(Flaky(clock, 9)))()
    assert [p["outcome"] for p in payloads(captured)] == [
        "retrying",
        "failed_after_retry",
        "fell_back",
    ]
    assert {e.correlation_id for e in captured} == {ctx.correlation_id}


def test_nothing_is_built_when_nobody_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without subscribers the policy never calls record()."""

    def fail(*args: Any) -> None:
        raise AssertionError("record() called with nobody listening")

    monkeypatch.setattr(_retry, "record", fail)
    monkeypatch.setattr(_retry, "deliver_success", fail)
    with FakeClock() as clock:
        retry(wait_initial=0, wait_max=0)(Flaky(clock, 2))()
        retry()(Flaky(clock, 0))()


def test_other_subscribers_do_not_receive_recovery_events() -> None:
    """A subscriber to other kinds costs a lookup and sees nothing."""
    seen: list[Event] = []
    with events.subscribe(seen.append, kinds=["operation"]), FakeClock() as clock:
        retry()(Flaky(clock, 1))()
    assert seen == []


def test_a_failing_subscriber_does_not_break_the_call() -> None:
    """Recording never raises into the protected call."""

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    with events.subscribe(broken), FakeClock() as clock:
        assert retry()(Flaky(clock, 1))() == "ok"


def test_a_failing_subscriber_is_isolated_like_on_the_bus() -> None:
    """The inline delivery of the success path counts a failure and still reaches the others."""
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    with events.subscribe(broken), events.subscribe(seen.append), FakeClock() as clock:
        assert retry()(Flaky(clock, 0))() == "ok"
        assert pipeline(retry(), CircuitBreaker("events-isolation"))(Flaky(clock, 0))() == "ok"
    assert [e.payload["outcome"] for e in seen] == ["succeeded_first_time"] * 2
    assert counters.snapshot()["events.subscriber_errors"] == 2


def test_recovery_event_behaves_like_an_event() -> None:
    """The lazily built event compares, copies, pickles and serialises as a plain Event."""
    with FakeClock() as clock, capture_events("recovery") as captured, correlate():
        retry(name="api")(Flaky(clock, 0))()
    (event,) = captured
    assert isinstance(event, Event)
    plain = Event(**{f.name: getattr(event, f.name) for f in dataclasses.fields(Event)})
    assert event == plain
    assert plain == event
    assert pickle.loads(pickle.dumps(event)) == event
    assert dataclasses.replace(event, name="other").name == "other"
    assert event.to_dict() == plain.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del event.payload  # type: ignore[misc]
    assert copy.copy(event) == event
    assert type(copy.copy(event)) is Event
    assert type(dataclasses.replace(event)) is Event
    assert dataclasses.asdict(event) == dataclasses.asdict(plain)
    assert repr(event) == repr(plain)


def test_event_id_is_stable_across_threads() -> None:
    """Concurrent first reads of the id agree."""
    with capture_events("recovery") as captured:
        _record.record("retry", "x", 1, "succeeded_first_time")
    (event,) = captured
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def read() -> None:
        barrier.wait()
        ids.append(event.id)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert len(ids[0]) == 32


def test_extra_keys_and_error_types() -> None:
    """record() merges extra keys and names the exception class by module and qualname."""

    class Local(Exception):
        pass

    with capture_events("recovery") as captured:
        _record.record("strategy", "s", 2, "recovered", 0.5, 1.0, Local(), {"strategy": "cache"})
    payload = dict(captured[0].payload)
    assert payload["strategy"] == "cache"
    assert payload["error_type"] == f"{__name__}.{Local.__qualname__}"
    assert _record.error_type(None) is None


def test_timestamp_is_the_time_of_the_attempt_even_when_read_later() -> None:
    """A success event's wall time is fixed at the attempt, however late it is read."""
    with FakeClock() as clock, capture_events("recovery") as captured:
        retry()(Flaky(clock, 0))()
        at = clock.time()
        clock.advance(60.0)
        assert captured[0].timestamp == pytest.approx(at, abs=1e-6)
    assert captured[0].timestamp == pytest.approx(at, abs=1e-6)
    assert captured[0].to_dict()["timestamp"] == captured[0].timestamp
