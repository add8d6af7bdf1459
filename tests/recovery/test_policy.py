"""The Policy base: decorator dispatch, one-off calls and the exported surface."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import pytest

import faultlens.recovery
from faultlens.errors import FaultlensError
from faultlens.recovery import (
    BulkheadFullError,
    Policy,
    PolicyTimeoutError,
    RecoveryError,
    RetryExhaustedError,
)

P = ParamSpec("P")
R = TypeVar("R")


class Tag(Policy):
    """Appends which wrapper ran."""

    def __init__(self) -> None:
        self.name = "tag"
        self.ran: list[str] = []

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            self.ran.append("sync")
            return fn(*args, **kwargs)

        return run

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            self.ran.append("async")
            return await fn(*args, **kwargs)

        return run


def test_decorator_dispatches_on_coroutine_functions() -> None:
    """Coroutine functions get wrap_async, other callables wrap."""
    tag = Tag()

    @tag
    def sync() -> int:
        """Sync doc."""
        return 1

    @tag
    async def coro() -> int:
        return 2

    assert sync() == 1
    assert asyncio.run(coro()) == 2
    assert inspect.iscoroutinefunction(coro)
    assert tag.ran == ["sync", "async"]
    assert sync.__doc__ == "Sync doc."
    assert sync.__wrapped__ is not None  # type: ignore[attr-defined]


def test_partial_of_a_coroutine_function_is_async() -> None:
    """functools.partial of an async function is decorated as async."""
    tag = Tag()

    async def add(a: int, b: int) -> int:
        return a + b

    wrapped = tag(functools.partial(add, 1))
    assert asyncio.run(wrapped(2)) == 3
    assert tag.ran == ["async"]


def test_call_and_acall() -> None:
    """.call runs a sync function, .acall awaits an async one."""
    tag = Tag()

    async def double(x: int) -> int:
        return 2 * x

    assert tag.call(lambda x: x + 1, 1) == 2
    assert asyncio.run(tag.acall(double, 4)) == 8
    assert tag.ran == ["sync", "async"]
    assert repr(tag) == "<Tag 'tag'>"


def test_policy_is_abstract() -> None:
    """A policy must implement wrap and wrap_async."""
    with pytest.raises(TypeError):
        Policy()  # type: ignore[abstract]


def test_exception_tree() -> None:
    """Every recovery error is a FaultlensError; the timeout is also a TimeoutError."""
    assert issubclass(RecoveryError, FaultlensError)
    for cls in (RetryExhaustedError, BulkheadFullError, PolicyTimeoutError):
        assert issubclass(cls, RecoveryError)
    assert issubclass(PolicyTimeoutError, TimeoutError)
    assert BulkheadFullError.sheds_load
    assert RetryExhaustedError.sheds_load
    assert not PolicyTimeoutError.sheds_load


def test_exports_are_sorted_and_present() -> None:
    """faultlens.recovery's __all__ is sorted the ruff way and every name exists."""

    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    names = faultlens.recovery.__all__
    assert names == sorted(names, key=key)
    for name in names:
        assert getattr(faultlens.recovery, name) is not None
    for name in ("retry", "timeout", "fallback", "bulkhead", "pipeline", "remaining"):
        assert name in names


def test_generator_functions_are_refused() -> None:
    """Decorating a generator function is a configuration error, not a silent no-op."""
    from collections.abc import AsyncIterator, Iterator

    from faultlens.errors import ConfigurationError

    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(ConfigurationError, match="generator"):
        Tag()(numbers)
    with pytest.raises(ConfigurationError, match="generator"):
        Tag()(anumbers)
