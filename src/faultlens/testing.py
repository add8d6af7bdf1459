"""Testing helpers (public API): capture events and log lines, control time.

from faultlens.testing import capture_events, capture_logs, FakeClock

with capture_events() as events:
    with operation("x"): ...
assert events.kinds() == ["operation", "operation"]

with capture_logs() as logs:
    get_logger("app").info("hello", n=1)
assert logs[0]["n"] == 1

with FakeClock() as clock:           # operations measure durations with it
    with operation("slow", budget_ms=10):
        clock.advance(0.05)

with no_wait(max_attempts=2):        # recovery policies retry without waiting
    flaky_call()
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import orjson

from faultlens import _clock
from faultlens import events as _events
from faultlens import logs as _logs
from faultlens import operations as _operations

__all__ = [
    "CapturedEvents",
    "CapturedLogs",
    "FakeClock",
    "capture_events",
    "capture_logs",
    "no_wait",
]


class CapturedEvents(list[_events.Event]):
    """The events published while :func:`capture_events` was active, in order."""

    def kinds(self) -> list[str]:
        """The kind of each captured event."""
        return [e.kind for e in self]

    def of_kind(self, kind: str) -> list[_events.Event]:
        """The captured events of one kind."""
        return [e for e in self if e.kind == kind]


@contextmanager
def capture_events(*kinds: str) -> Iterator[CapturedEvents]:
    """Collect the events published on the bus (of ``kinds``, or all) inside the block."""
    captured = CapturedEvents()
    lock = threading.Lock()

    def collect(event: _events.Event) -> None:
        with lock:
            captured.append(event)

    with _events.subscribe(collect, kinds=kinds or None):
        yield captured


class CapturedLogs(list[dict[str, Any]]):
    """The JSON log lines written while :func:`capture_logs` was active, parsed."""

    def __init__(self, stream: io.StringIO) -> None:
        super().__init__()
        self.stream = stream

    def refresh(self) -> CapturedLogs:
        """Re-read the stream (lines logged since the last read are appended)."""
        self.clear()
        for line in self.stream.getvalue().splitlines():
            self.append(orjson.loads(line))
        return self

    def messages(self) -> list[str]:
        """The ``message`` of each captured line."""
        return [str(r.get("message")) for r in self.refresh()]


@contextmanager
def capture_logs(level: int | str = "DEBUG", **settings: Any) -> Iterator[CapturedLogs]:
    """Route all logging (stdlib and native) to an in-memory JSON stream inside the block.

    The lines are parsed when the block exits (call ``refresh()`` to read them
    earlier).  ``settings`` are :class:`faultlens.logs.LogSettings` options.
    The previous faultlens log handler, if any, is restored afterwards.
    """
    root = logging.getLogger()
    previous = [h for h in root.handlers if getattr(h, "faultlens_installed", False)]
    previous_level = root.level
    previous_sink, previous_settings = _logs._sink, _logs._sink_settings
    previous_factory, previous_class = logging.getLogRecordFactory(), logging.getLoggerClass()
    stream = io.StringIO()
    captured = CapturedLogs(stream)
    _logs.configure_logging(
        level, stream=stream, settings=_logs.LogSettings(**settings), capture_warnings=False
    )
    try:
        yield captured
    finally:
        _logs.reset_logging()
        for handler in previous:
            root.addHandler(handler)
        root.setLevel(previous_level)
        _logs._sink, _logs._sink_settings = previous_sink, previous_settings
        # reset_logging() put the stdlib's factory and logger class back: a
        # configure_logging() before the block had installed faultlens's, keep them.
        logging.setLogRecordFactory(previous_factory)
        if previous_class is _logs.FaultlensLogger:
            _logs._install_logger_class()
        captured.refresh()


class FakeClock:
    """A clock that moves only when told to, installed into faultlens's timed code.

    Inside ``with FakeClock() as clock:`` operation durations, timestamps,
    policy delays, deadlines and windows come from it; ``clock.advance(seconds)``
    moves both the wall and monotonic time.  ``sleep``/``asleep`` do not block:
    they advance the clock (``asleep`` also yields to the event loop once) and
    record the requested delay in ``clock.sleeps``.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.wall = start
        self.monotonic_ns = 1_000_000_000
        self.sleeps: list[float] = []
        self._saved: list[tuple[Any, str, Any]] = []
        self._previous_clock: Any = None

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        return self.wall

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return self.monotonic_ns / 1e9

    def perf_counter_ns(self) -> int:
        """Monotonic nanoseconds."""
        return self.monotonic_ns

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` instead of blocking."""
        self.sleeps.append(seconds)
        if seconds > 0:
            self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` and yield to the event loop once."""
        import asyncio

        self.sleep(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.wall += seconds
        self.monotonic_ns += int(seconds * 1e9)

    def __enter__(self) -> FakeClock:
        for module, attr, value in (
            (_operations, "_perf_ns", self.perf_counter_ns),
            (_operations, "_now", self.time),
        ):
            self._saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, value)
        self._previous_clock = _clock.set_clock(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        while self._saved:
            module, attr, value = self._saved.pop()
            setattr(module, attr, value)
        _clock.set_clock(self._previous_clock)


@contextmanager
def no_wait(max_attempts: int | None = None) -> Iterator[None]:
    """Make every recovery policy's wait zero inside the block (and cap retry attempts).

    Retries happen at once, without calling ``sleep`` at all, so a test of a
    flaky dependency runs in microseconds; ``max_attempts`` additionally caps
    every retry policy's attempts (``1``: no retries at all).  Deadlines and
    timeouts still apply; drive them with :class:`FakeClock`.  Process-wide,
    like stamina's ``set_testing``: do not use it from tests running in
    parallel threads.  Nesting restores the outer setting on exit.
    """
    from faultlens.errors import ConfigurationError
    from faultlens.recovery._backoff import testing

    if max_attempts is not None and (
        not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1
    ):
        raise ConfigurationError(f"no_wait max_attempts must be an int >= 1, got {max_attempts!r}")
    previous = (testing.active, testing.max_attempts)
    testing.active, testing.max_attempts = True, max_attempts
    try:
        yield
    finally:
        testing.active, testing.max_attempts = previous
