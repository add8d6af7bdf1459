"""bulkhead(): exact admission counts for threads and tasks, queueing and rejection."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from faultlens.errors import ConfigurationError
from faultlens.recovery import Bulkhead, BulkheadFullError, bulkhead, timeout
from faultlens.testing import capture_events

_never = threading.Event()


def wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Let other threads run until ``condition`` holds (a synchronisation, not a delay)."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        _never.wait(0.0005)  # hands the GIL to the threads being waited for


def hold_slot(policy: Bulkhead, release: threading.Event) -> threading.Thread:
    """Start a thread that takes one slot of ``policy`` until ``release`` is set."""

    def hold() -> None:
        release.wait(60)  # the test releases it: the slot stays taken however slow the machine

    thread = threading.Thread(target=policy(hold))
    thread.start()
    return thread


class Gauge:
    """Counts calls running at once and the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.done = 0

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1
            self.done += 1


def run_threads(
    policy: Bulkhead, n: int, release: threading.Event, expect_rejected: int
) -> tuple[Gauge, list[BaseException]]:
    """Start ``n`` threads through ``policy``; release the admitted ones once the rest failed."""
    gauge = Gauge()
    rejected: list[BaseException] = []
    lock = threading.Lock()

    @policy
    def work() -> None:
        gauge.enter()
        release.wait(60)  # released by the test once the others were refused
        gauge.leave()

    def worker() -> None:
        try:
            work()
        except BulkheadFullError as exc:
            with lock:
                rejected.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    wait_until(lambda: len(rejected) == expect_rejected and policy.active == policy.max_concurrent)
    wait_until(lambda: policy.queued == min(policy.max_queue, n - policy.max_concurrent))
    release.set()
    for t in threads:
        t.join(30)
    return gauge, rejected


def test_sync_16_threads_exact_counts_without_queue() -> None:
    """16 threads against 4 slots: exactly 4 run, 12 are rejected."""
    policy = bulkhead(4)
    gauge, rejected = run_threads(policy, 16, threading.Event(), expect_rejected=12)
    assert (gauge.done, len(rejected), gauge.peak) == (4, 12, 4)
    assert (policy.active, policy.queued) == (0, 0)


def test_sync_16_threads_exact_counts_with_queue() -> None:
    """16 threads against 4 slots and 4 queue places: 8 run (4 after waiting), 8 rejected."""
    policy = bulkhead(4, max_queue=4)
    gauge, rejected = run_threads(policy, 16, threading.Event(), expect_rejected=8)
    assert (gauge.done, len(rejected), gauge.peak) == (8, 8, 4)
    assert (policy.active, policy.queued) == (0, 0)


def test_sync_queue_timeout_rejects() -> None:
    """A queued call that waits longer than queue_timeout is rejected."""
    policy = bulkhead(1, max_queue=1, queue_timeout=0.02)
    release = threading.Event()
    holder = hold_slot(policy, release)
    wait_until(lambda: policy.active == 1)
    with pytest.raises(BulkheadFullError):
        policy(lambda: None)()
    assert policy.queued == 0
    release.set()
    holder.join(30)
    assert policy.active == 0


def test_sync_queue_wait_is_bounded_by_an_enclosing_deadline() -> None:
    """Inside timeout(), a queued call does not wait past the deadline."""
    policy = bulkhead(1, max_queue=1)
    release = threading.Event()
    holder = hold_slot(policy, release)
    wait_until(lambda: policy.active == 1)
    started = time.monotonic()
    with pytest.raises(BulkheadFullError):
        timeout(0.05)(policy(lambda: None))()
    # Far below the holder's 60 s hold (what ignoring the deadline would cost) and
    # far above the 0.05 s deadline, whatever the machine's load.
    assert time.monotonic() - started < 10.0
    release.set()
    holder.join(30)


def test_errors_release_the_slot() -> None:
    """A call that raises frees its slot."""
    policy = bulkhead(1)

    @policy
    def broken() -> None:
        raise KeyError

    for _ in range(3):
        with pytest.raises(KeyError):
            broken()
    assert policy.active == 0


def test_async_many_tasks_exact_counts() -> None:
    """200 tasks against 10 slots and 20 queue places: 30 run, 170 rejected, peak 10."""
    policy = bulkhead(10, max_queue=20)
    gauge = Gauge()

    async def main() -> list[Any]:
        release = asyncio.Event()

        @policy
        async def work() -> None:
            gauge.enter()
            await release.wait()
            gauge.leave()

        tasks = [asyncio.create_task(work()) for _ in range(200)]
        for _ in range(10):
            await asyncio.sleep(0)
        assert (policy.active, policy.queued) == (10, 20)
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    rejected = [r for r in results if isinstance(r, BulkheadFullError)]
    assert (gauge.done, len(rejected), gauge.peak) == (30, 170, 10)
    assert (policy.active, policy.queued) == (0, 0)


