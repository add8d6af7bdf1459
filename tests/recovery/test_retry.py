"""retry(): stop conditions, deadlines, budget, cancellation, hints and exhaustion."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from faultlens.errors import ConfigurationError, TransientError, ValidationError
from faultlens.recovery import (
    BulkheadFullError,
    PolicyTimeoutError,
    RecoveryError,
    RetryBudget,
    RetryExhaustedError,
    is_retryable,
    remaining,
    retry,
    timeout,
)
from faultlens.testing import FakeClock, no_wait


class CircuitOpenError(RecoveryError):
    """Stands in for the breaker's error: recognised by its class name."""


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``; may advance the clock."""

    def __init__(
        self,
        failures: int,
        error: Callable[[], BaseException] = lambda: ConnectionError("down"),
        *,
        clock: FakeClock | None = None,
        takes: float = 0.0,
    ) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.clock = clock
        self.takes = takes

    def __call__(self) -> str:
        self.calls += 1
        if self.clock is not None and self.takes:
            self.clock.advance(self.takes)
        if self.calls <= self.failures:
            raise self.error()
        return "ok"


def fixed(value: float = 0.5) -> Callable[[], float]:
    """A random source that always answers ``value``."""
    return lambda: value


def test_success_first_time_does_not_sleep() -> None:
    """A call that succeeds is called once and never waits."""
    flaky = Flaky(0)
    with FakeClock() as clock:
        assert retry()(flaky)() == "ok"
    assert flaky.calls == 1
    assert clock.sleeps == []


def test_retries_then_succeeds_with_exponential_waits() -> None:
    """Transient failures are retried with backoff until the call succeeds."""
    flaky = Flaky(3)
    policy = retry(wait_initial=1.0, wait_max=10.0, jitter=None)
    with FakeClock() as clock:
        assert policy(flaky)() == "ok"
    assert flaky.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_jitter_uses_the_injected_random_source() -> None:
    """Full jitter multiplies the exponential by the random source's value."""
    flaky = Flaky(2)
    with FakeClock() as clock:
        retry(wait_initial=1.0, random=fixed(0.25))(flaky)()
    assert clock.sleeps == [0.25, 0.5]


def test_stops_after_attempts_and_reraises_the_original_with_a_note() -> None:
    """Exhausted attempts re-raise the last error, annotated with the attempt count."""
    flaky = Flaky(10)
    with FakeClock(), pytest.raises(ConnectionError) as info:
        retry(attempts=3, wait_initial=0.0, wait_max=0.0)(flaky)()
    assert flaky.calls == 3
    assert info.value.faultlens_attempts == 3  # type: ignore[attr-defined]
    assert any("gave up after 3 attempts" in note for note in info.value.__notes__)


def test_raise_exhausted_raises_retry_exhausted_error() -> None:
    """raise_exhausted=True raises RetryExhaustedError with the last error as cause."""
    flaky = Flaky(10)
    with FakeClock(), pytest.raises(RetryExhaustedError) as info:
        retry(attempts=2, raise_exhausted=True, name="db")(flaky)()
    assert info.value.attempts == 2
    assert info.value.policy == "db"
    assert isinstance(info.value.__cause__, ConnectionError)


def test_non_retryable_error_passes_through_untouched() -> None:
    """An error the policy does not retry is raised at once, without notes."""
    flaky = Flaky(5, lambda: ValueError("bad input"))
    with FakeClock() as clock, pytest.raises(ValueError, match="bad input") as info:
        retry(on=ConnectionError)(flaky)()
    assert flaky.calls == 1
    assert not getattr(info.value, "__notes__", [])
    assert clock.sleeps == []


def test_default_decision_comes_from_classification() -> None:
    """By default transient errors are retried and validation errors are not."""
    assert is_retryable(ConnectionError())
    assert is_retryable(TimeoutError())
    assert is_retryable(TransientError("busy"))
    assert not is_retryable(ValidationError("bad"))
    assert not is_retryable(KeyError("x"))


