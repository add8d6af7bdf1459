"""RedisBreakerState: several real processes, Redis going away and coming back, keys, the extra."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faultlens._metrics import counters
from faultlens.errors import ConfigurationError, MissingExtraError
from faultlens.recovery import CircuitBreaker, CircuitOpenError, RedisBreakerState
from faultlens.testing import FakeClock

REDIS_URL = "redis://127.0.0.1:6379/0"
WORKER = Path(__file__).with_name("breaker_worker.py")


class Boom(Exception):
    """The dependency failed."""


def failing() -> None:
    """A dependency call that fails."""
    raise Boom("down")


@pytest.fixture
def client() -> Any:
    """A client for the local Redis, or skip the test saying why."""
    redis = pytest.importorskip("redis", reason="the redis extra is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis answers on {REDIS_URL} ({exc}); start one to run this test")
    return client


@pytest.fixture
def prefix(client: Any) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    value = f"faultlens-test:{uuid.uuid4().hex}:"
    yield value
    keys = list(client.scan_iter(match=f"{value}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """A fake clock for the single-process tests."""
    with FakeClock() as fake:
        yield fake


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- several processes ---------------------------------------------------------------------


def worker_args(prefix: str, options: dict[str, Any], action: str, *rest: str) -> list[str]:
    """The command line of one worker process."""
    return [
        sys.executable,
        str(WORKER),
        REDIS_URL,
        prefix,
        "payments",
        json.dumps(options),
        action,
        *rest,
    ]


def run_worker(prefix: str, options: dict[str, Any], action: str, *rest: str) -> dict[str, Any]:
    """Run one worker process to completion and return its JSON summary."""
    done = subprocess.run(
        worker_args(prefix, options, action, *rest),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return summary


def local_breaker(client: Any, prefix: str, options: dict[str, Any]) -> CircuitBreaker:
    """This test process's own breaker on the shared state (real clock, like the workers)."""
    store = RedisBreakerState(client, prefix=prefix, sync_interval=0)
    return CircuitBreaker("payments", state=store, **options)


@pytest.mark.redis
def test_a_circuit_opened_in_one_process_rejects_in_another(client: Any, prefix: str) -> None:
    """A worker process's failures open the circuit; this process is then rejected at once."""
    options = {"failure_threshold": 3, "open_duration": 60}
    here = local_breaker(client, prefix, options)
    assert here.call(lambda: "ok") == "ok"
    started = time.time()  # the circuit opens after this (wall clock, like the breaker's)
    opener = run_worker(prefix, options, "fail", "3")
    assert (opener["failed"], opener["state"]) == (3, "open")
    with pytest.raises(CircuitOpenError) as info:
        here.call(lambda: "ok")
    elapsed = time.time() - started
    assert info.value.retry_after is not None
    # The other process's 60 s opening, less the time passed since it opened (at
    # most `elapsed`, however slowly the worker process started and ended).
    assert 60 - elapsed - 0.01 <= info.value.retry_after <= 60


