"""The base every recovery policy implements.

A policy turns a function into a protected one.  It is built once: ``wrap`` (sync)
and ``wrap_async`` (coroutine functions) return the protected function, and
everything a policy can precompute happens there, not per call.  The same policy
object is a decorator for both kinds of function (``@policy``), runs one-off calls
(``policy.call(fn, ...)``, ``await policy.acall(fn, ...)``) and composes with
others in :func:`faultlens.recovery.pipeline`.

Writing a policy::

    class Audit(Policy):
        kind = "strategy"              # the ``policy`` field of its recovery events

        def __init__(self, name: str = "audit") -> None:
            self.name = name

        def wrap(self, fn):
            def run(*args, **kwargs):
                return fn(*args, **kwargs)
            return run

        def wrap_async(self, fn):
            async def run(*args, **kwargs):
                return await fn(*args, **kwargs)
            return run

``wrap_async`` must return a coroutine function (an ``async def``), so that the
decorated function is still recognised as one.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, ParamSpec, TypeVar

__all__ = ["Policy"]

P = ParamSpec("P")
R = TypeVar("R")


class Policy(abc.ABC):
    """A recovery policy: decorator for sync and async functions, ``.call``/``.acall``.

    Policies compose with :func:`~faultlens.recovery.pipeline`.
    """

    __slots__ = ()

    name: str
    """The instance's name: the ``name`` of its events, shown in logs and the dashboard."""

    kind: ClassVar[str] = "strategy"
    """What the policy is (``retry``, ``circuit_breaker``…): its events' ``policy`` field."""

    @abc.abstractmethod
    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` protected by this policy (sync); called once, at decoration."""

    @abc.abstractmethod
    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Return coroutine function ``fn`` protected by this policy; must be an ``async def``."""

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn``: coroutine functions get :meth:`wrap_async`, others :meth:`wrap`.

        Generator functions are refused: their body runs after the call returns,
        outside the policy.
        """
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            from faultlens.errors import ConfigurationError

            raise ConfigurationError(
                f"{callable_name(fn)} is a generator function: its body runs when it is "
                f"iterated, after the {type(self).__name__} policy has returned; decorate "
                "a function that consumes it instead"
            )
        # For a coroutine function R is the coroutine type: the async wrapper has it too.
        wrapped: Callable[P, Any] = (
            self.wrap_async(fn) if inspect.iscoroutinefunction(fn) else self.wrap(fn)
        )
        if wrapped is fn:
            return fn
        functools.update_wrapper(wrapped, fn)
        return wrapped

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` once under this policy (sync)."""
        return self.wrap(fn)(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``await fn(*args, **kwargs)`` once under this policy."""
        return await self.wrap_async(fn)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'name', '?')!r}>"


def as_coroutine_function(
    fn: Callable[P, Awaitable[R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Return ``fn`` if it is an ``async def``, else an ``async def`` awaiting its result."""
    if inspect.iscoroutinefunction(fn):
        return fn

    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await fn(*args, **kwargs)

    return run


def callable_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of ``fn`` (its repr for callables without one): an event name."""
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None:
        inner = getattr(fn, "func", None)  # functools.partial
        if inner is not None:
            return callable_name(inner)
        return type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else str(qualname)
