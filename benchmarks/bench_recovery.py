"""Recovery policies: faultlens against tenacity, stamina, backoff, pybreaker and circuitbreaker.

Per call, sync and async, each library configured as its documentation shows for
"retry a connection error up to 10 times with exponential backoff" or "a circuit
breaker with default settings":

1. a call that succeeds (the cost a policy adds to every healthy call);
2. a call that fails once with a ConnectionError and succeeds on the retry, with a
   zero wait (the cost of the retry machinery itself, not of sleeping).

faultlens is measured with recording off (nobody subscribes) and on: a subscriber
that hands each event to a bounded queue, as the recorder does, so every attempt
becomes an event.

    .venv/bin/python benchmarks/bench_recovery.py
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import backoff
import circuitbreaker
import pybreaker
import stamina
import tenacity

from _harness import measure, ratio, report, versions
from faultlens import events
from faultlens.recovery import bulkhead, fallback, pipeline, retry, timeout

try:
    from faultlens.recovery import CircuitBreaker
except ImportError:  # the breaker is optional for this benchmark
    CircuitBreaker = None  # type: ignore[assignment,misc]

PEERS = ("faultlens", "tenacity", "stamina", "backoff", "pybreaker", "circuitbreaker")


def work() -> int:
    """The protected call: as cheap as possible, so the policy's cost shows."""
    return 1


async def awork() -> int:
    """The protected coroutine."""
    return 1


def fail_once() -> Callable[[], int]:
    """A function failing every other call: each protected call fails once, then succeeds."""
    calls = 0

    def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls & 1:
            raise ConnectionError("transient")
        return 1

    return flaky


def afail_once() -> Callable[[], Awaitable[int]]:
    """The async fail_once."""
    flaky = fail_once()

    async def aflaky() -> int:
        return flaky()

    return aflaky


