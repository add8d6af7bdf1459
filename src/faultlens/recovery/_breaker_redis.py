"""RedisBreakerState: circuit-breaker state shared by processes through Redis.

Needs the ``redis`` extra (``pip install 'faultlens[redis]'``).  Each sync is one
Lua script run atomically (EVALSHA, loading the script again when the server
lost it) over three keys per breaker, all with the breaker name as hash tag so
that they live in one Redis Cluster slot::

    {prefix}{name}          hash: state, generation, open-until, reopens, counts
    {prefix}{name}:window   the merged sliding window (list of batches, or time buckets)
    {prefix}{name}:probes   sorted set: half-open probe slots by start time

The script is :func:`faultlens.recovery._breaker_state._apply` step by step, so
the semantics are those of :class:`InMemoryBreakerState`.  When Redis cannot be
reached the store answers ``None`` for ``retry_interval`` seconds without trying
(the breakers run on their local state), reports the outage once on stderr and
counts every failure (``recovery.breaker_store_errors``).

Breakers protecting coroutine functions call :meth:`RedisBreakerState.async_sync`:
the same script through a ``redis.asyncio`` client, so the event loop runs other
tasks while Redis answers.  A ``redis.asyncio`` client's connections belong to
one event loop; a store built from a URL therefore keeps one async client per
running loop (dropped with the loop).  A store given only a synchronous client
runs its syncs in the loop's default executor instead.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any, Final

from faultlens._clock import get_clock
from faultlens._metrics import counters, report_once
from faultlens.errors import ConfigurationError, MissingExtraError
from faultlens.recovery._breaker_state import (
    TIME_BUCKETS,
    BreakerSettings,
    CircuitState,
    SharedState,
    SyncRequest,
)

__all__ = ["RedisBreakerState"]

# KEYS: state hash, window, probes.  ARGV: see _arguments().
_SYNC: Final = """
local key, wkey, pkey = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local known = tonumber(ARGV[2])
local calls = tonumber(ARGV[3])
local failures = tonumber(ARGV[4])
local slow = tonumber(ARGV[5])
local trailing = tonumber(ARGV[6])
local propose = ARGV[7]
local force = ARGV[8] == '1'
local op = ARGV[9]
local probe_id = ARGV[10]
local fthreshold = tonumber(ARGV[11])
local frate = tonumber(ARGV[12])
local srate = tonumber(ARGV[13])
local wtype = ARGV[14]
local wsize = tonumber(ARGV[15])
local minimum = tonumber(ARGV[16])
local od = tonumber(ARGV[17])
local odmax = tonumber(ARGV[18])
local mult = tonumber(ARGV[19])
local hmax = tonumber(ARGV[20])
local ptimeout = tonumber(ARGV[21])
local ttl = tonumber(ARGV[22])
local nbuckets = tonumber(ARGV[23])

local h = redis.call('HMGET', key, 'state', 'gen', 'open_until', 'reopens',
                     'consecutive', 'ok', 'wc', 'wf', 'ws')
local state = h[1] or 'closed'
local gen = tonumber(h[2]) or 0
local open_until = tonumber(h[3]) or 0
local reopens = tonumber(h[4]) or 0
local consecutive = tonumber(h[5]) or 0
local ok = tonumber(h[6]) or 0
local wc = tonumber(h[7]) or 0
local wf = tonumber(h[8]) or 0
local ws = tonumber(h[9]) or 0

local function duration()
  if odmax <= 0 or reopens <= 0 or mult <= 1 then return od end
  local d = od * (mult ^ reopens)
  if d > odmax then return odmax end
  return d
end
local function set_state(s)
  gen = gen + 1
  state = s
  ok = 0
  redis.call('DEL', pkey)
end
local function to_open(from_half_open)
  if from_half_open then reopens = reopens + 1 end
  set_state('open')
  open_until = now + duration()
end
local function to_closed(s)
  set_state(s)
  reopens = 0
  open_until = 0
  redis.call('DEL', wkey)
  wc, wf, ws, consecutive = 0, 0, 0, 0
end

-- 1. merge the closed-state counts of the generation the breaker knows
local merged = false
if calls > 0 and gen == known and (state == 'closed' or state == 'forced_closed') then
  merged = true
  if calls > failures then consecutive = trailing else consecutive = consecutive + failures end
  if frate >= 0 or srate >= 0 then
    if wtype == 'count' then
      redis.call('RPUSH', wkey, calls .. ':' .. failures .. ':' .. slow)
      wc, wf, ws = wc + calls, wf + failures, ws + slow
      while true do
        local first = redis.call('LINDEX', wkey, 0)
        if not first then break end
        local c, f, s = string.match(first, '^(%d+):(%d+):(%d+)$')
        c = tonumber(c)
        if wc - c < wsize then break end
        redis.call('LPOP', wkey)
        wc, wf, ws = wc - c, wf - tonumber(f), ws - tonumber(s)
      end
    else
      local index = math.floor(now / (wsize / nbuckets))
      redis.call('HINCRBY', wkey, 'c' .. index, calls)
      redis.call('HINCRBY', wkey, 'f' .. index, failures)
      redis.call('HINCRBY', wkey, 's' .. index, slow)
      local oldest = index - nbuckets + 1
      wc, wf, ws = 0, 0, 0
      local fields = redis.call('HGETALL', wkey)
      for i = 1, #fields, 2 do
        local name = fields[i]
        local kind = string.sub(name, 1, 1)
        local value = tonumber(fields[i + 1])
        if tonumber(string.sub(name, 2)) < oldest then
          redis.call('HDEL', wkey, name)
        elseif kind == 'c' then wc = wc + value
        elseif kind == 'f' then wf = wf + value
        else ws = ws + value end
      end
    end
  end
