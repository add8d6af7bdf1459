"""Circuit-breaker state shared between breakers: the store protocol and the in-memory store.

A :class:`~faultlens.recovery.CircuitBreaker` always decides locally, from its own
counts and its own cached state.  A *store* (``CircuitBreaker(..., state=store)``)
adds sharing: every breaker with the same name on the same store sees the same
state machine (closed, open, half-open), the same open-until time and backoff, a
common limit on half-open probes, and the merged counts of all their calls.

The breaker talks to a store through one operation, :meth:`BreakerStateStore.sync`:
it reports the calls it completed since its previous sync, optionally proposes a
transition or asks for (or returns) a probe slot, and gets the shared state back.
A store applies a sync atomically.  The breaker syncs at most every
``store.sync_interval`` seconds while nothing happens, and at once on transitions,
probes and when its own counts cross a threshold; a store that cannot be reached
answers ``None`` and the breaker carries on with its local state.

:class:`InMemoryBreakerState` is the reference implementation: it shares state
between breakers of one process (and is what the tests of the shared semantics run
against); :class:`~faultlens.recovery.RedisBreakerState` implements the same
semantics in Lua for several processes.
"""

from __future__ import annotations

import enum
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

from faultlens.errors import ConfigurationError

__all__ = [
    "TIME_BUCKETS",
    "BreakerSettings",
    "BreakerStateStore",
    "CircuitState",
    "InMemoryBreakerState",
    "ProbeOp",
    "SharedState",
    "SyncRequest",
    "open_duration_for",
]

TIME_BUCKETS: Final = 10
"""How many buckets a time-based window is cut into (its resolution is window/10)."""


class CircuitState(enum.StrEnum):
    """The states of a circuit breaker (strings: ``breaker.state == "open"`` works)."""

    CLOSED = "closed"
    """Calls pass; failures are counted."""
    OPEN = "open"
    """Calls are rejected with ``CircuitOpenError`` until the open duration has passed."""
    HALF_OPEN = "half_open"
    """A limited number of probe calls pass; their outcome closes or re-opens the circuit."""
    FORCED_OPEN = "forced_open"
    """Opened by ``force_open()``: calls are rejected until ``reset()`` or ``force_closed()``."""
    FORCED_CLOSED = "forced_closed"
    """Closed by ``force_closed()``: calls pass and are counted, but never open the circuit."""


ProbeOp = Literal["", "acquire", "success", "failure", "ignore"]


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The thresholds and durations a store applies to the merged counts of one breaker.

    Built by the breaker from its own configuration; every process sharing a
    breaker should configure it alike (a store applies the settings of the sync
    it is processing).  ``None`` switches a threshold off.
    """

    failure_threshold: int | None
    failure_rate_threshold: float | None
    slow_call_rate_threshold: float | None
    window_type: Literal["count", "time"]
    window_size: float
    minimum_calls: int
    open_duration: float
    open_duration_max: float | None
    open_duration_multiplier: float
    half_open_max_calls: int
    probe_timeout: float


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """What a breaker reports to its store in one sync.

    ``now`` is wall-clock seconds (processes share the wall clock, not their
    monotonic clocks).  The counts are the calls the breaker completed in the
    closed state since its previous sync, at ``known_generation``; a store merges
    them only if its generation is still that one.  ``propose`` is a transition
    the breaker made: applied only if the generation is unchanged, or always with
    ``force`` (manual controls).  ``probe`` asks for a half-open probe slot
    (``"acquire"``) or returns one with its outcome.
    """

    now: float
    known_generation: int
    calls: int = 0
    failures: int = 0
    slow_calls: int = 0
    trailing_failures: int = 0
    propose: CircuitState | None = None
    force: bool = False
    probe: ProbeOp = ""
    probe_id: str = ""


@dataclass(frozen=True, slots=True)
class SharedState:
    """The shared state of one breaker as a store returned it.

    ``open_until`` is wall-clock seconds (0.0 unless open); ``reopens`` counts the
    failed recoveries since the circuit was last closed (the backoff exponent);
    ``probe_granted`` answers a probe ``"acquire"``.  The counts are the merged
    ones: consecutive failures and the sliding window.
    """

    state: CircuitState
    generation: int
    open_until: float = 0.0
    reopens: int = 0
    probe_granted: bool = False
    consecutive_failures: int = 0
    window_calls: int = 0
    window_failures: int = 0
    window_slow_calls: int = 0


@runtime_checkable
class BreakerStateStore(Protocol):
    """Where breakers share their state (see the module docstring for the semantics)."""

    sync_interval: float
    """Seconds a breaker may run on its cached view before syncing again."""

    def sync(
        self, name: str, settings: BreakerSettings, request: SyncRequest
    ) -> SharedState | None:
        """Apply ``request`` to breaker ``name`` atomically and return the shared state.

        Returns ``None`` (never raises) when the store cannot be reached: the
        breaker then keeps working on its local state.

        A store may also define ``async def async_sync(name, settings, request)``
        with the same contract: breakers protecting coroutine functions await it.
        Without it, they run ``sync`` in the event loop's default executor, so a
        store's I/O never blocks an event loop.
        """
        ...


def open_duration_for(settings: BreakerSettings, reopens: int) -> float:
    """How long the circuit stays open after ``reopens`` failed recoveries (the backoff)."""
    base = settings.open_duration
    cap = settings.open_duration_max
    if cap is None or reopens <= 0:
        return base
    # Compare exponents instead of computing a huge power: no overflow for any reopens.
    if settings.open_duration_multiplier <= 1.0:
        return base
    limit = math.log(cap / base, settings.open_duration_multiplier)
    if reopens >= limit:
        return cap
    return min(cap, base * settings.open_duration_multiplier**reopens)


class _Record:
    """One breaker's shared state inside :class:`InMemoryBreakerState`."""

    __slots__ = (
        "buckets",
        "consecutive",
        "generation",
        "ok",
        "open_until",
        "probes",
        "reopens",
        "state",
        "window",
        "window_calls",
        "window_failures",
        "window_slow",
    )

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        self.generation = 0
        self.open_until = 0.0
        self.reopens = 0
        self.consecutive = 0
        self.ok = 0  # successful probes in the current half-open period
        self.window: deque[tuple[int, int, int]] = deque()  # count window: (calls, failures, slow)
        self.buckets: dict[int, list[int]] = {}  # time window: index -> [calls, failures, slow]
        self.window_calls = 0
        self.window_failures = 0
        self.window_slow = 0
        self.probes: dict[str, float] = {}  # probe id -> start (wall clock)

    def clear_window(self) -> None:
        self.window.clear()
        self.buckets.clear()
        self.window_calls = self.window_failures = self.window_slow = 0
        self.consecutive = 0


