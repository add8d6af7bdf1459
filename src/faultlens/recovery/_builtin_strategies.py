"""The built-in recovery strategies: database, authentication and validation errors.

Each does real work through callables the application supplies (re-running the
failed call, a replica, a cache, a credential refresh, a guest view, input
normalisers) and reports every step in its result's ``details["steps"]``;
none reports success without having produced the value it returns.

The steps are written once, as a generator that yields what must be done
(call this, wait that long) and receives the outcome; a synchronous and an
asynchronous driver carry them out, so the same strategy serves functions and
coroutine functions, and async callables are awaited in the latter.
"""

from __future__ import annotations

import inspect
import random as _random
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from faultlens import events
from faultlens._clock import get_clock
from faultlens.errors import ConfigurationError
from faultlens.recovery._backoff import Backoff, testing
from faultlens.recovery._record import error_type
from faultlens.recovery._strategies import CallSite, RecoveryContext, RecoveryResult, _classify

__all__ = [
    "AuthenticationRecoveryStrategy",
    "DatabaseRecoveryStrategy",
    "ValidationRecoveryStrategy",
]

ContextPredicate: TypeAlias = Callable[[RecoveryContext], bool]
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_MAX_MESSAGE: Final = 200
_MAX_ATTEMPTS: Final = 10


# --- steps and their drivers ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """Call ``fn(*args, **kwargs)``; the driver sends back its value or throws its exception."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class _Sleep:
    """Wait ``seconds`` through the faultlens clock."""

    seconds: float


_Steps: TypeAlias = Generator["_Call | _Sleep", Any, RecoveryResult]


def _drive(steps: _Steps) -> RecoveryResult:
    """Carry out ``steps`` synchronously."""
    try:
        action = next(steps)
        while True:
            if isinstance(action, _Sleep):
                get_clock().sleep(action.seconds)
                action = steps.send(None)
                continue
            try:
                value = action.fn(*action.args, **action.kwargs)
                if inspect.isawaitable(value):
                    close = getattr(value, "close", None)
                    if callable(close):
                        close()
                    raise ConfigurationError(
                        f"{_name(action.fn)} returned an awaitable in a synchronous call: "
                        "use synchronous callables here, or decorate an async function"
                    )
            except Exception as exc:
                action = steps.throw(exc)
            else:
                action = steps.send(value)
    except StopIteration as stop:
        result: RecoveryResult = stop.value
        return result
    finally:
        steps.close()


async def _drive_async(steps: _Steps) -> RecoveryResult:
    """Carry out ``steps``, awaiting awaitable results and sleeping without blocking."""
    try:
        action = next(steps)
        while True:
            if isinstance(action, _Sleep):
                await get_clock().asleep(action.seconds)
                action = steps.send(None)
                continue
            try:
                value = action.fn(*action.args, **action.kwargs)
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                action = steps.throw(exc)
            else:
                action = steps.send(value)
    except StopIteration as stop:
        result: RecoveryResult = stop.value
        return result
    finally:
        steps.close()


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _failure(step: str, exc: BaseException, **more: Any) -> dict[str, Any]:
    return {
        "step": step,
        "outcome": "error",
        "error_type": error_type(exc),
        "error": _message(exc),
        **more,
    }


def _mro_names(error: BaseException) -> frozenset[str]:
    return frozenset(k.__name__ for k in type(error).__mro__)


def _check_types(on: object) -> tuple[type[BaseException], ...] | None:
    if on is None:
        return None
    items: Iterable[object] = (on,) if isinstance(on, type) else on  # type: ignore[assignment]
    types: list[type[BaseException]] = []
    for kind in items:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigurationError(f"on= takes exception types, not {kind!r}")
        types.append(kind)
    return tuple(types)


def _check_callable(value: object, what: str) -> None:
    if value is not None and not callable(value):
        raise ConfigurationError(f"{what} must be callable, not {type(value).__name__}")


