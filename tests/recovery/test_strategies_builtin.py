"""The built-in strategies do their real steps: database, authentication, validation."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from faultlens import correlate
from faultlens.errors import (
    AuthenticationError,
    ConfigurationError,
    DataError,
    TransientError,
    ValidationError,
)
from faultlens.recovery._backoff import Backoff
from faultlens.recovery._builtin_strategies import (
    AuthenticationRecoveryStrategy,
    DatabaseRecoveryStrategy,
    ValidationRecoveryStrategy,
)
from faultlens.recovery._layers import error_contexts, layer_policies
from faultlens.recovery._strategies import (
    CallSite,
    RecoveryContext,
    RecoveryStatus,
    recover,
)
from faultlens.testing import FakeClock, capture_events

NO_JITTER = Backoff(initial=0.1, maximum=1.0, jitter=None)


@pytest.fixture(autouse=True)
def _reset_recovery_state() -> Iterator[None]:
    """Start every test with the built-in layer policies and no error contexts."""
    layer_policies().reset()
    error_contexts().clear()
    yield
    layer_policies().reset()
    error_contexts().clear()


class Counter:
    """A callable that counts its calls and answers from a script (values or exceptions)."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    @property
    def count(self) -> int:
        return len(self.calls)


def locked() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("database is locked")


# --- database ---------------------------------------------------------------------------


def test_database_retries_with_backoff_until_the_call_succeeds() -> None:
    """Transient errors re-run the call, waiting the backoff through the clock."""
    body = Counter(locked(), locked(), "rows")

    @recover(DatabaseRecoveryStrategy(attempts=3, backoff=NO_JITTER))
    def query(table: str) -> str:
        return str(body(table))

    with FakeClock() as clock:
        assert query("orders") == "rows"
    assert body.count == 3
    assert body.calls[-1] == (("orders",), {})
    assert clock.sleeps == [0.1, 0.2]


def test_database_replica_only_after_retries_are_exhausted() -> None:
    """The replica answers only once every retry failed; a full success, read-only."""
    body = Counter(locked())
    order: list[str] = []
    replica_calls = Counter("replica rows")

    def replica(table: str) -> Any:
        order.append(f"replica after {body.count} calls")
        return replica_calls(table)

    strategy = DatabaseRecoveryStrategy(attempts=2, backoff=NO_JITTER, replica=replica)

    @recover(strategy)
    def query(table: str) -> str:
        return str(body(table))

    with FakeClock(), capture_events("recovery") as events:
        assert query("orders") == "replica rows"
    assert body.count == 3  # first call + 2 retries
    assert order == ["replica after 3 calls"]
    assert replica_calls.calls == [(("orders",), {})]
    payload = events[0].payload
    assert payload["status"] == "success"
    assert payload["degraded"] is False
    assert payload["actions"] == [
        "retried the call 2 times without success",
        "answered from the read-only replica",
    ]


def test_database_replica_result_is_returned() -> None:
    """The replica's value is what the caller gets, with details saying read-only."""
    ctx = RecoveryContext.from_error(locked(), call=CallSite(Counter(locked()), ("t",)))
    strategy = DatabaseRecoveryStrategy(attempts=1, backoff=NO_JITTER, replica=Counter("copy"))
    with FakeClock():
        result = strategy.attempt_recovery(ctx.error, ctx)
    assert result.status is RecoveryStatus.SUCCESS
    assert result.value == "copy"
    assert result.details["read_only"] is True
    assert [s["step"] for s in result.details["steps"]] == ["retry", "replica"]


def test_database_cache_is_served_as_partial_after_replica_fails() -> None:
    """A failing replica passes to the cache, whose value is a degraded answer."""
    body = Counter(locked())
    replica = Counter(ConnectionError("replica down"))
    cache = Counter(["cached"])

    @recover(DatabaseRecoveryStrategy(attempts=1, backoff=NO_JITTER, replica=replica, cache=cache))
    def query(user: str) -> list[str]:
        return list(body(user))

    with FakeClock(), correlate(), capture_events("recovery") as events:
        assert query("u1") == ["cached"]
        from faultlens import current_context

        ctx = current_context()
        assert ctx is not None
        assert ctx.fields["degraded"] is True
    assert (body.count, replica.count, cache.count) == (2, 1, 1)
    assert cache.calls == [(("u1",), {})]
    assert events[0].payload["status"] == "partial"


