"""timeout(): bound how long a call may take, and publish the deadline to callees.

Async calls are truly cancelled (``asyncio.timeout``) when the time is up.  A
synchronous call cannot be interrupted from outside in Python, so the default sync
mode is cooperative: the deadline is put into a contextvar, callees (and nested
policies: retry never sleeps past it) read it through :func:`remaining` /
:func:`deadline`, and when the call returns late the result is discarded and
:class:`PolicyTimeoutError` is raised.  ``sync="thread"`` runs the call in a worker
thread and stops *waiting* for it at the deadline; the worker itself cannot be
killed and runs on to completion (see ``docs/recovery.md``).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Final, Literal, ParamSpec, TypeVar

from faultlens import _clock
from faultlens.context import ContextExecutor
from faultlens.errors import ConfigurationError
from faultlens.recovery._backoff import seconds as _seconds
from faultlens.recovery._errors import PolicyTimeoutError
from faultlens.recovery._policy import Policy, as_coroutine_function, callable_name
from faultlens.recovery._record import bus, record

__all__ = ["Timeout", "deadline", "remaining", "timeout"]

P = ParamSpec("P")
R = TypeVar("R")

_deadline: Final[contextvars.ContextVar[float | None]] = contextvars.ContextVar(
    "faultlens_deadline", default=None
)
_THREAD_WORKERS: Final = 32


def deadline() -> float | None:
    """The current deadline on the faultlens clock's monotonic scale, or ``None``.

    Compare it with ``faultlens._clock.get_clock().monotonic()``; most callers
    want :func:`remaining` instead.
    """
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left before the current deadline (never negative), or ``None`` without one.

    Set by :func:`timeout` (and ``retry(deadline=...)``) for everything the call
    does, including nested policies: pass it on as a driver's or HTTP client's
    timeout so the work below stops when the caller stops waiting.
    """
    limit = _deadline.get()
    if limit is None:
        return None
    return max(0.0, limit - _clock.get_clock().monotonic())


_executor: Executor | None = None
_executor_lock = threading.Lock()


def _shared_executor() -> Executor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ContextExecutor(
                    max_workers=_THREAD_WORKERS, thread_name_prefix="faultlens-timeout"
                )
    return _executor


class Timeout(Policy):
    """Bound a call's duration; see :func:`timeout`."""

    __slots__ = ("_executor", "_label", "name", "seconds", "sync")
    kind = "timeout"

    def __init__(
        self,
        seconds: float | timedelta,
        *,
        sync: Literal["deadline", "thread"] = "deadline",
        executor: Executor | None = None,
        name: str | None = None,
    ) -> None:
        self.seconds = _seconds(seconds, "timeout seconds", allow_zero=False)
        if sync not in ("deadline", "thread"):
            raise ConfigurationError(
                f"timeout sync mode must be 'deadline' or 'thread', not {sync!r}"
            )
        self.sync = sync
        self._executor = executor
        self._label = name
        self.name = name or "timeout"

    def _error(self, label: str) -> PolicyTimeoutError:
        return PolicyTimeoutError(
            f"{label} did not finish within {self.seconds:g} s (timeout policy {self.name!r}); "
            "raise the limit or make the call faster",
            seconds=self.seconds,
            policy=self.name,
        )

    def _timed_out(self, label: str, started: float, now: float) -> PolicyTimeoutError:
        if bus.active:
            record(
                "timeout",
                label,
                1,
                "timed_out",
                0.0,
                (now - started) * 1000.0,
                None,
                {"timeout_s": self.seconds},
            )
        return self._error(label)

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` bounded by this timeout (cooperative deadline or worker thread)."""
        label = self._label or callable_name(fn)
        limit_s = self.seconds
        current = _deadline
        timed_out = self._timed_out

        if self.sync == "thread":
            chosen = self._executor

            def run_in_thread(*args: P.args, **kwargs: P.kwargs) -> R:
                clock = _clock.get_clock()
                started = clock.monotonic()
                own = started + limit_s
                outer = current.get()
                token = current.set(own if outer is None or own < outer else outer)
                try:
                    # The executor copies the context at submit: the worker sees the deadline.
                    future = (chosen or _shared_executor()).submit(fn, *args, **kwargs)
                finally:
                    current.reset(token)
                try:
                    return future.result(timeout=limit_s)
                except FutureTimeout:
                    if future.done():
                        # Finished just now, or the call raised its own TimeoutError:
                        # either way its outcome is the answer.
                        return future.result()
                    future.cancel()  # only stops a call still queued for a worker
                    raise timed_out(label, started, clock.monotonic()) from None

            return run_in_thread

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            clock = _clock.get_clock()
            started = clock.monotonic()
            own = started + limit_s
            outer = current.get()
            token = current.set(own if outer is None or own < outer else outer)
            try:
                result = fn(*args, **kwargs)
            finally:
                current.reset(token)
            now = clock.monotonic()
            if now > own:
                raise timed_out(label, started, now)
            return result

        return run

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Return coroutine function ``fn`` cancelled when this timeout expires."""
        label = self._label or callable_name(fn)
        limit_s = self.seconds
        current = _deadline
        timed_out = self._timed_out
        call = as_coroutine_function(fn)

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            clock = _clock.get_clock()
            started = clock.monotonic()
            own = started + limit_s
            outer = current.get()
            token = current.set(own if outer is None or own < outer else outer)
            try:
                async with asyncio.timeout(limit_s) as scope:
                    result = await call(*args, **kwargs)
            except TimeoutError:
                if scope.expired():
                    raise timed_out(label, started, clock.monotonic()) from None
                raise
            finally:
                current.reset(token)
            now = clock.monotonic()
            if now > own:  # the faultlens clock says so (a FakeClock in tests)
                raise timed_out(label, started, now)
            return result

        return run


def timeout(
    seconds: float | timedelta,
    *,
    sync: Literal["deadline", "thread"] = "deadline",
    executor: Executor | None = None,
    name: str | None = None,
) -> Timeout:
    """Bound a call to ``seconds``; raise :class:`PolicyTimeoutError` when it runs over.

    Async functions are cancelled at the deadline.  Sync functions, by default,
    run with the deadline published to callees (:func:`remaining`) and raise
    :class:`PolicyTimeoutError` if they return late (the late result is
    discarded); with ``sync="thread"`` the call runs in a worker thread of a
    context-carrying pool (``executor`` or a shared one of 32 threads) and the
    caller stops waiting at the deadline, but the worker cannot be stopped: it
    keeps its thread until the call ends, so use it only for calls that finish
    eventually.  Nested timeouts never extend an outer deadline.
    """
    return Timeout(seconds, sync=sync, executor=executor, name=name)