class InMemoryBreakerState:
    """A store inside this process: breakers of the same name on one instance share state.

    The reference implementation of the store semantics (``RedisBreakerState``
    runs the same algorithm in Lua).  Use it to give several breaker objects one
    circuit, e.g. one per worker thread pool; for one breaker object you need no
    store at all (the default).  ``sync_interval`` is how stale a breaker's view
    may get before it syncs again.
    """

    def __init__(self, *, sync_interval: float = 0.1) -> None:
        if (
            isinstance(sync_interval, bool)
            or not isinstance(sync_interval, int | float)
            or not 0 <= sync_interval <= 3600
        ):
            raise ConfigurationError(
                f"sync_interval must be seconds from 0 to 3600, not {sync_interval!r}"
            )
        self.sync_interval = float(sync_interval)
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}

    def sync(self, name: str, settings: BreakerSettings, request: SyncRequest) -> SharedState:
        """Apply ``request`` to breaker ``name`` atomically and return the shared state."""
        with self._lock:
            record = self._records.get(name)
            if record is None:
                record = self._records[name] = _Record()
            granted = _apply(record, settings, request)
            return SharedState(
                record.state,
                record.generation,
                record.open_until,
                record.reopens,
                granted,
                record.consecutive,
                record.window_calls,
                record.window_failures,
                record.window_slow,
            )

    async def async_sync(
        self, name: str, settings: BreakerSettings, request: SyncRequest
    ) -> SharedState:
        """:meth:`sync` for async callers: a few instructions under a lock, nothing to await."""
        return self.sync(name, settings, request)

    def clear(self) -> None:
        """Forget every breaker's shared state."""
        with self._lock:
            self._records.clear()


def _apply(r: _Record, s: BreakerSettings, q: SyncRequest) -> bool:
    """The store algorithm (the Lua script of the Redis store follows it step by step)."""
    generation = r.generation
    merged = _merge(r, s, q)
    _propose(r, s, q)
    if merged and r.generation == generation and r.state is CircuitState.CLOSED:
        _evaluate(r, s, q.now)
    _advance(r, s, q.now)
    return _probe(r, s, q)


def _set_state(r: _Record, state: CircuitState) -> None:
    r.generation += 1
    r.state = state
    r.ok = 0
    r.probes.clear()


def _to_open(r: _Record, s: BreakerSettings, now: float, *, from_half_open: bool) -> None:
    if from_half_open:
        r.reopens += 1
    _set_state(r, CircuitState.OPEN)
    r.open_until = now + open_duration_for(s, r.reopens)


def _to_closed(r: _Record, state: CircuitState) -> None:
    _set_state(r, state)
    r.reopens = 0
    r.open_until = 0.0
    r.clear_window()