def test_load_shedding_errors_are_not_retried_by_default() -> None:
    """An open circuit or a full bulkhead stops the retry at once."""
    for error in (CircuitOpenError("open"), BulkheadFullError("full")):
        flaky = Flaky(5, lambda error=error: error)  # type: ignore[misc]
        with FakeClock(), pytest.raises(RecoveryError):
            retry()(flaky)()
        assert flaky.calls == 1
        flaky = Flaky(5, lambda error=error: error)  # type: ignore[misc]
        with FakeClock(), pytest.raises(RecoveryError):
            retry(on=Exception)(flaky)()
        assert flaky.calls == 1


def test_load_shedding_error_named_in_on_is_retried() -> None:
    """Naming a load-shedding error in `on` opts in to retrying it."""
    flaky = Flaky(1, lambda: CircuitOpenError("open"))
    with FakeClock():
        assert retry(on=CircuitOpenError)(flaky)() == "ok"
    assert flaky.calls == 2


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_interrupts_are_never_retried(error: type[BaseException]) -> None:
    """KeyboardInterrupt, SystemExit and GeneratorExit propagate after one call."""
    flaky = Flaky(5, error)
    with FakeClock(), pytest.raises(error):
        retry(on=BaseException)(flaky)()
    assert flaky.calls == 1


def test_future_cancellation_is_never_retried() -> None:
    """concurrent.futures.CancelledError (an Exception) is not retried either."""
    flaky = Flaky(5, concurrent.futures.CancelledError)
    with FakeClock(), pytest.raises(concurrent.futures.CancelledError):
        retry(on=Exception)(flaky)()
    assert flaky.calls == 1


def test_async_cancellation_is_never_retried() -> None:
    """asyncio.CancelledError raised by the call propagates after one attempt."""
    calls = 0

    @retry(on=BaseException)
    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with FakeClock(), pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    assert calls == 1


def test_cancelling_a_task_stops_its_retry_wait() -> None:
    """A task cancelled while retrying is cancelled, not retried."""
    calls = 0

    @retry(wait_initial=30.0, wait_max=30.0, jitter=None)
    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    async def main() -> None:
        task = asyncio.create_task(down())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())  # the real clock: the 30 s wait is cancelled at once
    assert calls == 1


def test_total_timeout_stops_before_a_wait_that_would_cross_it() -> None:
    """The retry gives up when the next wait would end past its timeout."""
    with FakeClock() as clock:
        flaky = Flaky(100, clock=clock, takes=1.0)
        policy = retry(attempts=None, timeout=5.5, wait_initial=1.0, wait_max=1.0, jitter=None)
        started = clock.monotonic()
        with pytest.raises(ConnectionError) as info:
            policy(flaky)()
        assert clock.monotonic() - started <= 5.5
    # 1 s call + 1 s wait per attempt: the third wait would end at 6 s.
    assert flaky.calls == 3
    assert "the retry timeout would be exceeded" in info.value.__notes__[0]


def test_timedelta_times_are_accepted() -> None:
    """Times may be timedeltas."""
    flaky = Flaky(1)
    policy = retry(timeout=timedelta(seconds=5), wait_initial=timedelta(milliseconds=250))
    with FakeClock() as clock:
        policy(flaky)()
    assert 0 <= clock.sleeps[0] <= 0.25


def test_never_sleeps_past_the_context_deadline() -> None:
    """Inside timeout(), a wait that would cross the deadline stops the retry now."""
    with FakeClock() as clock:
        flaky = Flaky(100, clock=clock, takes=0.5)
        policy = timeout(3.0)(
            retry(attempts=100, timeout=None, wait_initial=1.0, wait_max=1.0, jitter=None)(flaky)
        )
        started = clock.monotonic()
        with pytest.raises(ConnectionError) as info:
            policy()
        assert clock.monotonic() - started <= 3.0
    assert flaky.calls == 2  # 0.5 + 1 + 0.5 = 2 s; another 1 s wait would end at 3 s
    assert "the deadline would be exceeded" in info.value.__notes__[0]


