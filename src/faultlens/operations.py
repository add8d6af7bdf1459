"""Operations: named, timed units of work that nest into a user journey.

``operation("create_client", layer="service")`` works as a decorator on
functions and coroutine functions, and as a ``with`` / ``async with`` block::

    @operation("load_orders", layer="infrastructure", budget_ms=50)
    def load_orders(user_id): ...

    with operation("checkout", layer="service") as op:
        op.annotate(cart_size=3)

Each run logs ``operation started`` (DEBUG), ``operation completed`` with
``duration_ms`` (INFO by default) or ``operation failed`` with the exception
(ERROR; the exception is re-raised unchanged), and a WARNING when it took longer
than its budget.  It knows its parent operation; finished operations are
appended to the correlation's journey (``current_context().journey``).  When
someone subscribes to ``operation`` events, a start and an end event are
published on the event bus; nobody listening costs nothing.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, TypeVar, cast, overload

from faultlens import events
from faultlens.context import JOURNEY_LENGTH, _current, current_operation
from faultlens.errors import ConfigurationError
from faultlens.logs import get_logger

_JOURNEY_TRIM = 2 * JOURNEY_LENGTH

__all__ = ["LAYERS", "Operation", "OperationRun", "current", "operation"]

P = ParamSpec("P")
R = TypeVar("R")

Layer = Literal["api", "service", "core", "infrastructure", "ui", "background"] | str
LAYERS: Final = ("api", "service", "core", "infrastructure", "ui", "background")
"""The built-in layers, outermost first.  Other names are accepted as given."""

_log = get_logger("faultlens.operation")
_std = logging.getLogger("faultlens.operation")
# Logger.isEnabledFor caches its answer per level in `_cache`, a dict that setLevel()
# and logging.disable() clear in place (they never replace it): a cached False settles
# "below the level" with one dict lookup, no call.  Anything else (True, or not cached
# yet) asks isEnabledFor, which also checks `disabled` and fills the cache.
_level_cache: dict[int, bool] = getattr(_std, "_cache", None)  # type: ignore[assignment]
if type(_level_cache) is not dict:  # not CPython's logging: always ask isEnabledFor
    _level_cache = {}
_bus = events.get_bus()
_perf_ns = time.perf_counter_ns
_now = time.time
_op_get = current_operation.get
_op_set = current_operation.set
_op_reset = current_operation.reset
_ctx_get = _current.get
_ids = itertools.count(1)
_process_prefix = os.urandom(3).hex()


def _new_process_prefix() -> None:
    global _process_prefix, _ids
    _process_prefix = os.urandom(3).hex()
    _ids = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process_prefix)

_LOGGED_MARK = "__faultlens_logged__"


class OperationRun:
    """One run of an operation: what :func:`operation` yields in a ``with`` block.

    ``annotate(**fields)`` adds fields to its completion line and event.
    ``parent`` is the enclosing run (or ``None``); ``outcome`` is ``"running"``,
    then ``"ok"``, ``"error"`` or ``"cancelled"``; ``duration_ms`` is set when
    it finishes.
    """

    __slots__ = (
        "_seq",
        "_token",
        "budget_ms",
        "duration_ms",
        "fields",
        "layer",
        "name",
        "operation",
        "outcome",
        "parent",
        "started_ns",
    )

    def __init__(self, op: Operation, parent: OperationRun | None, budget_ms: float | None) -> None:
        self.operation = op
        self.name = op.name
        self.layer = op.layer
        self.budget_ms = budget_ms
        self.fields: dict[str, Any] | None = dict(op.fields) if op.fields else None
        self.parent = parent
        self.outcome = "running"
        self.duration_ms: float | None = None
        self._seq = 0
        self._token: Any = None
        self.started_ns = _perf_ns()

    @property
    def id(self) -> str:
        """An id unique across processes (process prefix + sequence number)."""
        if not self._seq:  # assigned on first use: most runs never need one
            self._seq = next(_ids)
        return f"{_process_prefix}{self._seq:x}"

    @property
    def started_at(self) -> float:
        """Wall-clock start time, seconds since the epoch."""
        return _now() - (_perf_ns() - self.started_ns) / 1e9

    def annotate(self, **fields: Any) -> None:
        """Add fields to this run's completion log line and event."""
        if self.fields is None:
            self.fields = fields
        else:
            self.fields.update(fields)

    def path(self) -> tuple[str, ...]:
        """The names of the enclosing runs and this one, outermost first."""
        names = []
        run: OperationRun | None = self
        while run is not None:
            names.append(run.name)
            run = run.parent
        return tuple(reversed(names))


