"""retry(): call again after a transient failure, with backoff, bounded in every way.

What stops retrying, checked after each failed attempt in this order:

1. the error is not retryable (``on``; by default the classification of
   :func:`faultlens.errors.classify`), or it is a load-shedding error of another
   policy (an open circuit, a full bulkhead), or a cancellation;
2. the attempts are used up;
3. the next wait would end past the total ``timeout`` or past the deadline in
   the context (set by :func:`faultlens.recovery.timeout`): it stops *now*
   rather than sleep into a deadline it cannot meet;
4. the retry budget is spent (an outage must not multiply the load).

The success path reads the clock once and checks one attribute (``bus.active``)
to know whether to record; everything else was computed at decoration time.
"""

from __future__ import annotations

import functools
import random as _random
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import CancelledError as FutureCancelledError
from datetime import timedelta
from typing import Any, Final, Literal, ParamSpec, TypeAlias, TypeVar

from faultlens import _clock
from faultlens._clock import Clock
from faultlens.errors import ConfigurationError
from faultlens.events import RECOVERY
from faultlens.recovery import _backoff
from faultlens.recovery._backoff import Backoff, Jitter, RandomSource, retry_after_hint
from faultlens.recovery._backoff import seconds as _seconds
from faultlens.recovery._errors import RecoveryError, RetryExhaustedError
from faultlens.recovery._policy import Policy, as_coroutine_function, callable_name
from faultlens.recovery._record import bus, deliver_success, record, success_template
from faultlens.recovery._timeout import Timeout, _deadline

__all__ = ["Retry", "RetryBudget", "is_retryable", "retry"]

P = ParamSpec("P")
R = TypeVar("R")

RetryOn: TypeAlias = (
    type[BaseException]
    | tuple[type[BaseException], ...]
    | Callable[[BaseException], "bool | float | timedelta"]
)
"""Exception class(es) to retry, or a predicate (``True``: retry; a number or
timedelta: retry after that custom delay; ``False``: give up)."""

# A tuple, not `int | float | timedelta`: isinstance with a union builds nothing, but
# the union expression itself is built on every evaluation.
_DELAY_TYPES: Final = (int, float, timedelta)
# Errors the inline `on=` check leaves to the full predicate: another policy's
# load-shedding error, and concurrent.futures cancellation (an Exception).
_SPECIAL: Final = (RecoveryError, FutureCancelledError)

Reason = Literal["not_retryable", "attempts", "timeout", "deadline", "budget"]

_REASONS: Final = {
    "not_retryable": "the error is not retryable",
    "attempts": "attempts used up",
    "timeout": "the retry timeout would be exceeded",
    "deadline": "the deadline would be exceeded",
    "budget": "the retry budget is spent",
}


# --- what is retryable ----------------------------------------------------------------


def _sheds_load(exc: BaseException) -> bool:
    # Errors policies raise to protect a dependency (open circuit, full bulkhead):
    # retrying them defeats their purpose.  The breaker's CircuitOpenError is
    # recognised by name too, so this module needs no import of it.
    if not isinstance(exc, RecoveryError):
        return False
    if exc.sheds_load:
        return True
    return any(cls.__name__ == "CircuitOpenError" for cls in type(exc).__mro__)


def is_retryable(exc: BaseException) -> bool:
    """The default retry decision: is ``exc`` a transient failure worth another try?

    Never for load-shedding errors of other policies (open circuit, full
    bulkhead) nor for cancellation.  Otherwise the answer of
    ``faultlens.errors.classify(exc).retryable``; where classification is not
    available, connection errors and timeouts are retryable.
    """
    if not isinstance(exc, Exception) or isinstance(exc, FutureCancelledError):
        return False
    if _sheds_load(exc):
        return False
    from faultlens import errors

    classify = getattr(errors, "classify", None)
    if classify is not None:
        try:
            return bool(classify(exc).retryable)
        except Exception:  # a broken rule must not turn a failure into a crash
            pass
    return isinstance(exc, (ConnectionError, TimeoutError))


