"""pipeline(): explicit order, the safe default order, sync/async use, built once."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import pytest

from faultlens.errors import ConfigurationError
from faultlens.recovery import (
    Pipeline,
    Policy,
    RecoveryError,
    bulkhead,
    fallback,
    pipeline,
    retry,
    timeout,
)
from faultlens.testing import FakeClock, capture_events

P = ParamSpec("P")
R = TypeVar("R")


class Trace(Policy):
    """Logs entering and leaving around the call; counts how often it wrapped."""

    kind = "strategy"

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.wraps = 0

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        self.wraps += 1

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            self.log.append(f"{self.name}>")
            try:
                return fn(*args, **kwargs)
            finally:
                self.log.append(f"<{self.name}")

        return run

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        self.wraps += 1

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            self.log.append(f"{self.name}>")
            try:
                return await fn(*args, **kwargs)
            finally:
                self.log.append(f"<{self.name}")

        return run


class CircuitOpenError(RecoveryError):
    """Stands in for the breaker's error (recognised by name)."""


class CountingBreaker(Policy):
    """A minimal breaker: opens after ``threshold`` failures, counts what reaches it."""

    kind = "circuit_breaker"

    def __init__(self, threshold: int) -> None:
        self.name = "breaker"
        self.threshold = threshold
        self.failures = 0
        self.calls = 0
        self.rejected = 0

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            if self.failures >= self.threshold:
                self.rejected += 1
                raise CircuitOpenError("open", policy=self.name)
            self.calls += 1
            try:
                return fn(*args, **kwargs)
            except Exception:
                self.failures += 1
                raise

        return run

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            if self.failures >= self.threshold:
                self.rejected += 1
                raise CircuitOpenError("open", policy=self.name)
            self.calls += 1
            try:
                return await fn(*args, **kwargs)
            except Exception:
                self.failures += 1
                raise

        return run


def down() -> None:
    """Always fails with a transient error."""
    raise ConnectionError("down")


def test_first_policy_is_outermost() -> None:
    """pipeline(a, b, c) runs a(b(c(fn)))."""
    log: list[str] = []
    p = pipeline(Trace("a", log), Trace("b", log), Trace("c", log))
    assert p(lambda: log.append("call"))() is None
    assert log == ["a>", "b>", "c>", "call", "<c", "<b", "<a"]


def test_order_is_inspectable_and_nested_pipelines_flatten() -> None:
    """.policies lists the order; nested pipelines are flattened; describe() shows it."""
    log: list[str] = []
    a, b, c = Trace("a", log), Trace("b", log), Trace("c", log)
    p = pipeline(a, pipeline(b, c))
    assert isinstance(p, Pipeline)
    assert p.policies == (a, b, c)
    assert p.describe() == "strategy ▸ strategy ▸ strategy ▸ call"


def test_default_order_whatever_the_keyword_order() -> None:
    """pipeline.default() orders fallback, retry, breaker, timeout, bulkhead."""
    fb, rt, br, to, bh = fallback(0), retry(), CountingBreaker(3), timeout(1), bulkhead(2)
    p = pipeline.default(bulkhead=bh, timeout=to, breaker=br, retry=rt, fallback=fb)
    assert p.policies == (fb, rt, br, to, bh)
    assert p.describe() == "fallback ▸ retry ▸ circuit_breaker ▸ timeout ▸ bulkhead ▸ call"
    assert pipeline.default(retry=rt).policies == (rt,)


def test_breaker_counts_each_attempt_and_retry_stops_when_it_opens() -> None:
    """retry ▸ breaker: every attempt reaches the breaker; an open circuit is not retried."""
    breaker = CountingBreaker(threshold=3)
    p = pipeline(retry(attempts=10, wait_initial=0, wait_max=0), breaker)
    with FakeClock(), pytest.raises(CircuitOpenError):
        p(down)()
    assert (breaker.calls, breaker.failures, breaker.rejected) == (3, 3, 1)