end
local merged_gen = gen

-- 2. a transition the breaker proposes
if propose ~= '' then
  if force then
    if propose == 'closed' or propose == 'forced_closed' then
      to_closed(propose)
    elseif propose == 'forced_open' then
      set_state('forced_open')
      open_until = 0
    end
  elseif gen == known then
    if propose == 'open' and (state == 'closed' or state == 'half_open') then
      to_open(state == 'half_open')
    elseif propose == 'closed' and state == 'half_open' then
      to_closed('closed')
    end
  end
end

-- 3. the thresholds, on the merged counts
if merged and gen == merged_gen and state == 'closed' then
  if fthreshold > 0 and consecutive >= fthreshold then
    to_open(false)
  elseif wc > 0 and wc >= minimum then
    if (frate >= 0 and wf / wc >= frate) or (srate >= 0 and ws / wc >= srate) then
      to_open(false)
    end
  end
end

-- 4-5. open long enough: half-open; a probe older than the probe timeout: failed
if state == 'open' and now >= open_until then set_state('half_open') end
if state == 'half_open' then
  local oldest = redis.call('ZRANGE', pkey, 0, 0, 'WITHSCORES')
  if #oldest > 0 and tonumber(oldest[2]) <= now - ptimeout then to_open(true) end
end

-- 6. probe slots
local granted = 0
if op == 'acquire' then
  if state == 'half_open' and redis.call('ZCARD', pkey) < hmax then
    redis.call('ZADD', pkey, now, probe_id)
    granted = 1
  end
elseif op ~= '' and state == 'half_open' and redis.call('ZSCORE', pkey, probe_id) then
  redis.call('ZREM', pkey, probe_id)
  if op == 'success' then
    ok = ok + 1
    if ok >= hmax then to_closed('closed') end
  elseif op == 'failure' then
    to_open(true)
  end
end

redis.call('HSET', key, 'state', state, 'gen', gen, 'open_until', open_until,
           'reopens', reopens, 'consecutive', consecutive, 'ok', ok,
           'wc', wc, 'wf', wf, 'ws', ws)
redis.call('PEXPIRE', key, ttl)
redis.call('PEXPIRE', wkey, ttl)
redis.call('PEXPIRE', pkey, ttl)
return {state, gen, string.format('%.6f', open_until), reopens, granted,
        consecutive, wc, wf, ws}