def test_database_cache_miss_is_not_success() -> None:
    """A cache returning None (or raising) is a miss: the error propagates."""
    body = Counter(locked())
    cache = Counter(None)

    @recover(DatabaseRecoveryStrategy(attempts=0, cache=cache))
    def query() -> object:
        return body()

    with pytest.raises(sqlite3.OperationalError):
        query()
    assert cache.count == 1

    raising = Counter(KeyError("absent"))

    @recover(DatabaseRecoveryStrategy(attempts=0, cache=raising))
    def query2() -> object:
        return body()

    with pytest.raises(sqlite3.OperationalError):
        query2()
    assert raising.count == 1


def test_database_nothing_configured_reports_failure_after_real_retries() -> None:
    """With only retries, all failing, the result is failed and lists each try."""
    body = Counter(locked())
    ctx = RecoveryContext.from_error(locked(), call=CallSite(body))
    with FakeClock():
        result = DatabaseRecoveryStrategy(attempts=2, backoff=NO_JITTER).attempt_recovery(
            ctx.error, ctx
        )
    assert result.status is RecoveryStatus.FAILED
    assert body.count == 2
    assert [s.get("attempt") for s in result.details["steps"]] == [1, 2]


def test_database_stops_retrying_on_a_non_transient_error() -> None:
    """A retry that hits a non-transient error stops retrying and moves on."""
    body = Counter(locked(), sqlite3.OperationalError("database disk image is malformed"))
    ctx = RecoveryContext.from_error(locked(), call=CallSite(body))
    with FakeClock():
        result = DatabaseRecoveryStrategy(attempts=5, backoff=NO_JITTER).attempt_recovery(
            ctx.error, ctx
        )
    assert body.count == 2  # the second retry hit a corrupt database: no third
    assert result.details["steps"][-1]["reason"] == "not transient"


def test_database_non_transient_error_skips_to_replica() -> None:
    """A system-level database failure is not retried but the replica may answer."""
    body = Counter("unused")
    replica = Counter("copy")
    error = sqlite3.OperationalError("unable to open database file")
    ctx = RecoveryContext.from_error(error, call=CallSite(body))
    strategy = DatabaseRecoveryStrategy(attempts=3, replica=replica)
    assert strategy.can_recover(error, ctx)
    result = strategy.attempt_recovery(error, ctx)
    assert result.value == "copy"
    assert body.count == 0
    assert replica.count == 1


def test_database_retry_call_replaces_the_original() -> None:
    """retry_call is re-run with the call's arguments instead of the original function."""
    original = Counter(locked())
    reconnecting = Counter("fresh connection rows")
    ctx = RecoveryContext.from_error(locked(), call=CallSite(original, ("q",), {"limit": 5}))
    strategy = DatabaseRecoveryStrategy(attempts=1, backoff=NO_JITTER, retry_call=reconnecting)
    with FakeClock():
        result = strategy.attempt_recovery(ctx.error, ctx)
    assert result.value == "fresh connection rows"
    assert original.count == 0
    assert reconnecting.calls == [(("q",), {"limit": 5})]


def test_database_applies_only_to_infrastructure_failures() -> None:
    """Transient/system infrastructure errors apply; data or validation errors do not."""
    strategy = DatabaseRecoveryStrategy()
    applicable: list[Exception] = [locked(), TimeoutError(), ConnectionResetError()]
    for error in applicable:
        assert strategy.can_recover(error, RecoveryContext.from_error(error))
    inapplicable: list[Exception] = [
        sqlite3.IntegrityError("UNIQUE constraint failed: users.email"),
        ValidationError("bad"),
        DataError("corrupt"),
    ]
    for error in inapplicable:
        assert not strategy.can_recover(error, RecoveryContext.from_error(error))


def test_database_on_and_when_narrow_applicability() -> None:
    """on= replaces the error test; when= consults the context (permissions)."""

    class Custom(Exception):
        pass

    strategy = DatabaseRecoveryStrategy(on=Custom, when=lambda c: c.has_permission("replica"))
    with correlate(permissions={"replica"}):
        assert strategy.can_recover(Custom(), RecoveryContext.from_error(Custom()))
        assert not strategy.can_recover(locked(), RecoveryContext.from_error(locked()))
    with correlate(permissions=set()):
        assert not strategy.can_recover(Custom(), RecoveryContext.from_error(Custom()))