def _predicate(on: RetryOn | None) -> Callable[[BaseException], bool | float | timedelta]:
    if on is None:
        return is_retryable
    if isinstance(on, type):
        on = (on,)
    if isinstance(on, tuple):
        if not on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
            raise ConfigurationError(
                "retry(on=...) takes an exception class, a tuple of them or a predicate"
            )
        types = on
        # Load-shedding errors are retried only when `on` names them explicitly.
        names_recovery = any(issubclass(t, RecoveryError) for t in types)

        def matches(exc: BaseException) -> bool:
            if not isinstance(exc, types):
                return False
            if isinstance(exc, RecoveryError) and _sheds_load(exc):
                return names_recovery and any(
                    issubclass(t, RecoveryError) and isinstance(exc, t) for t in types
                )
            return True

        return matches
    if callable(on):
        return on
    raise ConfigurationError(
        f"retry(on=...) takes an exception class, a tuple of them or a predicate, not {on!r}"
    )


# --- retry budget -----------------------------------------------------------------------


class RetryBudget:
    """Caps retries at a share of recent calls, plus a floor per second.

    Every call deposits; every retry withdraws.  Over a sliding ``window`` (seconds),
    retries may be at most ``ratio * calls + min_per_second * window``, so a
    dependency that is down sees at most ``1 + ratio`` times its normal load (plus
    the floor), not ``attempts`` times.  One budget is created per retry policy
    (``retry(budget=True)``); pass the same instance to several policies to share
    it.  Thread-safe: deposits are a lock-free counter increment (a lost update
    under contention only makes the budget slightly stricter); withdrawals take a
    lock, on the failure path only.
    """

    __slots__ = (
        "_calls",
        "_lock",
        "_previous_calls",
        "_previous_retries",
        "_retries",
        "_window_start",
        "min_per_second",
        "ratio",
        "window",
    )

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        window: float | timedelta = 10.0,
    ) -> None:
        if not isinstance(ratio, int | float) or not 0 <= ratio <= 10:
            raise ConfigurationError(f"RetryBudget ratio must be between 0 and 10, got {ratio!r}")
        if not isinstance(min_per_second, int | float) or min_per_second < 0:
            raise ConfigurationError(
                f"RetryBudget min_per_second must be >= 0, got {min_per_second!r}"
            )
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.window = _seconds(window, "RetryBudget window", allow_zero=False)
        self._lock = threading.Lock()
        self._calls = 0
        self._retries = 0
        self._previous_calls = 0.0
        self._previous_retries = 0.0
        self._window_start: float | None = None

    def deposit(self) -> None:
        """Count one call (every call, successful or not)."""
        self._calls += 1

    def withdraw(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        now = _clock.get_clock().monotonic()
        with self._lock:
            start = self._window_start
            if start is None:
                self._window_start = start = now
            elapsed = now - start
            if elapsed >= self.window:
                # Calls are counted without a timestamp (cheap): they are taken as
                # evenly spread since the window started, so a long quiet period does
                # not bank an unbounded number of retries.
                # Retries are counted when they happen, so they are exact: after a
                # gap of two windows or more, none of them is recent.
                self._previous_calls = self._calls * (self.window / elapsed)
                self._previous_retries = self._retries if elapsed < 2 * self.window else 0.0
                self._calls = 0
                self._retries = 0
                self._window_start = start = now
                elapsed = 0.0
            weight = 1.0 - elapsed / self.window
            calls = self._calls + self._previous_calls * weight
            retries = self._retries + self._previous_retries * weight
            allowed = self.ratio * calls + self.min_per_second * self.window
            if retries + 1 > allowed:
                return False
            self._retries += 1
            return True

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, min_per_second={self.min_per_second}, "
            f"window={self.window})"
        )


# --- the policy ---------------------------------------------------------------------------