class _StepStrategy:
    """What the built-ins share: ``on``/``when`` applicability and the two drivers."""

    __slots__ = ("_on", "_when")

    name: str = "strategy"

    def __init__(
        self,
        on: type[BaseException] | Iterable[type[BaseException]] | None,
        when: ContextPredicate | None,
    ) -> None:
        _check_callable(when, "when")
        self._on = _check_types(on)
        self._when = when

    def _matches(self, error: BaseException, context: RecoveryContext) -> bool:
        raise NotImplementedError

    def can_recover(self, error: BaseException, context: RecoveryContext) -> bool:
        """True when ``error`` is this strategy's kind (``on=`` or its test) and ``when`` agrees."""
        matches = isinstance(error, self._on) if self._on is not None else None
        if matches is None:
            matches = self._matches(error, context)
        if not matches:
            return False
        return self._when is None or bool(self._when(context))

    def _steps(self, error: BaseException, context: RecoveryContext) -> _Steps:
        raise NotImplementedError

    def attempt_recovery(self, error: BaseException, context: RecoveryContext) -> RecoveryResult:
        """Carry out the strategy's steps (synchronously)."""
        return _drive(self._steps(error, context))

    async def attempt_recovery_async(
        self, error: BaseException, context: RecoveryContext
    ) -> RecoveryResult:
        """Carry out the strategy's steps, awaiting async callables."""
        return await _drive_async(self._steps(error, context))

    def get_fallback(self, error: BaseException, context: RecoveryContext) -> RecoveryResult:
        """None: the built-ins' degraded answers (cache, guest) are part of their attempt."""
        return RecoveryResult.not_attempted("no_separate_fallback")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _call_args(context: RecoveryContext) -> tuple[tuple[Any, ...], dict[str, Any]]:
    call = context.call
    if call is None:
        return (), {}
    return tuple(call.args), dict(call.kwargs)


# --- database ---------------------------------------------------------------------------

# DB-API exception names (sqlite3, psycopg, pymysql, SQLAlchemy wrap the same names).
_OPERATIONAL_NAMES: Final = frozenset({"OperationalError", "InterfaceError", "DisconnectionError"})
_DATABASE_CATEGORIES: Final = frozenset({"transient", "system"})


def _transient(error: BaseException, context: RecoveryContext) -> bool:
    classification = context.classification if context.error is error else None
    if classification is None:
        classification = _classify(error)
    if classification is not None and classification.category != "unknown":
        return classification.category == "transient" or bool(classification.retryable)
    return isinstance(error, ConnectionError | TimeoutError) or bool(
        _mro_names(error) & _OPERATIONAL_NAMES
    )


