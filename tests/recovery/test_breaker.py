"""CircuitBreaker: the state machine, windows, probes, backoff, controls, listeners, events."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from faultlens._metrics import counters
from faultlens.errors import (
    BusinessRuleError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    TransientError,
    ValidationError,
    classify,
)
from faultlens.recovery import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    RecoveryError,
    StateChange,
    is_retryable,
    pipeline,
    retry,
)
from faultlens.testing import FakeClock, capture_events


class Boom(Exception):
    """The failure the tests' dependency raises."""


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """A fake clock installed for the test."""
    with FakeClock() as fake:
        yield fake


class Dependency:
    """A callable that fails while ``failing`` and can take fake time per call."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.failing = False
        self.calls = 0
        self.takes = 0.0
        self.clock = clock
        self.error: Callable[[], BaseException] = lambda: Boom("down")
        self.result: Any = "ok"

    def __call__(self) -> Any:
        self.calls += 1
        if self.clock is not None and self.takes:
            self.clock.advance(self.takes)
        if self.failing:
            raise self.error()
        return self.result


def fail(fn: Callable[[], Any], times: int = 1) -> None:
    """Call ``fn`` ``times`` times, each expected to raise Boom."""
    for _ in range(times):
        with pytest.raises(Boom):
            fn()


def succeed(fn: Callable[[], Any], times: int = 1) -> None:
    """Call ``fn`` ``times`` times, each expected to succeed."""
    for _ in range(times):
        fn()


# -- consecutive failures ------------------------------------------------------------------


def test_opens_after_consecutive_failures_and_rejects(clock: FakeClock) -> None:
    """failure_threshold consecutive failures open the circuit; calls are then rejected unrun."""
    dep = Dependency()
    breaker = CircuitBreaker("db", failure_threshold=3, open_duration=10)
    call = breaker(dep)
    dep.failing = True
    fail(call, 2)
    assert breaker.state == "closed"
    fail(call, 1)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        call()
    assert dep.calls == 3
    assert info.value.breaker == "db"
    assert info.value.retry_after == pytest.approx(10.0)
    assert info.value.retry_at == pytest.approx(clock.time() + 10.0)
    assert info.value.state == "open"
    assert "retry after" in str(info.value)


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    """Failures separated by successes never reach the consecutive threshold."""
    dep = Dependency()
    breaker = CircuitBreaker("db", failure_threshold=3)
    call = breaker(dep)
    for _ in range(5):
        dep.failing = True
        fail(call, 2)
        dep.failing = False
        succeed(call)
    assert breaker.state == "closed"
    metrics = breaker.metrics()
    assert (metrics.successes, metrics.failures, metrics.consecutive_failures) == (5, 10, 0)


def test_failure_threshold_none_never_opens_on_consecutive_failures(clock: FakeClock) -> None:
    """failure_threshold=None without rate thresholds leaves only manual opening."""
    dep = Dependency()
    dep.failing = True
    breaker = CircuitBreaker("db", failure_threshold=None)
    fail(breaker(dep), 50)
    assert breaker.state == "closed"


# -- failure-rate windows ------------------------------------------------------------------


def test_count_window_failure_rate_opens_at_threshold(clock: FakeClock) -> None:
    """The failure rate over the last N calls opens the circuit once it reaches the threshold."""
    dep = Dependency()
    breaker = CircuitBreaker(
        "api", failure_threshold=None, failure_rate_threshold=0.5, window_size=10, minimum_calls=10
    )
    call = breaker(dep)
    succeed(call, 6)
    dep.failing = True
    fail(call, 4)  # 4 of 10
    assert breaker.state == "closed"
    assert breaker.metrics().failure_rate == pytest.approx(0.4)
    fail(call, 1)  # window slides: the oldest success leaves, 5 of 10
    assert breaker.state == "open"
    assert breaker.metrics().times_opened == 1


def test_count_window_forgets_failures_older_than_the_window(clock: FakeClock) -> None:
    """Failures that slid out of the last N calls no longer count."""
    dep = Dependency()
    breaker = CircuitBreaker(
        "api", failure_threshold=None, failure_rate_threshold=0.5, window_size=10, minimum_calls=5
    )
    call = breaker(dep)
    dep.failing = True
    fail(call, 2)
    dep.failing = False
    succeed(call, 20)
    metrics = breaker.metrics()
    assert (metrics.window_calls, metrics.window_failures) == (10, 0)
    dep.failing = True
    fail(call, 4)
    assert breaker.state == "closed"
    assert breaker.metrics().window_failures == 4


def test_a_rate_reached_exactly_opens_despite_float_rounding(clock: FakeClock) -> None:
    """3 failures of 10 reach a 0.3 threshold (0.3 * 10 is 3.0000000000000004 in floats)."""
    dep = Dependency()
    breaker = CircuitBreaker(
        "api", failure_threshold=None, failure_rate_threshold=0.3, window_size=10, minimum_calls=10
    )
    call = breaker(dep)
    succeed(call, 7)
    dep.failing = True
    fail(call, 3)
    assert breaker.state == "open"


def test_minimum_calls_hold_the_rate_until_enough_calls(clock: FakeClock) -> None:
    """Below minimum_calls nothing opens; the success that reaches it evaluates the rate."""
    dep = Dependency()
    breaker = CircuitBreaker(
        "api", failure_threshold=None, failure_rate_threshold=0.5, window_size=100, minimum_calls=10
    )
    call = breaker(dep)
    dep.failing = True
    fail(call, 8)
    assert breaker.state == "closed"
    assert breaker.metrics().failure_rate is None
    dep.failing = False
    succeed(call, 1)
    assert breaker.state == "closed"
    succeed(call, 1)  # 10 calls, 8 failures: 80%
    assert breaker.state == "open"


def test_time_window_counts_only_the_last_seconds(clock: FakeClock) -> None:
    """A time window drops calls older than window_size seconds."""
    dep = Dependency()
    breaker = CircuitBreaker(
        "api",
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window_type="time",
        window_size=timedelta(seconds=10),
        minimum_calls=4,
    )
    call = breaker(dep)
    dep.failing = True
    fail(call, 3)
    clock.advance(11)  # those failures leave the window
    dep.failing = False
    succeed(call, 4)
    metrics = breaker.metrics()
    assert (metrics.window_calls, metrics.window_failures) == (4, 0)
    dep.failing = True
    fail(call, 3)  # 3 of 7
    assert breaker.state == "closed"
    fail(call, 1)  # 4 of 8
    assert breaker.state == "open"


def test_time_window_opens_when_old_successes_expire(clock: FakeClock) -> None:
    """Old successes leaving the window raise the rate: the next call re-evaluates it."""
    dep = Dependency()
    breaker = CircuitBreaker(
        "api",
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window_type="time",
        window_size=10,
        minimum_calls=4,
    )
    call = breaker(dep)
    succeed(call, 20)
    clock.advance(6)
    dep.failing = True
    fail(call, 4)  # 4 of 24
    assert breaker.state == "closed"
    clock.advance(5)  # the 20 successes are older than 10 s now
    dep.failing = False
    succeed(call, 1)  # 4 failures of 5
    assert breaker.state == "open"


def test_slow_call_rate_opens_the_circuit(clock: FakeClock) -> None:
    """Calls slower than slow_call_duration count toward the slow-call rate."""
    dep = Dependency(clock)
    breaker = CircuitBreaker(
        "search",
        failure_threshold=None,
        slow_call_duration=0.5,
        slow_call_rate_threshold=0.5,
        window_size=10,
        minimum_calls=4,
    )
    call = breaker(dep)
    succeed(call, 2)
    dep.takes = 1.0
    succeed(call, 1)
    assert breaker.state == "closed"
    assert breaker.metrics().slow_calls == 1
    succeed(call, 1)  # 2 slow of 4
    assert breaker.state == "open"
    metrics = breaker.metrics()
    assert (metrics.successes, metrics.failures, metrics.slow_calls) == (4, 0, 2)


def test_slow_calls_in_a_time_window(clock: FakeClock) -> None:
    """Slow calls are counted per time bucket like failures."""
    dep = Dependency(clock)
    breaker = CircuitBreaker(
        "search",
        failure_threshold=None,
        slow_call_duration=timedelta(milliseconds=200),
        slow_call_rate_threshold=0.6,
        window_type="time",
        window_size=60,
        minimum_calls=5,
    )
    call = breaker(dep)
    succeed(call, 2)
    dep.takes = 0.3
    succeed(call, 2)
    assert breaker.metrics().window_slow_calls == 2
    succeed(call, 1)  # 3 slow of 5 = 60%
    assert breaker.state == "open"


# -- half-open probes ----------------------------------------------------------------------


def open_breaker(
    clock: FakeClock, **options: Any
) -> tuple[CircuitBreaker, Dependency, Callable[[], Any]]:
    """A breaker opened by three failures of its dependency."""
    dep = Dependency(clock)
    options.setdefault("failure_threshold", 3)
    options.setdefault("open_duration", 10)
    breaker = CircuitBreaker("svc", **options)
    call = breaker(dep)
    dep.failing = True
    fail(call, 3)
    assert breaker.state == "open"
    return breaker, dep, call


def test_half_open_after_open_duration_then_closes_on_success(clock: FakeClock) -> None:
    """After open_duration one probe passes; its success closes the circuit."""
    breaker, dep, call = open_breaker(clock)
    clock.advance(9.9)
    with pytest.raises(CircuitOpenError):
        call()
    clock.advance(0.1)
    assert breaker.state == "half_open"
    dep.failing = False
    assert call() == "ok"
    assert breaker.state == "closed"
    assert breaker.metrics().consecutive_failures == 0


def test_failed_probe_reopens(clock: FakeClock) -> None:
    """A failing probe opens the circuit again for another open_duration."""
    breaker, _dep, call = open_breaker(clock)
    clock.advance(10)
    fail(call)
    assert breaker.state == "open"
    assert breaker.metrics().retry_after == pytest.approx(10.0)


def test_half_open_admits_only_max_calls_concurrent_probes(clock: FakeClock) -> None:
    """half_open_max_calls probes run at once; more are rejected; all must succeed to close."""
    breaker, dep, _call = open_breaker(clock, half_open_max_calls=2)
    dep.failing = False
    clock.advance(10)
    entered: list[str] = []

    def probe(tag: str, then: Callable[[], Any] | None = None) -> str:
        entered.append(tag)
        if then is not None:
            then()
        return tag

    def third() -> None:
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(probe, "third")
        assert info.value.state == "half_open"

    def second() -> None:
        breaker.call(probe, "second", third)
        assert breaker.state == "half_open"  # one success of two

    breaker.call(probe, "first", second)
    assert entered == ["first", "second"]
    assert breaker.state == "closed"


def test_excluded_error_in_a_probe_frees_the_slot(clock: FakeClock) -> None:
    """A probe ending in an error that does not count frees its slot without deciding."""
    breaker, dep, call = open_breaker(clock)
    clock.advance(10)
    dep.error = lambda: ValidationError("bad input")
    with pytest.raises(ValidationError):
        call()
    assert breaker.state == "half_open"
    dep.failing = False
    call()
    assert breaker.state == "closed"


def test_hung_probe_is_failed_after_probe_timeout(clock: FakeClock) -> None:
    """A probe running past probe_timeout counts as failed, so it cannot wedge the breaker."""
    breaker, dep, _call = open_breaker(clock, probe_timeout=5)
    dep.failing = False
    clock.advance(10)
    late: list[Any] = []

    def hung() -> str:
        # While this probe "hangs", other calls arrive.
        with pytest.raises(CircuitOpenError):
            breaker.call(dep)  # the only slot is taken
        clock.advance(5)
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(dep)  # the probe timed out: counted failed, open again
        late.append(info.value.state)
        return "finally"

    assert breaker.call(hung) == "finally"  # its late success is ignored
    assert late == ["open"]
    assert breaker.state == "open"
    metrics = breaker.metrics()
    assert metrics.failures == 4  # 3 + the timed-out probe, not counted twice
    clock.advance(10)
    assert breaker.call(dep) == "ok"
    assert breaker.state == "closed"


def test_probe_slower_than_probe_timeout_counts_as_failed(clock: FakeClock) -> None:
    """A probe that returns after probe_timeout re-opens the circuit."""
    breaker, dep, call = open_breaker(clock, probe_timeout=2)
    dep.failing = False
    dep.takes = 3.0
    clock.advance(10)
    with capture_events("recovery") as events:
        assert call() == "ok"
    assert breaker.state == "open"
    changes = [e.payload for e in events if e.payload["outcome"] == "state_change"]
    assert [(c["to_state"], c["reason"]) for c in changes] == [
        ("half_open", "open_duration_elapsed"),
        ("open", "probe_timeout"),
    ]


def test_state_read_fails_a_hung_probe(clock: FakeClock) -> None:
    """Reading breaker.state applies the probe timeout too."""
    breaker, dep, _call = open_breaker(clock, probe_timeout=1)
    dep.failing = False
    clock.advance(10)
    seen: list[CircuitState] = []

    def hung() -> None:
        clock.advance(1)
        seen.append(breaker.state)

    breaker.call(hung)
    assert seen == [CircuitState.OPEN]


# -- open-duration backoff -----------------------------------------------------------------


def test_open_duration_backs_off_on_repeated_reopens_and_resets_on_close(
    clock: FakeClock,
) -> None:
    """Each failed recovery multiplies the open duration up to the cap; closing resets it."""
    breaker, dep, call = open_breaker(
        clock, open_duration=1, open_duration_max=5, open_duration_multiplier=2
    )
    durations = []
    for _ in range(5):
        durations.append(breaker.metrics().retry_after)
        clock.advance(durations[-1] or 0)
        fail(call)
    assert durations == [1, 2, 4, 5, 5]
    clock.advance(5)
    dep.failing = False
    call()
    dep.failing = True
    fail(call, 3)
    assert breaker.metrics().retry_after == 1


def test_without_a_cap_the_open_duration_is_constant(clock: FakeClock) -> None:
    """Without open_duration_max every re-open lasts open_duration."""
    breaker, _dep, call = open_breaker(clock, open_duration=2)
    for _ in range(3):
        clock.advance(2)
        fail(call)
        assert breaker.metrics().retry_after == 2


# -- manual controls -----------------------------------------------------------------------


def test_force_open_rejects_until_reset(clock: FakeClock) -> None:
    """force_open() rejects every call, never half-opens, and reset() closes it."""
    dep = Dependency()
    breaker = CircuitBreaker("svc", open_duration=1)
    call = breaker(dep)
    breaker.force_open()
    clock.advance(100)
    with pytest.raises(CircuitOpenError) as info:
        call()
    assert (info.value.state, info.value.retry_after, info.value.retry_at) == (
        "forced_open",
        None,
        None,
    )
    assert "reset()" in str(info.value)
    assert breaker.state == "forced_open"
    breaker.reset()
    assert call() == "ok"
    assert dep.calls == 1


def test_force_closed_never_opens_but_counts(clock: FakeClock) -> None:
    """force_closed() lets every call through and keeps counting."""
    dep = Dependency()
    dep.failing = True
    breaker = CircuitBreaker("svc", failure_threshold=2)
    breaker.force_closed()
    fail(breaker(dep), 10)
    assert breaker.state == "forced_closed"
    assert breaker.metrics().failures == 10
    breaker.reset()
    fail(breaker(dep), 2)
    assert breaker.state == "open"


def test_reset_clears_counts_and_backoff(clock: FakeClock) -> None:
    """reset() closes the circuit and forgets consecutive failures and backoff."""
    breaker, _dep, call = open_breaker(clock, open_duration=1, open_duration_max=60)
    clock.advance(1)
    fail(call)
    assert breaker.metrics().retry_after == 2
    breaker.reset()
    assert breaker.state == "closed"
    assert breaker.metrics().consecutive_failures == 0
    fail(call, 3)
    assert breaker.metrics().retry_after == 1


# -- listeners and events ------------------------------------------------------------------


def test_listeners_receive_every_transition_in_order(clock: FakeClock) -> None:
    """Listeners get a StateChange per transition with its reason."""
    changes: list[StateChange] = []
    breaker, dep, call = open_breaker(clock, listeners=[changes.append])
    clock.advance(10)
    dep.failing = False
    call()
    breaker.force_open()
    breaker.force_closed()
    breaker.reset()
    assert [(c.from_state, c.to_state, c.reason) for c in changes] == [
        ("closed", "open", "consecutive_failures"),
        ("open", "half_open", "open_duration_elapsed"),
        ("half_open", "closed", "probes_succeeded"),
        ("closed", "forced_open", "force_open"),
        ("forced_open", "forced_closed", "force_closed"),
        ("forced_closed", "closed", "reset"),
    ]
    first = changes[0]
    assert first.breaker == "svc"
    assert first.retry_after == 10
    assert first.error_type == "test_breaker.Boom"
    assert first.at == clock.time() - 10


def test_a_raising_listener_is_counted_not_propagated(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A listener that raises does not break the call or the other listeners."""
    seen: list[str] = []

    def broken(change: StateChange) -> None:
        raise RuntimeError("listener bug")

    dep = Dependency()
    dep.failing = True
    breaker = CircuitBreaker("svc", failure_threshold=1, listeners=[broken])
    breaker.add_listener(lambda c: seen.append(c.to_state))
    fail(breaker(dep))
    breaker.reset()
    assert seen == ["open", "closed"]
    assert breaker.metrics().listener_errors == 2
    assert counters.get("recovery.breaker_listener_errors") == 2
    assert capsys.readouterr().err.count("faultlens:") == 1  # reported once


