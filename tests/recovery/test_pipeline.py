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


class Script:
    """A dependency following a script of outcomes: "ok", "fail" (ConnectionError) or "bad"."""

    def __init__(self, clock: FakeClock, outcomes: list[str]) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)

    def __call__(self) -> str:
        self.clock.advance(0.5)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "fail":
            raise ConnectionError("down")
        if outcome == "cancel":
            raise KeyboardInterrupt
        return outcome


SCRIPTS = [
    ["ok", "ok"],
    ["fail", "ok", "ok"],
    ["fail", "fail", "fail", "ok", "ok", "ok"],
    ["bad", "ok", "bad", "bad", "bad"],
    ["fail", "fail", "ok", "fail", "fail", "fail", "fail", "ok", "ok"],
]


def run_script(
    outcomes: list[str], *, fused: bool, is_async: bool
) -> tuple[list[tuple[Any, ...]], tuple[Any, ...], list[str]]:
    """Run five protected calls over ``outcomes``; return events, breaker metrics and results."""
    from faultlens.recovery import CircuitBreaker

    with FakeClock() as clock, capture_events("recovery") as events:
        breaker = CircuitBreaker(
            f"script-{is_async}",
            failure_threshold=3,
            open_duration=1.0,
            failure_result=lambda result: result == "bad",
        )
        policy = retry(attempts=2, wait_initial=0.25, jitter=None, name="dep")
        dependency = Script(clock, outcomes)
        results: list[str] = []
        if is_async:

            async def call() -> str:
                return dependency()

            protected: Callable[[], Any] = (
                pipeline(policy, breaker)(call)
                if fused
                else policy(breaker(call))  # nested: the reference behaviour
            )
        else:
            protected = (
                pipeline(policy, breaker)(dependency) if fused else policy(breaker(dependency))
            )
        for _ in range(5):
            try:
                value = asyncio.run(protected()) if is_async else protected()
                results.append(str(value))
            except Exception as exc:
                results.append(type(exc).__name__)
            clock.advance(0.6)
        metrics = breaker.metrics()
    seen = [
        (e.name, e.timestamp, *(e.payload[k] for k in sorted(e.payload) if k != "name"))
        for e in events
    ]
    summary = (
        metrics.state,
        metrics.successes,
        metrics.failures,
        metrics.rejected,
        metrics.times_opened,
        metrics.consecutive_failures,
    )
    return seen, summary, results


@pytest.mark.parametrize("outcomes", SCRIPTS)
@pytest.mark.parametrize("is_async", [False, True])
def test_fused_retry_and_breaker_behave_like_the_nested_ones(
    outcomes: list[str], is_async: bool
) -> None:
    """pipeline(retry, breaker) composes into one function that behaves as retry(breaker(fn))."""
    fused = run_script(outcomes, fused=True, is_async=is_async)
    nested = run_script(outcomes, fused=False, is_async=is_async)
    # Same events (with their durations and timestamps), counts and answers.
    assert fused == nested


def test_fused_pipeline_is_one_function_and_falls_back_to_nesting() -> None:
    """retry ▸ untimed breaker is one wrapper; a timed breaker or attempt_timeout nest."""
    from faultlens.recovery import CircuitBreaker, _fused

    assert _fused.can_fuse(retry(), CircuitBreaker("a"))
    assert not _fused.can_fuse(retry(attempt_timeout=1), CircuitBreaker("a"))
    assert not _fused.can_fuse(
        retry(), CircuitBreaker("a", slow_call_duration=1, slow_call_rate_threshold=0.5)
    )
    assert not _fused.can_fuse(CircuitBreaker("a"), retry())

    def work() -> int:
        return 1

    protected = pipeline(retry(), CircuitBreaker("b"))(work)
    assert (
        protected.__code__
        is _fused.retry_over_breaker(retry(), CircuitBreaker("c"), work, work).__code__
    )
    assert protected() == 1
    assert protected.__wrapped__ is work  # type: ignore[attr-defined]


def test_fused_pipeline_lets_cancellation_through_uncounted() -> None:
    """A KeyboardInterrupt in the first attempt is neither retried nor counted as a failure."""
    from faultlens.recovery import CircuitBreaker

    breaker = CircuitBreaker("fused-cancel", failure_threshold=1)
    with FakeClock() as clock:
        protected = pipeline(retry(), breaker)(Script(clock, ["cancel", "ok"]))
        with pytest.raises(KeyboardInterrupt):
            protected()
        assert protected() == "ok"
    metrics = breaker.metrics()
    assert (metrics.state, metrics.failures, metrics.ignored, metrics.successes) == (
        "closed",
        0,
        1,
        1,
    )


def test_fused_pipeline_with_deadline_and_budget() -> None:
    """retry(deadline=..., budget=True) ▸ breaker keeps its deadline and deposits in its budget."""
    from faultlens.recovery import CircuitBreaker, deadline

    seen: list[float | None] = []

    def work() -> int:
        seen.append(deadline())
        return 1

    policy = retry(deadline=5, budget=True)
    with FakeClock() as clock:
        assert pipeline(policy, CircuitBreaker("fused-deadline"))(work)() == 1
        assert seen == [clock.monotonic() + 5]
    assert policy.budget is not None
    assert policy.budget._calls == 1
