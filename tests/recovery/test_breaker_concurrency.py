"""CircuitBreaker under threads and asyncio: exact counts, one opening, bounded probes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from faultlens.recovery import CircuitBreaker, CircuitOpenError, StateChange
from faultlens.testing import FakeClock

THREADS = 16
CALLS = 3_000


class Boom(Exception):
    """The dependency failed."""


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    """Make the interpreter switch threads every microsecond, so that calls really interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """A fake clock installed for the test (never advanced by the workers)."""
    with FakeClock() as fake:
        yield fake


def hammer(breaker: CircuitBreaker, worker: int) -> tuple[int, int]:
    """Call through ``breaker`` CALLS times, failing every 7th call; return (ok, failed)."""

    @breaker
    def dependency(n: int) -> int:
        if n % 7 == 0:
            raise Boom(n)
        return n

    ok = failed = 0
    for n in range(CALLS):
        try:
            dependency(n + worker)
        except Boom:
            failed += 1
        else:
            ok += 1
    return ok, failed


def run_threads(breaker: CircuitBreaker) -> tuple[int, int]:
    """Hammer from THREADS threads started together; return the summed outcomes."""
    barrier = threading.Barrier(THREADS)

    def work(worker: int) -> tuple[int, int]:
        barrier.wait()
        return hammer(breaker, worker)

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


@pytest.mark.parametrize(
    "options",
    [
        {"failure_threshold": 1_000_000},
        {
            "failure_threshold": 1_000_000,
            "failure_rate_threshold": 0.99,
            "window_size": 10**6,
            "minimum_calls": 1_000,
        },
        {
            "failure_threshold": None,
            "failure_rate_threshold": 0.99,
            "window_type": "time",
            "window_size": 60,
            "slow_call_duration": 30,
            "slow_call_rate_threshold": 0.99,
            "minimum_calls": 1_000,
        },
    ],
    ids=["consecutive", "count-window", "time-window"],
)
def test_sixteen_threads_keep_exact_counts(clock: FakeClock, options: dict[str, Any]) -> None:
    """16 threads hammering one breaker: successes, failures and the window are exact."""
    breaker = CircuitBreaker("shared", **options)
    ok, failed = run_threads(breaker)
    metrics = breaker.metrics()
    assert ok + failed == THREADS * CALLS
    assert (metrics.successes, metrics.failures, metrics.rejected) == (ok, failed, 0)
    assert metrics.state == "closed"
    if "failure_rate_threshold" in options:
        assert (metrics.window_calls, metrics.window_failures) == (ok + failed, failed)


def test_concurrent_failures_open_the_circuit_exactly_once(clock: FakeClock) -> None:
    """Threads failing together produce one transition to open, and every call is accounted for."""
    changes: list[StateChange] = []
    breaker = CircuitBreaker("shared", failure_threshold=5, listeners=[changes.append])
    barrier = threading.Barrier(THREADS)

    @breaker
    def dependency() -> None:
        raise Boom

    def work() -> tuple[int, int]:
        barrier.wait()
        failed = rejected = 0
        for _ in range(200):
            try:
                dependency()
            except Boom:
                failed += 1
            except CircuitOpenError:
                rejected += 1
        return failed, rejected

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        results = [f.result() for f in [pool.submit(work) for _ in range(THREADS)]]
    failed = sum(r[0] for r in results)
    rejected = sum(r[1] for r in results)
    metrics = breaker.metrics()
    assert [(c.from_state, c.to_state) for c in changes] == [("closed", "open")]
    assert metrics.times_opened == 1
    # at most the threshold plus the calls already in flight when it opened
    assert 5 <= failed <= 5 + THREADS - 1
    assert (metrics.failures, metrics.rejected) == (failed, rejected)
    assert failed + rejected == THREADS * 200