def _merge(r: _Record, s: BreakerSettings, q: SyncRequest) -> bool:
    """1. Merge the closed-state counts of the generation the breaker knows."""
    if (
        q.calls <= 0
        or r.generation != q.known_generation
        or r.state not in (CircuitState.CLOSED, CircuitState.FORCED_CLOSED)
    ):
        return False
    if q.calls > q.failures:  # a success among them: only the trailing failures remain
        r.consecutive = q.trailing_failures
    else:
        r.consecutive += q.failures
    if s.failure_rate_threshold is not None or s.slow_call_rate_threshold is not None:
        if s.window_type == "count":
            _merge_count_window(r, s, q)
        else:
            _merge_time_window(r, s, q)
    return True


def _propose(r: _Record, s: BreakerSettings, q: SyncRequest) -> None:
    """2. A transition the breaker made: always if forced, else if nothing changed since."""
    if q.propose is None:
        return
    if q.force:
        if q.propose in (CircuitState.CLOSED, CircuitState.FORCED_CLOSED):
            _to_closed(r, q.propose)
        elif q.propose is CircuitState.FORCED_OPEN:
            _set_state(r, CircuitState.FORCED_OPEN)
            r.open_until = 0.0
    elif r.generation == q.known_generation:
        if q.propose is CircuitState.OPEN and r.state in (
            CircuitState.CLOSED,
            CircuitState.HALF_OPEN,
        ):
            _to_open(r, s, q.now, from_half_open=r.state is CircuitState.HALF_OPEN)
        elif q.propose is CircuitState.CLOSED and r.state is CircuitState.HALF_OPEN:
            _to_closed(r, CircuitState.CLOSED)


def _evaluate(r: _Record, s: BreakerSettings, now: float) -> None:
    """3. The thresholds, on the merged counts."""
    if s.failure_threshold is not None and r.consecutive >= s.failure_threshold:
        _to_open(r, s, now, from_half_open=False)
    elif r.window_calls > 0 and r.window_calls >= s.minimum_calls:
        rate = s.failure_rate_threshold
        slow_rate = s.slow_call_rate_threshold
        if (rate is not None and r.window_failures / r.window_calls >= rate) or (
            slow_rate is not None and r.window_slow / r.window_calls >= slow_rate
        ):
            _to_open(r, s, now, from_half_open=False)


def _advance(r: _Record, s: BreakerSettings, now: float) -> None:
    """4-5. Open long enough: half-open; a probe older than the probe timeout: failed."""
    if r.state is CircuitState.OPEN and now >= r.open_until:
        _set_state(r, CircuitState.HALF_OPEN)
    if (
        r.state is CircuitState.HALF_OPEN
        and r.probes
        and min(r.probes.values()) <= now - s.probe_timeout
    ):
        _to_open(r, s, now, from_half_open=True)


def _probe(r: _Record, s: BreakerSettings, q: SyncRequest) -> bool:
    """6. Probe slots: acquire one, or return one with its outcome."""
    if q.probe == "acquire":
        if r.state is CircuitState.HALF_OPEN and len(r.probes) < s.half_open_max_calls:
            r.probes[q.probe_id] = q.now
            return True
        return False
    if q.probe and r.state is CircuitState.HALF_OPEN and q.probe_id in r.probes:
        del r.probes[q.probe_id]
        if q.probe == "success":
            r.ok += 1
            if r.ok >= s.half_open_max_calls:
                _to_closed(r, CircuitState.CLOSED)
        elif q.probe == "failure":
            _to_open(r, s, q.now, from_half_open=True)
    return False


def _merge_count_window(r: _Record, s: BreakerSettings, q: SyncRequest) -> None:
    r.window.append((q.calls, q.failures, q.slow_calls))
    r.window_calls += q.calls
    r.window_failures += q.failures
    r.window_slow += q.slow_calls
    # Drop whole batches from the old end while the rest still fills the window.
    while r.window and r.window_calls - r.window[0][0] >= s.window_size:
        calls, failures, slow = r.window.popleft()
        r.window_calls -= calls
        r.window_failures -= failures
        r.window_slow -= slow


def _merge_time_window(r: _Record, s: BreakerSettings, q: SyncRequest) -> None:
    width = s.window_size / TIME_BUCKETS
    index = math.floor(q.now / width)
    bucket = r.buckets.get(index)
    if bucket is None:
        bucket = r.buckets[index] = [0, 0, 0]
    bucket[0] += q.calls
    bucket[1] += q.failures
    bucket[2] += q.slow_calls
    oldest = index - TIME_BUCKETS + 1
    for stale in [i for i in r.buckets if i < oldest]:
        del r.buckets[stale]
    r.window_calls = sum(b[0] for b in r.buckets.values())
    r.window_failures = sum(b[1] for b in r.buckets.values())
    r.window_slow = sum(b[2] for b in r.buckets.values())