def test_remove_listener_stops_notifications(clock: FakeClock) -> None:
    """A removed listener is no longer called."""
    seen: list[StateChange] = []
    breaker = CircuitBreaker("svc", listeners=[seen.append])
    breaker.remove_listener(seen.append)
    breaker.force_open()
    assert seen == []


def test_rejections_and_state_changes_are_recovery_events(clock: FakeClock) -> None:
    """Rejections are rejected_open events; transitions are state_change events."""
    with capture_events("recovery") as events:
        _breaker, _dep, call = open_breaker(clock)
        with pytest.raises(CircuitOpenError):
            call()
    payloads = [e.payload for e in events]
    assert [p["outcome"] for p in payloads] == ["state_change", "rejected_open"]
    change, rejection = payloads
    assert change["policy"] == rejection["policy"] == "circuit_breaker"
    assert change["name"] == rejection["name"] == "svc"
    assert (change["from_state"], change["to_state"]) == ("closed", "open")
    assert change["error_type"] == "test_breaker.Boom"
    assert rejection["retry_after"] == 10
    assert rejection["error_type"] is None
    assert all(e.name == "svc" for e in events)


# -- what counts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ValidationError("bad"),
        NotFoundError("no such order"),
        ConflictError("stale"),
        BusinessRuleError("limit"),
    ],
)
def test_business_errors_do_not_count(clock: FakeClock, error: Exception) -> None:
    """Business errors say the request was wrong, not the dependency: they never open it."""
    dep = Dependency()
    dep.failing = True
    dep.error = lambda: error
    breaker = CircuitBreaker("svc", failure_threshold=1)
    for _ in range(5):
        with pytest.raises(type(error)):
            breaker.call(dep)
    assert breaker.state == "closed"
    assert breaker.metrics().ignored == 5
    assert classify(error).category in {
        "validation",
        "not_found",
        "conflict",
        "business_rule",
    }


