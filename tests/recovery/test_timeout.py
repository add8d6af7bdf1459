"""timeout(): async cancellation, the sync deadline and the thread variant."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from faultlens import correlate, correlation_id
from faultlens.errors import ConfigurationError
from faultlens.recovery import PolicyTimeoutError, deadline, remaining, timeout
from faultlens.testing import FakeClock, capture_events


def test_sync_call_in_time_returns_its_result() -> None:
    """A call that finishes within the limit returns normally."""
    with FakeClock() as clock:

        @timeout(2.0)
        def quick() -> int:
            clock.advance(1.5)
            return 7

        assert quick() == 7


def test_sync_deadline_is_visible_to_callees() -> None:
    """remaining() and deadline() tell the callee how long it has; outside, None."""
    seen: list[Any] = []
    with FakeClock() as clock:

        @timeout(timedelta(seconds=3))
        def call() -> None:
            seen.append(remaining())
            clock.advance(1.0)
            seen.append(remaining())
            seen.append(deadline())

        start = clock.monotonic()
        call()
    assert seen == [3.0, 2.0, start + 3.0]
    assert remaining() is None
    assert deadline() is None


def test_sync_overrun_raises_policy_timeout_error() -> None:
    """A sync call that returns late raises PolicyTimeoutError (also a TimeoutError)."""
    with FakeClock() as clock:

        @timeout(1.0, name="db")
        def slow() -> int:
            clock.advance(1.5)
            return 1

        with pytest.raises(TimeoutError) as info:
            slow()
    assert isinstance(info.value, PolicyTimeoutError)
    assert info.value.seconds == 1.0
    assert info.value.policy == "db"


def test_sync_errors_propagate_unchanged() -> None:
    """An error raised inside the time limit is not replaced."""

    @timeout(1.0)
    def broken() -> None:
        raise KeyError("x")

    with FakeClock(), pytest.raises(KeyError):
        broken()


def test_nested_timeout_never_extends_the_outer_deadline() -> None:
    """An inner timeout longer than the outer one sees the outer deadline."""
    seen: list[float | None] = []

    @timeout(10.0)
    def inner() -> None:
        seen.append(remaining())

    @timeout(2.0)
    def outer() -> None:
        inner()

    with FakeClock():
        outer()
    assert seen == [2.0]


def test_async_timeout_cancels_the_call() -> None:
    """An async call still running at the deadline is cancelled and PolicyTimeoutError raised."""
    cancelled = threading.Event()

    @timeout(0.01)
    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(PolicyTimeoutError):
        asyncio.run(hangs())
    assert cancelled.is_set()


def test_async_own_timeout_error_is_not_rewritten() -> None:
    """A TimeoutError the callee raises itself propagates as is."""

    @timeout(5.0)
    async def raises() -> None:
        raise TimeoutError("from the driver")

    with pytest.raises(TimeoutError) as info:
        asyncio.run(raises())
    assert not isinstance(info.value, PolicyTimeoutError)


def test_async_deadline_visible_and_fake_clock_overrun_detected() -> None:
    """Async callees see remaining(); an overrun on the faultlens clock raises too."""
    seen: list[float | None] = []

    @timeout(2.0)
    async def slow() -> None:
        seen.append(remaining())
        await clock.asleep(3.0)

    with FakeClock() as clock, pytest.raises(PolicyTimeoutError):
        asyncio.run(slow())
    assert seen == [2.0]


def test_thread_mode_returns_the_result_with_context_and_deadline() -> None:
    """sync="thread" runs the call in a worker that sees the context and the deadline."""

    @timeout(30.0, sync="thread")  # a ceiling: the call returns at once
    def work(x: int) -> tuple[int, str | None, bool, str]:
        left = remaining()
        return x * 2, correlation_id(), left is not None, threading.current_thread().name

    with correlate("abc-123"):
        value, cid, has_deadline, thread = work(21)
    assert (value, cid, has_deadline) == (42, "abc-123", True)
    assert thread != threading.current_thread().name


def test_thread_mode_stops_waiting_at_the_deadline() -> None:
    """A hung worker makes the caller raise PolicyTimeoutError; the worker runs on."""
    release = threading.Event()
    finished = threading.Event()

    with ThreadPoolExecutor(max_workers=1) as pool:

        @timeout(0.02, sync="thread", executor=pool)
        def hangs() -> None:
            release.wait(60)  # until the test releases it, after its assertions
            finished.set()

        with pytest.raises(PolicyTimeoutError):
            hangs()
        assert not finished.is_set()
        release.set()
    assert finished.is_set()


def test_thread_mode_errors_propagate() -> None:
    """An error raised in the worker reaches the caller unchanged."""

    @timeout(5.0, sync="thread")
    def broken() -> None:
        raise TimeoutError("the callee's own")

    with pytest.raises(TimeoutError) as info:
        broken()
    assert not isinstance(info.value, PolicyTimeoutError)


def test_timed_out_event() -> None:
    """A timeout is recorded as a timed_out recovery event."""
    with FakeClock() as clock, capture_events("recovery") as events:

        @timeout(1.0, name="search")
        def slow() -> None:
            clock.advance(2.0)

        with pytest.raises(PolicyTimeoutError):
            slow()
    (event,) = events
    assert event.name == "search"
    assert event.payload["policy"] == "timeout"
    assert event.payload["outcome"] == "timed_out"
    assert event.payload["duration_ms"] == pytest.approx(2000.0)


@pytest.mark.parametrize("kwargs", [{"seconds": 0}, {"seconds": -1}, {"seconds": 1, "sync": "x"}])
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    """timeout() validates its arguments with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        timeout(**kwargs)