def test_fallback_answers_an_open_circuit() -> None:
    """fallback ▸ retry ▸ breaker: the fallback answers once the circuit opens."""
    breaker = CountingBreaker(threshold=2)
    p = pipeline.default(
        fallback=fallback("cached"), retry=retry(wait_initial=0, wait_max=0), breaker=breaker
    )
    with FakeClock():
        assert p(down)() == "cached"
        assert p(down)() == "cached"
    assert breaker.calls == 2  # the second call is rejected at once, not retried


def test_async_pipeline() -> None:
    """The same pipeline decorates coroutine functions, which stay coroutine functions."""
    breaker = CountingBreaker(threshold=2)
    p = pipeline(fallback("cached"), retry(wait_initial=0, wait_max=0), breaker)

    async def adown() -> str:
        raise ConnectionError

    wrapped = p(adown)
    assert inspect.iscoroutinefunction(wrapped)
    with FakeClock():
        assert asyncio.run(wrapped()) == "cached"
    assert (breaker.calls, breaker.rejected) == (2, 1)


def test_built_once_at_decoration() -> None:
    """Each policy wraps once at decoration, never per call."""
    log: list[str] = []
    a = Trace("a", log)
    fn = pipeline(a, retry())(lambda: 1)
    for _ in range(5):
        fn()
    assert a.wraps == 1


def test_call_and_acall() -> None:
    """.call and .acall run a function once through the pipeline."""
    log: list[str] = []
    p = pipeline(Trace("a", log), retry())
    assert p.call(lambda x: x + 1, 1) == 2

    async def inc(x: int) -> int:
        return x + 1

    assert asyncio.run(p.acall(inc, 2)) == 3
    assert log == ["a>", "<a", "a>", "<a"]


def test_decorated_function_keeps_its_identity() -> None:
    """The decorated function keeps its name, docstring and __wrapped__."""

    @pipeline(retry(), timeout(5))
    def lookup(key: str) -> str:
        """Look up a key."""
        return key

    assert lookup.__name__ == "lookup"
    assert lookup.__doc__ == "Look up a key."
    assert lookup("k") == "k"


def test_inner_policies_name_events_after_the_function() -> None:
    """Events of inner policies carry the function's name, not a wrapper's."""

    def flaky_once() -> Any:
        flaky_once.calls += 1  # type: ignore[attr-defined]
        if flaky_once.calls == 1:  # type: ignore[attr-defined]
            raise ConnectionError
        return 1

    flaky_once.calls = 0  # type: ignore[attr-defined]
    with FakeClock(), capture_events("recovery") as events:
        pipeline(fallback(0), timeout(5), retry(wait_initial=0, wait_max=0))(flaky_once)()
    assert {e.name for e in events} == {
        f"{__name__}.test_inner_policies_name_events_after_the_function.<locals>.flaky_once"
    }


def test_bad_arguments() -> None:
    """Non-policies and an empty default are configuration errors."""
    with pytest.raises(ConfigurationError):
        pipeline(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        pipeline.default()


def test_with_the_real_circuit_breaker() -> None:
    """retry ▸ CircuitBreaker: the breaker counts each attempt and its rejection stops the retry."""
    from faultlens.recovery import CircuitBreaker, CircuitOpenError

    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    breaker = CircuitBreaker("pipeline-test", failure_threshold=3)
    p = pipeline(retry(attempts=10, wait_initial=0, wait_max=0), breaker)
    with FakeClock(), capture_events("recovery") as events:
        with pytest.raises(CircuitOpenError):
            p(failing)()
        assert breaker.state == "open"
    assert calls == 3
    outcomes = [e.payload["outcome"] for e in events if e.payload["policy"] == "retry"]
    assert outcomes == ["retrying", "retrying", "retrying", "failed_after_retry"]
    assert events.of_kind("recovery")[-1].payload["reason"] == "not_retryable"