def test_transient_errors_count(clock: FakeClock) -> None:
    """faultlens errors of infrastructure categories count."""
    dep = Dependency()
    dep.failing = True
    dep.error = lambda: TransientError("blip")
    breaker = CircuitBreaker("svc", failure_threshold=2)
    for _ in range(2):
        with pytest.raises(TransientError):
            breaker.call(dep)
    assert breaker.state == "open"


def test_cancelled_error_never_counts(clock: FakeClock) -> None:
    """Cancellation is not a failure of the dependency, even when counts says everything is."""
    breaker = CircuitBreaker("svc", failure_threshold=1, counts=lambda exc: True)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    for _ in range(3):
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(breaker.acall(cancelled))
    assert breaker.state == "closed"
    assert breaker.metrics().ignored == 3


def test_counts_by_exception_type(clock: FakeClock) -> None:
    """counts=(types) counts only those exceptions."""
    dep = Dependency()
    dep.failing = True
    dep.error = lambda: KeyError("x")
    breaker = CircuitBreaker("svc", failure_threshold=1, counts=(TimeoutError, ConnectionError))
    with pytest.raises(KeyError):
        breaker.call(dep)
    assert breaker.state == "closed"
    dep.error = ConnectionRefusedError
    with pytest.raises(ConnectionRefusedError):
        breaker.call(dep)
    assert breaker.state == "open"


