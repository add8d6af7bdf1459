"""Breakers sharing state through a store: the same scenarios on the in-memory store and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from faultlens._metrics import counters
from faultlens.recovery import (
    BreakerSettings,
    BreakerStateStore,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    InMemoryBreakerState,
    SharedState,
    StateChange,
    SyncRequest,
)
from faultlens.testing import FakeClock

REDIS_URL = "redis://127.0.0.1:6379/0"


class Boom(Exception):
    """The dependency failed."""


def redis_or_skip() -> Any:
    """A client for the local Redis, or skip the test saying why."""
    redis = pytest.importorskip("redis", reason="the redis extra is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis answers on {REDIS_URL} ({exc}); start one to run this test")
    return client


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Iterator[BreakerStateStore]:
    """A store that syncs on every decision: in-memory, or Redis under a unique prefix."""
    if request.param == "memory":
        yield InMemoryBreakerState(sync_interval=0)
        return
    from faultlens.recovery import RedisBreakerState

    client = redis_or_skip()
    prefix = f"faultlens-test:{uuid.uuid4().hex}:"
    redis_store = RedisBreakerState(client, prefix=prefix, sync_interval=0)
    try:
        yield redis_store
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """A fake clock: drives both the breakers and the wall time they send to the store."""
    with FakeClock() as fake:
        yield fake


def failing() -> None:
    """A dependency call that fails."""
    raise Boom("down")


def ok() -> str:
    """A dependency call that succeeds."""
    return "ok"


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    """Fail ``times`` calls through ``breaker``."""
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.call(failing)


def pair(store: BreakerStateStore, **options: Any) -> tuple[CircuitBreaker, CircuitBreaker]:
    """Two breakers of the same name on ``store`` (as in two processes)."""
    options.setdefault("open_duration", 10)
    return (
        CircuitBreaker("payments", state=store, **options),
        CircuitBreaker("payments", state=store, **options),
    )


def test_one_breaker_opening_opens_the_other(store: BreakerStateStore, clock: FakeClock) -> None:
    """Failures seen by one breaker open the circuit for every breaker sharing the store."""
    a, b = pair(store, failure_threshold=3)
    assert b.call(ok) == "ok"
    fail(a, 3)
    assert a.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.retry_after == pytest.approx(10, abs=1e-3)
    assert b.metrics().shared is not None


def test_failures_spread_over_breakers_are_merged(
    store: BreakerStateStore, clock: FakeClock
) -> None:
    """Each breaker below the threshold, together above it: the shared circuit opens."""
    a, b = pair(store, failure_threshold=4)
    fail(a, 2)
    assert a.state == "closed"
    fail(b, 2)
    assert b.state == "open"
    assert a.state == "open"


def test_a_success_anywhere_resets_the_shared_consecutive_count(
    store: BreakerStateStore, clock: FakeClock
) -> None:
    """A success reported by one breaker resets the merged consecutive failures."""
    a, b = pair(store, failure_threshold=4)
    fail(a, 3)
    assert a.state == "closed"
    assert b.call(ok) == "ok"
    assert b.state == "closed"
    fail(a, 2)
    assert a.state == "closed"
    shared = a.metrics().shared
    assert shared is not None
    assert (shared.state, shared.consecutive_failures) == (CircuitState.CLOSED, 2)


def test_failure_rate_over_the_merged_count_window(
    store: BreakerStateStore, clock: FakeClock
) -> None:
    """The failure rate counts every breaker's calls; neither alone reaches minimum_calls."""
    a, b = pair(
        store, failure_threshold=None, failure_rate_threshold=0.5, window_size=100, minimum_calls=20
    )
    for _ in range(10):
        a.call(ok)
    fail(b, 9)
    assert a.state == b.state == "closed"
    fail(b, 1)
    assert b.state == "open"
    shared = b.metrics().shared
    assert shared is not None
    assert shared.state == "open"


