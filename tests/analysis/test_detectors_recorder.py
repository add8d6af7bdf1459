"""The detectors in-process: on the recorder's writer thread, saving and publishing patterns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import faultlens
from faultlens import events
from faultlens._metrics import counters
from faultlens.analysis import (
    BurstDetector,
    DetectorSet,
    ErrorSample,
    PatternMonitor,
    PatternType,
)
from faultlens.errors import ConfigurationError
from faultlens.events import Event
from faultlens.recorder import Recorder, RecorderSettings
from faultlens.store import open as open_store
from faultlens.testing import FakeClock, capture_events


def burst(n: int = 30, *, at: float | None = None) -> list[Event]:
    """``n`` error events within a few seconds, stamped from ``at`` (default: now)."""
    start = time.time() if at is None else at
    return [
        Event(
            "error",
            "app.DbError",
            {
                "type": "app.DbError",
                "fingerprint": [f"f{i % 3}"],
                "classification": {"layer": "infrastructure", "severity": "high"},
                "system": {"service": "shop"},
            },
            correlation_id=f"r{i}",
            timestamp=start + i * 0.1,
        )
        for i in range(n)
    ]


# The ceiling of every wait for something that happens at once: long enough for
# a loaded CI machine, never reached when the test passes.
WAIT = 30.0


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    """A recorder writing into a SQLite store of its own."""
    url = f"sqlite:///{tmp_path / 'faultlens.db'}"
    made = Recorder(
        url,
        settings=RecorderSettings(spool_path=tmp_path / "spool.jsonl", flush_interval=0.01),
    ).start()
    try:
        yield made
    finally:
        made.close(timeout=WAIT)


class ThreadRecordingBurst(BurstDetector):
    """A burst detector that remembers which threads fed it."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def observe(self, sample: ErrorSample) -> None:
        self.threads.add(threading.current_thread().name)
        super().observe(sample)


def test_patterns_are_detected_on_the_writer_thread_saved_and_published(
    recorder: Recorder,
) -> None:
    """A burst recorded by the application is detected by the writer, stored and published."""
    detector = ThreadRecordingBurst()
    monitor = PatternMonitor(DetectorSet([detector])).attach(recorder)
    with capture_events("pattern") as published:
        for event in burst():
            events.publish(event)
        assert recorder.flush(WAIT)
        assert wait_for(lambda: len(published) >= 1)
        assert recorder.flush(WAIT)  # the pattern event itself is recorded
    assert detector.threads == {"faultlens-recorder"}
    [change] = [c for c in monitor.changes if c.change == "new"]
    assert change.pattern.type is PatternType.BURST
    assert published[0].payload["change"] == "new"
    assert published[0].payload["id"] == change.pattern.id
    store = open_store(recorder.store.url)  # type: ignore[union-attr]
    try:
        [stored] = store.patterns(type="burst")
        assert stored.id == change.pattern.id
        assert stored.occurrences == 30
        now = time.time()
        [count] = store.counts(
            bucket_seconds=3600, since=now - 600, until=now + 600, kind="pattern"
        )
        assert count.count == 1  # the pattern event is on record too
    finally:
        store.close()
    assert [p.type for p in monitor.ongoing()] == [PatternType.BURST]


def test_escalation_is_fed_with_the_recorded_errors(recorder: Recorder) -> None:
    """The monitor's escalation tracker sees every recorded error, per correlation and service."""
    monitor = PatternMonitor().attach(recorder)
    for event in burst(6):
        events.publish(event)
    assert recorder.flush(WAIT)
    service = monitor.escalation.service("shop")
    assert service.layers["infrastructure"]["errors_last_minute"] == 6
    assert service.should_escalate  # 6 high infrastructure errors: over its budget of 5
    correlation = monitor.escalation.correlation("r0")
    assert correlation is not None
    assert correlation.should_escalate  # one high infrastructure error weighs 12


def test_idle_ticks_end_patterns_without_traffic(recorder: Recorder) -> None:
    """With no event at all, the writer's idle tick still ends a pattern whose condition cleared."""
    with FakeClock(start=time.time()) as clock:
        monitor = PatternMonitor(DetectorSet([BurstDetector()])).attach(recorder)
        for event in burst(at=clock.time()):
            events.publish(event)
        assert recorder.flush(WAIT)
        assert [c.change for c in monitor.changes] == ["new"]
        clock.advance(200)
        assert wait_for(lambda: [c.change for c in monitor.changes] == ["new", "ended"])


def test_a_failing_observer_is_counted_and_kept(recorder: Recorder) -> None:
    """An observer that raises is counted; the recorder writes on and calls it again."""
    calls: list[int] = []

    def broken(batch: Sequence[Event]) -> None:
        calls.append(len(batch))
        raise RuntimeError("bug in an observer")

    recorder.add_observer(broken)
    for event in burst(3):
        events.publish(event)
    assert recorder.flush(WAIT)
    assert counters.get("recorder.observer_errors") >= 1
    events.publish(burst(1)[0])
    assert recorder.flush(WAIT)
    assert sum(calls) == 4
    recorder.remove_observer(broken)
    events.publish(burst(1)[0])
    assert recorder.flush(WAIT)
    assert sum(calls) == 4


def test_a_store_that_cannot_save_patterns_does_not_stop_detection(recorder: Recorder) -> None:
    """Saving failures are counted; the patterns are still detected and published."""

    class Broken:
        def save_patterns(self, patterns: Any) -> int:
            raise OSError("disk full")

    monitor = PatternMonitor(DetectorSet([BurstDetector()]), store=Broken()).attach(recorder)
    with capture_events("pattern") as published:
        for event in burst():
            events.publish(event)
        assert recorder.flush(WAIT)
    assert counters.get("analysis.save_failures") == 1
    assert [c.change for c in monitor.changes] == ["new"]
    assert len(published) == 1


def test_attach_needs_a_recorder_and_detach_stops_it(recorder: Recorder) -> None:
    """Without a running recorder attach() says what to do; detach() stops the observing."""
    faultlens.shutdown()
    with pytest.raises(ConfigurationError, match="configure"):
        PatternMonitor().attach()
    monitor = PatternMonitor(DetectorSet([BurstDetector()]), publish=False).attach(recorder)
    monitor.detach()
    monitor.detach()
    for event in burst():
        events.publish(event)
    assert recorder.flush(WAIT)
    assert list(monitor.changes) == []
    with pytest.raises(ConfigurationError):
        PatternMonitor(detectors=[BurstDetector()])  # type: ignore[arg-type]


def test_attach_to_the_configured_recorder(tmp_path: Path) -> None:
    """attach() without arguments observes the recorder faultlens.configure started."""
    faultlens.configure(
        store=f"sqlite:///{tmp_path / 'configured.db'}",
        recorder=RecorderSettings(spool_path=tmp_path / "spool.jsonl", flush_interval=0.01),
    )
    try:
        monitor = PatternMonitor(DetectorSet([BurstDetector()]), publish=False).attach()
        for event in burst():
            events.publish(event)
        from faultlens.recorder import get_recorder

        current = get_recorder()
        assert current is not None
        assert current.flush(WAIT)
        assert [c.change for c in monitor.changes] == ["new"]
    finally:
        faultlens.shutdown()