def test_counts_predicate_that_raises_counts_the_failure(clock: FakeClock) -> None:
    """A broken counts predicate is reported and the error counts."""

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    dep = Dependency()
    dep.failing = True
    breaker = CircuitBreaker("svc", failure_threshold=1, counts=broken)
    fail(breaker(dep))
    assert breaker.state == "open"
    assert counters.get("recovery.breaker_predicate_errors") == 1


def test_failure_result_counts_a_returned_value_but_returns_it(clock: FakeClock) -> None:
    """failure_result marks results as failures; the caller still gets the value."""
    dep = Dependency()
    dep.result = {"status": 503}
    breaker = CircuitBreaker(
        "http", failure_threshold=2, failure_result=lambda r: r["status"] >= 500
    )
    call = breaker(dep)
    assert call() == {"status": 503}
    assert call() == {"status": 503}
    assert breaker.state == "open"
    assert breaker.metrics().failures == 2


def test_failure_result_in_a_probe_reopens(clock: FakeClock) -> None:
    """A probe whose result is a failure re-opens the circuit."""
    breaker, dep, call = open_breaker(clock, failure_result=lambda r: r == "bad")
    dep.failing = False
    dep.result = "bad"
    clock.advance(10)
    assert call() == "bad"
    assert breaker.state == "open"