def test_database_without_a_call_skips_retries() -> None:
    """Used through the engine without a call, only replica and cache can help."""
    cache = Counter("cached")
    ctx = RecoveryContext.from_error(locked())
    result = DatabaseRecoveryStrategy(cache=cache).attempt_recovery(ctx.error, ctx)
    assert result.status is RecoveryStatus.PARTIAL
    assert result.details["steps"][0] == {
        "step": "retry",
        "outcome": "skipped",
        "reason": "no call to retry",
    }


def test_database_async_awaits_the_call_replica_and_cache() -> None:
    """In a coroutine function retries, replica and cache are awaited, sleeping via asleep."""
    calls: list[str] = []

    async def replica(key: str) -> str:
        calls.append("replica")
        raise ConnectionError("replica down")

    async def cache(key: str) -> str:
        calls.append("cache")
        return f"cached {key}"

    @recover(DatabaseRecoveryStrategy(attempts=2, backoff=NO_JITTER, replica=replica, cache=cache))
    async def load(key: str) -> str:
        calls.append("call")
        raise locked()

    with FakeClock() as clock:
        assert asyncio.run(load("k")) == "cached k"
    assert calls == ["call", "call", "call", "replica", "cache"]
    assert clock.sleeps == [0.1, 0.2]


def test_database_async_retry_can_succeed() -> None:
    """An async retry that succeeds returns the call's value."""
    body = Counter(locked(), "ok")

    @recover(DatabaseRecoveryStrategy(attempts=2, backoff=NO_JITTER))
    async def load() -> object:
        return body()

    with FakeClock():
        assert asyncio.run(load()) == "ok"
    assert body.count == 2


def test_database_async_callable_in_sync_function_is_a_failed_step() -> None:
    """An async cache used from a sync function fails that step with a clear message."""

    async def cache() -> str:
        return "never"

    ctx = RecoveryContext.from_error(locked())
    result = DatabaseRecoveryStrategy(cache=cache).attempt_recovery(ctx.error, ctx)
    assert result.status is RecoveryStatus.FAILED
    step = result.details["steps"][-1]
    assert step["step"] == "cache"
    assert "awaitable" in step["error"]


def test_database_settings_are_validated() -> None:
    """Bad attempts or non-callables are configuration errors."""
    with pytest.raises(ConfigurationError, match="attempts"):
        DatabaseRecoveryStrategy(attempts=-1)
    with pytest.raises(ConfigurationError, match="attempts"):
        DatabaseRecoveryStrategy(attempts=True)
    with pytest.raises(ConfigurationError, match="replica"):
        DatabaseRecoveryStrategy(replica="db2")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="exception types"):
        DatabaseRecoveryStrategy(on=[int])  # type: ignore[list-item]


# --- authentication ---------------------------------------------------------------------


def test_auth_clears_refreshes_once_and_reruns_once() -> None:
    """Invalid credentials are cleared, refreshed exactly once and the call re-run once."""
    cleared = Counter(None)
    refresh = Counter("new-token")
    body = Counter(AuthenticationError("expired"), "profile")
    strategy = AuthenticationRecoveryStrategy(
        clear_credentials=cleared, refresh=refresh, credentials_kwarg="token"
    )

    @recover(strategy)
    def profile(user: str, *, token: str) -> object:
        return body(user, token=token)

    with correlate(user_id="u-1"):
        assert profile("u-1", token="old") == "profile"
    assert cleared.count == 1
    assert refresh.count == 1
    assert body.calls == [(("u-1",), {"token": "old"}), (("u-1",), {"token": "new-token"})]
    context = cleared.calls[0][0][0]
    assert isinstance(context, RecoveryContext)
    assert context.user_id == "u-1"


def test_auth_failed_rerun_is_not_retried_again() -> None:
    """If the re-run fails too, refresh is not attempted a second time."""
    refresh = Counter("token")
    body = Counter(AuthenticationError("still bad"))

    @recover(AuthenticationRecoveryStrategy(refresh=refresh))
    def fetch() -> object:
        return body()

    with pytest.raises(AuthenticationError):
        fetch()
    assert refresh.count == 1
    assert body.count == 2