def test_deadline_argument_is_published_to_the_call() -> None:
    """retry(deadline=...) bounds the whole call and callees see the time left."""
    seen: list[float | None] = []

    def call() -> str:
        seen.append(remaining())
        return "ok"

    with FakeClock():
        retry(deadline=2.0)(call)()
    assert seen == [2.0]


def test_zero_delay_never_sleeps() -> None:
    """With zero waits the retry does not call sleep at all, not even sleep(0)."""
    flaky = Flaky(3)
    with FakeClock() as clock:
        retry(wait_initial=0, wait_max=0)(flaky)()
    assert flaky.calls == 4
    assert clock.sleeps == []


def test_zero_delay_never_sleeps_async() -> None:
    """The async retry does not call asleep for a zero wait."""
    calls = 0

    @retry(wait_initial=0, wait_max=0)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return "ok"

    with FakeClock() as clock:
        assert asyncio.run(flaky()) == "ok"
    assert clock.sleeps == []


def test_retry_after_hint_overrides_a_shorter_backoff() -> None:
    """A Retry-After carried by the error is waited, even when longer than wait_max."""

    class Throttled(ConnectionError):
        retry_after = 7.0

    flaky = Flaky(1, Throttled)
    with FakeClock() as clock:
        retry(wait_initial=0.1, wait_max=1.0)(flaky)()
    assert clock.sleeps == [7.0]


def test_retry_after_beyond_the_timeout_stops_now() -> None:
    """A Retry-After that would cross the timeout gives up instead of waiting."""

    class Throttled(ConnectionError):
        retry_after = 600.0

    flaky = Flaky(1, Throttled)
    with FakeClock() as clock, pytest.raises(Throttled):
        retry(timeout=30.0)(flaky)()
    assert clock.sleeps == []
    assert flaky.calls == 1


def test_predicate_can_choose_the_delay() -> None:
    """A predicate returning a number retries after exactly that delay."""
    flaky = Flaky(2, lambda: ValueError("x"))
    with FakeClock() as clock:
        retry(on=lambda exc: 3.0 if isinstance(exc, ValueError) else False)(flaky)()
    assert clock.sleeps == [3.0, 3.0]


def test_predicate_false_stops() -> None:
    """A predicate returning False does not retry."""
    flaky = Flaky(2)
    with FakeClock(), pytest.raises(ConnectionError):
        retry(on=lambda exc: False)(flaky)()
    assert flaky.calls == 1


def test_exception_tuple() -> None:
    """`on` accepts a tuple of exception classes."""
    flaky = Flaky(2, lambda: KeyError("x"))
    with FakeClock():
        assert retry(on=(KeyError, ValueError))(flaky)() == "ok"


def test_budget_limits_retries_to_a_share_of_calls() -> None:
    """With 20 % of calls as budget and no floor, 10 good calls buy 2 retries."""
    budget = RetryBudget(ratio=0.2, min_per_second=0.0)
    ok = retry(budget=budget)(Flaky(0))
    with FakeClock():
        for _ in range(9):
            ok()
        down = Flaky(100)
        with pytest.raises(ConnectionError) as info:
            retry(attempts=10, wait_initial=0, wait_max=0, budget=budget)(down)()
        assert down.calls == 3  # 10 deposits: 2 retries
        assert "the retry budget is spent" in info.value.__notes__[0]
        down2 = Flaky(100)
        with pytest.raises(ConnectionError):
            retry(attempts=10, wait_initial=0, wait_max=0, budget=budget)(down2)()
        assert down2.calls == 1  # 11 deposits allow 2.2 retries: none left