"""

_STATES: Final = {state.value: state for state in CircuitState}


def _number(value: object, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigurationError(f"{what} must be seconds from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBreakerState:
    """Breaker state shared by every process that uses the same Redis and prefix.

    ``url_or_client`` is a ``redis://`` URL (the client is then built with
    ``timeout``-second socket timeouts and no retries, so an unreachable Redis
    costs at most that once per ``retry_interval``) or a ready ``redis.Redis``.
    Keys start with ``prefix`` and are namespaced by breaker name; they expire
    ``ttl`` seconds after the last sync.  ``sync_interval`` is how stale a
    breaker's cached view may get while nothing happens.

    Syncs from sync code are blocking calls on the calling thread: one round
    trip every ``sync_interval`` per breaker, plus one per transition and per
    half-open probe.  From coroutine functions they go through
    :meth:`async_sync` and never block the event loop: with a
    ``redis.asyncio`` client (built per loop from the URL, or the
    ``async_client`` you pass), or, given only a synchronous client, in the
    loop's default executor.
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        prefix: str = "faultlens:breaker:",
        sync_interval: float = 0.1,
        retry_interval: float = 2.0,
        timeout: float = 0.1,
        ttl: float = 86_400.0,
        async_client: Any = None,
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise MissingExtraError("redis", "faultlens.recovery.RedisBreakerState") from exc
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a string, not {prefix!r}")
        self.sync_interval = _number(sync_interval, "sync_interval", 0.0, 3600.0)
        self._retry_interval = _number(retry_interval, "retry_interval", 0.0, 3600.0)
        self._ttl_ms = int(_number(ttl, "ttl", 1.0, 365 * 86_400.0) * 1000)
        timeout = _number(timeout, "timeout", 0.001, 60.0)
        self.prefix = prefix
        self._url: str | None = None
        self._timeout = timeout
        if isinstance(url_or_client, str):
            self._url = url_or_client
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client: Any = redis.Redis.from_url(
                url_or_client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
            self._owns_client = True
        elif hasattr(url_or_client, "register_script"):
            client = url_or_client
            self._owns_client = False
        else:
            raise ConfigurationError(
                "RedisBreakerState takes a redis:// URL or a redis.Redis client, "
                f"not {url_or_client!r}"
            )
        self._client = client
        self._script = client.register_script(_SYNC)
        if async_client is not None and not hasattr(async_client, "register_script"):
            raise ConfigurationError(
                f"async_client must be a redis.asyncio.Redis client, not {async_client!r}"
            )
        self._async_script: Any = (
            None if async_client is None else async_client.register_script(_SYNC)
        )
        # Built from a URL: one redis.asyncio client (and script) per event loop.
        self._loop_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        self._where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down = False

    def __repr__(self) -> str:
        return f"<RedisBreakerState {self._where} prefix={self.prefix!r}>"

    @property
    def available(self) -> bool:
        """False while the store is backing off after Redis failed to answer."""
        return not self._down

    def sync(
        self, name: str, settings: BreakerSettings, request: SyncRequest
    ) -> SharedState | None:
        """Run one sync for breaker ``name`` in Redis; ``None`` when Redis is unreachable."""
        now = get_clock().monotonic()
        if now < self._down_until:
            return None
        try:
            reply = self._script(keys=self._keys(name), args=self._arguments(settings, request))
        except self._errors as exc:
            self._failed(now, exc)
            return None
        return self._answer(now, reply)

    async def async_sync(
        self, name: str, settings: BreakerSettings, request: SyncRequest
    ) -> SharedState | None:
        """:meth:`sync` without blocking the running event loop (the breaker awaits it)."""
        now = get_clock().monotonic()
        if now < self._down_until:
            return None
        script = self._async_script_for_loop()
        if script is None:  # only a synchronous client: off the loop, in its executor
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self.sync, name, settings, request)
        try:
            reply = await script(keys=self._keys(name), args=self._arguments(settings, request))
        except self._errors as exc:
            self._failed(now, exc)
            return None
        return self._answer(now, reply)

    def _async_script_for_loop(self) -> Any:
        if self._async_script is not None:
            return self._async_script
        if self._url is None:
            return None
        loop = asyncio.get_running_loop()
        script = self._loop_scripts.get(loop)
        if script is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),
            )
            script = self._loop_scripts[loop] = client.register_script(_SYNC)
        return script

    def _keys(self, name: str) -> tuple[str, str, str]:
        base = f"{self.prefix}{{{name}}}"
        return base, f"{base}:window", f"{base}:probes"

    def _answer(self, now: float, reply: Any) -> SharedState | None:
        if self._down:
            with self._lock:
                self._down = False
            counters.incr("recovery.breaker_store_recovered")
        try:
            return SharedState(
                _STATES[_text(reply[0])],
                int(reply[1]),
                float(_text(reply[2])),
                int(reply[3]),
                bool(int(reply[4])),
                int(reply[5]),
                int(reply[6]),
                int(reply[7]),
                int(reply[8]),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:  # not our script's answer
            self._failed(now, exc)
            return None

    def _arguments(self, s: BreakerSettings, q: SyncRequest) -> tuple[object, ...]:
        return (
            repr(q.now),
            q.known_generation,
            q.calls,
            q.failures,
            q.slow_calls,
            q.trailing_failures,
            "" if q.propose is None else q.propose.value,
            "1" if q.force else "0",
            q.probe,
            q.probe_id,
            s.failure_threshold or 0,
            -1 if s.failure_rate_threshold is None else repr(s.failure_rate_threshold),
            -1 if s.slow_call_rate_threshold is None else repr(s.slow_call_rate_threshold),
            s.window_type,
            repr(s.window_size),
            s.minimum_calls,
            repr(s.open_duration),
            0 if s.open_duration_max is None else repr(s.open_duration_max),
            repr(s.open_duration_multiplier),
            s.half_open_max_calls,
            repr(s.probe_timeout),
            self._ttl_ms,
            TIME_BUCKETS,
        )

    def _failed(self, now: float, exc: BaseException) -> None:
        with self._lock:
            self._down_until = now + self._retry_interval
            self._down = True
        counters.incr("recovery.breaker_store_errors")
        report_once(
            f"breaker-redis:{self._where}:{self.prefix}",
            f"Redis for circuit-breaker state ({self._where}) failed: {type(exc).__name__}: "
            f"{exc}; breakers keep working on their local state and try Redis again every "
            f"{self._retry_interval:g}s (failures are counted in "
            "faultlens.stats()['recovery.breaker_store_errors'])",
        )

    def close(self) -> None:
        """Close the connections of a client this store built from a URL."""
        if self._owns_client:
            self._client.close()

    async def aclose(self) -> None:
        """Close the async client this store built for the running event loop (and :meth:`close`).

        Call it before the loop ends (e.g. at the end of the ``asyncio.run`` main);
        a passed ``async_client`` is yours to close.
        """
        script = self._loop_scripts.pop(asyncio.get_running_loop(), None)
        if script is not None:
            await script.registered_client.aclose()
        self.close()
