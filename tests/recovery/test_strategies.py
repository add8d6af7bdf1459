"""RecoveryStrategy protocol, RecoveryResult, RecoveryEngine and the recover() decorator."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from faultlens import correlate, current_context, operation
from faultlens.errors import (
    AuthenticationError,
    ConfigurationError,
    TransientError,
    ValidationError,
)
from faultlens.recovery._layers import (
    ErrorContexts,
    LayerPolicies,
    LayerPolicy,
    error_contexts,
    layer_policies,
    set_layer_policy,
)
from faultlens.recovery._strategies import (
    AsyncRecoveryStrategy,
    CallSite,
    RecoveryContext,
    RecoveryEngine,
    RecoveryResult,
    RecoveryStatus,
    RecoveryStrategy,
    StrategyChain,
    recover,
)
from faultlens.testing import FakeClock, capture_events


@pytest.fixture(autouse=True)
def _reset_recovery_state() -> Iterator[None]:
    """Start every test with the built-in layer policies and no error contexts."""
    layer_policies().reset()
    error_contexts().clear()
    yield
    layer_policies().reset()
    error_contexts().clear()


class Recording:
    """A strategy that records what it saw and answers as told."""

    def __init__(
        self,
        name: str,
        result: RecoveryResult | None = None,
        *,
        applies: Any = True,
        fallback: RecoveryResult | None = None,
    ) -> None:
        self.name = name
        self.result = result or RecoveryResult.failed(actions=[f"{name} tried"])
        self.applies = applies
        self.fallback = fallback
        self.seen: list[RecoveryContext] = []
        self.attempts = 0

    def can_recover(self, error: BaseException, context: RecoveryContext) -> bool:
        self.seen.append(context)
        if callable(self.applies):
            return bool(self.applies(context))
        return bool(self.applies)

    def attempt_recovery(self, error: BaseException, context: RecoveryContext) -> RecoveryResult:
        self.attempts += 1
        return self.result

    def get_fallback(self, error: BaseException, context: RecoveryContext) -> RecoveryResult:
        return self.fallback or RecoveryResult.not_attempted("none")


def _ok(value: Any, action: str = "did the work") -> RecoveryResult:
    return RecoveryResult.success(value, actions=[action])


# --- RecoveryResult ---------------------------------------------------------------------


def test_success_without_actions_is_refused() -> None:
    """A success or partial result must name the work that produced it."""
    with pytest.raises(ConfigurationError, match="actions"):
        RecoveryResult.success(1, actions=[])
    with pytest.raises(ConfigurationError, match="actions"):
        RecoveryResult(RecoveryStatus.PARTIAL, 1)


def test_result_status_helpers() -> None:
    """recovered is true for success and partial; degraded only for partial."""
    assert _ok(1).recovered
    assert not _ok(1).degraded
    partial = RecoveryResult.partial(2, actions=["served cache"])
    assert partial.recovered
    assert partial.degraded
    assert not RecoveryResult.failed().recovered
    skipped = RecoveryResult.not_attempted("nothing to do", layer="api")
    assert skipped.status is RecoveryStatus.NOT_ATTEMPTED
    assert skipped.details == {"reason": "nothing to do", "layer": "api"}


def test_result_details_are_read_only() -> None:
    """details is an immutable copy of what the strategy passed."""
    details: dict[str, object] = {"steps": [1]}
    result = RecoveryResult.failed(details=details)
    details["other"] = 2
    assert "other" not in result.details
    with pytest.raises(TypeError):
        result.details["x"] = 1  # type: ignore[index]


def test_builtin_and_custom_strategies_satisfy_the_protocol() -> None:
    """Recording satisfies RecoveryStrategy; only a strategy with an async attempt is async."""
    from faultlens.recovery._builtin_strategies import DatabaseRecoveryStrategy

    assert isinstance(Recording("x"), RecoveryStrategy)
    assert not isinstance(Recording("x"), AsyncRecoveryStrategy)
    assert isinstance(DatabaseRecoveryStrategy(), AsyncRecoveryStrategy)


def test_objects_that_are_not_strategies_are_refused() -> None:
    """recover() and the engine reject objects without the protocol's methods."""
    with pytest.raises(ConfigurationError, match="not a recovery strategy"):
        recover(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not a recovery strategy"):
        RecoveryEngine(object())  # type: ignore[arg-type]


# --- the chain --------------------------------------------------------------------------


def test_strategies_run_in_order_until_one_recovers() -> None:
    """The chain stops at the first strategy that recovers; later ones never run."""
    first = Recording("first")
    second = Recording("second", _ok("from second"))
    third = Recording("third", _ok("from third"))

    @recover(first, second, third, layer="service")
    def fails() -> str:
        raise TransientError("down")

    assert fails() == "from second"
    assert (first.attempts, second.attempts, third.attempts) == (1, 1, 0)


def test_inapplicable_strategies_are_skipped() -> None:
    """A strategy whose can_recover is false is not attempted."""
    skipped = Recording("skipped", _ok("wrong"), applies=False)
    used = Recording("used", _ok("right"))

    @recover(skipped, used, layer="service")
    def fails() -> str:
        raise TransientError("down")

    assert fails() == "right"
    assert skipped.attempts == 0


def test_unrecovered_errors_are_reraised_unchanged() -> None:
    """When no strategy recovers, the very same exception propagates with its traceback."""
    original = TransientError("down")
    failing = Recording("failing")

    @recover(failing, layer="service")
    def fails() -> None:
        raise original

    with pytest.raises(TransientError) as info:
        fails()
    assert info.value is original
    assert info.traceback[-1].name == "fails"
    assert failing.attempts == 1


def test_base_exceptions_are_not_recovered() -> None:
    """KeyboardInterrupt and other BaseExceptions pass straight through."""
    strategy = Recording("any", _ok(1))

    @recover(strategy)
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert strategy.seen == []


def test_success_returns_the_value_and_leaves_context_clean() -> None:
    """A full recovery returns the value without marking the request degraded."""

    @recover(Recording("ok", _ok(42)), layer="service")
    def fails() -> int:
        raise TransientError("down")

    with correlate():
        assert fails() == 42
        ctx = current_context()
        assert ctx is not None
        assert "degraded" not in ctx.fields


def test_partial_marks_the_context_and_operation_degraded() -> None:
    """A partial recovery binds degraded=True and annotates the running operation."""
    partial = RecoveryResult.partial("stale", actions=["served stale data"])

    @recover(Recording("cache", partial), layer="service")
    def fails() -> str:
        raise TransientError("down")

    with capture_events("operation") as events, correlate():
        with operation("load", layer="service"):
            assert fails() == "stale"
        ctx = current_context()
        assert ctx is not None
        assert ctx.fields["degraded"] is True
        assert ctx.fields["degraded_by"] == "cache"
    end = events[-1]
    assert end.payload["fields"] == {"degraded": True, "degraded_by": "cache"}


def test_partial_outside_a_correlation_starts_no_context() -> None:
    """Without a correlation, a partial result does not create a context as a side effect."""
    partial = RecoveryResult.partial("stale", actions=["served stale data"])

    @recover(Recording("cache", partial), layer="service")
    def fails() -> str:
        raise TransientError("down")

    assert fails() == "stale"
    assert current_context() is None


def test_strategy_exceptions_are_isolated() -> None:
    """A strategy that raises counts as failed and the chain moves on."""

    class Broken(Recording):
        def attempt_recovery(
            self, error: BaseException, context: RecoveryContext
        ) -> RecoveryResult:
            raise RuntimeError("strategy bug")

    after = Recording("after", _ok("saved"))

    @recover(Broken("broken"), after, layer="service")
    def fails() -> str:
        raise TransientError("down")

    with capture_events("recovery") as events:
        assert fails() == "saved"
    broken = events[0].payload
    assert broken["outcome"] == "not_recovered"
    assert broken["strategy_error"] == "builtins.RuntimeError"


def test_a_raising_can_recover_means_not_applicable() -> None:
    """can_recover raising is treated as 'does not apply'."""

    def explode(context: RecoveryContext) -> bool:
        raise RuntimeError("bad predicate")

    strategy = Recording("x", _ok(1), applies=explode)

    @recover(strategy, layer="service")
    def fails() -> int:
        raise TransientError("down")

    with pytest.raises(TransientError):
        fails()
    assert strategy.attempts == 0


def test_a_strategy_returning_garbage_fails_its_attempt() -> None:
    """A result that is not a RecoveryResult is recorded as a failed attempt."""

    class Garbage(Recording):
        def attempt_recovery(self, error: BaseException, context: RecoveryContext) -> Any:
            return "recovered!"

    @recover(Garbage("garbage"), layer="service")
    def fails() -> None:
        raise TransientError("down")

    with pytest.raises(TransientError):
        fails()


def test_fallbacks_run_after_every_attempt_failed() -> None:
    """get_fallback answers only when no attempt recovered, and is always degraded."""
    offered = RecoveryResult.success("fallback value", actions=["default list"])
    first = Recording("first", fallback=offered)
    second = Recording("second")

    @recover(first, second, layer="service")
    def fails() -> str:
        raise TransientError("down")

    with capture_events("recovery") as events, correlate():
        assert fails() == "fallback value"
        ctx = current_context()
        assert ctx is not None
        assert ctx.fields["degraded"] is True
    assert first.attempts == second.attempts == 1
    last = events[-1].payload
    assert last["fallback"] is True
    assert last["status"] == "partial"
    assert last["attempt"] == 3


def test_engine_and_layer_strategies_follow_the_call_sites() -> None:
    """Order: the decorator's strategies, then the engine's, then the layer policy's."""
    order: list[str] = []

    def tracking(name: str) -> Recording:
        strategy = Recording(name)
        original = strategy.attempt_recovery

        def attempt(error: BaseException, context: RecoveryContext) -> RecoveryResult:
            order.append(name)
            return original(error, context)

        strategy.attempt_recovery = attempt  # type: ignore[method-assign]
        return strategy

    layer_one = tracking("layer")
    policies = LayerPolicies({"service": LayerPolicy(strategies=(layer_one,))})
    engine = RecoveryEngine(tracking("engine"), policies=policies)

    @recover(tracking("site"), engine=engine, layer="service")
    def fails() -> None:
        raise TransientError("down")

    with pytest.raises(TransientError):
        fails()
    assert order == ["site", "engine", "layer"]


# --- context awareness ------------------------------------------------------------------


def test_strategies_see_permissions_user_and_layer() -> None:
    """can_recover decides on the request's permissions, user and the error's layer."""
    admin_only = Recording("admin", _ok("admin path"), applies=lambda c: c.has_permission("admin"))
    everyone = Recording("everyone", _ok("public path"))

    @recover(admin_only, everyone, layer="service")
    def fails() -> str:
        raise TransientError("down")

    with correlate(user_id="u-1", permissions={"read"}):
        assert fails() == "public path"
    with correlate(user_id="u-2", permissions={"read", "admin"}) as ctx:
        assert fails() == "admin path"
    seen = admin_only.seen[-1]
    assert seen.user_id == "u-2"
    assert seen.permissions == frozenset({"read", "admin"})
    assert seen.correlation_id == ctx.correlation_id
    assert seen.layer == "service"
    assert seen.classification is not None
    assert seen.classification.category == "transient"


def test_context_carries_the_call_and_its_arguments() -> None:
    """The failed call (undecorated function, args, kwargs) reaches the strategy."""
    strategy = Recording("x", _ok(0))

    def target(a: int, *, b: int) -> int:
        raise TransientError("down")

    wrapped = recover(strategy, layer="service")(target)
    assert wrapped(1, b=2) == 0
    call = strategy.seen[0].call
    assert call is not None
    assert call.fn is target
    assert call.args == (1,)
    assert call.kwargs == {"b": 2}
    assert call.name.endswith("target")
    assert not call.is_async


def test_layer_comes_from_the_classification_then_the_operation() -> None:
    """Without layer=, the classification's layer wins, then the running operation's."""
    strategy = Recording("x", _ok(0))

    @recover(strategy)
    def classified() -> int:
        raise TransientError("down")  # category transient: infrastructure layer

    @recover(strategy)
    def unclassified() -> int:
        raise Exception("no rule knows me")

    with operation("checkout", layer="api"):
        classified()
        unclassified()
    assert strategy.seen[0].layer == "infrastructure"
    assert strategy.seen[1].layer == "api"
    assert strategy.seen[1].operation == "checkout"


def test_explicit_layer_overrides_the_classification() -> None:
    """recover(layer=...) states the layer whose policy applies."""
    strategy = Recording("x", _ok(0))

    @recover(strategy, layer="api")
    def fails() -> int:
        raise TransientError("down")

    fails()
    assert strategy.seen[0].layer == "api"


def test_recovery_context_without_a_correlation() -> None:
    """Outside a correlation the context has no user, permissions or correlation id."""
    ctx = RecoveryContext.from_error(ValueError("x"), call=CallSite(print))
    assert ctx.correlation_id is None
    assert ctx.user_id is None
    assert ctx.tenant_id is None
    assert ctx.permissions == frozenset()
    assert not ctx.has_permission("admin")
    assert ctx.category == "internal"
    assert ctx.severity == "high"


# --- layer policies in the engine -------------------------------------------------------


def test_core_layer_is_not_recovered_automatically() -> None:
    """The core layer's policy turns automatic recovery off: no strategy runs."""
    strategy = Recording("x", _ok(0))

    @recover(strategy, layer="core")
    def fails() -> int:
        raise TransientError("down")

    with capture_events("recovery") as events, pytest.raises(TransientError):
        fails()
    assert strategy.seen == []
    assert events[0].name == "layer_policy"
    assert events[0].payload["reason"] == "automatic_recovery_off"
    assert events[0].payload["outcome"] == "not_recovered"


def test_over_the_error_budget_recovery_stops() -> None:
    """Above max_errors_per_minute in one correlation, recovery is not attempted."""
    set_layer_policy("service", LayerPolicy(max_errors_per_minute=2, escalation_threshold=50))
    strategy = Recording("x", _ok("ok"))

    @recover(strategy, layer="service")
    def fails() -> str:
        raise TransientError("down")

    with FakeClock() as clock, correlate():
        assert fails() == "ok"
        assert fails() == "ok"
        with pytest.raises(TransientError):
            fails()
        assert strategy.attempts == 2
        clock.advance(61)
        assert fails() == "ok"
    assert strategy.attempts == 3


def test_budget_is_per_correlation() -> None:
    """Another correlation has its own error budget."""
    set_layer_policy("service", LayerPolicy(max_errors_per_minute=1, escalation_threshold=50))
    strategy = Recording("x", _ok("ok"))

    @recover(strategy, layer="service")
    def fails() -> str:
        raise TransientError("down")

    with FakeClock():
        with correlate():
            assert fails() == "ok"
            with pytest.raises(TransientError):
                fails()
        with correlate():
            assert fails() == "ok"


def test_on_escalate_is_called_when_the_level_rises_to_high_or_critical() -> None:
    """on_escalate fires for the error reaching the threshold, then again at twice it."""
    policies = LayerPolicies(
        {"service": LayerPolicy(escalation_threshold=2, max_errors_per_minute=100)}
    )
    seen: list[tuple[str, str]] = []
    engine = RecoveryEngine(
        policies=policies,
        error_contexts=ErrorContexts(),
        on_escalate=lambda state, ctx: seen.append((state.layer, state.level.label)),
    )

    @recover(Recording("x"), engine=engine, layer="service")
    def fails() -> None:
        raise ValidationError("bad")  # severity low: weight 1.0, no score escalation

    with correlate():
        for _ in range(3):
            with pytest.raises(ValidationError):
                fails()
        assert seen == [("service", "high")]
        with pytest.raises(ValidationError):
            fails()
    assert seen == [("service", "high"), ("service", "critical")]


def test_a_raising_on_escalate_does_not_break_recovery() -> None:
    """An on_escalate callback that raises is counted and recovery continues."""
    from faultlens._metrics import counters

    def broken(*_: object) -> None:
        raise RuntimeError("pager down")

    engine = RecoveryEngine(on_escalate=broken)

    @recover(Recording("x", _ok("ok")), engine=engine)
    def fails() -> str:
        raise TransientError("down")  # infrastructure, medium: escalates at once

    with correlate():
        assert fails() == "ok"
    assert counters.get("recovery.on_escalate_errors") == 1


# --- events -----------------------------------------------------------------------------


def test_every_attempt_is_a_recovery_event() -> None:
    """One strategy event per attempt, with outcome, status, actions, layer and escalation."""
    first = Recording("first")
    second = Recording("second", RecoveryResult.partial("x", actions=["served cache"]))

    @recover(first, second, layer="service")
    def fails() -> str:
        raise TransientError("down")

    with FakeClock(), capture_events("recovery") as events, correlate() as ctx:
        fails()
    assert [e.name for e in events] == ["first", "second"]
    one, two = (e.payload for e in events)
    assert one["policy"] == "strategy"
    assert (one["attempt"], one["outcome"], one["status"]) == (1, "not_recovered", "failed")
    assert one["actions"] == ["first tried"]
    assert (two["attempt"], two["outcome"], two["status"]) == (2, "recovered", "partial")
    assert two["degraded"] is True
    assert two["layer"] == "service"
    assert two["error_type"] == "faultlens.errors._taxonomy.TransientError"
    assert one["escalation"] == "none"
    assert all(e.correlation_id == ctx.correlation_id for e in events)


def test_no_events_are_built_without_subscribers() -> None:
    """With nobody listening the chain still works and publishes nothing."""

    @recover(Recording("ok", _ok(1)), layer="service")
    def fails() -> int:
        raise TransientError("down")

    assert fails() == 1


def test_error_context_counts_recoveries() -> None:
    """The correlation's error context counts each attempt by outcome."""

    @recover(Recording("a"), Recording("b", _ok(1)), layer="service")
    def fails() -> int:
        raise TransientError("down")

    with correlate() as ctx:
        fails()
    snapshot = error_contexts().get(ctx.correlation_id).snapshot()
    assert snapshot["recoveries"] == {"failed": 1, "recovered": 1}
    assert snapshot["layers"]["service"]["count"] == 1


# --- the engine used directly -----------------------------------------------------------


def test_engine_builds_a_context_from_the_current_state() -> None:
    """attempt_recovery without a context classifies the error and reads the request."""
    strategy = Recording("x", _ok("value"))
    engine = RecoveryEngine(strategy)
    with correlate(user_id="u-9"):
        result = engine.attempt_recovery(AuthenticationError("expired"))
    assert result.recovered
    assert result.value == "value"
    assert result.strategy == "x"
    ctx = strategy.seen[0]
    assert ctx.user_id == "u-9"
    assert ctx.call is None
    assert ctx.layer == "api"
    assert ctx.error_context is not None
    assert ctx.error_state is not None
    assert ctx.error_state.count == 1


def test_engine_reports_when_nothing_applies() -> None:
    """No applicable strategy: not_attempted with the reason."""
    engine = RecoveryEngine(Recording("x", applies=False))
    result = engine.attempt_recovery(TransientError("down"))
    assert result.status is RecoveryStatus.NOT_ATTEMPTED
    assert result.details["reason"] == "no_strategy_applies"


def test_engine_summarises_failed_attempts() -> None:
    """When every attempt fails the result lists each one."""
    engine = RecoveryEngine(Recording("a"), Recording("b"))
    result = engine.attempt_recovery(TransientError("down"))
    assert result.status is RecoveryStatus.FAILED
    assert [a["strategy"] for a in result.details["attempts"]] == ["a", "b"]
    assert result.actions == ("a tried", "b tried")


def test_the_same_strategy_is_tried_once() -> None:
    """A strategy listed at the call site and in the engine runs once."""
    strategy = Recording("x")
    engine = RecoveryEngine(strategy)
    engine.attempt_recovery(TransientError("down"), strategies=[strategy])
    assert strategy.attempts == 1


def test_strategy_chain_is_a_policy() -> None:
    """recover() returns a Policy: .call runs a one-off call and its kind is 'strategy'."""
    from faultlens.recovery._policy import Policy

    chain = recover(Recording("x", _ok(5)), layer="service")
    assert isinstance(chain, StrategyChain)
    assert isinstance(chain, Policy)
    assert chain.kind == "strategy"

    def fails() -> int:
        raise TransientError("down")

    assert chain.call(fails) == 5


def test_generator_functions_are_refused() -> None:
    """Decorating a generator function is a configuration error."""

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(ConfigurationError, match="generator"):
        recover(Recording("x"))(gen)


def test_decorated_function_keeps_its_metadata() -> None:
    """The wrapper has the wrapped function's name and docstring."""

    @recover(Recording("x"))
    def documented() -> None:
        """Docs."""

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docs."


# --- async ------------------------------------------------------------------------------


class AsyncOnly(Recording):
    """A strategy whose attempt is a coroutine."""

    async def attempt_recovery_async(
        self, error: BaseException, context: RecoveryContext
    ) -> RecoveryResult:
        await asyncio.sleep(0)
        self.attempts += 1
        return self.result


def test_async_functions_await_async_strategies() -> None:
    """A coroutine function's chain awaits attempt_recovery_async."""
    strategy = AsyncOnly("async", _ok("async value"))

    @recover(strategy, layer="service")
    async def fails() -> str:
        raise TransientError("down")

    assert asyncio.iscoroutinefunction(fails)
    assert asyncio.run(fails()) == "async value"
    assert strategy.attempts == 1


def test_async_functions_run_sync_strategies_and_await_awaitable_results() -> None:
    """Sync strategies work in async chains; an awaitable result is awaited."""

    class ReturnsCoroutine(Recording):
        def attempt_recovery(self, error: BaseException, context: RecoveryContext) -> Any:
            async def later() -> RecoveryResult:
                return _ok("awaited")

            return later()

    plain = Recording("plain")

    @recover(plain, ReturnsCoroutine("coro"), layer="service")
    async def fails() -> str:
        raise TransientError("down")

    assert asyncio.run(fails()) == "awaited"
    assert plain.attempts == 1


def test_sync_chain_refuses_an_awaitable_result() -> None:
    """In a sync function a strategy returning a coroutine fails its attempt (no warning)."""

    class ReturnsCoroutine(Recording):
        def attempt_recovery(self, error: BaseException, context: RecoveryContext) -> Any:
            async def later() -> RecoveryResult:
                return _ok("never")

            return later()

    @recover(ReturnsCoroutine("coro"), layer="service")
    def fails() -> str:
        raise TransientError("down")

    with capture_events("recovery") as events, pytest.raises(TransientError):
        fails()
    assert events[0].payload["strategy_error"].endswith("ConfigurationError")


def test_async_unrecovered_error_is_reraised_unchanged() -> None:
    """The async wrapper re-raises the original exception object."""
    original = TransientError("down")

    @recover(Recording("x"), layer="service")
    async def fails() -> None:
        raise original

    with pytest.raises(TransientError) as info:
        asyncio.run(fails())
    assert info.value is original


def test_async_partial_marks_the_callers_context_degraded() -> None:
    """Awaited directly, a degraded async recovery is visible to the caller's context."""

    @recover(Recording("cache", RecoveryResult.partial(1, actions=["cache"])), layer="service")
    async def fails() -> int:
        raise TransientError("down")

    async def main() -> Any:
        with correlate():
            await fails()
            ctx = current_context()
            assert ctx is not None
            return ctx.fields.get("degraded")

    assert asyncio.run(main()) is True


def test_async_fallback_and_policy_skip() -> None:
    """The async engine offers fallbacks and honours the layer policy too."""
    offered = RecoveryResult.partial("fb", actions=["static default"])
    engine = RecoveryEngine(Recording("x", fallback=offered))

    async def main() -> tuple[RecoveryResult, RecoveryResult]:
        recovered = await engine.attempt_recovery_async(TransientError("down"))
        skipped = await engine.attempt_recovery_async(
            TransientError("down"),
            dataclasses.replace(RecoveryContext.from_error(TransientError("x")), layer="core"),
        )
        return recovered, skipped

    recovered, skipped = asyncio.run(main())
    assert recovered.value == "fb"
    assert recovered.degraded
    assert skipped.status is RecoveryStatus.NOT_ATTEMPTED
    assert skipped.details["reason"] == "automatic_recovery_off"