class DatabaseRecoveryStrategy(_StepStrategy):
    """Recover from an operational database error: retry, then a replica, then a cache.

    1. Retry: when the error is transient (classification ``transient`` or
       retryable; without one, a DB-API ``OperationalError``/``InterfaceError``,
       ``ConnectionError`` or ``TimeoutError``), re-run the call up to
       ``attempts`` times, waiting ``backoff`` between tries through the
       faultlens clock.  ``retry_call`` replaces the original call (e.g. one
       that reconnects first); it gets the same arguments.  Retrying stops at
       the first error that is not transient.
    2. Replica: ``replica(*args, **kwargs)`` answers instead (a read-only path:
       give one only for reads).  A success; ``details["read_only"]`` is True.
    3. Cache: ``cache(*args, **kwargs)`` returns the cached value, or ``None``
       or raises when there is none.  A ``partial`` (degraded) result.

    It applies to infrastructure errors of category ``transient`` or ``system``
    (or, without a classification, to the exception types above); ``on=``
    replaces that test with exception types, ``when=`` narrows it by context
    (permissions, layer, user).
    """

    __slots__ = ("attempts", "backoff", "cache", "random", "replica", "retry_call")

    name = "database"

    def __init__(
        self,
        *,
        attempts: int = 2,
        backoff: Backoff | None = None,
        retry_call: Callable[..., Any] | None = None,
        replica: Callable[..., Any] | None = None,
        cache: Callable[..., Any] | None = None,
        on: type[BaseException] | Iterable[type[BaseException]] | None = None,
        when: ContextPredicate | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        super().__init__(on, when)
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise ConfigurationError(f"attempts must be an integer, not {attempts!r}")
        if not 0 <= attempts <= _MAX_ATTEMPTS:
            raise ConfigurationError(
                f"attempts must be between 0 and {_MAX_ATTEMPTS}, not {attempts}: "
                "a database that failed that often is down, let the replica or cache answer"
            )
        for value, what in ((retry_call, "retry_call"), (replica, "replica"), (cache, "cache")):
            _check_callable(value, what)
        self.attempts = attempts
        self.backoff = backoff if backoff is not None else Backoff(initial=0.1, maximum=2.0)
        self.retry_call = retry_call
        self.replica = replica
        self.cache = cache
        self.random = random

    def _matches(self, error: BaseException, context: RecoveryContext) -> bool:
        classification = context.classification
        if classification is not None and classification.category != "unknown":
            return (
                classification.layer == "infrastructure"
                and classification.category in _DATABASE_CATEGORIES
            )
        return _transient(error, context)

    def _steps(self, error: BaseException, context: RecoveryContext) -> _Steps:
        args, kwargs = _call_args(context)
        steps: list[dict[str, Any]] = []
        actions: list[str] = []
        target = self.retry_call or (context.call.fn if context.call is not None else None)
        attempts = self.attempts
        if testing.active and testing.max_attempts is not None:
            attempts = min(attempts, max(0, testing.max_attempts - 1))
        last: BaseException = error
        delay = 0.0
        if target is None:
            steps.append({"step": "retry", "outcome": "skipped", "reason": "no call to retry"})
        else:
            for attempt in range(1, attempts + 1):
                if not _transient(last, context):
                    steps.append(
                        {
                            "step": "retry",
                            "outcome": "skipped",
                            "reason": "not transient",
                            "error_type": error_type(last),
                        }
                    )
                    break
                delay = 0.0 if testing.active else self.backoff.delay(attempt, delay, self.random)
                if delay > 0:
                    yield _Sleep(delay)
                try:
                    value = yield _Call(target, args, kwargs)
                except Exception as exc:
                    steps.append(_failure("retry", exc, attempt=attempt, delay_s=delay))
                    last = exc
                    continue
                steps.append(
                    {"step": "retry", "attempt": attempt, "delay_s": delay, "outcome": "ok"}
                )
                actions.append(f"retried the call ({attempt} of {attempts})")
                return RecoveryResult.success(value, actions=actions, details={"steps": steps})
            if attempts:
                times = "once" if attempts == 1 else f"{attempts} times"
                actions.append(f"retried the call {times} without success")
        if self.replica is not None:
            try:
                value = yield _Call(self.replica, args, kwargs)
            except Exception as exc:
                steps.append(_failure("replica", exc))
                actions.append("tried the read-only replica without success")
            else:
                steps.append({"step": "replica", "outcome": "ok"})
                actions.append("answered from the read-only replica")
                return RecoveryResult.success(
                    value, actions=actions, details={"steps": steps, "read_only": True}
                )
        if self.cache is not None:
            try:
                value = yield _Call(self.cache, args, kwargs)
            except Exception as exc:
                steps.append(_failure("cache", exc))
                value = None
            else:
                steps.append({"step": "cache", "outcome": "miss" if value is None else "ok"})
            if value is not None:
                actions.append("served the cached value")
                return RecoveryResult.partial(
                    value, actions=actions, details={"steps": steps, "cached": True}
                )
            actions.append("found no cached value")
        return RecoveryResult.failed(actions=actions, details={"steps": steps})


# --- authentication ---------------------------------------------------------------------

_AUTH_NAMES: Final = frozenset(
    {
        "AuthenticationError",
        "AuthenticationFailed",
        "NotAuthenticated",
        "Unauthorized",
        "InvalidTokenError",
        "ExpiredSignatureError",
    }
)


class AuthenticationRecoveryStrategy(_StepStrategy):
    """Recover from an authentication error: clear, refresh once and re-run, or a guest view.

    1. ``clear_credentials(context)`` drops the invalid credentials (a session
       entry, a cached token).
    2. ``refresh(context)`` is called once for new credentials (``None`` or an
       exception: none).  With new credentials the call is re-run once — with
       them as the keyword argument ``credentials_kwarg`` when given, else
       unchanged (``refresh`` updated a shared token store).  A success.
    3. When ``guest_allowed(context)`` is true, ``guest(*args, **kwargs)``
       answers as an anonymous user: a ``partial`` (degraded) result.
       ``guest`` requires ``guest_allowed``: granting access is never implicit.

    Every attempt publishes an ``audit`` event ``authentication_recovery`` with
    ``security: True`` (outcome, actions, user from the context), and its
    ``recovery`` event carries ``security: True`` too.  It applies to errors
    classified ``authentication`` (or, without a classification, with an
    authentication-error class name); ``on=`` and ``when=`` as for the others.
    """

    __slots__ = ("clear_credentials", "credentials_kwarg", "guest", "guest_allowed", "refresh")

    name = "authentication"

    def __init__(
        self,
        *,
        clear_credentials: Callable[[RecoveryContext], Any] | None = None,
        refresh: Callable[[RecoveryContext], Any] | None = None,
        credentials_kwarg: str | None = None,
        guest_allowed: ContextPredicate | None = None,
        guest: Callable[..., Any] | None = None,
        on: type[BaseException] | Iterable[type[BaseException]] | None = None,
        when: ContextPredicate | None = None,
    ) -> None:
        super().__init__(on, when)
        for value, what in (
            (clear_credentials, "clear_credentials"),
            (refresh, "refresh"),
            (guest_allowed, "guest_allowed"),
            (guest, "guest"),
        ):
            _check_callable(value, what)
        if guest is not None and guest_allowed is None:
            raise ConfigurationError(
                "guest= needs guest_allowed=<predicate(context)>: say when guest access is allowed"
            )
        if credentials_kwarg is not None and not (
            isinstance(credentials_kwarg, str) and credentials_kwarg.isidentifier()
        ):
            raise ConfigurationError(
                f"credentials_kwarg must be a parameter name, not {credentials_kwarg!r}"
            )
        self.clear_credentials = clear_credentials
        self.refresh = refresh
        self.credentials_kwarg = credentials_kwarg
        self.guest_allowed = guest_allowed
        self.guest = guest

    def _matches(self, error: BaseException, context: RecoveryContext) -> bool:
        classification = context.classification
        if classification is not None and classification.category != "unknown":
            return classification.category == "authentication"
        return bool(_mro_names(error) & _AUTH_NAMES)

    def _steps(self, error: BaseException, context: RecoveryContext) -> _Steps:
        outcome: RecoveryResult | None = None
        try:
            outcome = yield from self._recover(error, context)
            return outcome
        finally:
            # Published however the attempt ends: also when a callback raised or
            # the task was cancelled half-way (status "interrupted").
            self._audit(error, context, outcome)

    def _recover(self, error: BaseException, context: RecoveryContext) -> _Steps:
        args, kwargs = _call_args(context)
        steps: list[dict[str, Any]] = []
        actions: list[str] = []
        if self.clear_credentials is not None:
            try:
                yield _Call(self.clear_credentials, (context,))
            except Exception as exc:
                steps.append(_failure("clear_credentials", exc))
            else:
                steps.append({"step": "clear_credentials", "outcome": "ok"})
                actions.append("cleared the invalid credentials")
        if self.refresh is not None:
            credentials: Any = None
            try:
                credentials = yield _Call(self.refresh, (context,))
            except Exception as exc:
                steps.append(_failure("refresh", exc))
            else:
                steps.append(
                    {"step": "refresh", "outcome": "none" if credentials is None else "ok"}
                )
            if credentials is None:
                actions.append("could not refresh the credentials")
            else:
                actions.append("refreshed the credentials")
                if context.call is None:
                    steps.append({"step": "rerun", "outcome": "skipped", "reason": "no call"})
                else:
                    rerun_kwargs = dict(kwargs)
                    if self.credentials_kwarg is not None:
                        rerun_kwargs[self.credentials_kwarg] = credentials
                    try:
                        value = yield _Call(context.call.fn, args, rerun_kwargs)
                    except Exception as exc:
                        steps.append(_failure("rerun", exc))
                        actions.append("re-ran the call with the new credentials without success")
                    else:
                        steps.append({"step": "rerun", "outcome": "ok"})
                        actions.append("re-ran the call with the new credentials")
                        return RecoveryResult.success(
                            value, actions=actions, details={"steps": steps}
                        )
        guest = yield from self._guest(context, args, kwargs, steps, actions)
        if guest is not None:
            return guest
        return RecoveryResult.failed(actions=actions, details={"steps": steps})

    def _guest(
        self,
        context: RecoveryContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        steps: list[dict[str, Any]],
        actions: list[str],
    ) -> Generator[_Call | _Sleep, Any, RecoveryResult | None]:
        if self.guest is None or self.guest_allowed is None:
            return None
        try:
            allowed = bool(self.guest_allowed(context))
        except Exception as exc:  # a broken predicate grants nothing
            steps.append(_failure("guest_allowed", exc))
            allowed = False
        if not allowed:
            steps.append({"step": "guest", "outcome": "not_allowed"})
            return None
        try:
            value = yield _Call(self.guest, args, kwargs)
        except Exception as exc:
            steps.append(_failure("guest", exc))
            actions.append("tried guest access without success")
            return None
        steps.append({"step": "guest", "outcome": "ok"})
        actions.append("answered with guest access")
        return RecoveryResult.partial(
            value, actions=actions, details={"steps": steps, "guest": True}
        )

    def _audit(
        self, error: BaseException, context: RecoveryContext, result: RecoveryResult | None
    ) -> None:
        steps: Any = result.details.get("steps", ()) if result is not None else ()
        refreshed = any(s.get("step") == "refresh" and s.get("outcome") == "ok" for s in steps)
        events.emit(
            events.AUDIT,
            "authentication_recovery",
            {
                "security": True,
                "status": result.status.value if result is not None else "interrupted",
                "actions": list(result.actions) if result is not None else [],
                "error_type": error_type(error),
                "refreshed": refreshed,
                "guest": bool(result is not None and result.details.get("guest", False)),
                "layer": context.layer,
                "operation": context.operation,
            },
        )


# --- validation -------------------------------------------------------------------------


def _is_validation(error: BaseException, context: RecoveryContext) -> bool:
    classification = context.classification
    if classification is not None and classification.category != "unknown":
        return classification.category == "validation"
    return "ValidationError" in _mro_names(error)


def _error_suggestions(error: BaseException) -> list[str]:
    # pydantic-style errors() → "field: message"; anything else: nothing to say.
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return []
    try:
        items = errors()
    except Exception:
        return []
    out: list[str] = []
    if isinstance(items, Sequence):
        for item in list(items)[:20]:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", ()) or ())
                msg = str(item.get("msg", ""))[:_MAX_MESSAGE]
                out.append(f"{loc}: {msg}" if loc else msg)
    return out


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # values whose == is not a plain bool (arrays): treat as changed
        return False


class _Arguments:
    """The failed call's arguments by parameter name (positional ones too), editable."""

    __slots__ = ("_bound", "_call", "_params", "_values", "_var_kw")

    def __init__(self, call: CallSite) -> None:
        self._call = call
        self._var_kw: str | None = None
        self._bound: inspect.BoundArguments | None
        try:
            signature = inspect.signature(call.fn)
            self._bound = signature.bind_partial(*call.args, **call.kwargs)
        except (TypeError, ValueError):  # no signature (builtins) or arguments that do not bind
            self._bound = None
            self._params: Mapping[str, inspect.Parameter] | None = None
            self._values: dict[str, Any] = dict(call.kwargs)
            return
        self._params = signature.parameters
        self._values = self._bound.arguments
        for param in signature.parameters.values():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                self._var_kw = param.name
                self._values[param.name] = dict(self._values.get(param.name, {}))

    def _named(self, name: str) -> bool:
        params = self._params
        if params is None:
            return True
        param = params.get(name)
        return param is not None and param.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )

    def has(self, name: str) -> bool:
        if self._named(name):
            return name in self._values
        return self._var_kw is not None and name in self._values[self._var_kw]

    def get(self, name: str) -> Any:
        if self._named(name):
            return self._values.get(name)
        return self._values[self._var_kw].get(name) if self._var_kw is not None else None

    def put(self, name: str, value: Any) -> bool:
        if self._named(name):
            self._values[name] = value
            return True
        if self._var_kw is not None:
            self._values[self._var_kw][name] = value
            return True
        return False

    def call_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self._bound is not None:
            return tuple(self._bound.args), dict(self._bound.kwargs)
        return tuple(self._call.args), dict(self._values)


