"""fallback(): answer with something less good instead of failing.

On a matching failure the alternatives in ``chain`` are tried in order, each with
the original arguments (a cache, a replica, a static default…); if none succeeds
(or there is none), ``value`` answers: a constant, or a callable receiving the
exception.  A result served this way is *degraded*: the current context gets
``degraded=True`` (see :func:`faultlens.bind`) and the ``fell_back`` event says
which alternative answered, so a degraded answer is never mistaken for a good one.
When nothing answers, the original error propagates, with a note per failed
alternative.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, ParamSpec, TypeVar, cast

from faultlens import _clock
from faultlens.context import _current, bind
from faultlens.errors import ConfigurationError
from faultlens.recovery._policy import Policy, as_coroutine_function, callable_name
from faultlens.recovery._record import bus, record

__all__ = ["Fallback", "fallback"]

P = ParamSpec("P")
R = TypeVar("R")

_MISSING: Final[Any] = object()

FallbackOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def _mark_degraded() -> None:
    # Only inside a scope: bind() outside one would start a root context that is
    # never reset, leaking into unrelated work on this thread.
    ctx = _current.get()
    if ctx is not None and ctx.fields.get("degraded") is not True:
        bind(degraded=True)


class Fallback(Policy):
    """Serve an alternative result on failure; see :func:`fallback`."""

    __slots__ = ("_label", "_matches", "_types", "chain", "name", "value")
    kind = "fallback"

    def __init__(
        self,
        value: Any = _MISSING,
        *,
        on: FallbackOn = Exception,
        chain: Iterable[Callable[..., Any]] = (),
        name: str | None = None,
    ) -> None:
        self.value = value
        self.chain: tuple[Callable[..., Any], ...] = tuple(chain)
        for alternative in self.chain:
            if not callable(alternative):
                raise ConfigurationError(
                    f"fallback chain entries must be callables, got {alternative!r}"
                )
        if value is _MISSING and not self.chain:
            raise ConfigurationError("fallback needs a value=... or a chain=[...] of alternatives")
        if isinstance(on, type):
            on = (on,)
        self._types: tuple[type[BaseException], ...] | None
        self._matches: Callable[[BaseException], bool] | None
        if isinstance(on, tuple):
            if not all(isinstance(t, type) and issubclass(t, Exception) for t in on):
                raise ConfigurationError(
                    "fallback(on=...) takes Exception classes (cancellation is never caught) "
                    "or a predicate"
                )
            self._types, self._matches = on, None
        elif callable(on):
            self._types, self._matches = (Exception,), on
        else:
            raise ConfigurationError(
                f"fallback(on=...) takes exception classes or a predicate, not {on!r}"
            )
        self._label = name
        self.name = name or "fallback"

    def _served(self, label: str, started: float, exc: BaseException, source: str) -> None:
        _mark_degraded()
        if bus.active:
            took = (_clock.get_clock().monotonic() - started) * 1000.0
            record(
                "fallback",
                label,
                1,
                "fell_back",
                0.0,
                took,
                exc,
                {"degraded": True, "source": source},
            )

    def _not_served(self, label: str, started: float, exc: BaseException) -> None:
        if bus.active:
            took = (_clock.get_clock().monotonic() - started) * 1000.0
            record("fallback", label, 1, "not_recovered", 0.0, took, exc, {"degraded": False})

    def _value(self, exc: BaseException) -> Any:
        value = self.value
        return value(exc) if callable(value) else value

    def _fall_back(
        self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any], label: str
    ) -> Any:
        matches = self._matches
        if matches is not None and not matches(exc):
            raise exc
        started = _clock.get_clock().monotonic()
        for alternative in self.chain:
            try:
                result = alternative(*args, **kwargs)
            except Exception as error:
                exc.add_note(
                    f"faultlens fallback {label!r}: alternative {callable_name(alternative)} "
                    f"failed too ({type(error).__name__})"
                )
                continue
            self._served(label, started, exc, callable_name(alternative))
            return result
        if self.value is _MISSING:
            self._not_served(label, started, exc)
            raise exc
        result = self._value(exc)
        self._served(label, started, exc, "value")
        return result

    async def _fall_back_async(
        self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any], label: str
    ) -> Any:
        matches = self._matches
        if matches is not None and not matches(exc):
            raise exc
        started = _clock.get_clock().monotonic()
        for alternative in self.chain:
            try:
                result = alternative(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as error:
                exc.add_note(
                    f"faultlens fallback {label!r}: alternative {callable_name(alternative)} "
                    f"failed too ({type(error).__name__})"
                )
                continue
            self._served(label, started, exc, callable_name(alternative))
            return result
        if self.value is _MISSING:
            self._not_served(label, started, exc)
            raise exc
        result = self._value(exc)
        if inspect.isawaitable(result):
            result = await result
        self._served(label, started, exc, "value")
        return result

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` falling back on failure."""
        label = self._label or callable_name(fn)
        types = cast("tuple[type[Exception], ...]", self._types)
        fall_back = self._fall_back

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except types as exc:
                return cast("R", fall_back(exc, args, kwargs, label))

        return run

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Return coroutine function ``fn`` falling back on failure."""
        label = self._label or callable_name(fn)
        types = cast("tuple[type[Exception], ...]", self._types)
        fall_back = self._fall_back_async
        call = as_coroutine_function(fn)

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await call(*args, **kwargs)
            except types as exc:
                return cast("R", await fall_back(exc, args, kwargs, label))

        return run


def fallback(
    value: Any = _MISSING,
    *,
    on: FallbackOn = Exception,
    chain: Iterable[Callable[..., Any]] = (),
    name: str | None = None,
) -> Fallback:
    """Answer a failed call from alternatives instead of raising.

    ``chain``: callables tried in order with the call's own arguments (sync or
    async); the first that returns answers.  ``value``: the last resort, a
    constant or a callable receiving the exception (to return a callable itself,
    wrap it: ``value=lambda exc: handler``).  ``on``: the exception classes
    (default ``Exception``) or a predicate that select failures to answer;
    cancellation is never caught.  An answer served this way marks the current
    context ``degraded=True`` and is recorded as a ``fell_back`` event; when
    nothing answers, the original error propagates with a note per failed
    alternative.
    """
    return Fallback(value, on=on, chain=chain, name=name)
