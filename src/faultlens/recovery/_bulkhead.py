"""bulkhead(): cap how many calls run at once against one dependency.

A slow dependency must not take every thread or task of the application with it.
A bulkhead admits ``max_concurrent`` calls; up to ``max_queue`` more wait (at most
``queue_timeout`` seconds) for a slot, first come first served; the rest are
rejected at once with :class:`BulkheadFullError`.

One bulkhead is one capacity for the whole process: threads and asyncio tasks of
*any* event loop share it, because the dependency it protects does not care which
loop a call comes from.  So it is not an ``asyncio.Semaphore`` (bound to the loop
that first used it): the count lives behind a ``threading.Lock`` held for a few
instructions, and a released slot is handed straight to the oldest waiter, waking
a thread through its ``threading.Event`` or a task through its loop
(``call_soon_threadsafe``).  Queued waits use real time (threads and event loops
wait on the OS clock), not the faultlens clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from faultlens import _clock
from faultlens.errors import ConfigurationError
from faultlens.recovery._backoff import seconds as _seconds
from faultlens.recovery._errors import BulkheadFullError
from faultlens.recovery._policy import Policy, as_coroutine_function, callable_name
from faultlens.recovery._record import bus, record
from faultlens.recovery._timeout import _deadline

__all__ = ["Bulkhead", "bulkhead"]

P = ParamSpec("P")
R = TypeVar("R")


class _ThreadWaiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.granted = False

    def grant(self) -> bool:
        self.granted = True
        self.event.set()
        return True


class _TaskWaiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False

    def grant(self) -> bool:
        if self.future.done():  # cancelled while queued
            return False
        try:
            self.loop.call_soon_threadsafe(_wake, self.future)
        except RuntimeError:  # its loop is closed: the waiter is gone
            return False
        self.granted = True
        return True


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_Waiter = _ThreadWaiter | _TaskWaiter


class Bulkhead(Policy):
    """Limit concurrent calls; see :func:`bulkhead`."""

    __slots__ = (
        "_active",
        "_label",
        "_lock",
        "_waiters",
        "max_concurrent",
        "max_queue",
        "name",
        "queue_timeout",
    )
    kind = "bulkhead"

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = 0,
        queue_timeout: float | timedelta | None = None,
        name: str | None = None,
    ) -> None:
        for what, value, least in (
            ("max_concurrent", max_concurrent, 1),
            ("max_queue", max_queue, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigurationError(
                    f"bulkhead {what} must be an int >= {least}, got {value!r}"
                )
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout = (
            None if queue_timeout is None else _seconds(queue_timeout, "bulkhead queue_timeout")
        )
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[_Waiter] = deque()
        self._label = name
        self.name = name or "bulkhead"

    # --- state, for dashboards and tests ---------------------------------------------

    @property
    def active(self) -> int:
        """Calls running now."""
        return self._active

    @property
    def queued(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._waiters)

    # --- slots ----------------------------------------------------------------------

    def _reject(self, label: str, waited: float = 0.0) -> BulkheadFullError:
        if bus.active:
            record(
                "bulkhead",
                label,
                1,
                "rejected_full",
                0.0,
                waited * 1000.0,
                None,
                {"max_concurrent": self.max_concurrent, "max_queue": self.max_queue},
            )
        return BulkheadFullError(
            f"bulkhead {self.name!r} is full ({self.max_concurrent} running, "
            f"{self.max_queue} queued): {label} was rejected; answer 'try again later' "
            "or raise max_concurrent/max_queue if the dependency can take more",
            policy=self.name,
        )

    def _release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        waiters = self._waiters
        while waiters:
            if waiters.popleft().grant():
                return  # the slot passes to the waiter: the count stays
        self._active -= 1

    def _wait_budget(self) -> float | None:
        # A queued call never waits past the deadline of an enclosing timeout().
        wait = self.queue_timeout
        limit = _deadline.get()
        if limit is not None:
            left = max(0.0, limit - _clock.get_clock().monotonic())
            wait = left if wait is None else min(wait, left)
        return wait

    def _acquire_sync(self, label: str) -> None:
        with self._lock:
            if self._active < self.max_concurrent:
                self._active += 1
                return
            if len(self._waiters) >= self.max_queue:
                raise self._reject(label)
            waiter = _ThreadWaiter()
            self._waiters.append(waiter)
        wait = self._wait_budget()
        if waiter.event.wait(wait):
            return
        with self._lock:
            if waiter.granted:  # granted between the timeout and the lock
                return
            self._waiters.remove(waiter)
        raise self._reject(label, wait or 0.0)

    async def _acquire_async(self, label: str) -> None:
        with self._lock:
            if self._active < self.max_concurrent:
                self._active += 1
                return
            if len(self._waiters) >= self.max_queue:
                raise self._reject(label)
            waiter = _TaskWaiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        wait = self._wait_budget()
        try:
            async with asyncio.timeout(wait):
                await waiter.future
        except BaseException as exc:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # the slot arrived as we gave up: pass it on
                self._release()
            if isinstance(exc, TimeoutError):
                raise self._reject(label, wait or 0.0) from None
            raise

    # --- wrapping ----------------------------------------------------------------------

    # The wrappers take a free slot inline (one lock round trip, no call) and leave
    # the queueing to _acquire_*, which checks again under the lock.  Whenever a call
    # waits, every slot is taken (a release hands its slot over instead of freeing
    # it), so the inline check never jumps the queue.

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` admitted through this bulkhead."""
        label = self._label or callable_name(fn)
        bulkhead, lock, limit, waiters = self, self._lock, self.max_concurrent, self._waiters
        acquire = self._acquire_sync
        release_locked = self._release_locked

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with lock:
                admitted = bulkhead._active < limit
                if admitted:
                    bulkhead._active += 1
            if not admitted:
                acquire(label)
            try:
                return fn(*args, **kwargs)
            finally:
                with lock:
                    if waiters:
                        release_locked()
                    else:
                        bulkhead._active -= 1

        return run

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Return coroutine function ``fn`` admitted through this bulkhead."""
        label = self._label or callable_name(fn)
        bulkhead, lock, limit, waiters = self, self._lock, self.max_concurrent, self._waiters
        acquire = self._acquire_async
        release_locked = self._release_locked
        call = as_coroutine_function(fn)

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with lock:
                admitted = bulkhead._active < limit
                if admitted:
                    bulkhead._active += 1
            if not admitted:
                await acquire(label)
            try:
                return await call(*args, **kwargs)
            finally:
                with lock:
                    if waiters:
                        release_locked()
                    else:
                        bulkhead._active -= 1

        return run


def bulkhead(
    max_concurrent: int,
    *,
    max_queue: int = 0,
    queue_timeout: float | timedelta | None = None,
    name: str | None = None,
) -> Bulkhead:
    """Admit at most ``max_concurrent`` calls at once; queue ``max_queue`` more.

    A queued call waits at most ``queue_timeout`` seconds (``None``: until a slot
    frees or the deadline of an enclosing :func:`timeout` passes); a call that
    finds no slot and no room in the queue, or waits too long, raises
    :class:`BulkheadFullError` (recorded as ``rejected_full``).  One bulkhead is
    one capacity shared by every thread and every event loop of the process.
    """
    return Bulkhead(max_concurrent, max_queue=max_queue, queue_timeout=queue_timeout, name=name)