class Recording:
    """A subscriber like the recorder's hand-off: appends every event to a bounded queue.

    The recorder's writer takes batches of 500 (its default ``batch_size``), so in a
    steady state about that many events are alive: the queue keeps the last 500.
    """

    def __init__(self) -> None:
        self.queue: deque[events.Event] = deque(maxlen=500)
        self.subscription: events.Subscription | None = None

    def __call__(self, event: events.Event) -> None:
        self.queue.append(event)

    def __enter__(self) -> Recording:
        self.subscription = events.subscribe(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.subscription is not None:
            self.subscription.close()


def tenacity_retry(fn: Callable[..., Any], *, zero_wait: bool = False) -> Callable[..., Any]:
    wait: Any = (
        tenacity.wait_none()
        if zero_wait
        else tenacity.wait_random_exponential(multiplier=0.1, max=5)
    )
    return tenacity.retry(
        stop=tenacity.stop_after_attempt(10),
        wait=wait,
        retry=tenacity.retry_if_exception_type(ConnectionError),
        reraise=True,
    )(fn)


def stamina_retry(fn: Callable[..., Any], *, zero_wait: bool = False) -> Callable[..., Any]:
    if zero_wait:
        return stamina.retry(
            on=ConnectionError, attempts=10, wait_initial=0, wait_max=0, wait_jitter=0
        )(fn)
    return stamina.retry(on=ConnectionError, attempts=10)(fn)


def backoff_retry(fn: Callable[..., Any], *, zero_wait: bool = False) -> Callable[..., Any]:
    if zero_wait:
        return backoff.on_exception(
            backoff.constant, ConnectionError, max_tries=10, interval=0, logger=None
        )(fn)
    return backoff.on_exception(backoff.expo, ConnectionError, max_tries=10, logger=None)(fn)


def faultlens_retry(*, zero_wait: bool = False) -> Any:
    if zero_wait:
        return retry(on=ConnectionError, attempts=10, wait_initial=0, wait_max=0)
    return retry(on=ConnectionError, attempts=10)


def faultlens_breaker(name: str) -> Any:
    return CircuitBreaker(name) if CircuitBreaker is not None else None


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
    pb = pybreaker.CircuitBreaker()
    cases: dict[str, Callable[[], object]] = {
        "bare call": work,
        "tenacity @retry": tenacity_retry(work),
        "stamina.retry": stamina_retry(work),
        "backoff.on_exception": backoff_retry(work),
        "pybreaker": pb(work),
        "circuitbreaker": circuitbreaker.circuit(work),
        "faultlens retry": faultlens_retry()(work),
        "faultlens timeout": timeout(30)(work),
        "faultlens fallback": fallback(0)(work),
        "faultlens bulkhead": bulkhead(64)(work),
    }
    breaker = faultlens_breaker("bench-sync-alone")
    if breaker is not None:
        cases["faultlens CircuitBreaker"] = breaker(work)
        cases["faultlens retry+breaker"] = pipeline(
            faultlens_retry(), faultlens_breaker("bench-sync-off")
        )(work)
    rec_retry = faultlens_retry()(work)
    rec_pipe = (
        pipeline(faultlens_retry(), faultlens_breaker("bench-sync-rec"))(work)
        if breaker is not None
        else None
    )

    results = measure(cases)
    with Recording():
        recorded: dict[str, Callable[[], object]] = {"faultlens retry, recording": rec_retry}
        if rec_pipe is not None:
            recorded["faultlens retry+breaker, recording"] = rec_pipe
        recorded["tenacity @retry"] = cases["tenacity @retry"]  # same rounds, for the ratio
        recorded["pybreaker"] = cases["pybreaker"]
        with_recording = measure(recorded)
    # Scaled by tenacity measured in the same rounds: the ratios stay like for like.
    scale = results["tenacity @retry"] / with_recording["tenacity @retry"]
    for name in ("faultlens retry, recording", "faultlens retry+breaker, recording"):
        if name in with_recording:
            results[name] = with_recording[name] * scale
    return results


def async_success() -> dict[str, float]:
    cases: dict[str, Callable[[], Awaitable[object]]] = {
        "bare call": awork,
        "tenacity @retry": tenacity_retry(awork),
        "stamina.retry": stamina_retry(awork),
        "backoff.on_exception": backoff_retry(awork),
        "circuitbreaker": circuitbreaker.circuit(awork),
        "faultlens retry": faultlens_retry()(awork),
        "faultlens timeout": timeout(30)(awork),
        "faultlens fallback": fallback(0)(awork),
        "faultlens bulkhead": bulkhead(64)(awork),
    }
    breaker = faultlens_breaker("bench-async-alone")
    if breaker is not None:
        cases["faultlens CircuitBreaker"] = breaker(awork)
        cases["faultlens retry+breaker"] = pipeline(
            faultlens_retry(), faultlens_breaker("bench-async-off")
        )(awork)
    results = measure_async(cases, number=10_000, rounds=11)
    recorded: dict[str, Callable[[], Awaitable[object]]] = {
        "tenacity @retry": cases["tenacity @retry"],
        "faultlens retry, recording": faultlens_retry()(awork),
    }
    if breaker is not None:
        recorded["faultlens retry+breaker, recording"] = pipeline(
            faultlens_retry(), faultlens_breaker("bench-async-rec")
        )(awork)
    with Recording():
        with_recording = measure_async(recorded, number=10_000, rounds=11)
    scale = results["tenacity @retry"] / with_recording["tenacity @retry"]
    for name, value in with_recording.items():
        if name != "tenacity @retry":
            results[name] = value * scale
    return results


def sync_fail_once() -> dict[str, float]:
    cases: dict[str, Callable[[], object]] = {
        "tenacity @retry": tenacity_retry(fail_once(), zero_wait=True),
        "stamina.retry": stamina_retry(fail_once(), zero_wait=True),
        "backoff.on_exception": backoff_retry(fail_once(), zero_wait=True),
        "faultlens retry": faultlens_retry(zero_wait=True)(fail_once()),
    }
    results = measure(cases, number=5_000, rounds=11)
    with Recording():
        recorded = measure(
            {
                "tenacity @retry": cases["tenacity @retry"],
                "faultlens retry, recording": faultlens_retry(zero_wait=True)(fail_once()),
            },
            number=5_000,
            rounds=11,
        )
    scale = results["tenacity @retry"] / recorded["tenacity @retry"]
    results["faultlens retry, recording"] = recorded["faultlens retry, recording"] * scale
    return results


def async_fail_once() -> dict[str, float]:
    cases: dict[str, Callable[[], Awaitable[object]]] = {
        "tenacity @retry": tenacity_retry(afail_once(), zero_wait=True),
        "stamina.retry": stamina_retry(afail_once(), zero_wait=True),
        "backoff.on_exception": backoff_retry(afail_once(), zero_wait=True),
        "faultlens retry": faultlens_retry(zero_wait=True)(afail_once()),
    }
    results = measure_async(cases, number=5_000, rounds=11)
    with Recording():
        recorded = measure_async(
            {
                "tenacity @retry": cases["tenacity @retry"],
                "faultlens retry, recording": faultlens_retry(zero_wait=True)(afail_once()),
            },
            number=5_000,
            rounds=11,
        )
    scale = results["tenacity @retry"] / recorded["tenacity @retry"]
    results["faultlens retry, recording"] = recorded["faultlens retry, recording"] * scale
    return results


def main() -> None:
    # Like tenacity (and faultlens with nobody subscribed), no logging per retry: the
    # peers' default log handlers would dominate the figures.
    stamina.instrumentation.set_on_retry_hooks([])
    print(versions(*PEERS))
    if CircuitBreaker is None:
        print("  (faultlens.recovery.CircuitBreaker not available: breaker rows skipped)")

    sync = sync_success()
    report("sync, successful call", sync, "tenacity @retry")
    asyn = async_success()
    report("async, successful call", asyn, "tenacity @retry")
    fail = sync_fail_once()
    report("sync, fails once then succeeds (zero wait)", fail, "tenacity @retry")
    afail = async_fail_once()
    report("async, fails once then succeeds (zero wait)", afail, "tenacity @retry")

    print("\n## goals")
    if "faultlens retry+breaker, recording" in sync:
        pipe = "faultlens retry+breaker, recording"
        print(
            f"  sync  retry+breaker recording / tenacity:  "
            f"{ratio(sync, pipe, 'tenacity @retry'):.3f}  (goal <= {1 / 15:.3f})"
        )
        print(
            f"  sync  retry+breaker recording / pybreaker: "
            f"{ratio(sync, pipe, 'pybreaker'):.2f}  (goal < 1)"
        )
        print(
            f"  async retry+breaker recording / tenacity:  "
            f"{ratio(asyn, pipe, 'tenacity @retry'):.3f}  (goal <= {1 / 15:.3f})"
        )
        # pybreaker has no asyncio support: its sync call is the reference.
        print(
            f"  async retry+breaker recording / pybreaker (sync call): "
            f"{asyn[pipe] / sync['pybreaker']:.2f}  (goal < 1)"
        )
    print(
        f"  sync  fail-once retry / tenacity:           "
        f"{ratio(fail, 'faultlens retry', 'tenacity @retry'):.3f}  (goal <= {1 / 40:.3f})"
    )
    print(
        f"  sync  fail-once retry recording / tenacity: "
        f"{ratio(fail, 'faultlens retry, recording', 'tenacity @retry'):.3f}"
    )
    print(
        f"  async fail-once retry / tenacity:           "
        f"{ratio(afail, 'faultlens retry', 'tenacity @retry'):.3f}  (goal <= {1 / 40:.3f})"
    )
    print(
        f"  async fail-once retry recording / tenacity: "
        f"{ratio(afail, 'faultlens retry, recording', 'tenacity @retry'):.3f}"
    )


if __name__ == "__main__":
    main()