def test_half_open_admits_exactly_max_calls_among_racing_threads(clock: FakeClock) -> None:
    """Racing threads in half-open: exactly half_open_max_calls probes run, others are rejected."""
    breaker = CircuitBreaker("shared", failure_threshold=1, open_duration=1, half_open_max_calls=3)
    with pytest.raises(Boom):
        breaker.call(lambda: (_ for _ in ()).throw(Boom()))
    clock.advance(1)
    release = threading.Event()
    barrier = threading.Barrier(THREADS)

    def probe() -> str:
        release.wait(timeout=30)
        return "probed"

    def work() -> str:
        barrier.wait()
        try:
            return breaker.call(probe)
        except CircuitOpenError:
            return "rejected"

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(work) for _ in range(THREADS)]
        done = concurrent.futures.as_completed(futures)
        first = [next(done).result() for _ in range(THREADS - 3)]
        assert first == ["rejected"] * (THREADS - 3)
        assert breaker.metrics().half_open_in_flight == 3
        release.set()
        rest = [f.result() for f in done]
    assert rest == ["probed"] * 3
    assert breaker.state == "closed"


def test_totals_stay_exact_while_another_thread_flips_the_state(clock: FakeClock) -> None:
    """Every attempt is a success, failure or rejection, even across concurrent transitions."""
    breaker = CircuitBreaker("shared", failure_threshold=3)
    stop = threading.Event()

    def flipper() -> None:
        while not stop.is_set():
            breaker.reset()
            breaker.force_open()
            breaker.reset()

    def work(worker: int) -> int:
        attempts = 0

        @breaker
        def dependency(n: int) -> int:
            if n % 3 == 0:
                raise Boom
            return n

        for n in range(1_000):
            attempts += 1
            with contextlib.suppress(Boom, CircuitOpenError):
                dependency(n + worker)
        return attempts

    flipping = threading.Thread(target=flipper)
    flipping.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            attempts = sum(pool.map(work, range(8)))
    finally:
        stop.set()
        flipping.join()
    metrics = breaker.metrics()
    assert metrics.successes + metrics.failures + metrics.rejected == attempts


def test_many_asyncio_tasks_keep_exact_counts(clock: FakeClock) -> None:
    """A thousand tasks interleaving at awaits: exact counts, no lock held across an await."""
    breaker = CircuitBreaker(
        "shared",
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window_size=1_000,
        minimum_calls=1_000,
    )

    @breaker
    async def dependency(n: int) -> int:
        await asyncio.sleep(0)
        if n % 5 == 0:
            raise Boom
        await asyncio.sleep(0)
        return n

    async def task(n: int) -> bool:
        try:
            await dependency(n)
        except Boom:
            return False
        return True

    async def main() -> list[bool]:
        return await asyncio.gather(*(task(n) for n in range(1_000)))

    outcomes = asyncio.run(main())
    metrics = breaker.metrics()
    assert (metrics.successes, metrics.failures) == (outcomes.count(True), outcomes.count(False))
    assert (metrics.window_calls, metrics.window_failures) == (1_000, 200)
    assert metrics.state == "closed"


def test_one_breaker_serves_threads_and_an_event_loop_at_once(clock: FakeClock) -> None:
    """The same breaker object is used by worker threads and asyncio tasks concurrently."""
    breaker = CircuitBreaker("shared", failure_threshold=1_000_000)

    @breaker
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        if n % 4 == 0:
            raise Boom
        return n

    async def tasks() -> tuple[int, int]:
        results = await asyncio.gather(*(fetch(n) for n in range(2_000)), return_exceptions=True)
        failed = sum(isinstance(r, Boom) for r in results)
        return len(results) - failed, failed

    def loop_thread() -> tuple[int, int]:
        return asyncio.run(tasks())

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        loop = pool.submit(loop_thread)
        threads = list(pool.map(lambda w: hammer(breaker, w), range(4)))
        async_ok, async_failed = loop.result()
    metrics = breaker.metrics()
    assert metrics.successes == async_ok + sum(t[0] for t in threads)
    assert metrics.failures == async_failed + sum(t[1] for t in threads)
