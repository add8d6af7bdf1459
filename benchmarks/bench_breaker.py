"""Circuit breakers: faultlens CircuitBreaker against pybreaker and circuitbreaker.

Per call, every candidate configured with its defaults (faultlens: 5 consecutive
failures; pybreaker: fail_max=5; circuitbreaker: failure_threshold=5):

1. a successful call in the closed state, sync and async (the cost a breaker adds
   to every healthy call; the bare call is the floor);
2. a call rejected in the open state (the cost of shedding load during an outage);
3. for information, faultlens variants that do more per call: a failure-rate
   window, slow-call timing, and ``pipeline(retry, breaker)``.

pybreaker has no asyncio support (only Tornado), so it is absent from the async
table.  Recording is off (nobody subscribes to events), as in production between
failures.

    .venv/bin/python benchmarks/bench_breaker.py
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
from collections.abc import Awaitable, Callable

import circuitbreaker
import pybreaker

from _harness import measure, ratio, report, versions
from faultlens.recovery import CircuitBreaker, CircuitOpenError, pipeline, retry


def work() -> int:
    """The protected call: as cheap as possible, so the breaker's cost shows."""
    return 1


async def awork() -> int:
    """The protected coroutine."""
    return 1


class Down(Exception):
    """What the dependency raises to open the breakers."""


def down() -> int:
    raise Down


def measure_async(
    cases: dict[str, Callable[[], Awaitable[object]]], *, number: int = 20_000, rounds: int = 15
) -> dict[str, float]:
    """Like _harness.measure, for coroutine functions awaited in one event loop."""
    samples: dict[str, list[float]] = {name: [] for name in cases}

    async def batch(fn: Callable[[], Awaitable[object]], n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        return time.perf_counter_ns() - start

    async def run() -> None:
        for fn in cases.values():
            await batch(fn, 1000)
        for _ in range(rounds):
            for name, fn in cases.items():
                samples[name].append(await batch(fn, number) / number / 1000)

    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        asyncio.run(run())
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def sync_success() -> dict[str, float]:
    return measure(
        {
            "bare call": work,
            "pybreaker": pybreaker.CircuitBreaker(fail_max=5)(work),
            "circuitbreaker": circuitbreaker.CircuitBreaker(failure_threshold=5)(work),
            "faultlens CircuitBreaker": CircuitBreaker("bench-sync")(work),
            "faultlens, failure-rate window": CircuitBreaker(
                "bench-rate", failure_rate_threshold=0.5
            )(work),
            "faultlens, slow-call timing": CircuitBreaker(
                "bench-slow", slow_call_duration=1.0, slow_call_rate_threshold=0.5
            )(work),
            "faultlens pipeline(retry, breaker)": pipeline(
                retry(on=ConnectionError, attempts=10), CircuitBreaker("bench-pipe")
            )(work),
        }
    )


def async_success() -> dict[str, float]:
    return measure_async(
        {
            "bare call": awork,
            "circuitbreaker": circuitbreaker.CircuitBreaker(failure_threshold=5)(awork),
            "faultlens CircuitBreaker": CircuitBreaker("bench-async")(awork),
            "faultlens pipeline(retry, breaker)": pipeline(
                retry(on=ConnectionError, attempts=10), CircuitBreaker("bench-async-pipe")
            )(awork),
        },
        number=10_000,
        rounds=11,
    )


def rejected() -> dict[str, float]:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    pb_call = pb(down)
    with contextlib.suppress(Down, pybreaker.CircuitBreakerError):
        pb_call()
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)
    cb_call = cb(down)
    with contextlib.suppress(Down):
        cb_call()
    fl = CircuitBreaker("bench-open", failure_threshold=1, open_duration=3600)
    fl_call = fl(down)
    with contextlib.suppress(Down):
        fl_call()
    assert fl.state == "open"
    assert cb.opened
    assert pb.current_state == "open"

    # What callers write: try/except (contextlib.suppress would add its own cost).

    def pybreaker_rejected() -> None:
        try:  # noqa: SIM105
            pb_call()
        except pybreaker.CircuitBreakerError:
            pass

    def circuitbreaker_rejected() -> None:
        try:  # noqa: SIM105
            cb_call()
        except circuitbreaker.CircuitBreakerError:
            pass

    def faultlens_rejected() -> None:
        try:  # noqa: SIM105
            fl_call()
        except CircuitOpenError:
            pass

    return measure(
        {
            "pybreaker": pybreaker_rejected,
            "circuitbreaker": circuitbreaker_rejected,
            "faultlens CircuitBreaker": faultlens_rejected,
        },
        number=5_000,
        rounds=11,
    )


def main() -> None:
    print(versions("faultlens", "pybreaker", "circuitbreaker"))
    sync = sync_success()
    report("successful call, closed state (sync)", sync, "circuitbreaker")
    overhead = sync["faultlens CircuitBreaker"] - sync["bare call"]
    print(
        f"  faultlens / circuitbreaker: {ratio(sync, 'faultlens CircuitBreaker', 'circuitbreaker'):.2f}"
        f"   faultlens / pybreaker: {ratio(sync, 'faultlens CircuitBreaker', 'pybreaker'):.2f}"
        f"   faultlens overhead over the bare call: {overhead:.3f} µs"
    )
    print(
        "  pipeline(retry, breaker) / pybreaker alone: "
        f"{ratio(sync, 'faultlens pipeline(retry, breaker)', 'pybreaker'):.2f}  (goal < 1.00)"
    )
    asynchronous = async_success()
    report("successful call, closed state (async)", asynchronous, "circuitbreaker")
    print(
        "  faultlens / circuitbreaker: "
        f"{ratio(asynchronous, 'faultlens CircuitBreaker', 'circuitbreaker'):.2f}"
    )
    refused = rejected()
    report("rejected call, open state (raise and catch the breaker's error)", refused, "pybreaker")
    print(
        f"  faultlens / pybreaker: {ratio(refused, 'faultlens CircuitBreaker', 'pybreaker'):.2f}"
        "   faultlens / circuitbreaker: "
        f"{ratio(refused, 'faultlens CircuitBreaker', 'circuitbreaker'):.2f}"
    )


if __name__ == "__main__":
    main()
