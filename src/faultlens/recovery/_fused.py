"""``pipeline(retry(...), CircuitBreaker(...))`` composed into one function.

Nested, a retry around a breaker costs two wrapper frames per call (two
coroutines for async functions), each re-packing the arguments.  The pipeline
composes the pair instead into one function that runs the first attempt with
both policies' success paths written out together:

* breaker admission is the one lock-free read of ``_closed_gen`` (an int while
  closed, ``None`` otherwise);
* a success counts with ``itertools.count.__next__`` and reads ``_dirty``, as
  the breaker's own wrapper does;
* the clock is read once before the call (the retry's start, which its timeout
  is measured from) and, only when somebody records, once after it;
* the recorded event is a lazy :class:`~faultlens.recovery._record.RecoveryEvent`
  whose constant part was built here, once.

Everything else takes the nested path, built here too: a breaker that is not
closed (admission, probes, rejection), and every attempt after a failure (the
retry loop calls the breaker-wrapped function).  The behaviour is therefore the
nested one; ``tests/recovery/test_pipeline.py`` runs the same scenarios both
ways.  Only untimed breakers (no slow-call timing, time window or state store)
and retries without ``attempt_timeout`` are composed; other combinations nest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from faultlens import _clock
from faultlens.events import RECOVERY
from faultlens.recovery._breaker import CircuitBreaker
from faultlens.recovery._policy import as_coroutine_function, callable_name
from faultlens.recovery._record import bus, deliver_success, success_template
from faultlens.recovery._retry import Retry

__all__ = ["can_fuse", "retry_over_breaker", "retry_over_breaker_async"]

P = ParamSpec("P")
R = TypeVar("R")


def can_fuse(outer: object, inner: object) -> bool:
    """Whether ``pipeline(outer, inner)`` composes into one function."""
    return (
        type(outer) is Retry
        and outer._attempt_timeout is None
        and type(inner) is CircuitBreaker
        and not inner._timed
    )


def retry_over_breaker(
    retry: Retry, breaker: CircuitBreaker, inner: Callable[P, R], fn: Callable[..., Any]
) -> Callable[P, R]:
    """``retry(breaker(inner))`` as one function; ``fn`` names the events."""
    label = retry._label or callable_name(fn)
    guarded = breaker.wrap(inner)
    nested = retry._wrap_attempts(guarded, label)  # the breaker is not closed
    retry_sync = retry._retry_sync
    budget = retry.budget
    add = breaker._seq.add
    closed_error = breaker._closed_error
    success_slow = breaker._closed_success_slow
    bad = breaker._failure_result
    clock_module = _clock
    template = success_template(label, "retry", "succeeded_first_time")

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        gen = breaker._closed_gen
        if gen is None:
            return nested(*args, **kwargs)
        clock = clock_module._clock  # read at call time: a test may have installed a fake
        started = clock.monotonic()
        if budget is not None:
            budget.deposit()
        try:
            result = inner(*args, **kwargs)
        except Exception as exc:
            closed_error(gen, exc, None, None)
            return retry_sync(guarded, args, kwargs, exc, started, label, clock)
        except BaseException as exc:  # cancellation: not counted, never retried
            closed_error(gen, exc, None, None)
            raise
        if bad is not None and breaker._is_bad(bad, result):
            breaker._closed_failure(gen, None, None, None)
        else:
            add()
            if breaker._dirty:
                success_slow(gen, None)
        if bus.active:
            subscribers = bus._routes.get(RECOVERY, bus._wildcard)
            if subscribers:
                deliver_success(subscribers, template, started, clock)
        return result

    return retry._with_deadline(run, fn)


def retry_over_breaker_async(
    retry: Retry,
    breaker: CircuitBreaker,
    inner: Callable[P, Awaitable[R]],
    fn: Callable[..., Any],
) -> Callable[P, Awaitable[R]]:
    """``retry(breaker(inner))`` for coroutine functions, as one coroutine function."""
    label = retry._label or callable_name(fn)
    call = as_coroutine_function(inner)
    guarded = breaker.wrap_async(call)
    nested = retry._wrap_attempts_async(guarded, label)
    retry_async = retry._retry_async
    budget = retry.budget
    add = breaker._seq.add
    closed_error = breaker._closed_error
    success_slow = breaker._closed_success_slow
    bad = breaker._failure_result
    clock_module = _clock
    template = success_template(label, "retry", "succeeded_first_time")

    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        gen = breaker._closed_gen
        if gen is None:
            return await nested(*args, **kwargs)
        clock = clock_module._clock
        started = clock.monotonic()
        if budget is not None:
            budget.deposit()
        try:
            result = await call(*args, **kwargs)
        except Exception as exc:
            closed_error(gen, exc, None, None)
            return await retry_async(guarded, args, kwargs, exc, started, label, clock)
        except BaseException as exc:
            closed_error(gen, exc, None, None)
            raise
        if bad is not None and breaker._is_bad(bad, result):
            breaker._closed_failure(gen, None, None, None)
        else:
            add()
            if breaker._dirty:
                success_slow(gen, None)
        if bus.active:
            subscribers = bus._routes.get(RECOVERY, bus._wildcard)
            if subscribers:
                deliver_success(subscribers, template, started, clock)
        return result

    return retry._with_deadline_async(run, fn)