def test_async_queued_task_cancelled_leaves_the_queue() -> None:
    """Cancelling a queued task removes it; the slot count stays right."""
    policy = bulkhead(1, max_queue=2)

    async def main() -> None:
        release = asyncio.Event()

        @policy
        async def work() -> None:
            await release.wait()

        holder = asyncio.create_task(work())
        waiter = asyncio.create_task(work())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert policy.queued == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert policy.queued == 0
        release.set()
        await holder

    asyncio.run(main())
    assert (policy.active, policy.queued) == (0, 0)


def test_async_queue_timeout() -> None:
    """A task queued longer than queue_timeout is rejected."""
    policy = bulkhead(1, max_queue=1, queue_timeout=0.02)

    async def main() -> None:
        release = asyncio.Event()

        @policy
        async def work() -> None:
            await release.wait()

        holder = asyncio.create_task(work())
        await asyncio.sleep(0)
        with pytest.raises(BulkheadFullError):
            await work()
        release.set()
        await holder

    asyncio.run(main())
    assert (policy.active, policy.queued) == (0, 0)


def test_one_capacity_across_threads_and_event_loops() -> None:
    """A slot freed by a thread is handed to a task queued on another thread's loop."""
    policy = bulkhead(1, max_queue=1)
    release = threading.Event()
    holder = hold_slot(policy, release)
    wait_until(lambda: policy.active == 1)
    outcome: list[str] = []

    async def queued() -> None:
        @policy
        async def work() -> str:
            return "ran"

        outcome.append(await work())

    other = threading.Thread(target=lambda: asyncio.run(queued()))
    other.start()
    wait_until(lambda: policy.queued == 1)
    with pytest.raises(BulkheadFullError):  # slot busy, queue full
        asyncio.run(policy(asyncio.sleep)(0))
    release.set()
    holder.join(30)
    other.join(30)
    assert outcome == ["ran"]
    assert (policy.active, policy.queued) == (0, 0)


def test_rejected_full_event() -> None:
    """A rejection is recorded as rejected_full."""
    policy = bulkhead(1, name="payments")
    release = threading.Event()
    holder = hold_slot(policy, release)
    wait_until(lambda: policy.active == 1)
    with capture_events("recovery") as events, pytest.raises(BulkheadFullError) as info:
        policy(lambda: None)()
    release.set()
    holder.join(30)
    assert "payments" in str(info.value)
    (event,) = events
    assert event.payload["policy"] == "bulkhead"
    assert event.payload["outcome"] == "rejected_full"
    assert event.name == "payments"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrent": 0},
        {"max_concurrent": 1, "max_queue": -1},
        {"max_concurrent": 1.5},
        {"max_concurrent": 1, "queue_timeout": -1},
    ],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    """bulkhead() validates its arguments with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        bulkhead(**kwargs)


def test_sync_stress_never_exceeds_the_limit() -> None:
    """16 threads hammering 3 slots with a queue never run more than 3 at once."""
    policy = bulkhead(3, max_queue=5, queue_timeout=0.05)
    gauge = Gauge()
    rejected = 0
    lock = threading.Lock()

    @policy
    def work() -> None:
        gauge.enter()
        gauge.leave()

    def worker() -> None:
        nonlocal rejected
        for _ in range(300):
            try:
                work()
            except BulkheadFullError:
                with lock:
                    rejected += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert gauge.peak <= 3
    assert gauge.done + rejected == 16 * 300
    assert (policy.active, policy.queued) == (0, 0)


def test_async_stress_with_cancellations() -> None:
    """Tasks cancelled at random points leave the counts exact."""
    policy = bulkhead(4, max_queue=8)
    gauge = Gauge()

    async def main() -> None:
        @policy
        async def work() -> None:
            gauge.enter()
            try:
                await asyncio.sleep(0)
            finally:
                gauge.leave()

        tasks = [asyncio.create_task(work()) for _ in range(300)]
        for i, task in enumerate(tasks):
            if i % 3 == 0:
                task.cancel()
            if i % 7 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert gauge.peak <= 4
    assert (policy.active, policy.queued) == (0, 0)
