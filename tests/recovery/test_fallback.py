"""fallback(): values, handlers, chains of alternatives and degraded marking."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from faultlens import correlate, current_context
from faultlens.errors import ConfigurationError
from faultlens.recovery import fallback
from faultlens.testing import FakeClock, capture_events


def fails(*args: Any, **kwargs: Any) -> Any:
    """Always fails with ConnectionError."""
    raise ConnectionError("primary down")


def test_constant_value() -> None:
    """A failed call answers the constant."""
    assert fallback([])(fails)() == []


def test_callable_value_receives_the_exception() -> None:
    """A callable value is called with the exception."""
    assert fallback(lambda exc: type(exc).__name__)(fails)() == "ConnectionError"


def test_success_is_untouched() -> None:
    """A successful call is not degraded and records nothing."""
    with capture_events("recovery") as events, correlate():
        assert fallback(0)(lambda: 5)() == 5
        ctx = current_context()
        assert ctx is not None
        assert "degraded" not in ctx.fields
    assert events == []


def test_chain_is_tried_in_order_with_the_original_arguments() -> None:
    """Alternatives get the call's arguments; the first that succeeds answers."""
    tried: list[str] = []

    def replica(key: str) -> str:
        tried.append("replica")
        raise TimeoutError

    def cache(key: str) -> str:
        tried.append("cache")
        return f"cached:{key}"

    def never(key: str) -> str:
        tried.append("never")
        return "no"

    policy = fallback(chain=[replica, cache, never])
    assert policy(fails)("k1") == "cached:k1"
    assert tried == ["replica", "cache"]


def test_value_after_a_failed_chain() -> None:
    """When every alternative fails, the value answers."""
    assert fallback("static", chain=[fails, fails])(fails)() == "static"


def test_nothing_answers_raises_the_original_with_notes() -> None:
    """Without a value, a failed chain re-raises the original error, noting each alternative."""

    def replica() -> None:
        raise TimeoutError

    with pytest.raises(ConnectionError, match="primary down") as info:
        fallback(chain=[replica])(fails)()
    assert any("replica" in note and "TimeoutError" in note for note in info.value.__notes__)


def test_on_selects_failures() -> None:
    """Only failures matching `on` (classes or a predicate) fall back."""
    with pytest.raises(ConnectionError):
        fallback(0, on=KeyError)(fails)()
    assert fallback(0, on=(KeyError, ConnectionError))(fails)() == 0
    assert fallback(0, on=lambda exc: isinstance(exc, OSError))(fails)() == 0
    with pytest.raises(ConnectionError):
        fallback(0, on=lambda exc: False)(fails)()


def test_cancellation_is_never_answered() -> None:
    """KeyboardInterrupt and asyncio.CancelledError pass through."""

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fallback(0)(interrupted)()

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(fallback(0)(cancelled)())


def test_degraded_is_marked_in_context_and_event() -> None:
    """A fallback answer binds degraded=True and records a fell_back event."""
    with FakeClock(), capture_events("recovery") as events, correlate() as ctx:
        assert fallback("x", name="profile")(fails)() == "x"
        now = current_context()
        assert now is not None
        assert now.fields["degraded"] is True
    (event,) = events
    assert event.name == "profile"
    assert event.correlation_id == ctx.correlation_id
    assert event.payload["policy"] == "fallback"
    assert event.payload["outcome"] == "fell_back"
    assert event.payload["degraded"] is True
    assert event.payload["source"] == "value"
    assert event.payload["error_type"] == "builtins.ConnectionError"


def test_outside_a_scope_no_context_is_created() -> None:
    """Outside any correlation scope the fallback does not start one."""
    assert fallback(1)(fails)() == 1
    assert current_context() is None


def test_not_recovered_event() -> None:
    """A chain that fails entirely records not_recovered."""
    with capture_events("recovery") as events, pytest.raises(ConnectionError):
        fallback(chain=[fails])(fails)()
    assert [e.payload["outcome"] for e in events] == ["not_recovered"]


def test_async_chain_with_sync_and_async_alternatives() -> None:
    """Async calls fall back through sync and async alternatives."""

    async def primary(key: str) -> str:
        raise ConnectionError

    async def replica(key: str) -> str:
        raise TimeoutError

    def cache(key: str) -> str:
        return f"cache:{key}"

    async def main() -> tuple[str, Any]:
        with correlate():
            result = await fallback(chain=[replica, cache])(primary)("k")
            ctx = current_context()
            assert ctx is not None
            return result, ctx.fields.get("degraded")

    assert asyncio.run(main()) == ("cache:k", True)


def test_async_value_callable_may_be_a_coroutine() -> None:
    """An async value handler is awaited."""

    async def primary() -> int:
        raise ConnectionError

    async def handler(exc: BaseException) -> int:
        return 3

    assert asyncio.run(fallback(handler)(primary)()) == 3


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"chain": [1]}, {"value": 0, "on": 42}, {"value": 0, "on": (BaseException,)}],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    """fallback() validates its arguments with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        fallback(**kwargs)