def test_auth_refresh_without_credentials_does_not_rerun() -> None:
    """A refresh returning None (or raising) gives no re-run."""
    body = Counter(AuthenticationError("expired"))
    for refresh in (Counter(None), Counter(PermissionError("refresh token revoked"))):

        @recover(AuthenticationRecoveryStrategy(refresh=refresh))
        def fetch() -> object:
            return body()

        with pytest.raises(AuthenticationError):
            fetch()
        assert refresh.count == 1
    assert body.count == 2  # one original call per decorated function, no re-runs


def test_auth_guest_only_when_allowed() -> None:
    """Guest access answers (degraded) only when guest_allowed says so."""
    guest = Counter("public page")
    body = Counter(AuthenticationError("no session"))
    strategy = AuthenticationRecoveryStrategy(
        guest_allowed=lambda c: "guest" in c.permissions, guest=guest
    )

    @recover(strategy)
    def page(slug: str) -> object:
        return body(slug)

    with correlate(permissions=set()), pytest.raises(AuthenticationError):
        page("home")
    assert guest.count == 0
    with correlate(permissions={"guest"}), capture_events("recovery") as events:
        assert page("home") == "public page"
    assert guest.calls == [(("home",), {})]
    assert events[0].payload["status"] == "partial"
    assert events[0].payload["security"] is True


def test_auth_guest_requires_a_predicate() -> None:
    """guest= without guest_allowed= is refused: access is never implicit."""
    with pytest.raises(ConfigurationError, match="guest_allowed"):
        AuthenticationRecoveryStrategy(guest=lambda: None)
    with pytest.raises(ConfigurationError, match="credentials_kwarg"):
        AuthenticationRecoveryStrategy(credentials_kwarg="not a name")


def test_auth_always_publishes_a_security_audit_event() -> None:
    """Every attempt, recovered or not, publishes an audit event flagged security."""
    body = Counter(AuthenticationError("expired"))

    @recover(AuthenticationRecoveryStrategy(clear_credentials=Counter(None)))
    def fetch() -> object:
        return body()

    with capture_events("audit") as audits, correlate(user_id="u-7"):
        with pytest.raises(AuthenticationError):
            fetch()
    assert len(audits) == 1
    audit = audits[0]
    assert audit.name == "authentication_recovery"
    assert audit.user_id == "u-7"
    assert audit.payload["security"] is True
    assert audit.payload["status"] == "failed"
    assert audit.payload["actions"] == ["cleared the invalid credentials"]
    assert audit.payload["refreshed"] is False


def test_auth_with_nothing_configured_does_nothing() -> None:
    """An unconfigured strategy reports failure with no actions."""
    error = AuthenticationError("x")
    ctx = RecoveryContext.from_error(error)
    strategy = AuthenticationRecoveryStrategy()
    assert strategy.can_recover(error, ctx)
    result = strategy.attempt_recovery(error, ctx)
    assert result.status is RecoveryStatus.FAILED
    assert result.actions == ()


def test_auth_applies_to_authentication_errors_only() -> None:
    """Authorization (403) and other errors are not authentication errors."""
    from faultlens.errors import AuthorizationError

    strategy = AuthenticationRecoveryStrategy()
    assert not strategy.can_recover(
        AuthorizationError("no"), RecoveryContext.from_error(AuthorizationError("no"))
    )
    assert not strategy.can_recover(locked(), RecoveryContext.from_error(locked()))


def test_auth_async_awaits_refresh_and_rerun() -> None:
    """In a coroutine function the refresh and the re-run are awaited."""
    calls: list[str] = []

    async def refresh(context: RecoveryContext) -> str:
        calls.append("refresh")
        return "t2"

    @recover(AuthenticationRecoveryStrategy(refresh=refresh, credentials_kwarg="token"))
    async def fetch(*, token: str) -> str:
        calls.append(f"call {token}")
        if token == "t1":
            raise AuthenticationError("expired")
        return "data"

    assert asyncio.run(fetch(token="t1")) == "data"
    assert calls == ["call t1", "refresh", "call t2"]


# --- validation -------------------------------------------------------------------------