class Retry(Policy):
    """Retry transient failures with backoff; see :func:`retry`."""

    __slots__ = (
        "_attempt_timeout",
        "_deadline_policy",
        "_label",
        "_no_backoff",
        "_on",
        "_random",
        "_types",
        "attempts",
        "backoff",
        "budget",
        "name",
        "raise_exhausted",
        "timeout",
    )
    kind = "retry"

    def __init__(
        self,
        *,
        on: RetryOn | None = None,
        attempts: int | None = 10,
        timeout: float | timedelta | None = 45.0,
        deadline: float | timedelta | None = None,
        backoff: Backoff | None = None,
        attempt_timeout: float | timedelta | None = None,
        budget: RetryBudget | bool | None = None,
        raise_exhausted: bool = False,
        name: str | None = None,
        random: RandomSource | None = None,
    ) -> None:
        if attempts is not None and (
            not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1
        ):
            raise ConfigurationError(
                f"retry attempts must be an int >= 1 or None, got {attempts!r}"
            )
        if attempts is None and timeout is None and deadline is None:
            raise ConfigurationError(
                "retry needs a bound: set attempts, timeout or deadline (all None retries forever)"
            )
        self._on = _predicate(on)
        # `on=` as plain exception classes: the failure path tests them inline
        # (errors of other policies and cancellation still go through _on).
        self._types = (on,) if isinstance(on, type) else on if isinstance(on, tuple) else None
        self.attempts = attempts
        self.timeout = None if timeout is None else _seconds(timeout, "retry timeout")
        self.backoff = backoff or Backoff()
        self._no_backoff = self.backoff.maximum == 0
        # Unnamed, the inner timeouts name their events after the function, as retry does.
        self._attempt_timeout = (
            None
            if attempt_timeout is None
            else Timeout(attempt_timeout, name=name and f"{name}.attempt_timeout")
        )
        self._deadline_policy = (
            None if deadline is None else Timeout(deadline, name=name and f"{name}.deadline")
        )
        if budget is True:
            budget = RetryBudget()
        elif budget is False:
            budget = None
        elif budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigurationError(
                f"retry budget must be a RetryBudget, True or None, not {budget!r}"
            )
        self.budget = budget
        self.raise_exhausted = bool(raise_exhausted)
        self._label = name
        self.name = name or "retry"
        self._random = random or _random.random

    # The decision after a failed attempt: the delay before the next one, or why not.
    # Written out flat (no helper calls on the usual path): it runs once per retry.
    def _next_delay(
        self, exc: Exception, attempt: int, now: float, started: float, previous: float
    ) -> float | Reason:
        custom: float | None = None
        types = self._types
        if types is not None and not isinstance(exc, _SPECIAL):
            if not isinstance(exc, types):
                return "not_retryable"
        else:
            if isinstance(exc, FutureCancelledError):  # an Exception, unlike asyncio's
                return "not_retryable"
            verdict = self._on(exc)
            if verdict is True:
                pass
            elif isinstance(verdict, _DELAY_TYPES) and not isinstance(verdict, bool):
                custom = _seconds(verdict, "the delay returned by retry(on=...)")
            elif not verdict:
                return "not_retryable"
        max_attempts = self.attempts
        testing = _backoff.testing
        if testing.active and testing.max_attempts is not None:
            max_attempts = (
                testing.max_attempts
                if max_attempts is None
                else min(max_attempts, testing.max_attempts)
            )
        if max_attempts is not None and attempt >= max_attempts:
            return "attempts"
        if custom is not None:  # the predicate's delay replaces the backoff
            delay = custom
        elif self._no_backoff:
            delay = 0.0
        else:
            delay = self.backoff.delay(attempt, previous, self._random)
        try:  # most errors carry no hint: skip the parser for them
            hinted = (
                getattr(exc, "retry_after", None) is not None
                or getattr(exc, "response", None) is not None
            )
        except Exception:  # a hostile attribute: retry_after_hint ignores it too
            hinted = False
        if hinted:
            hint = retry_after_hint(exc)
            if hint is not None and hint > delay:
                delay = hint
        if testing.active:
            delay = 0.0
        if self.timeout is not None and (now - started) + delay > self.timeout:
            return "timeout"
        limit = _deadline.get()
        if limit is not None and now + delay >= limit:
            return "deadline"
        if self.budget is not None and not self.budget.withdraw():
            return "budget"
        return delay

    def _give_up(self, exc: Exception, attempt: int, reason: Reason, label: str) -> BaseException:
        if reason == "not_retryable" and attempt == 1:
            return exc  # never retried: the error passes through untouched
        text = (
            f"faultlens retry {label!r} gave up after {attempt} attempt"
            f"{'s' if attempt != 1 else ''}: {_REASONS[reason]}"
        )
        if self.raise_exhausted:
            error = RetryExhaustedError(
                f"{text} (last error: {type(exc).__name__}); the dependency stayed down, "
                "answer 'try again later' or raise the retry limits",
                attempts=attempt,
                policy=self.name,
            )
            error.__cause__ = exc
            return error
        try:
            exc.add_note(text)
            exc.faultlens_attempts = attempt  # type: ignore[attr-defined]
        except Exception:  # exceptions with __slots__ or a frozen __dict__
            pass
        return exc

    def _retry_sync(  # noqa: PLR0915, PLR0917 (flat on purpose: the retry loop)
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: Exception,
        started: float,
        label: str,
        clock: Clock,
    ) -> R:
        attempt = 1
        attempt_started = started
        previous = 0.0
        types = self._types
        testing = _backoff.testing
        # The common decision (plain exception classes in `on=`, no budget, no
        # testing switch) is written out here, flat; _next_delay is the full one.
        quick = types is not None and self.budget is None
        no_backoff = self._no_backoff
        timeout = self.timeout
        attempts = self.attempts
        decision: float | Reason
        while True:
            now = clock.monotonic()
            if quick and not testing.active and not isinstance(exc, _SPECIAL):
                if not isinstance(exc, types):  # type: ignore[arg-type]
                    decision = "not_retryable"
                elif attempts is not None and attempt >= attempts:
                    decision = "attempts"
                else:
                    decision = (
                        0.0 if no_backoff else self.backoff.delay(attempt, previous, self._random)
                    )
                    try:  # most errors carry no hint: skip the parser for them
                        hinted = (
                            getattr(exc, "retry_after", None) is not None
                            or getattr(exc, "response", None) is not None
                        )
                    except Exception:
                        hinted = False
                    if hinted:
                        hint = retry_after_hint(exc)
                        if hint is not None and hint > decision:
                            decision = hint
                    if timeout is not None and (now - started) + decision > timeout:
                        decision = "timeout"
                    else:
                        limit = _deadline.get()
                        if limit is not None and now + decision >= limit:
                            decision = "deadline"
            else:
                decision = self._next_delay(exc, attempt, now, started, previous)
            if bus.active:
                self._record_failure(label, attempt, decision, now - attempt_started, exc)
            if not isinstance(decision, float):
                raise self._give_up(exc, attempt, decision, label)
            if decision > 0:
                clock.sleep(decision)
                attempt_started = clock.monotonic()
            else:
                attempt_started = now  # no wait: the next attempt starts now
            previous = decision
            attempt += 1
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                exc = error
                continue
            # The last error's traceback holds this frame, which holds the error:
            # drop it, so a retried call leaves no reference cycle for the GC.
            del exc
            if bus.active:
                record(
                    "retry",
                    label,
                    attempt,
                    "succeeded_after_retry",
                    0.0,
                    (clock.monotonic() - attempt_started) * 1000.0,
                )
            return result

    async def _retry_async(  # noqa: PLR0915, PLR0917
        self,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: Exception,
        started: float,
        label: str,
        clock: Clock,
    ) -> R:
        attempt = 1
        attempt_started = started
        previous = 0.0
        types = self._types
        testing = _backoff.testing
        # The common decision (plain exception classes in `on=`, no budget, no
        # testing switch) is written out here, flat; _next_delay is the full one.
        quick = types is not None and self.budget is None
        no_backoff = self._no_backoff
        timeout = self.timeout
        attempts = self.attempts
        decision: float | Reason
        while True:
            now = clock.monotonic()
            if quick and not testing.active and not isinstance(exc, _SPECIAL):
                if not isinstance(exc, types):  # type: ignore[arg-type]
                    decision = "not_retryable"
                elif attempts is not None and attempt >= attempts:
                    decision = "attempts"
                else:
                    decision = (
                        0.0 if no_backoff else self.backoff.delay(attempt, previous, self._random)
                    )
                    try:  # most errors carry no hint: skip the parser for them
                        hinted = (
                            getattr(exc, "retry_after", None) is not None
                            or getattr(exc, "response", None) is not None
                        )
                    except Exception:
                        hinted = False
                    if hinted:
                        hint = retry_after_hint(exc)
                        if hint is not None and hint > decision:
                            decision = hint
                    if timeout is not None and (now - started) + decision > timeout:
                        decision = "timeout"
                    else:
                        limit = _deadline.get()
                        if limit is not None and now + decision >= limit:
                            decision = "deadline"
            else:
                decision = self._next_delay(exc, attempt, now, started, previous)
            if bus.active:
                self._record_failure(label, attempt, decision, now - attempt_started, exc)
            if not isinstance(decision, float):
                raise self._give_up(exc, attempt, decision, label)
            if decision > 0:
                await clock.asleep(decision)
                attempt_started = clock.monotonic()
            else:
                attempt_started = now  # no wait: the next attempt starts now
            previous = decision
            attempt += 1
            try:
                result = await fn(*args, **kwargs)
            except Exception as error:
                exc = error
                continue
            del exc  # no reference cycle through the traceback (see _retry_sync)
            if bus.active:
                record(
                    "retry",
                    label,
                    attempt,
                    "succeeded_after_retry",
                    0.0,
                    (clock.monotonic() - attempt_started) * 1000.0,
                )
            return result

    def _record_failure(
        self, label: str, attempt: int, decision: float | Reason, took: float, exc: Exception
    ) -> None:
        if isinstance(decision, float):
            record("retry", label, attempt, "retrying", decision, took * 1000.0, exc)
        else:
            record(
                "retry",
                label,
                attempt,
                "failed_after_retry",
                0.0,
                took * 1000.0,
                exc,
                {"reason": decision},
            )

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` retried by this policy."""
        label = self._label or callable_name(fn)
        call = fn if self._attempt_timeout is None else self._attempt_timeout.wrap(fn)
        return self._with_deadline(self._wrap_attempts(call, label), fn)

    def _with_deadline(self, run: Callable[P, R], fn: Callable[..., Any]) -> Callable[P, R]:
        if self._deadline_policy is None:
            return run
        functools.update_wrapper(run, fn)  # the deadline's events name the function
        return self._deadline_policy.wrap(run)

    def _wrap_attempts(self, call: Callable[P, R], label: str) -> Callable[P, R]:
        """``call`` retried, without the ``deadline`` (which goes around it)."""
        retry_sync = self._retry_sync
        budget = self.budget
        clock_module = _clock
        template = success_template(label, "retry", "succeeded_first_time")

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            clock = clock_module._clock  # read at call time: a test may have installed a fake
            started = clock.monotonic()
            if budget is not None:
                budget.deposit()
            try:
                result = call(*args, **kwargs)
            except Exception as exc:  # cancellation (BaseException) is never caught
                return retry_sync(call, args, kwargs, exc, started, label, clock)
            if bus.active:
                subscribers = bus._routes.get(RECOVERY, bus._wildcard)
                if subscribers:
                    deliver_success(subscribers, template, started, clock)
            return result

        return run

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Return coroutine function ``fn`` retried by this policy."""
        label = self._label or callable_name(fn)
        call = (
            as_coroutine_function(fn)
            if self._attempt_timeout is None
            else self._attempt_timeout.wrap_async(fn)
        )
        return self._with_deadline_async(self._wrap_attempts_async(call, label), fn)

    def _with_deadline_async(
        self, run: Callable[P, Awaitable[R]], fn: Callable[..., Any]
    ) -> Callable[P, Awaitable[R]]:
        if self._deadline_policy is None:
            return run
        functools.update_wrapper(run, fn)  # the deadline's events name the function
        return self._deadline_policy.wrap_async(run)

    def _wrap_attempts_async(
        self, call: Callable[P, Awaitable[R]], label: str
    ) -> Callable[P, Awaitable[R]]:
        """Coroutine function ``call`` retried, without the ``deadline``."""
        retry_async = self._retry_async
        budget = self.budget
        clock_module = _clock
        template = success_template(label, "retry", "succeeded_first_time")

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            clock = clock_module._clock
            started = clock.monotonic()
            if budget is not None:
                budget.deposit()
            try:
                result = await call(*args, **kwargs)
            except Exception as exc:
                return await retry_async(call, args, kwargs, exc, started, label, clock)
            if bus.active:
                subscribers = bus._routes.get(RECOVERY, bus._wildcard)
                if subscribers:
                    deliver_success(subscribers, template, started, clock)
            return result

        return run


def retry(
    *,
    on: RetryOn | None = None,
    attempts: int | None = 10,
    timeout: float | timedelta | None = 45.0,
    deadline: float | timedelta | None = None,
    wait_initial: float | timedelta = 0.1,
    wait_max: float | timedelta = 5.0,
    wait_exp_base: float = 2.0,
    jitter: Jitter | None = "full",
    attempt_timeout: float | timedelta | None = None,
    budget: RetryBudget | bool | None = None,
    raise_exhausted: bool = False,
    name: str | None = None,
    random: RandomSource | None = None,
) -> Retry:
    """Retry a call on transient failures, with exponential backoff and jitter.

    ``on``: exception class(es) to retry, or a predicate ``exc -> bool`` (it may
    also return a float/timedelta: retry after that delay).  By default, what
    :func:`faultlens.errors.classify` calls retryable.  Load-shedding errors of
    other policies (open circuit, full bulkhead) are never retried unless ``on``
    names them; cancellation (``asyncio.CancelledError``, ``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit``) never is.

    Stops after ``attempts`` calls (``None``: no limit), before a wait that would
    end past ``timeout`` seconds since the first attempt (``None``: no limit), and
    before a wait that would cross the deadline in the context (see
    :func:`timeout`).  ``deadline`` bounds the whole call like an outer
    ``timeout(deadline)``: it is published to callees and async attempts are
    cancelled at it.  ``attempt_timeout`` bounds each attempt like an inner
    ``timeout()`` (async: cancelled; sync: cooperative, see :func:`timeout`).

    Waits: ``wait_initial * wait_exp_base ** (attempt - 1)``, at most
    ``wait_max``, jittered (``"full"``, ``"equal"``, ``"decorrelated"`` or
    ``None``); a longer ``Retry-After`` from the error wins (see
    :func:`~faultlens.recovery.retry_after_hint`).  A zero wait does not sleep.
    ``random`` replaces the random source (``random.random``).

    ``budget=True`` (or a shared :class:`RetryBudget`) caps retries at 20 % of
    recent calls plus 10 per second, so an outage does not multiply the load.

    When it gives up, the last error is re-raised with a note saying how many
    attempts were made (and ``exc.faultlens_attempts``); with
    ``raise_exhausted=True`` a :class:`RetryExhaustedError` is raised instead,
    the last error as its ``__cause__``.  An error that is not retryable passes
    through at once, untouched.

    ``name`` names the events (default: the decorated function's qualified name).
    """
    return Retry(
        on=on,
        attempts=attempts,
        timeout=timeout,
        deadline=deadline,
        backoff=Backoff(
            _seconds(wait_initial, "wait_initial"),
            _seconds(wait_max, "wait_max"),
            wait_exp_base,
            jitter,
        ),
        attempt_timeout=attempt_timeout,
        budget=budget,
        raise_exhausted=raise_exhausted,
        name=name,
        random=random,
    )
