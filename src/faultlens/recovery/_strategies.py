"""Recovery strategies: context-aware answers to an error, run in order by a RecoveryEngine.

A :class:`RecoveryStrategy` looks at an error and its :class:`RecoveryContext`
(the classification, the layer, the current request's user, permissions and
correlation id, the failed call and its arguments) and may answer it:
``can_recover`` says whether it applies, ``attempt_recovery`` does the work and
returns a :class:`RecoveryResult`, ``get_fallback`` offers a degraded answer when
every attempt failed.  A strategy that also has ``attempt_recovery_async`` gets
that one awaited in coroutine functions.

:class:`RecoveryEngine` runs a chain: it records the error in the correlation's
:class:`~faultlens.recovery.ErrorContext`, asks the error's
:class:`~faultlens.recovery.LayerPolicy` whether automatic recovery may run at
all, then tries each applicable strategy in order until one recovers, then the
fallbacks.  Every attempt is a ``recovery`` event (``policy="strategy"``).

:func:`recover` is the decorator::

    @recover(DatabaseRecoveryStrategy(replica=read_replica, cache=cached_orders))
    def load_orders(user_id: str) -> list[Order]: ...

On an exception the chain runs; a recovered value is returned (a ``partial``
one also marks the current context ``degraded``), otherwise the original
exception is re-raised unchanged.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Protocol, TypeVar, runtime_checkable

from faultlens._clock import get_clock
from faultlens._metrics import counters, report_once
from faultlens.context import RequestContext, bind, current_context
from faultlens.errors import ConfigurationError, classify
from faultlens.recovery._layers import (
    ErrorContext,
    ErrorContexts,
    LayerErrorState,
    LayerPolicies,
    error_contexts,
    layer_policies,
)
from faultlens.recovery._policy import Policy
from faultlens.recovery._record import Outcome, bus, error_type, record

if TYPE_CHECKING:
    from faultlens.errors import Classification

__all__ = [
    "AsyncRecoveryStrategy",
    "CallSite",
    "RecoveryContext",
    "RecoveryEngine",
    "RecoveryResult",
    "RecoveryStatus",
    "RecoveryStrategy",
    "StrategyChain",
    "recover",
]

P = ParamSpec("P")
R = TypeVar("R")

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_UNKNOWN_LAYER: Final = "unknown"
_MAX_MESSAGE: Final = 200


class RecoveryStatus(enum.StrEnum):
    """How a recovery attempt ended."""

    SUCCESS = "success"
    """Recovered: the value is what the call would have returned."""
    PARTIAL = "partial"
    """Recovered in a degraded way (cached, guest or fallback data)."""
    FAILED = "failed"
    """The strategy tried and did not recover."""
    NOT_ATTEMPTED = "not_attempted"
    """The strategy did nothing (nothing it could try)."""


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    """What a strategy did about an error and what came of it.

    ``value`` is returned to the caller when ``status`` is ``success`` or
    ``partial``.  ``actions`` says, in order, what was done ("retried the call
    2 times", "served the cached value"); a recovered result must name at least
    one action — nothing reports success without having done the work.
    ``details`` holds JSON-ready specifics (steps, suggestions, reasons).
    ``strategy`` is filled in by the engine with the name of the strategy.
    """

    status: RecoveryStatus
    value: Any = None
    actions: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    strategy: str | None = None

    def __post_init__(self) -> None:
        status = RecoveryStatus(self.status)
        actions = tuple(self.actions)
        if status in (RecoveryStatus.SUCCESS, RecoveryStatus.PARTIAL) and not actions:
            raise ConfigurationError(
                f"a {status.value!r} RecoveryResult must name the actions that recovered "
                "(actions=(...)): a strategy reports success only for work it did"
            )
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "actions", actions)
        if not isinstance(self.details, MappingProxyType):
            object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def recovered(self) -> bool:
        """True for ``success`` and ``partial``: the caller gets ``value``."""
        return self.status in (RecoveryStatus.SUCCESS, RecoveryStatus.PARTIAL)

    @property
    def degraded(self) -> bool:
        """True for ``partial``: the value is a degraded answer."""
        return self.status is RecoveryStatus.PARTIAL

    @classmethod
    def success(
        cls, value: Any, *, actions: Iterable[str], details: Mapping[str, Any] | None = None
    ) -> RecoveryResult:
        """Recovered fully with ``value`` after doing ``actions``."""
        return cls(RecoveryStatus.SUCCESS, value, tuple(actions), details or _EMPTY)

    @classmethod
    def partial(
        cls, value: Any, *, actions: Iterable[str], details: Mapping[str, Any] | None = None
    ) -> RecoveryResult:
        """Recovered in a degraded way with ``value`` after doing ``actions``."""
        return cls(RecoveryStatus.PARTIAL, value, tuple(actions), details or _EMPTY)

    @classmethod
    def failed(
        cls, *, actions: Iterable[str] = (), details: Mapping[str, Any] | None = None
    ) -> RecoveryResult:
        """Tried ``actions`` and did not recover."""
        return cls(RecoveryStatus.FAILED, None, tuple(actions), details or _EMPTY)

    @classmethod
    def not_attempted(cls, reason: str, **details: Any) -> RecoveryResult:
        """Did nothing, because of ``reason``."""
        return cls(RecoveryStatus.NOT_ATTEMPTED, None, (), {"reason": reason, **details})


@dataclass(frozen=True, slots=True)
class CallSite:
    """The call that failed: the function (undecorated) and its arguments.

    Strategies that re-run the call (possibly with corrected arguments) call
    ``fn``; for a coroutine function the result must be awaited, which the
    built-in strategies do in their ``attempt_recovery_async``.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def name(self) -> str:
        """The function's qualified name."""
        return getattr(self.fn, "__qualname__", None) or repr(self.fn)

    @property
    def is_async(self) -> bool:
        """True when ``fn`` is a coroutine function."""
        return inspect.iscoroutinefunction(self.fn)


@dataclass(frozen=True, slots=True)
class RecoveryContext:
    """Everything a strategy may decide on: the error, where it happened and for whom.

    ``classification`` comes from :func:`faultlens.errors.classify` (``None``
    only if classifying failed); ``layer`` is the layer whose
    policy applies; ``request`` the current :class:`~faultlens.RequestContext`
    (``None`` outside any correlation); ``call`` the failed call (``None`` when
    the engine is used without one); ``operation`` the innermost running
    operation's name.  The engine adds ``error_context`` (the correlation's
    accumulated errors) and ``error_state`` (its layer right after this error).
    """

    error: BaseException
    classification: Classification | None = None
    layer: str | None = None
    request: RequestContext | None = None
    call: CallSite | None = None
    operation: str | None = None
    error_context: ErrorContext | None = None
    error_state: LayerErrorState | None = None

    @classmethod
    def from_error(
        cls, error: BaseException, *, call: CallSite | None = None, layer: str | None = None
    ) -> RecoveryContext:
        """Build the context of ``error`` from the current state.

        The layer is ``layer`` when given, else the classification's layer
        (unless ``unknown``), else the innermost running operation's layer.
        """
        from faultlens.operations import current as current_operation

        classification = _classify(error)
        run = current_operation()
        if layer is None and classification is not None:
            found = str(classification.layer)
            if found != _UNKNOWN_LAYER:
                layer = found
        if layer is None and run is not None:
            layer = str(run.layer)
        return cls(
            error=error,
            classification=classification,
            layer=layer,
            request=current_context(),
            call=call,
            operation=run.name if run is not None else None,
        )

    @property
    def correlation_id(self) -> str | None:
        """The current correlation id (``None`` outside any correlation)."""
        return self.request.correlation_id if self.request is not None else None

    @property
    def user_id(self) -> str | None:
        """The current user's id, if known."""
        return self.request.user_id if self.request is not None else None

    @property
    def tenant_id(self) -> str | None:
        """The current tenant's id, if known."""
        return self.request.tenant_id if self.request is not None else None

    @property
    def permissions(self) -> frozenset[str]:
        """The current user's permissions (empty outside any correlation)."""
        return self.request.permissions if self.request is not None else frozenset()

    def has_permission(self, permission: str) -> bool:
        """True when the current user holds ``permission``."""
        return permission in self.permissions

    @property
    def category(self) -> str | None:
        """The error's category (``None`` without a classification)."""
        return self.classification.category if self.classification is not None else None

    @property
    def severity(self) -> str:
        """The error's severity name (``medium`` without a classification)."""
        if self.classification is None:
            return "medium"
        return str(getattr(self.classification.severity, "value", self.classification.severity))


def _classify(error: BaseException) -> Classification | None:
    try:
        return classify(error)
    except Exception:  # classify() never raises by contract; a broken rule must not either
        counters.incr("recovery.classify_errors")
        return None


@runtime_checkable
class RecoveryStrategy(Protocol):
    """What the engine needs from a strategy (see the module docstring).

    ``can_recover`` must be cheap and must not raise (one that raises counts as
    "does not apply").  ``attempt_recovery`` does the work; it may raise, which
    the engine records as a failed attempt.  ``get_fallback`` returns a
    recovered (``partial``) result with a degraded value, or
    ``RecoveryResult.not_attempted(...)`` when it has none.  A ``name``
    attribute, when present, names the strategy in events.
    """

    def can_recover(self, error: BaseException, context: RecoveryContext) -> bool:
        """Whether this strategy applies to ``error`` in ``context``."""
        ...

    def attempt_recovery(self, error: BaseException, context: RecoveryContext) -> RecoveryResult:
        """Try to recover from ``error``; report what was done."""
        ...

    def get_fallback(self, error: BaseException, context: RecoveryContext) -> RecoveryResult:
        """Offer a degraded answer once every attempt failed."""
        ...


@runtime_checkable
class AsyncRecoveryStrategy(RecoveryStrategy, Protocol):
    """A strategy with an async attempt, awaited by the engine in coroutine functions."""

    async def attempt_recovery_async(
        self, error: BaseException, context: RecoveryContext
    ) -> RecoveryResult:
        """Like ``attempt_recovery``, awaiting what must be awaited."""
        ...


def strategy_name(strategy: object) -> str:
    """The name a strategy's events carry: its ``name`` attribute or its class name."""
    name = getattr(strategy, "name", None)
    return name if isinstance(name, str) and name else type(strategy).__name__


def _check_strategy(strategy: object) -> RecoveryStrategy:
    for method in ("can_recover", "attempt_recovery", "get_fallback"):
        if not callable(getattr(strategy, method, None)):
            raise ConfigurationError(
                f"{strategy!r} is not a recovery strategy: it needs can_recover(), "
                "attempt_recovery() and get_fallback() (see faultlens.recovery.RecoveryStrategy)"
            )
    return strategy  # type: ignore[return-value]


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _close_awaitable(value: object) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        close()


class RecoveryEngine:
    """Runs recovery strategies in order, under the policy of the error's layer.

    ``strategies`` are tried after the call site's own (those given to
    :func:`recover`) and before the layer policy's.  ``policies`` and
    ``error_contexts`` default to the process-wide ones.  ``on_escalate`` is
    called with the layer state and the context each time an error raises its
    correlation's level to ``high`` or to ``critical`` (exceptions it raises
    are counted, never propagated).  The engine keeps no per-call state:
    share it freely between threads and tasks.
    """

    __slots__ = ("_error_contexts", "_policies", "on_escalate", "strategies")

    def __init__(
        self,
        *strategies: RecoveryStrategy,
        policies: LayerPolicies | None = None,
        error_contexts: ErrorContexts | None = None,
        on_escalate: Callable[[LayerErrorState, RecoveryContext], object] | None = None,
    ) -> None:
        self.strategies: tuple[RecoveryStrategy, ...] = tuple(
            _check_strategy(s) for s in strategies
        )
        self._policies = policies
        self._error_contexts = error_contexts
        self.on_escalate = on_escalate

    @property
    def policies(self) -> LayerPolicies:
        """The layer policies this engine consults."""
        return self._policies if self._policies is not None else layer_policies()

    @property
    def error_contexts(self) -> ErrorContexts:
        """Where this engine records each correlation's errors."""
        return self._error_contexts if self._error_contexts is not None else error_contexts()

    # --- the chain ----------------------------------------------------------------------

    def _prepare(
        self,
        error: BaseException,
        context: RecoveryContext | None,
        strategies: Sequence[RecoveryStrategy],
    ) -> tuple[RecoveryContext, list[RecoveryStrategy], RecoveryResult | None]:
        if context is None:
            context = RecoveryContext.from_error(error)
        policy = self.policies.policy_for(context.layer)
        err_ctx = self.error_contexts.get(context.correlation_id)
        state = err_ctx.record(context.layer, context.severity, policy)
        context = replace(context, error_context=err_ctx, error_state=state)
        if state.escalated and self.on_escalate is not None:
            try:
                self.on_escalate(state, context)
            except Exception:
                counters.incr("recovery.on_escalate_errors")
                report_once(
                    f"on_escalate:{id(self.on_escalate)}",
                    "the recovery engine's on_escalate callback raised; escalations continue, "
                    "failures are counted in faultlens.stats()['recovery.on_escalate_errors']",
                )
        reason: str | None = None
        if not policy.automatic_recovery:
            reason = "automatic_recovery_off"
        elif state.over_budget:
            reason = "over_error_budget"
        if reason is not None:
            result = RecoveryResult.not_attempted(
                reason,
                layer=state.layer,
                errors_last_minute=state.errors_last_minute,
                max_errors_per_minute=policy.max_errors_per_minute,
            )
            self._event(
                context,
                name="layer_policy",
                attempt=0,
                result=result,
                duration_ms=0.0,
                extra={"reason": reason},
            )
            err_ctx.record_recovery("skipped")
            return context, [], result
        chain: list[RecoveryStrategy] = []
        seen: set[int] = set()
        for strategy in (*strategies, *self.strategies, *policy.strategies):
            if id(strategy) not in seen:
                seen.add(id(strategy))
                chain.append(strategy)
        return context, chain, None

    @staticmethod
    def _applies(strategy: RecoveryStrategy, error: BaseException, ctx: RecoveryContext) -> bool:
        try:
            return bool(strategy.can_recover(error, ctx))
        except Exception:
            counters.incr("recovery.can_recover_errors")
            return False

    @staticmethod
    def _checked(strategy: RecoveryStrategy, result: object) -> RecoveryResult:
        if isinstance(result, RecoveryResult):
            return result
        if inspect.isawaitable(result):
            _close_awaitable(result)
            message = (
                f"strategy {strategy_name(strategy)!r} returned an awaitable in a synchronous "
                "call: give it a synchronous attempt_recovery() or decorate an async function"
            )
        else:
            message = (
                f"strategy {strategy_name(strategy)!r} returned {type(result).__name__}, "
                "not a RecoveryResult"
            )
        raise ConfigurationError(message)

    def _finish(
        self,
        strategy: RecoveryStrategy,
        attempt: int,
        result: RecoveryResult | BaseException,
        started: float,
        ctx: RecoveryContext,
        *,
        fallback: bool = False,
    ) -> RecoveryResult:
        name = strategy_name(strategy)
        extra: dict[str, Any] = {}
        if isinstance(result, BaseException):
            extra["strategy_error"] = error_type(result)
            result = RecoveryResult.failed(
                details={"error_type": error_type(result), "error": _message(result)}
            )
        if fallback and result.recovered:
            # A fallback is a degraded answer by definition.
            result = replace(result, status=RecoveryStatus.PARTIAL)
            extra["fallback"] = True
        result = replace(result, strategy=name)
        duration_ms = (get_clock().monotonic() - started) * 1000.0
        self._event(
            ctx, name=name, attempt=attempt, result=result, duration_ms=duration_ms, extra=extra
        )
        if ctx.error_context is not None:
            ctx.error_context.record_recovery(
                "recovered" if result.recovered else result.status.value
            )
        return result

    def _event(
        self,
        ctx: RecoveryContext,
        *,
        name: str,
        attempt: int,
        result: RecoveryResult,
        duration_ms: float,
        extra: dict[str, Any],
    ) -> None:
        if not bus.active:
            return
        state = ctx.error_state
        payload: dict[str, Any] = {
            "status": result.status.value,
            "degraded": result.degraded,
            "actions": list(result.actions),
            "layer": ctx.layer,
            "escalation": state.level.label if state is not None else None,
            **extra,
        }
        if state is not None and state.escalated:
            payload["escalated"] = True
        if ctx.operation is not None:
            payload["operation"] = ctx.operation
        if name == "authentication":
            payload["security"] = True
        outcome: Outcome = "recovered" if result.recovered else "not_recovered"
        record("strategy", name, attempt, outcome, 0.0, round(duration_ms, 3), ctx.error, payload)

    @staticmethod
    def _unrecovered(attempts: list[RecoveryResult], ctx: RecoveryContext) -> RecoveryResult:
        if not attempts:
            return RecoveryResult.not_attempted("no_strategy_applies", layer=ctx.layer)
        return RecoveryResult.failed(
            actions=[a for r in attempts for a in r.actions],
            details={
                "attempts": [
                    {"strategy": r.strategy, "status": r.status.value, "actions": list(r.actions)}
                    for r in attempts
                ]
            },
        )

    def attempt_recovery(
        self,
        error: BaseException,
        context: RecoveryContext | None = None,
        *,
        strategies: Sequence[RecoveryStrategy] = (),
    ) -> RecoveryResult:
        """Run the chain for ``error`` (synchronously); return the winning or the final result.

        ``context`` defaults to one built from the current state; ``strategies``
        run before the engine's own.  Never raises because of a strategy.
        """
        ctx, chain, blocked = self._prepare(error, context, strategies)
        if blocked is not None:
            return blocked
        clock = get_clock()
        attempts: list[RecoveryResult] = []
        applicable: list[RecoveryStrategy] = []
        for strategy in chain:
            if not self._applies(strategy, error, ctx):
                continue
            applicable.append(strategy)
            started = clock.monotonic()
            outcome: RecoveryResult | BaseException
            try:
                outcome = self._checked(strategy, strategy.attempt_recovery(error, ctx))
            except Exception as exc:
                outcome = exc
            result = self._finish(strategy, len(applicable), outcome, started, ctx)
            if result.recovered:
                return result
            attempts.append(result)
        for strategy in applicable:
            started = clock.monotonic()
            try:
                outcome = self._checked(strategy, strategy.get_fallback(error, ctx))
            except Exception as exc:
                outcome = exc
            if isinstance(outcome, RecoveryResult) and not outcome.recovered:
                continue  # no fallback offered: not an attempt
            result = self._finish(
                strategy, len(applicable) + 1, outcome, started, ctx, fallback=True
            )
            if result.recovered:
                return result
            attempts.append(result)
        return self._unrecovered(attempts, ctx)

    async def attempt_recovery_async(
        self,
        error: BaseException,
        context: RecoveryContext | None = None,
        *,
        strategies: Sequence[RecoveryStrategy] = (),
    ) -> RecoveryResult:
        """Like :meth:`attempt_recovery`, awaiting async strategies and awaitable results."""
        ctx, chain, blocked = self._prepare(error, context, strategies)
        if blocked is not None:
            return blocked
        clock = get_clock()
        attempts: list[RecoveryResult] = []
        applicable: list[RecoveryStrategy] = []
        for strategy in chain:
            if not self._applies(strategy, error, ctx):
                continue
            applicable.append(strategy)
            started = clock.monotonic()
            outcome: RecoveryResult | BaseException
            try:
                attempt_async = getattr(strategy, "attempt_recovery_async", None)
                if attempt_async is not None:
                    value = await attempt_async(error, ctx)
                else:
                    value = strategy.attempt_recovery(error, ctx)
                    if inspect.isawaitable(value):
                        value = await value
                outcome = self._checked(strategy, value)
            except Exception as exc:
                outcome = exc
            result = self._finish(strategy, len(applicable), outcome, started, ctx)
            if result.recovered:
                return result
            attempts.append(result)
        for strategy in applicable:
            started = clock.monotonic()
            try:
                value = strategy.get_fallback(error, ctx)
                if inspect.isawaitable(value):
                    value = await value
                outcome = self._checked(strategy, value)
            except Exception as exc:
                outcome = exc
            if isinstance(outcome, RecoveryResult) and not outcome.recovered:
                continue
            result = self._finish(
                strategy, len(applicable) + 1, outcome, started, ctx, fallback=True
            )
            if result.recovered:
                return result
            attempts.append(result)
        return self._unrecovered(attempts, ctx)

    def __repr__(self) -> str:
        names = ", ".join(strategy_name(s) for s in self.strategies)
        return f"<RecoveryEngine [{names}]>"


_default_engine: RecoveryEngine | None = None


def default_engine() -> RecoveryEngine:
    """The engine :func:`recover` uses when given none (process-wide policies and contexts)."""
    global _default_engine
    if _default_engine is None:
        _default_engine = RecoveryEngine()
    return _default_engine


def _mark_degraded(result: RecoveryResult) -> None:
    # Downstream code (a response middleware, the operation's completion line) sees
    # that this request was answered with degraded data.
    from faultlens.operations import current as current_operation

    run = current_operation()
    if run is not None:
        run.annotate(degraded=True, degraded_by=result.strategy)
    if current_context() is not None:  # outside a correlation, bind() would start one
        bind(degraded=True, degraded_by=result.strategy)


class StrategyChain(Policy):
    """The policy :func:`recover` returns: a decorator for sync and async functions.

    Also composes with the other policies in ``pipeline(...)`` and runs one-off
    calls with ``.call`` / ``.acall``.
    """

    __slots__ = ("_engine", "layer", "name", "strategies")

    kind = "strategy"

    def __init__(
        self,
        strategies: Sequence[RecoveryStrategy],
        *,
        engine: RecoveryEngine | None = None,
        layer: str | None = None,
        name: str = "recover",
    ) -> None:
        self.strategies = tuple(_check_strategy(s) for s in strategies)
        self._engine = engine
        self.layer = layer
        self.name = name

    @property
    def engine(self) -> RecoveryEngine:
        """The engine running the chain (the default engine unless one was given)."""
        return self._engine if self._engine is not None else default_engine()

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` running the strategy chain on exceptions (sync)."""
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise ConfigurationError(
                f"recover() cannot decorate the generator function {fn.__qualname__}: "
                "its body runs after the call returns; use the engine inside it instead"
            )
        strategies, layer = self.strategies, self.layer

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                ctx = RecoveryContext.from_error(exc, call=CallSite(fn, args, kwargs), layer=layer)
                result = self.engine.attempt_recovery(exc, ctx, strategies=strategies)
                if not result.recovered:
                    raise
            if result.degraded:
                _mark_degraded(result)
            value: R = result.value
            return value

        return run

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Return coroutine function ``fn`` running the strategy chain on exceptions."""
        strategies, layer = self.strategies, self.layer

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                ctx = RecoveryContext.from_error(exc, call=CallSite(fn, args, kwargs), layer=layer)
                result = await self.engine.attempt_recovery_async(exc, ctx, strategies=strategies)
                if not result.recovered:
                    raise
            if result.degraded:
                _mark_degraded(result)
            value: R = result.value
            return value

        return run


def recover(
    *strategies: RecoveryStrategy,
    engine: RecoveryEngine | None = None,
    layer: str | None = None,
    name: str = "recover",
) -> StrategyChain:
    """Decorate a function so that its exceptions run a recovery strategy chain.

    On an ``Exception`` the engine (default: the process-wide one) builds a
    :class:`RecoveryContext` (the error, its classification, the current
    request context, the call and its arguments), records the error in the
    correlation's error context, consults the layer policy (``layer`` overrides
    the classification's and the operation's layer) and tries ``strategies`` in
    order, then the engine's and the layer's.  A recovered value is returned; a
    ``partial`` one marks the current context and operation ``degraded``.
    Otherwise the original exception is re-raised unchanged.  Works on
    functions and coroutine functions.
    """
    return StrategyChain(strategies, engine=engine, layer=layer, name=name)