def test_validation_applies_defaults_and_normalisers_then_reruns() -> None:
    """Missing fields get defaults, present ones are normalised, the call runs again."""
    seen: list[tuple[str, int | None, str]] = []

    @recover(
        ValidationRecoveryStrategy(
            defaults={"quantity": 1}, normalisers={"email": lambda v: v.strip().lower()}
        )
    )
    def order(email: str, quantity: int | None = None, *, note: str = "") -> str:
        seen.append((email, quantity, note))
        if quantity is None or email != email.strip().lower():
            raise ValidationError("invalid order")
        return f"{email} x{quantity}"

    with capture_events("recovery") as events:
        assert order(" Ann@Example.COM ", note="hi") == "ann@example.com x1"
    assert seen == [(" Ann@Example.COM ", None, "hi"), ("ann@example.com", 1, "hi")]
    payload = events[0].payload
    assert payload["status"] == "success"
    assert payload["actions"] == [
        "corrected quantity, email",
        "re-ran the call with the corrected input",
    ]


def test_validation_nothing_to_correct_suggests_without_rerunning() -> None:
    """With nothing to correct the call is not re-run; suggestions explain the fix."""
    calls = Counter(ValidationError("bad"))
    suggest = Counter(["quantity must be positive"])
    strategy = ValidationRecoveryStrategy(defaults={"quantity": 1}, suggest=suggest)
    ctx = RecoveryContext.from_error(
        ValidationError("bad"), call=CallSite(calls, (), {"quantity": -3})
    )
    result = strategy.attempt_recovery(ctx.error, ctx)
    assert result.status is RecoveryStatus.FAILED
    assert result.details["suggestions"] == ["quantity must be positive"]
    assert result.details["reason"] == "nothing to correct"
    assert calls.count == 0


def test_validation_failed_rerun_returns_suggestions() -> None:
    """A re-run that still fails is not recovered and carries suggestions."""
    body = Counter(ValidationError("still bad"))

    def suggest(error: BaseException, context: RecoveryContext) -> list[str]:
        return [f"fix: {error}"]

    strategy = ValidationRecoveryStrategy(normalisers={"name": str.strip}, suggest=suggest)
    ctx = RecoveryContext.from_error(
        ValidationError("bad"), call=CallSite(body, (), {"name": " x "})
    )
    result = strategy.attempt_recovery(ctx.error, ctx)
    assert result.status is RecoveryStatus.FAILED
    assert body.calls == [((), {"name": "x"})]
    assert result.details["corrected"] == ["name"]
    assert result.details["suggestions"] == ["fix: still bad"]


def test_validation_error_is_reraised_when_not_recovered() -> None:
    """The decorator re-raises the original validation error after a failed re-run."""
    original = ValidationError("bad name")

    @recover(ValidationRecoveryStrategy(normalisers={"name": str.strip}))
    def create(name: str) -> None:
        if name == " x ":
            raise original
        raise ValidationError("second failure")

    with pytest.raises(ValidationError) as info:
        create(" x ")
    assert info.value is original


def test_validation_suggestions_from_the_errors_list() -> None:
    """Without suggest=, an errors() list (as pydantic's) becomes suggestions."""

    class ModelError(ValueError):
        def errors(self) -> list[dict[str, Any]]:
            return [{"loc": ("user", "age"), "msg": "must be >= 0"}, {"msg": "bad"}]

    strategy = ValidationRecoveryStrategy(on=ModelError)
    ctx = RecoveryContext.from_error(ModelError("x"), call=CallSite(Counter(None)))
    assert strategy.can_recover(ctx.error, ctx)
    result = strategy.attempt_recovery(ctx.error, ctx)
    assert result.details["suggestions"] == ["user.age: must be >= 0", "bad"]


def test_validation_var_keyword_and_failing_normaliser() -> None:
    """Fields of **kwargs can be corrected; a normaliser that raises is a recorded step."""
    body = Counter("ok")

    def target(**fields: Any) -> Any:
        return body(**fields)

    strategy = ValidationRecoveryStrategy(
        defaults={"page": 1}, normalisers={"size": int, "sort": int}
    )
    ctx = RecoveryContext.from_error(
        ValidationError("bad"), call=CallSite(target, (), {"size": "20", "sort": "name"})
    )
    result = strategy.attempt_recovery(ctx.error, ctx)
    assert result.value == "ok"
    assert body.calls == [((), {"size": 20, "sort": "name", "page": 1})]
    failed = [s for s in result.details["steps"] if s["outcome"] == "error"]
    assert failed[0]["field"] == "sort"