class ValidationRecoveryStrategy(_StepStrategy):
    """Recover from invalid input: apply defaults and normalisers, re-run; else suggest a fix.

    The failed call's arguments are bound to its parameters (positional ones
    too).  ``defaults`` fills fields that are missing or ``None``;
    ``normalisers`` replace present fields by ``normaliser(value)`` (e.g.
    ``str.strip``, ``int``).  When that changed something the call is re-run
    once with the corrected arguments: a success whose ``details["corrected"]``
    lists the fields changed.  When nothing could be corrected, or the re-run
    fails too, the result is ``failed`` with ``details["suggestions"]`` from
    ``suggest(error, context)`` (or the error's own ``errors()`` list, as
    pydantic's has).  It applies to errors classified ``validation`` (or
    named ``ValidationError`` without a classification); ``on=``/``when=`` as
    for the others.  A plain ``ValueError`` is classified as a bug, not as
    invalid input: raise ``faultlens.errors.ValidationError`` or pass ``on=``.
    """

    __slots__ = ("defaults", "normalisers", "suggest")

    name = "validation"

    def __init__(
        self,
        *,
        defaults: Mapping[str, Any] | None = None,
        normalisers: Mapping[str, Callable[[Any], Any]] | None = None,
        suggest: Callable[[BaseException, RecoveryContext], Iterable[str]] | None = None,
        on: type[BaseException] | Iterable[type[BaseException]] | None = None,
        when: ContextPredicate | None = None,
    ) -> None:
        super().__init__(on, when)
        _check_callable(suggest, "suggest")
        for key, fn in (normalisers or {}).items():
            _check_callable(fn, f"normalisers[{key!r}]")
        self.defaults: Mapping[str, Any] = MappingProxyType(dict(defaults or {}))
        self.normalisers: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
            dict(normalisers or {})
        )
        self.suggest = suggest

    def _matches(self, error: BaseException, context: RecoveryContext) -> bool:
        return context.call is not None and _is_validation(error, context)

    def _suggestions(self, error: BaseException, context: RecoveryContext) -> list[str]:
        if self.suggest is None:
            return _error_suggestions(error)
        try:
            return [str(s) for s in self.suggest(error, context)]
        except Exception:
            return _error_suggestions(error)

    def _correct(
        self, call: CallSite, steps: list[dict[str, Any]]
    ) -> tuple[tuple[Any, ...], dict[str, Any], list[str]] | None:
        arguments = _Arguments(call)
        corrected: list[str] = []
        for name, default in self.defaults.items():
            if arguments.has(name) and arguments.get(name) is not None:
                continue
            if arguments.put(name, default):
                corrected.append(name)
                steps.append({"step": "default", "field": name, "outcome": "ok"})
            else:
                steps.append({"step": "default", "field": name, "outcome": "unknown_field"})
        for name, normalise in self.normalisers.items():
            if not arguments.has(name):
                continue
            original = arguments.get(name)
            try:
                value = normalise(original)
            except Exception as exc:
                steps.append(_failure("normalise", exc, field=name))
                continue
            if _same(value, original):
                continue
            arguments.put(name, value)
            if name not in corrected:
                corrected.append(name)
            steps.append({"step": "normalise", "field": name, "outcome": "ok"})
        if not corrected:
            return None
        args, kwargs = arguments.call_args()
        return args, kwargs, corrected

    def _steps(self, error: BaseException, context: RecoveryContext) -> _Steps:
        steps: list[dict[str, Any]] = []
        call = context.call
        if call is None:
            return RecoveryResult.not_attempted("no call to correct")
        corrected = self._correct(call, steps)
        if corrected is None:
            return RecoveryResult.failed(
                details={
                    "steps": steps,
                    "reason": "nothing to correct",
                    "suggestions": self._suggestions(error, context),
                }
            )
        args, kwargs, fields = corrected
        actions = [f"corrected {', '.join(fields)}"]
        try:
            value = yield _Call(call.fn, args, kwargs)
        except Exception as exc:
            steps.append(_failure("rerun", exc))
            actions.append("re-ran the call with the corrected input without success")
            return RecoveryResult.failed(
                actions=actions,
                details={
                    "steps": steps,
                    "corrected": fields,
                    "suggestions": self._suggestions(exc, context),
                },
            )
        steps.append({"step": "rerun", "outcome": "ok"})
        actions.append("re-ran the call with the corrected input")
        return RecoveryResult.success(
            value, actions=actions, details={"steps": steps, "corrected": fields}
        )