# -- as a policy -----------------------------------------------------------------------------


def test_async_functions_are_protected(clock: FakeClock) -> None:
    """The decorator keeps coroutine functions async and applies the same rules."""
    breaker = CircuitBreaker("svc", failure_threshold=2, open_duration=5)

    @breaker
    async def fetch(fail_it: bool) -> str:
        await asyncio.sleep(0)
        if fail_it:
            raise Boom("down")
        return "ok"

    assert asyncio.iscoroutinefunction(fetch)

    async def scenario() -> list[str]:
        seen = [await fetch(False)]
        for _ in range(2):
            with pytest.raises(Boom):
                await fetch(True)
        with pytest.raises(CircuitOpenError):
            await fetch(False)
        clock.advance(5)
        seen.append(await fetch(False))
        seen.append(breaker.state)
        return seen

    assert asyncio.run(scenario()) == ["ok", "ok", "closed"]


def test_call_and_acall_run_one_off_calls(clock: FakeClock) -> None:
    """.call and .acall pass arguments through."""
    breaker = CircuitBreaker("svc")

    async def add(a: int, b: int) -> int:
        return a + b

    assert breaker.call(lambda a, b: a * b, 3, b=4) == 12
    assert asyncio.run(breaker.acall(add, 1, b=2)) == 3
    assert breaker.metrics().successes == 2