def test_failure_rate_over_the_merged_time_window(
    store: BreakerStateStore, clock: FakeClock
) -> None:
    """In a shared time window old calls leave by time."""
    a, b = pair(
        store,
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window_type="time",
        window_size=10,
        minimum_calls=6,
    )
    fail(b, 3)
    assert b.state == "closed"
    clock.advance(11)
    for _ in range(3):
        a.call(ok)
    fail(b, 2)
    assert a.state == b.state == "closed"  # 2 of 5 in the last 10 s
    fail(b, 1)
    assert b.state == "open"  # 3 of 6


def test_probe_slots_are_shared(store: BreakerStateStore, clock: FakeClock) -> None:
    """While one breaker probes, the other is rejected; the probe's success closes both."""
    a, b = pair(store, failure_threshold=1, open_duration=5)
    fail(a)
    clock.advance(5)
    seen: list[str] = []

    def probe() -> str:
        with pytest.raises(CircuitOpenError) as info:
            b.call(ok)
        seen.append(info.value.state)
        return "probed"

    assert a.call(probe) == "probed"
    assert seen == ["half_open"]
    assert a.state == "closed"
    assert b.call(ok) == "ok"


def test_a_failed_probe_reopens_everywhere_with_shared_backoff(
    store: BreakerStateStore, clock: FakeClock
) -> None:
    """A probe failing in one breaker re-opens the circuit for all, with the backed-off duration."""
    a, b = pair(store, failure_threshold=1, open_duration=1, open_duration_max=10)
    fail(a)
    clock.advance(1)
    fail(a)  # the probe
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.retry_after == pytest.approx(2, abs=1e-3)
    shared = b.metrics().shared
    assert shared is not None
    assert shared.reopens == 1


def test_a_hung_probe_is_failed_by_the_store(store: BreakerStateStore, clock: FakeClock) -> None:
    """The store fails a probe older than probe_timeout, so another breaker can move on."""
    a, b = pair(store, failure_threshold=1, open_duration=1, probe_timeout=3)
    fail(a)
    clock.advance(1)
    states: list[str] = []

    def hung() -> str:
        clock.advance(3)
        with pytest.raises(CircuitOpenError) as info:
            b.call(ok)  # the store expires the probe and opens the circuit again
        states.append(info.value.state)
        return "late"

    assert a.call(hung) == "late"
    assert states == ["open"]
    assert a.state == "open"  # the late success did not close it
    clock.advance(2)  # reopened with backoff: 1 * 2
    assert b.call(ok) == "ok"
    assert a.state == b.state == "closed"


def test_manual_controls_are_shared(store: BreakerStateStore, clock: FakeClock) -> None:
    """force_open / force_closed / reset on one breaker apply to every breaker."""
    a, b = pair(store, failure_threshold=1)
    a.force_open()
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.state == "forced_open"
    b.force_closed()
    fail(a, 3)
    assert a.state == "forced_closed"
    a.reset()
    assert b.state == "closed"
    fail(b)
    assert a.state == "open"


def test_adopted_transitions_reach_listeners(store: BreakerStateStore, clock: FakeClock) -> None:
    """A breaker learning a transition from the store tells its listeners (shared_state)."""
    changes: list[StateChange] = []
    a = CircuitBreaker("payments", state=store, failure_threshold=1)
    b = CircuitBreaker("payments", state=store, failure_threshold=1, listeners=[changes.append])
    b.call(ok)
    fail(a)
    assert b.state == "open"
    assert [(c.from_state, c.to_state, c.reason) for c in changes] == [
        ("closed", "open", "shared_state")
    ]


def test_breakers_of_other_names_are_independent(
    store: BreakerStateStore, clock: FakeClock
) -> None:
    """Keys are namespaced by breaker name."""
    a = CircuitBreaker("payments", state=store, failure_threshold=1)
    other = CircuitBreaker("search", state=store, failure_threshold=1)
    fail(a)
    assert a.state == "open"
    assert other.call(ok) == "ok"
    assert other.state == "closed"