def test_budget_floor_per_second() -> None:
    """min_per_second allows retries even without recent calls, per window."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.5, window=4.0)
    with FakeClock() as clock:
        down = Flaky(100)
        with pytest.raises(ConnectionError):
            retry(attempts=10, wait_initial=0, wait_max=0, budget=budget)(down)()
        assert down.calls == 3  # 0.5/s over 4 s: 2 retries
        clock.advance(100.0)  # the old window no longer counts
        down = Flaky(100)
        with pytest.raises(ConnectionError):
            retry(attempts=10, wait_initial=0, wait_max=0, budget=budget)(down)()
        assert down.calls == 3


def test_budget_true_creates_one_per_policy() -> None:
    """budget=True gives the policy its own default budget."""
    policy = retry(budget=True)
    assert isinstance(policy.budget, RetryBudget)
    assert policy.budget.ratio == 0.2


def test_sync_attempt_timeout_is_retried() -> None:
    """An attempt that overruns attempt_timeout fails with PolicyTimeoutError and is retried."""
    calls = 0
    with FakeClock() as clock:

        def slow_once() -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                clock.advance(2.0)
            return "ok"

        assert retry(attempt_timeout=1.0, wait_initial=0, wait_max=0)(slow_once)() == "ok"
    assert calls == 2


def test_async_attempt_timeout_cancels_each_attempt() -> None:
    """Async attempts that hang are cancelled at attempt_timeout; the last timeout is raised."""
    started = 0
    cancelled = 0

    @retry(attempts=2, attempt_timeout=0.01, wait_initial=0, wait_max=0)
    async def hangs() -> None:
        nonlocal started, cancelled
        started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise

    with pytest.raises(PolicyTimeoutError):
        asyncio.run(hangs())
    assert (started, cancelled) == (2, 2)


def test_async_retry_uses_the_clock() -> None:
    """The async retry waits through the faultlens clock."""
    calls = 0

    @retry(wait_initial=1.0, jitter=None)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return "ok"

    with FakeClock() as clock:
        assert asyncio.run(flaky()) == "ok"
    assert clock.sleeps == [1.0, 2.0]


def test_no_wait_makes_waits_zero_and_caps_attempts() -> None:
    """faultlens.testing.no_wait removes every wait and can cap attempts."""
    flaky = Flaky(100)
    with FakeClock() as clock, no_wait(max_attempts=4), pytest.raises(ConnectionError):
        retry(attempts=10, wait_initial=5.0)(flaky)()
    assert flaky.calls == 4
    assert clock.sleeps == []
    flaky = Flaky(2)
    with FakeClock() as clock, no_wait():
        assert retry(wait_initial=5.0)(flaky)() == "ok"
    assert clock.sleeps == []


def test_no_wait_rejects_bad_cap() -> None:
    """no_wait(max_attempts=0) is a configuration error."""
    with pytest.raises(ConfigurationError), no_wait(max_attempts=0):
        pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": True},
        {"attempts": None, "timeout": None},
        {"timeout": -1},
        {"on": 42},
        {"on": ()},
        {"budget": 0.5},
        {"jitter": "gauss"},
        {"wait_initial": "1s"},
    ],
)
def test_bad_arguments_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    """retry() validates its arguments with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        retry(**kwargs)


def test_call_and_acall() -> None:
    """.call and .acall run one call under the policy."""
    flaky = Flaky(1)
    with FakeClock():
        assert retry().call(flaky) == "ok"

    calls = 0

    async def aflaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise ConnectionError
        return x

    with FakeClock():
        assert asyncio.run(retry().acall(aflaky, 5)) == 5


def test_deadline_events_name_the_function() -> None:
    """A retry(deadline=...) that runs out records timed_out under the function's name."""
    from faultlens.recovery import PolicyTimeoutError
    from faultlens.testing import capture_events

    with FakeClock() as clock, capture_events("recovery") as events:

        def slow() -> None:
            clock.advance(3.0)

        with pytest.raises(PolicyTimeoutError):
            retry(deadline=1.0)(slow)()
    timed_out = [e for e in events if e.payload["outcome"] == "timed_out"]
    assert [e.name for e in timed_out] == [f"{__name__}.{slow.__qualname__}"]