def test_retry_outside_the_breaker_stops_at_circuit_open(clock: FakeClock) -> None:
    """In pipeline(retry, breaker) the breaker counts each attempt; its rejection ends the retry."""
    dep = Dependency()
    dep.failing = True
    breaker = CircuitBreaker("svc", failure_threshold=3)
    protected = pipeline(retry(attempts=10, on=Boom), breaker)(dep)
    with pytest.raises(CircuitOpenError):
        protected()
    assert dep.calls == 3
    assert breaker.metrics().rejected == 1


def test_circuit_open_error_is_a_load_shedding_recovery_error() -> None:
    """CircuitOpenError is a RecoveryError that retry() never retries, and it pickles."""
    error = CircuitOpenError("db", retry_after=2.5, retry_at=1_700_000_002.5)
    assert isinstance(error, RecoveryError)
    assert not is_retryable(error)
    assert error.policy == "db"
    assert classify(error).code == "circuit_open"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.breaker, copy.retry_after, copy.retry_at) == ("db", 2.5, 1_700_000_002.5)


def test_handle_answers_an_open_circuit_with_503_and_retry_after() -> None:
    """faultlens.handle() maps CircuitOpenError to 503 with a Retry-After header."""
    import faultlens

    response = faultlens.handle(CircuitOpenError("db", retry_after=12.3, retry_at=None))
    assert (response.status, response.code, response.retry_possible) == (503, "circuit_open", True)
    assert response.headers()["Retry-After"] == "13"