class Outage:
    """A store wrapper that can be switched off (answers None, as an unreachable store does)."""

    def __init__(self, inner: BreakerStateStore) -> None:
        self.inner = inner
        self.sync_interval = inner.sync_interval
        self.down = False
        self.requests: list[SyncRequest] = []

    def sync(
        self, name: str, settings: BreakerSettings, request: SyncRequest
    ) -> SharedState | None:
        """Forward to the inner store unless down."""
        if self.down:
            return None
        self.requests.append(request)
        return self.inner.sync(name, settings, request)


def test_an_unreachable_store_leaves_the_breaker_working_locally(
    store: BreakerStateStore, clock: FakeClock
) -> None:
    """With the store down the breaker decides alone; once back, its opening is shared."""
    outage = Outage(store)
    a = CircuitBreaker("payments", state=outage, failure_threshold=2, open_duration=10)
    b = CircuitBreaker("payments", state=store, failure_threshold=2, open_duration=10)
    a.call(ok)
    outage.down = True
    fail(a, 2)
    assert a.state == "open"
    assert a.metrics().store_available is False
    assert b.call(ok) == "ok"  # the store never heard of it
    outage.down = False
    assert a.state == "open"  # the next sync proposes the local opening
    assert a.metrics().store_available is True
    with pytest.raises(CircuitOpenError):
        b.call(ok)


def test_a_store_that_raises_is_treated_as_unreachable(clock: FakeClock) -> None:
    """A store breaking its contract (raising) is counted and the breaker runs locally."""

    class Broken:
        sync_interval = 0.0

        def sync(self, name: str, settings: BreakerSettings, request: SyncRequest) -> None:
            raise RuntimeError("store bug")

    breaker = CircuitBreaker("payments", state=Broken(), failure_threshold=1)
    fail(breaker)
    assert breaker.state == "open"
    assert counters.get("recovery.breaker_store_errors") >= 1


def test_the_cached_view_is_refreshed_only_every_sync_interval(clock: FakeClock) -> None:
    """Between syncs a breaker decides on its cached view; after sync_interval it refreshes."""
    store = InMemoryBreakerState(sync_interval=0.5)
    counting = Outage(store)
    a = CircuitBreaker("payments", state=store, failure_threshold=1, open_duration=10)
    b = CircuitBreaker("payments", state=counting, failure_threshold=1, open_duration=10)
    b.call(ok)
    syncs = len(counting.requests)
    fail(a)
    assert b.call(ok) == "ok"  # cached view: still closed
    assert len(counting.requests) == syncs
    clock.advance(0.5)
    with pytest.raises(CircuitOpenError):
        b.call(ok)
    assert len(counting.requests) == syncs + 1


@pytest.mark.parametrize("sync_interval", [-1, 5000, "fast"])
def test_in_memory_store_checks_its_interval(sync_interval: Any) -> None:
    """A bad sync_interval is a configuration error."""
    from faultlens.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="sync_interval"):
        InMemoryBreakerState(sync_interval=sync_interval)


def test_clear_forgets_shared_state(clock: FakeClock) -> None:
    """InMemoryBreakerState.clear() drops every breaker's state."""
    store = InMemoryBreakerState(sync_interval=0)
    a = CircuitBreaker("payments", state=store, failure_threshold=1)
    fail(a)
    store.clear()
    b = CircuitBreaker("payments", state=store, failure_threshold=1)
    assert b.call(ok) == "ok"


def test_async_callers_share_the_circuit_like_sync_ones(
    store: BreakerStateStore, clock: FakeClock
) -> None:
    """Coroutine functions go through the same shared cycle: merge, reject, probe, close."""
    import asyncio

    a, b = pair(store, failure_threshold=3)

    async def afailing() -> None:
        raise Boom("down")

    async def aok() -> str:
        return "ok"

    async def main() -> None:
        assert await b.acall(aok) == "ok"
        for _ in range(3):
            with pytest.raises(Boom):
                await a.acall(afailing)
        with pytest.raises(CircuitOpenError):
            await b.acall(aok)
        clock.advance(10)
        assert await b.acall(aok) == "ok"  # the probe: its slot and outcome go through the store
        assert await a.acall(aok) == "ok"  # closed for every breaker

    asyncio.run(main())
    assert (a.state, b.state) == ("closed", "closed")
    assert b.metrics().shared is not None