@pytest.mark.redis
def test_failures_of_concurrent_processes_are_merged(client: Any, prefix: str) -> None:
    """Three processes failing twice each (threshold five) together open the shared circuit."""
    options = {"failure_threshold": 5, "open_duration": 60}
    processes = [
        subprocess.Popen(
            worker_args(prefix, options, "fail", "2"), stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    summaries = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        summaries.append(json.loads(out.splitlines()[-1]))
    assert all(s["failed"] < 5 for s in summaries)
    assert sum(s["failed"] for s in summaries) >= 5
    assert client.hget(f"{prefix}{{payments}}", "state") == b"open"
    with pytest.raises(CircuitOpenError):
        local_breaker(client, prefix, options).call(lambda: "ok")


@pytest.mark.redis
def test_half_open_probes_are_limited_across_processes(client: Any, prefix: str) -> None:
    """While one process probes, the others are rejected; its success closes the circuit for all."""
    # probe_timeout: the probe holds its slot while the other processes start and
    # are refused, however slowly (the default 30 s would reopen the circuit).
    options = {
        "failure_threshold": 1,
        "open_duration": 0.05,
        "half_open_max_calls": 1,
        "probe_timeout": 600,
    }
    here = local_breaker(client, prefix, options)
    with pytest.raises(Boom):
        here.call(failing)
    prober = subprocess.Popen(
        worker_args(prefix, options, "probe"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert prober.stdout is not None
        assert prober.stdin is not None
        assert prober.stdout.readline().strip() == "probing"  # it holds the only slot
        others = [
            subprocess.Popen(
                worker_args(prefix, options, "call"), stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        for other in others:
            out, _ = other.communicate(timeout=60)
            summary = json.loads(out.splitlines()[-1])
            assert (summary["rejected"], summary["rejected_state"]) == (1, "half_open")
        with pytest.raises(CircuitOpenError) as info:
            here.call(lambda: "ok")
        assert info.value.state == "half_open"
        prober.stdin.write("go\n")
        prober.stdin.flush()
        out, _ = prober.communicate(timeout=60)
    finally:
        if prober.poll() is None:
            prober.kill()
    assert json.loads(out.splitlines()[-1])["state"] == "closed"
    assert here.call(lambda: "ok") == "ok"


# -- Redis unreachable ---------------------------------------------------------------------


def test_unreachable_redis_fails_open_and_is_reported_once(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing listening the breaker works on local state; the outage is logged once."""
    pytest.importorskip("redis", reason="the redis extra is not installed")
    store = RedisBreakerState(
        f"redis://127.0.0.1:{closed_port()}/0", prefix="x:", retry_interval=5, timeout=0.2
    )
    breaker = CircuitBreaker("payments", state=store, failure_threshold=3, open_duration=10)
    for _ in range(3):
        with pytest.raises(Boom):
            breaker.call(failing)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        breaker.call(failing)
    assert breaker.metrics().store_available is False
    assert not store.available
    errors = counters.get("recovery.breaker_store_errors")
    assert errors == 1  # no retry inside retry_interval
    clock.advance(5)
    breaker.state  # noqa: B018 (a state read syncs when due)
    assert counters.get("recovery.breaker_store_errors") == 2
    err = capsys.readouterr().err
    assert err.count("faultlens: Redis for circuit-breaker state") == 1
    assert "local state" in err
    store.close()


@pytest.mark.redis
def test_redis_going_away_and_coming_back(
    client: Any, prefix: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Redis failing mid-way: the breaker carries on alone, then shares its state again."""
    import redis

    store = RedisBreakerState(client, prefix=prefix, sync_interval=0, retry_interval=1)
    a = CircuitBreaker("payments", state=store, failure_threshold=2, open_duration=30)
    other = CircuitBreaker(
        "payments",
        state=RedisBreakerState(client, prefix=prefix, sync_interval=0),
        failure_threshold=2,
    )
    assert a.call(lambda: "ok") == "ok"
    script = store._script

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Connection refused")

    store._script = unreachable
    for _ in range(2):
        with pytest.raises(Boom):
            a.call(failing)
    assert a.state == "open"
    assert other.call(lambda: "ok") == "ok"  # Redis never heard of it
    store._script = script
    clock.advance(1)
    assert a.state == "open"  # the next sync proposed the local opening
    assert store.available
    assert counters.get("recovery.breaker_store_recovered") == 1
    with pytest.raises(CircuitOpenError):
        other.call(lambda: "ok")
    assert capsys.readouterr().err.count("faultlens:") == 1


# -- the Redis side ------------------------------------------------------------------------


@pytest.mark.redis
def test_keys_are_namespaced_and_expire(client: Any, prefix: str, clock: FakeClock) -> None:
    """Each breaker's keys carry the prefix and its name as a hash tag, with a TTL."""
    store = RedisBreakerState(client, prefix=prefix, sync_interval=0, ttl=600)
    breaker = CircuitBreaker(
        "payments", state=store, failure_threshold=1, failure_rate_threshold=0.5
    )
    with pytest.raises(Boom):
        breaker.call(failing)
    breaker.state  # noqa: B018 (syncs)
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}*"))
    assert f"{prefix}{{payments}}" in keys
    assert all(k.startswith(f"{prefix}{{payments}}") for k in keys)
    assert 0 < client.pttl(f"{prefix}{{payments}}") <= 600_000


@pytest.mark.redis
def test_the_script_is_loaded_again_after_a_script_flush(
    client: Any, prefix: str, clock: FakeClock
) -> None:
    """EVALSHA falls back to loading the script when Redis forgot it."""
    store = RedisBreakerState(client, prefix=prefix, sync_interval=0)
    breaker = CircuitBreaker("payments", state=store, failure_threshold=1)
    assert breaker.call(lambda: "ok") == "ok"
    client.script_flush()
    with pytest.raises(Boom):
        breaker.call(failing)
    assert breaker.state == "open"
    assert breaker.metrics().store_available is True


@pytest.mark.redis
def test_a_client_decoding_responses_works(prefix: str, clock: FakeClock) -> None:
    """A redis.Redis with decode_responses=True is accepted as well."""
    redis = pytest.importorskip("redis")
    decoding = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        decoding.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis answers on {REDIS_URL} ({exc})")
    store = RedisBreakerState(decoding, prefix=prefix, sync_interval=0)
    breaker = CircuitBreaker("payments", state=store, failure_threshold=1)
    with pytest.raises(Boom):
        breaker.call(failing)
    assert breaker.state == "open"
    assert breaker.metrics().shared is not None
    decoding.close()


@pytest.mark.redis
def test_url_built_store_syncs(prefix: str, client: Any, clock: FakeClock) -> None:
    """A store built from a URL owns its client and closes it."""
    store = RedisBreakerState(REDIS_URL, prefix=prefix, sync_interval=0)
    breaker = CircuitBreaker("payments", state=store, failure_threshold=1)
    with pytest.raises(Boom):
        breaker.call(failing)
    assert client.hget(f"{prefix}{{payments}}", "state") == b"open"
    assert "127.0.0.1:6379" in repr(store)
    store.close()


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis installed the store says which extra to install."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingExtraError, match=r"faultlens\[redis\]") as info:
        RedisBreakerState(REDIS_URL)
    assert info.value.extra == "redis"


@pytest.mark.parametrize(
    ("argument", "options", "message"),
    [
        (42, {}, "redis:// URL"),
        (REDIS_URL, {"prefix": 3}, "prefix"),
        (REDIS_URL, {"ttl": 0}, "ttl"),
        (REDIS_URL, {"sync_interval": -1}, "sync_interval"),
        (REDIS_URL, {"timeout": 0}, "timeout"),
    ],
)
def test_bad_store_arguments_are_clear_errors(
    argument: Any, options: dict[str, Any], message: str
) -> None:
    """Each bad argument raises ConfigurationError naming it."""
    pytest.importorskip("redis", reason="the redis extra is not installed")
    with pytest.raises(ConfigurationError, match=message):
        RedisBreakerState(argument, **options)


# -- async callers: the event loop never waits on Redis ---------------------------------------


async def afailing() -> None:
    """An async dependency call that fails."""
    raise Boom("down")


async def aok() -> str:
    """An async dependency call that succeeds."""
    return "ok"


class Ticker:
    """Another task of the event loop: counts how often the loop let it run."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task: Any = None

    async def _run(self) -> None:
        import asyncio

        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    def __enter__(self) -> Ticker:
        import asyncio

        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        self.task.cancel()


@pytest.mark.redis
def test_async_callers_sync_through_the_async_client(client: Any, prefix: str) -> None:
    """Coroutine functions sync with redis.asyncio; the synchronous client is never used."""
    import asyncio

    store = RedisBreakerState(REDIS_URL, prefix=prefix, sync_interval=0)
    breaker = CircuitBreaker("payments", state=store, failure_threshold=2, open_duration=30)
    other = CircuitBreaker(
        "payments", state=RedisBreakerState(client, prefix=prefix, sync_interval=0)
    )

    async def main() -> None:
        assert await breaker.acall(aok) == "ok"
        for _ in range(2):
            with pytest.raises(Boom):
                await breaker.acall(afailing)
        with pytest.raises(CircuitOpenError):
            await breaker.acall(aok)
        assert len(store._loop_scripts) == 1  # one async client, for this loop
        await store.aclose()

    asyncio.run(main())
    assert store._client.connection_pool._created_connections == 0
    assert client.hget(f"{prefix}{{payments}}", "state") == b"open"
    with pytest.raises(CircuitOpenError):  # another process's view: shared through Redis
        other.call(lambda: "ok")


@pytest.mark.redis
def test_the_event_loop_runs_other_tasks_while_a_sync_is_in_flight(prefix: str) -> None:
    """A call that syncs yields to the loop while Redis answers: another task keeps running.

    A blocking sync would run the whole call without yielding (the ticker could not
    tick between its start and its end); awaiting the reply must yield at least once,
    because a StreamReader only receives data when the loop runs its selector.
    """
    import asyncio

    store = RedisBreakerState(REDIS_URL, prefix=prefix, sync_interval=3600)
    breaker = CircuitBreaker("payments", state=store)

    async def main() -> tuple[int, int]:
        with Ticker() as ticker:
            await asyncio.sleep(0)  # the ticker is running
            await breaker.acall(aok)  # the first call syncs: sync_due starts at 0
            synced = ticker.ticks
            before = ticker.ticks
            await breaker.acall(aok)  # no sync due for an hour: decided locally
            local = ticker.ticks - before
        await store.aclose()
        return synced, local

    synced, local = asyncio.run(main())
    assert synced >= 2  # once before the call, at least once during its round trip
    assert local == 0  # a local decision never yields
    assert breaker.metrics().shared is not None


@pytest.mark.redis
def test_an_async_caller_waiting_on_a_busy_redis_connection_does_not_block_the_loop(
    client: Any, prefix: str
) -> None:
    """Redis slow to answer this store: the call waits, the loop and its other tasks do not.

    The store's only connection is held by a real blocking command (BLPOP on a key of
    this test: Redis parks that one client, nobody else waits).  The breaker's sync
    queues for the connection; meanwhile this coroutine keeps running and sees the
    call still pending.  Pushing to the key frees the connection and the call finishes.
    """
    import asyncio

    import redis.asyncio

    pool = redis.asyncio.BlockingConnectionPool.from_url(REDIS_URL, max_connections=1, timeout=30)
    aclient = redis.asyncio.Redis(connection_pool=pool)
    store = RedisBreakerState(client, prefix=prefix, async_client=aclient)
    breaker = CircuitBreaker("payments", state=store)
    gate = f"{prefix}gate"

    async def main() -> tuple[int, bool, str]:
        holder = asyncio.ensure_future(aclient.blpop([gate], timeout=30))
        while not any(c.get("cmd") == "blpop" for c in client.client_list()):
            await asyncio.sleep(0)  # until Redis has parked the holder
        call = asyncio.ensure_future(breaker.acall(aok))
        turns = 0
        for _ in range(200):  # the loop keeps serving this task while the call waits
            await asyncio.sleep(0)
            turns += 1
        pending = not call.done()
        client.lpush(gate, "go")  # Redis answers the holder; the connection is free again
        await holder
        result = await call
        await aclient.aclose()
        return turns, pending, result

    turns, pending, result = asyncio.run(main())
    assert (turns, pending, result) == (200, True, "ok")
    assert breaker.metrics().shared is not None  # the sync did happen, after the wait


@pytest.mark.redis
def test_a_store_with_only_a_sync_client_syncs_off_the_loop(client: Any, prefix: str) -> None:
    """Given only a synchronous client, async callers run the sync in the loop's executor."""
    import asyncio
    import threading

    store = RedisBreakerState(client, prefix=prefix, sync_interval=3600)
    threads: list[str] = []
    sync = store.sync

    def record_thread(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return sync(*args)

    store.sync = record_thread  # type: ignore[method-assign]
    breaker = CircuitBreaker("payments", state=store)

    async def main() -> int:
        with Ticker() as ticker:
            await asyncio.sleep(0)
            await breaker.acall(aok)
            return ticker.ticks

    assert asyncio.run(main()) >= 2
    assert threads
    assert threads[0] != threading.main_thread().name
    assert breaker.metrics().shared is not None


def test_async_callers_fail_open_when_redis_is_down(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unreachable Redis from async code: local decisions, one log line, counted failures."""
    import asyncio

    pytest.importorskip("redis", reason="the redis extra is not installed")
    store = RedisBreakerState(
        f"redis://127.0.0.1:{closed_port()}/0", prefix="x:", retry_interval=5, timeout=0.2
    )
    breaker = CircuitBreaker("payments", state=store, failure_threshold=3, open_duration=10)

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(Boom):
                await breaker.acall(afailing)
        with pytest.raises(CircuitOpenError):
            await breaker.acall(aok)
        await store.aclose()

    asyncio.run(main())
    assert breaker.metrics().store_available is False
    assert counters.get("recovery.breaker_store_errors") == 1
    err = capsys.readouterr().err
    assert err.count("faultlens: Redis for circuit-breaker state") == 1