class _Run(OperationRun):
    """An :class:`OperationRun` built by the hot path, which sets every attribute itself."""

    __slots__ = ()
    # With object.__init__ (a C slot) as its __init__, `_Run()` allocates without a
    # Python call: about half the cost of object.__new__(OperationRun) here.
    __init__ = object.__init__


_new_run = cast("Callable[[], OperationRun]", _Run)


def current() -> OperationRun | None:
    """Return the innermost running operation, or ``None``."""
    run: OperationRun | None = current_operation.get()
    return run


class Operation:
    """A named operation; see :func:`operation`.  Reusable and thread-safe."""

    __slots__ = ("budget_ms", "fields", "layer", "level", "name")

    def __init__(
        self,
        name: str,
        *,
        layer: Layer = "service",
        budget_ms: float | None = None,
        level: int = logging.INFO,
        **fields: Any,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigurationError("an operation needs a non-empty name")
        if budget_ms is not None and budget_ms <= 0:
            raise ConfigurationError(f"budget_ms must be positive, not {budget_ms!r}")
        self.name = name
        self.layer = layer
        self.budget_ms = budget_ms
        self.level = level
        self.fields = fields

    # --- lifecycle --------------------------------------------------------------------
    # _start and _finish are the hot path of every run: they build
    # the run with slot stores instead of a Python __init__, check levels through the
    # logger's cache (one dict lookup), and leave the log lines, the budget warning and
    # the events to _report, which runs only when one of them has something to do.

    def _start(self) -> OperationRun:
        budget = self.budget_ms
        if budget is None:
            ctx = _ctx_get()
            if ctx is not None:
                budgets = ctx.performance_budget
                if budgets:
                    budget = budgets.get(self.name)
        run = _new_run()
        run.operation = self
        run.name = self.name
        run.layer = self.layer
        run.budget_ms = budget
        run.fields = dict(self.fields) if self.fields else None
        run.parent = _op_get()
        run.outcome = "running"
        run.duration_ms = None
        run._seq = 0
        run._token = _op_set(run)
        run.started_ns = _perf_ns()
        if _level_cache.get(logging.DEBUG) is not False and _std.isEnabledFor(logging.DEBUG):
            _log.debug("operation started", operation=self.name, layer=self.layer)
        if _bus.active and _bus.has_subscribers(events.OPERATION):
            events.emit(events.OPERATION, self.name, self._payload(run, "start"))
        return run

    def _finish(self, run: OperationRun, exc: BaseException | None) -> None:
        elapsed_ms = (_perf_ns() - run.started_ns) / 1e6
        run.duration_ms = elapsed_ms
        try:
            _op_reset(run._token)
        except ValueError:  # finished in another context (e.g. a generator moved threads)
            current_operation.set(run.parent)
        if exc is None:
            run.outcome = "ok"
        elif isinstance(exc, Exception):
            run.outcome = "error"
        else:  # CancelledError, KeyboardInterrupt, GeneratorExit
            run.outcome = "cancelled"
        ctx = _ctx_get()
        if ctx is not None:
            steps = ctx.journey_steps
            if steps is not None:
                steps.append(run)  # viewed as JourneyStep by ctx.journey
                if len(steps) > _JOURNEY_TRIM:
                    # Keep the most recent JOURNEY_LENGTH; trimming in batches keeps the
                    # append O(1) amortised (a list is 10x cheaper to create than a deque).
                    del steps[:-JOURNEY_LENGTH]
        budget = run.budget_ms
        if (
            exc is not None
            or (budget is not None and elapsed_ms > budget)
            or _bus.active
            or _level_cache.get(self.level) is not False
        ):
            self._report(run, exc, elapsed_ms)

    def _report(self, run: OperationRun, exc: BaseException | None, elapsed_ms: float) -> None:
        over = run.budget_ms is not None and elapsed_ms > run.budget_ms
        if exc is not None or over or _std.isEnabledFor(self.level):
            self._log(run, exc, elapsed_ms, over)
        if _bus.active and _bus.has_subscribers(events.OPERATION):
            payload = self._payload(run, "end")
            payload["duration_ms"] = round(elapsed_ms, 3)
            payload["outcome"] = run.outcome
            if exc is not None:
                payload["error_type"] = type(exc).__qualname__
            if over:
                payload["over_budget"] = True
            events.emit(events.OPERATION, run.name, payload)

    def _log(
        self, run: OperationRun, exc: BaseException | None, elapsed_ms: float, over: bool
    ) -> None:
        duration = round(elapsed_ms, 3)
        fields = run.fields or {}
        if exc is None:
            if _std.isEnabledFor(self.level):
                _log.log(
                    self.level,
                    "operation completed",
                    operation=run.name,
                    layer=run.layer,
                    duration_ms=duration,
                    **fields,
                )
        elif _std.isEnabledFor(logging.ERROR):
            # The innermost operation logs the stack; the enclosing ones it propagates
            # through only say that they failed, so one error is not logged N times.
            first = not getattr(exc, _LOGGED_MARK, False)
            if first:
                try:
                    setattr(exc, _LOGGED_MARK, True)
                except Exception:  # exceptions with __slots__ cannot carry the mark
                    first = True
            _log.error(
                "operation failed" if run.outcome == "error" else "operation cancelled",
                exc_info=exc if first else None,
                operation=run.name,
                layer=run.layer,
                duration_ms=duration,
                error_type=type(exc).__qualname__,
                **fields,
            )
        if over and _std.isEnabledFor(logging.WARNING):
            _log.warning(
                "operation over budget",
                operation=run.name,
                layer=run.layer,
                duration_ms=duration,
                budget_ms=run.budget_ms,
            )

    @staticmethod
    def _payload(run: OperationRun, phase: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "phase": phase,
            "operation_id": run.id,
            "layer": run.layer,
            "started_at": round(run.started_at, 6),
        }
        if run.parent is not None:
            payload["parent_id"] = run.parent.id
            payload["parent_name"] = run.parent.name
        if run.budget_ms is not None:
            payload["budget_ms"] = run.budget_ms
        if run.fields:
            payload["fields"] = dict(run.fields)
        return payload

    # --- context manager --------------------------------------------------------------

    __enter__ = _start

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run: OperationRun | None = _op_get()
        if run is None or run.operation is not self:
            return
        self._finish(run, exc)

    async def __aenter__(self) -> OperationRun:
        return self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- decorator --------------------------------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function or coroutine function so each call runs as this operation."""
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise ConfigurationError(
                f"operation({self.name!r}) cannot decorate the generator function "
                f"{fn.__qualname__}: its body runs after the call returns; use "
                "`with operation(...)` inside it instead"
            )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                run = self._start()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    self._finish(run, exc)
                    raise
                self._finish(run, None)
                return result

            return run_async

        @functools.wraps(fn)
        def run_sync(*args: P.args, **kwargs: P.kwargs) -> Any:
            run = self._start()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._finish(run, exc)
                raise
            self._finish(run, None)
            return result

        return run_sync


def operation(
    name: str,
    *,
    layer: Layer = "service",
    budget_ms: float | None = None,
    level: int = logging.INFO,
    **fields: Any,
) -> Operation:
    """Track a named unit of work; use as decorator, ``with`` or ``async with``.

    ``layer`` is one of :data:`LAYERS` (or your own name).  ``budget_ms`` (or the
    context's ``performance_budget[name]``) logs a warning when exceeded.
    ``level`` is the level of the completion line.  ``fields`` are added to the
    completion line and event.  The exception of a failed run is re-raised
    unchanged.  The returned object is reusable and safe to share between
    threads and tasks.
    """
    return Operation(name, layer=layer, budget_ms=budget_ms, level=level, **fields)