def test_validation_unknown_field_is_reported() -> None:
    """A default for a parameter the function lacks is reported, not passed."""
    body = Counter("ok")

    def target(a: int) -> Any:
        return body(a)

    strategy = ValidationRecoveryStrategy(defaults={"nope": 1})
    ctx = RecoveryContext.from_error(ValidationError("bad"), call=CallSite(target, (1,)))
    result = strategy.attempt_recovery(ctx.error, ctx)
    assert result.status is RecoveryStatus.FAILED
    assert result.details["steps"] == [
        {"step": "default", "field": "nope", "outcome": "unknown_field"}
    ]
    assert body.count == 0


def test_validation_applies_to_validation_errors_with_a_call() -> None:
    """Validation errors apply (with a call to re-run); plain ValueError is a bug."""
    strategy = ValidationRecoveryStrategy()
    with_call = RecoveryContext.from_error(ValidationError("x"), call=CallSite(print))
    assert strategy.can_recover(ValidationError("x"), with_call)
    without_call = RecoveryContext.from_error(ValidationError("x"))
    assert not strategy.can_recover(ValidationError("x"), without_call)
    plain = RecoveryContext.from_error(ValueError("x"), call=CallSite(print))
    assert not strategy.can_recover(ValueError("x"), plain)


def test_validation_async_reruns_with_corrected_input() -> None:
    """In a coroutine function the corrected re-run is awaited."""
    calls: list[Any] = []

    @recover(ValidationRecoveryStrategy(defaults={"limit": 10}))
    async def search(q: str, limit: int | None = None) -> str:
        calls.append(limit)
        if limit is None:
            raise ValidationError("limit required")
        return f"{q}:{limit}"

    assert asyncio.run(search("shoes")) == "shoes:10"
    assert calls == [None, 10]


def test_database_retries_faultlens_transient_errors() -> None:
    """A TransientError (category transient, infrastructure) is retried."""
    body = Counter("ok")
    ctx = RecoveryContext.from_error(TransientError("blip"), call=CallSite(body))
    with FakeClock():
        result = DatabaseRecoveryStrategy(attempts=1, backoff=NO_JITTER).attempt_recovery(
            ctx.error, ctx
        )
    assert result.value == "ok"


def test_database_honours_the_no_wait_switch() -> None:
    """Under faultlens.testing.no_wait retries do not wait and are capped."""
    from faultlens.testing import no_wait

    body = Counter(locked())
    ctx = RecoveryContext.from_error(locked(), call=CallSite(body))
    strategy = DatabaseRecoveryStrategy(attempts=5, backoff=NO_JITTER)
    with FakeClock() as clock, no_wait(max_attempts=3):
        result = strategy.attempt_recovery(ctx.error, ctx)
    assert result.status is RecoveryStatus.FAILED
    assert body.count == 2  # three attempts in all: the original call and two retries
    assert clock.sleeps == []


def test_auth_broken_guest_predicate_grants_nothing_and_still_audits() -> None:
    """A guest_allowed that raises denies guest access; the audit event is still published."""
    guest = Counter("public")

    def broken(context: RecoveryContext) -> bool:
        raise RuntimeError("policy service down")

    strategy = AuthenticationRecoveryStrategy(guest_allowed=broken, guest=guest)
    error = AuthenticationError("x")
    ctx = RecoveryContext.from_error(error, call=CallSite(Counter(error)))
    with capture_events("audit") as audits:
        result = strategy.attempt_recovery(error, ctx)
    assert result.status is RecoveryStatus.FAILED
    assert guest.count == 0
    assert [s["step"] for s in result.details["steps"]] == ["guest_allowed", "guest"]
    assert audits[0].payload["status"] == "failed"


def test_auth_audit_is_published_when_the_attempt_is_interrupted() -> None:
    """A cancelled async refresh still leaves an audit event (status interrupted)."""

    async def refresh(context: RecoveryContext) -> str:
        raise asyncio.CancelledError

    strategy = AuthenticationRecoveryStrategy(refresh=refresh)
    error = AuthenticationError("x")
    ctx = RecoveryContext.from_error(error)

    async def main() -> None:
        await strategy.attempt_recovery_async(error, ctx)

    with capture_events("audit") as audits, pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert audits[0].payload["status"] == "interrupted"