def test_breakers_can_be_weakly_referenced() -> None:
    """A registry may hold breakers weakly."""
    import weakref

    breaker = CircuitBreaker("svc")
    assert weakref.ref(breaker)() is breaker


def test_a_call_admitted_before_a_transition_does_not_count_after_it(clock: FakeClock) -> None:
    """A call admitted closed that fails after a transition does not count in the new period."""
    breaker = CircuitBreaker("svc", failure_threshold=1)

    def slow_failure() -> None:
        breaker.force_open()
        breaker.reset()
        raise Boom("late")

    fail(lambda: breaker.call(slow_failure))
    assert breaker.state == "closed"
    assert breaker.metrics().failures == 1


def test_metrics_snapshot(clock: FakeClock) -> None:
    """metrics() reports totals, the window and rates."""
    dep = Dependency()
    breaker = CircuitBreaker(
        "svc", failure_threshold=None, failure_rate_threshold=0.9, window_size=10, minimum_calls=2
    )
    call = breaker(dep)
    succeed(call, 3)
    dep.failing = True
    fail(call, 1)
    metrics = breaker.metrics()
    assert metrics.name == "svc"
    assert metrics.state is CircuitState.CLOSED
    assert (metrics.successes, metrics.failures, metrics.rejected) == (3, 1, 0)
    assert (metrics.window_calls, metrics.window_failures) == (4, 1)
    assert metrics.failure_rate == 0.25
    assert metrics.slow_call_rate is None
    assert metrics.shared is None
    assert metrics.store_available is None


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_rate_threshold": 50}, "fraction"),
        ({"window_type": "calls"}, "window_type"),
        ({"window_size": 0}, "window_size"),
        ({"window_size": 10, "minimum_calls": 11}, "minimum_calls"),
        ({"slow_call_duration": 1.0}, "slow_call_rate_threshold"),
        ({"slow_call_rate_threshold": 0.5}, "slow_call_duration"),
        ({"open_duration": -1}, "open_duration"),
        ({"open_duration": 10, "open_duration_max": 5}, "open_duration_max"),
        ({"open_duration_multiplier": 0.5}, "open_duration_multiplier"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"probe_timeout": timedelta(0)}, "probe_timeout"),
        ({"counts": "OSError"}, "counts"),
        ({"failure_result": 3}, "failure_result"),
        ({"state": object()}, "state store"),
        ({"listeners": [1]}, "callable"),
    ],
)
def test_bad_configuration_is_a_clear_error(options: dict[str, Any], message: str) -> None:
    """Each configuration mistake raises ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match=message):
        CircuitBreaker("svc", **options)


def test_a_name_is_required() -> None:
    """An empty name is refused."""
    with pytest.raises(ConfigurationError, match="name"):
        CircuitBreaker("  ")


def test_times_accept_timedelta(clock: FakeClock) -> None:
    """open_duration as a timedelta works like seconds."""
    breaker, _dep, call = open_breaker(clock, open_duration=timedelta(minutes=1))
    assert breaker.metrics().retry_after == 60
    with pytest.raises(CircuitOpenError):
        call()


def test_repr_names_the_breaker() -> None:
    """The policy repr shows its name."""
    assert repr(CircuitBreaker("payments")) == "<CircuitBreaker 'payments'>"
