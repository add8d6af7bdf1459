"""The in-process event bus."""

from __future__ import annotations

import threading
import time

import faultlens
from faultlens import events
from faultlens._metrics import counters
from faultlens.testing import capture_events


def test_emit_without_subscribers_builds_nothing() -> None:
    """emit returns None and builds no event when nobody listens."""
    assert not events.has_subscribers(events.OPERATION)
    assert events.emit(events.OPERATION, "x", {"a": 1}) is None


def test_subscribe_by_kind_and_wildcard() -> None:
    """Kind subscribers get their kind only; wildcard subscribers get everything."""
    errors: list[events.Event] = []
    everything: list[events.Event] = []
    with events.subscribe(errors.append, kinds=[events.ERROR]), events.subscribe(everything.append):
        events.emit(events.ERROR, "boom")
        events.emit(events.OPERATION, "op")
        events.emit("custom", "mine")
    assert [e.name for e in errors] == ["boom"]
    assert [e.name for e in everything] == ["boom", "op", "mine"]
    events.emit(events.ERROR, "after")
    assert len(errors) == 1


def test_events_carry_context() -> None:
    """An emitted event is tied to the current correlation, user and tenant."""
    got: list[events.Event] = []
    with events.subscribe(got.append), faultlens.correlate(user_id="u", tenant_id="t") as ctx:
        events.emit(events.JOB, "sent", {"queue": "q"})
    event = got[0]
    assert event.correlation_id == ctx.correlation_id
    assert event.trace_id == ctx.trace_id
    assert (event.user_id, event.tenant_id) == ("u", "t")
    assert event.to_dict()["payload"] == {"queue": "q"}
    assert len(event.id) == 32


def test_failing_subscriber_is_isolated_and_counted(capsys) -> None:  # type: ignore[no-untyped-def]
    """A raising subscriber neither breaks the publisher nor the other subscribers."""
    got: list[str] = []

    def broken(event: events.Event) -> None:
        raise ValueError("subscriber bug")

    with events.subscribe(broken), events.subscribe(lambda e: got.append(e.name)):
        events.emit("k", "one")
        events.emit("k", "two")
    assert got == ["one", "two"]
    assert counters.get("events.subscriber_errors") == 2
    assert capsys.readouterr().err.count("raised ValueError") == 1


def test_subscribe_is_thread_safe() -> None:
    """Concurrent subscribe/close while publishing loses no subscriber and raises nothing."""
    stop = threading.Event()
    publishing = threading.Event()
    received: list[int] = []

    def publisher() -> None:
        while not stop.is_set():
            events.emit("tick", "t")
            publishing.set()

    keeper = events.subscribe(lambda e: received.append(1), kinds=["tick"])
    t = threading.Thread(target=publisher)
    t.start()
    # The churn starts once the publisher runs (it may not have run at all yet when a
    # loaded machine keeps the new thread off the CPU) ...
    assert publishing.wait(30)
    for _ in range(200):
        events.subscribe(lambda e: None).close()
    # ... and the keeper still receives what is published after it.
    before = len(received)
    deadline = time.monotonic() + 30
    while len(received) == before and time.monotonic() < deadline:
        stop.wait(0.001)
    stop.set()
    t.join()
    keeper.close()
    assert len(received) > before
    assert not events.has_subscribers("tick")


def test_emitted_event_is_a_complete_event() -> None:
    """emit() builds events with every dataclass field set, equal to Event(...)."""
    import dataclasses

    with capture_events("custom") as seen, faultlens.correlate(tenant_id="t1") as ctx:
        events.emit("custom", "thing", {"n": 1})
    (event,) = seen
    for f in dataclasses.fields(events.Event):
        assert hasattr(event, f.name), f.name
    rebuilt = events.Event(
        "custom",
        "thing",
        {"n": 1},
        ctx.correlation_id,
        ctx.trace_id,
        ctx.span_id,
        "t1",
        None,
        event.timestamp,
        event.id,
    )
    assert event == rebuilt
    assert len(event.id) == 32
