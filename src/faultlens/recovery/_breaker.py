"""CircuitBreaker: stop calling a dependency that is failing, probe it, and resume.

States: *closed* (calls pass and are counted), *open* (calls are rejected with
:class:`CircuitOpenError` for ``open_duration``), *half-open* (up to
``half_open_max_calls`` probe calls pass; all succeed: closed, one fails: open
again, with an optional backoff of the open duration), and the manual
*forced_open* / *forced_closed*.  The circuit opens on ``failure_threshold``
consecutive failures, or when the failure rate or the slow-call rate over a
sliding window (the last N calls, or the last N seconds) reaches its threshold
once the window holds ``minimum_calls`` calls.

Cost and concurrency (the argument the code relies on; see docs/circuit-breaker.md):

* The closed-state success path takes no lock and allocates nothing.  It reads
  ``_closed_gen`` (an int while closed, ``None`` otherwise: one read both checks the
  state and tags the call with its period), calls the function, counts the success
  with ``itertools.count.__next__`` (a C function: atomic under the GIL, the same
  primitive ``threading`` uses for thread names) and reads ``_dirty``.
* Everything else (failures, slow calls, window rotation, transitions, probes)
  runs under one ``threading.Lock``, held for microseconds and never across the
  user's call, a listener or store I/O; the same object serves threads and asyncio.
* ``_dirty`` is written only under the lock and is true while a success has work
  to do (consecutive failures to reset, a window waiting for ``minimum_calls``).
  A success that reads it false is ordered before any failure that sets it; one
  that reads it true takes the lock and is ordered after: every interleaving is
  a valid sequential order, so the counts are exact.  A success can only lower a
  failure rate, except when old calls leave a time window, which happens on bucket
  rotation, under the lock.
* Window positions count completed closed-state calls: successes take them
  without the lock, failures under it, so the ring of the last N calls keeps only
  the positions of failures and slow calls (no per-success write).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal, ParamSpec, TypeVar, cast

from faultlens import _clock
from faultlens._clock import get_clock
from faultlens._ids import new_id
from faultlens._metrics import counters, report_once
from faultlens.errors import ConfigurationError, classify
from faultlens.recovery._breaker_state import (
    TIME_BUCKETS,
    BreakerSettings,
    BreakerStateStore,
    CircuitState,
    ProbeOp,
    SharedState,
    SyncRequest,
    open_duration_for,
)
from faultlens.recovery._errors import RecoveryError
from faultlens.recovery._policy import Policy
from faultlens.recovery._record import Outcome, bus, error_type, record

__all__ = [
    "BreakerMetrics",
    "CircuitBreaker",
    "CircuitOpenError",
    "StateChange",
    "StateListener",
]

P = ParamSpec("P")
R = TypeVar("R")

_CLOSED: Final = CircuitState.CLOSED
_OPEN: Final = CircuitState.OPEN
_HALF_OPEN: Final = CircuitState.HALF_OPEN
_FORCED_OPEN: Final = CircuitState.FORCED_OPEN
_FORCED_CLOSED: Final = CircuitState.FORCED_CLOSED
_INF: Final = math.inf
_VALUES: Final = {state: state.value for state in CircuitState}  # Enum.value is a slow property

# Categories (faultlens.errors) of errors that say "the request was wrong", not
# "the dependency is unwell": not counted by default.
_BUSINESS_CATEGORIES: Final = frozenset(
    {"validation", "authentication", "authorization", "not_found", "conflict", "business_rule"}
)
_MANUAL_REASONS: Final = frozenset({"force_open", "force_closed", "reset"})
_STATE_CHANGE = cast("Outcome", "state_change")
_TRIP_SYNC_GAP: Final = 0.01  # seconds between store syncs triggered by local threshold crossings


class CircuitOpenError(RecoveryError):
    """The circuit is open: the call was rejected without running.

    ``breaker`` names the circuit; ``retry_after`` is the number of seconds until
    a probe may pass (``None`` when forced open), ``retry_at`` the same moment as
    wall-clock seconds since the epoch, ``state`` the state that rejected the
    call.  Answer with a fallback or "try again later" (HTTP 503 with
    ``Retry-After``); ``retry()`` does not retry it, which would defeat the breaker.
    """

    code = "circuit_open"
    sheds_load = True

    def __init__(
        self,
        breaker: str,
        *,
        state: str = "open",
        retry_after: float | None = None,
        retry_at: float | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(
            _rejection_message(breaker, state) if message is None else message, policy=breaker
        )
        self.breaker = breaker
        self.state = state
        self.retry_after = retry_after
        self.retry_at = retry_at

    def __str__(self) -> str:
        if self.retry_after is None:
            return self.message
        return f"{self.message} (retry after {self.retry_after:.1f}s)"


def _rejection_message(breaker: str, state: str) -> str:
    if state == "forced_open":
        return (
            f"circuit breaker {breaker!r} was forced open and rejected the call: "
            "call reset() or force_closed() to let calls through"
        )
    busy = " and its probe slots are busy" if state == "half_open" else ""
    return (
        f"circuit breaker {breaker!r} is {state.replace('_', '-')}{busy}: the dependency it "
        "protects is failing, so the call was rejected without running; retry later "
        "(see retry_after) or answer with a fallback"
    )


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition of a breaker, as listeners receive it.

    ``reason`` is one of ``consecutive_failures``, ``failure_rate``,
    ``slow_call_rate``, ``open_duration_elapsed``, ``probe_failed``,
    ``probe_timeout``, ``probes_succeeded``, ``force_open``, ``force_closed``,
    ``reset`` or ``shared_state`` (adopted from the state store).  ``at`` is
    wall-clock seconds; ``retry_after`` is set when the circuit opened;
    ``error_type`` names the error that opened it, when one did.
    """

    breaker: str
    from_state: CircuitState
    to_state: CircuitState
    reason: str
    at: float
    retry_after: float | None = None
    error_type: str | None = None


StateListener = Callable[[StateChange], object]
"""A function called with each :class:`StateChange`, outside the breaker's lock."""


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A snapshot of a breaker's counts (``breaker.metrics()``).

    The totals count every completed call since the breaker was built:
    ``ignored`` are errors that do not count (business errors, cancellation),
    ``rejected`` the calls refused while open.  The ``window_*`` fields and the
    rates describe the current sliding window (rates are ``None`` below
    ``minimum_calls`` or without a rate threshold).  ``shared`` is the last state
    the store returned and ``store_available`` whether its last sync succeeded
    (both ``None`` without a store).
    """

    name: str
    state: CircuitState
    successes: int
    failures: int
    slow_calls: int
    ignored: int
    rejected: int
    consecutive_failures: int
    window_calls: int
    window_failures: int
    window_slow_calls: int
    failure_rate: float | None
    slow_call_rate: float | None
    times_opened: int
    retry_after: float | None
    half_open_in_flight: int
    listener_errors: int
    shared: SharedState | None = None
    store_available: bool | None = None


class _Tally:
    """A counter incremented without a lock, read under the breaker's lock.

    ``add`` is ``itertools.count.__next__``: atomic under the GIL.  Reading takes
    one value too (a "phantom"), subtracted from every later read.
    """

    __slots__ = ("_count", "_phantoms", "add")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.add = self._count.__next__
        self._phantoms = 0

    def value(self) -> int:
        """Return how many ``add`` calls happened so far (breaker lock held)."""
        taken = next(self._count) - self._phantoms
        self._phantoms += 1
        return taken

    def position(self) -> int:
        """Count one more and return its 0-based position (breaker lock held)."""
        return next(self._count) - self._phantoms


class _Probe:
    """One admitted half-open probe call."""

    __slots__ = ("done", "generation", "probe_id", "start")

    def __init__(self, generation: int, start: float, probe_id: str) -> None:
        self.generation = generation
        self.start = start
        self.probe_id = probe_id  # non-empty: a probe slot of the shared store
        self.done = False  # already counted (as failed, by the probe timeout)


class _Bucket:
    """One slice of a time-based window: where it starts and what failed in it."""

    __slots__ = ("failures", "index", "slow", "start")

    def __init__(self, index: int, start: int) -> None:
        self.index = index
        self.start = start  # position of the first call in the slice
        self.failures = 0
        self.slow = 0


class _Reject:
    __slots__ = ("retry_after", "state")

    def __init__(self, state: CircuitState, retry_after: float | None) -> None:
        self.state = state
        self.retry_after = retry_after


def _seconds(value: object, what: str, *, allow_zero: bool = False) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
        or (seconds == 0 and not allow_zero)
    ):
        raise ConfigurationError(
            f"{what} must be a positive number of seconds or a timedelta, not {value!r}"
        )
    return float(seconds)


def _rate(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigurationError(
            f"{what} is a fraction of the calls, greater than 0 and at most 1 "
            f"(0.5 for 50%), not {value!r}"
        )
    return float(value)


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{what} must be a whole number of at least 1, not {value!r}")
    return value


def _counts_by_default(exc: BaseException) -> bool:
    """Count every ``Exception`` except what classify() calls a business error."""
    return classify(exc).category not in _BUSINESS_CATEGORIES


def _counting(counts: object) -> Callable[[BaseException], bool]:
    if counts is None:
        return _counts_by_default
    if isinstance(counts, type) and issubclass(counts, BaseException):
        kinds: tuple[type[BaseException], ...] = (counts,)
    elif (
        isinstance(counts, tuple)
        and counts
        and all(isinstance(k, type) and issubclass(k, BaseException) for k in counts)
    ):
        kinds = counts
    elif callable(counts):
        return cast("Callable[[BaseException], bool]", counts)
    else:
        raise ConfigurationError(
            "counts must be an exception type, a tuple of them, or a function "
            f"(exception) -> bool, not {counts!r}"
        )

    def by_type(exc: BaseException) -> bool:
        return isinstance(exc, kinds)

    return by_type


def _settings(
    *,
    failure_threshold: int | None,
    failure_rate_threshold: float | None,
    window_type: str,
    window_size: float | timedelta | None,
    minimum_calls: int | None,
    slow_call_duration: float | timedelta | None,
    slow_call_rate_threshold: float | None,
    half_open_max_calls: int,
    probe_timeout: float | timedelta,
    open_duration: float | timedelta,
    open_duration_max: float | timedelta | None,
    open_duration_multiplier: float,
) -> BreakerSettings:
    """Check a breaker's configuration; every mistake gets a message saying what to pass."""
    threshold = (
        None if failure_threshold is None else _count(failure_threshold, "failure_threshold")
    )
    rate = _rate(failure_rate_threshold, "failure_rate_threshold")
    slow_rate = _rate(slow_call_rate_threshold, "slow_call_rate_threshold")
    if (slow_call_duration is None) != (slow_rate is None):
        raise ConfigurationError(
            "slow calls need both slow_call_duration (how long is slow) and "
            "slow_call_rate_threshold (which share of slow calls opens the circuit)"
        )
    if window_type == "count":
        size = 100.0 if window_size is None else float(_count(window_size, "window_size"))
        minimum = (
            min(20, int(size)) if minimum_calls is None else _count(minimum_calls, "minimum_calls")
        )
        if minimum > size:
            raise ConfigurationError(
                f"minimum_calls ({minimum}) cannot exceed a count window of "
                f"{int(size)} calls: the rates would never be evaluated"
            )
    elif window_type == "time":
        size = 60.0 if window_size is None else _seconds(window_size, "window_size")
        minimum = 20 if minimum_calls is None else _count(minimum_calls, "minimum_calls")
    else:
        raise ConfigurationError(
            f'window_type is "count" (the last N calls) or "time" (the last N '
            f"seconds), not {window_type!r}"
        )
    base = _seconds(open_duration, "open_duration")
    cap = None if open_duration_max is None else _seconds(open_duration_max, "open_duration_max")
    if cap is not None and cap < base:
        raise ConfigurationError(
            f"open_duration_max ({cap:g}s) must be at least open_duration ({base:g}s)"
        )
    if (
        isinstance(open_duration_multiplier, bool)
        or not isinstance(open_duration_multiplier, int | float)
        or not 1 <= open_duration_multiplier <= 100
    ):
        raise ConfigurationError(
            f"open_duration_multiplier must be from 1 to 100, not {open_duration_multiplier!r}"
        )
    return BreakerSettings(
        failure_threshold=threshold,
        failure_rate_threshold=rate,
        slow_call_rate_threshold=slow_rate,
        window_type="count" if window_type == "count" else "time",
        window_size=size,
        minimum_calls=minimum,
        open_duration=base,
        open_duration_max=cap,
        open_duration_multiplier=float(open_duration_multiplier),
        half_open_max_calls=_count(half_open_max_calls, "half_open_max_calls"),
        probe_timeout=_seconds(probe_timeout, "probe_timeout"),
    )


_Trip = tuple["StateChange | None", bool, int, "str | None", float, "BaseException | None"]
"""What a counted outcome leaves to do outside the lock: see CircuitBreaker._after_trip."""

_SyncBegun = tuple[
    BreakerStateStore,
    SyncRequest,
    "tuple[CircuitState, bool] | None",
    "CircuitState | None",
    bool,
    int,
    float,
]


def _trip(  # noqa: PLR0917
    change: StateChange | None,
    sync: bool,
    gen: int,
    reason: str | None,
    now: float,
    exc: BaseException | None,
) -> _Trip | None:
    if change is None and not sync:
        return None
    return change, sync, gen, reason, now, exc


def _store_raised(store: BreakerStateStore, exc: Exception) -> None:
    counters.incr("recovery.breaker_store_errors")
    report_once(
        f"breaker-store-raised:{id(store)}",
        f"circuit breaker state store {store!r} raised {type(exc).__name__}; "
        "breakers keep working on local state",
    )


async def _store_async_sync(
    store: BreakerStateStore, name: str, settings: BreakerSettings, request: SyncRequest
) -> SharedState | None:
    """One sync from async code, without blocking the event loop.

    A store with an ``async_sync`` coroutine method (``RedisBreakerState``: the
    redis.asyncio client; ``InMemoryBreakerState``: a few locked instructions) is
    awaited; any other store's ``sync`` runs in the loop's default executor.
    """
    async_sync = getattr(store, "async_sync", None)
    if async_sync is not None:
        shared: SharedState | None = await async_sync(name, settings, request)
        return shared
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, store.sync, name, settings, request)


class CircuitBreaker(Policy):
    """A circuit breaker policy: decorator, ``.call`` / ``.acall``, usable in ``pipeline()``.

    ``failure_threshold`` consecutive counted failures open the circuit (``None``
    disables it).  ``failure_rate_threshold`` (a fraction: 0.5 is 50%) and
    ``slow_call_rate_threshold`` open it once the window (``window_type="count"``:
    the last ``window_size`` calls, default 100; ``"time"``: the last
    ``window_size`` seconds, default 60) holds ``minimum_calls`` calls.  A call
    is slow when it takes longer than ``slow_call_duration``.

    ``counts`` decides which exceptions are failures: by default every
    ``Exception`` except faultlens business errors (validation, authentication,
    authorization, not found, conflict, business rule); or give exception types,
    or a function ``(exc) -> bool``.  Cancellation (``asyncio.CancelledError``)
    and other ``BaseException``\\ s never count.  ``failure_result(result)``
    returning true counts a returned value as a failure (the value is still
    returned).

    Open, it rejects calls with :class:`CircuitOpenError` for ``open_duration``;
    with ``open_duration_max`` each failed recovery multiplies the duration by
    ``open_duration_multiplier`` up to that cap.  Half-open, it lets
    ``half_open_max_calls`` probes through: all succeed, it closes; one fails,
    or runs longer than ``probe_timeout``, it opens again.  Times are seconds or
    ``timedelta``.

    ``state`` shares the breaker through a store (:class:`RedisBreakerState` for
    several processes); ``listeners`` are called with each :class:`StateChange`
    (a listener that raises is counted and reported, never propagated).
    """

    kind = "circuit_breaker"

    __slots__ = (
        "__weakref__",
        "_base_pos",
        "_bucket_end",
        "_bucket_width",
        "_buckets",
        "_closed_gen",
        "_consecutive",
        "_counts",
        "_dirty",
        "_fail_pos",
        "_failure_result",
        "_failures_total",
        "_gen",
        "_half_open_max",
        "_ignored",
        "_last_shared",
        "_listener_errors",
        "_listeners",
        "_lock",
        "_messages",
        "_minimum_calls",
        "_open_until",
        "_other_successes",
        "_pending",
        "_pending_eval",
        "_probe_ask_at",
        "_probe_ok",
        "_probe_timeout",
        "_probes",
        "_rejected",
        "_reopens",
        "_seq",
        "_seq_failures",
        "_settings",
        "_shared_gen",
        "_slow_pos",
        "_slow_s",
        "_slow_total",
        "_state",
        "_store",
        "_store_up",
        "_sync_adopted",
        "_sync_due",
        "_sync_seq",
        "_synced_calls",
        "_timed",
        "_times_opened",
        "_trip_sync_at",
        "_unsynced_failures",
        "_unsynced_slow",
        "_win_failures",
        "_win_slow",
        "_window_size",
        "_window_type",
        "_windowed",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int | None = 5,
        failure_rate_threshold: float | None = None,
        window_type: Literal["count", "time"] = "count",
        window_size: float | timedelta | None = None,
        minimum_calls: int | None = None,
        slow_call_duration: float | timedelta | None = None,
        slow_call_rate_threshold: float | None = None,
        counts: type[BaseException]
        | tuple[type[BaseException], ...]
        | Callable[[BaseException], bool]
        | None = None,
        failure_result: Callable[[Any], object] | None = None,
        half_open_max_calls: int = 1,
        probe_timeout: float | timedelta = 30.0,
        open_duration: float | timedelta = 30.0,
        open_duration_max: float | timedelta | None = None,
        open_duration_multiplier: float = 2.0,
        state: BreakerStateStore | None = None,
        listeners: Iterable[StateListener] = (),
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a circuit breaker needs a non-empty name, not {name!r}")
        self.name = name
        self._settings = settings = _settings(
            failure_threshold=failure_threshold,
            failure_rate_threshold=failure_rate_threshold,
            window_type=window_type,
            window_size=window_size,
            minimum_calls=minimum_calls,
            slow_call_duration=slow_call_duration,
            slow_call_rate_threshold=slow_call_rate_threshold,
            half_open_max_calls=half_open_max_calls,
            probe_timeout=probe_timeout,
            open_duration=open_duration,
            open_duration_max=open_duration_max,
            open_duration_multiplier=open_duration_multiplier,
        )
        if failure_result is not None and not callable(failure_result):
            raise ConfigurationError(
                f"failure_result must be a function (result) -> bool, not {failure_result!r}"
            )
        if state is not None and not isinstance(state, BreakerStateStore):
            raise ConfigurationError(
                "state must be a breaker state store (InMemoryBreakerState, "
                f"RedisBreakerState), not {state!r}"
            )
        self._counts = _counting(counts)
        self._failure_result = failure_result
        self._half_open_max = settings.half_open_max_calls
        self._probe_timeout = settings.probe_timeout
        self._minimum_calls = settings.minimum_calls
        self._window_type = settings.window_type
        self._window_size = settings.window_size
        self._windowed = (
            settings.failure_rate_threshold is not None
            or settings.slow_call_rate_threshold is not None
        )
        self._slow_s = (
            _INF
            if slow_call_duration is None
            else _seconds(slow_call_duration, "slow_call_duration")
        )
        self._bucket_width = settings.window_size / TIME_BUCKETS
        self._store = state
        # The timed wrapper reads the clock around each call: needed for slow
        # calls, time windows and store refreshes; the fast one never does.
        self._timed = (
            self._slow_s != _INF or (self._windowed and window_type == "time") or state is not None
        )
        self._listeners: tuple[StateListener, ...] = tuple(listeners)
        for listener in self._listeners:
            if not callable(listener):
                raise ConfigurationError(f"listeners must be callables, not {listener!r}")
        self._init_runtime()

    def _init_runtime(self) -> None:
        window_type = self._window_type
        state = self._store
        self._lock = threading.Lock()
        self._state = _CLOSED
        self._gen = 0
        self._closed_gen: int | None = 0
        self._seq = _Tally()  # closed-state calls: successes lock-free, failures locked
        self._seq_failures = 0
        self._other_successes = 0  # successful probes
        self._failures_total = 0
        self._slow_total = 0
        self._ignored = _Tally()
        self._rejected = _Tally()
        self._times_opened = 0
        self._listener_errors = 0
        self._consecutive = 0
        self._dirty = False
        self._pending_eval = False
        self._base_pos = 0
        self._fail_pos: deque[int] = deque()
        self._slow_pos: deque[int] = deque()
        self._buckets: deque[_Bucket] = deque()
        self._win_failures = 0
        self._win_slow = 0
        self._bucket_end = -_INF if (self._windowed and window_type == "time") else _INF
        self._open_until = 0.0
        self._reopens = 0
        self._probes: list[_Probe] = []
        self._probe_ok = 0
        # shared store
        self._sync_due = 0.0 if state is not None else _INF
        self._store_up = True
        self._shared_gen = 0
        self._sync_seq = 0
        self._sync_adopted = 0
        self._synced_calls = 0
        self._unsynced_failures = 0
        self._unsynced_slow = 0
        self._pending: tuple[CircuitState, bool] | None = None
        self._probe_ask_at = 0.0
        self._trip_sync_at = 0.0
        self._last_shared: SharedState | None = None
        self._messages: dict[str, str] = {}

    # -- the protected call -----------------------------------------------------------

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` protected by this breaker (sync)."""
        breaker = self
        bad = self._failure_result
        add = self._seq.add
        slow_s = self._slow_s

        if not self._timed:

            def run(*args: P.args, **kwargs: P.kwargs) -> R:
                gen = breaker._closed_gen
                if gen is None:
                    permit = breaker._admit(None)
                    if isinstance(permit, _Probe):
                        return breaker._run_probe(permit, fn, args, kwargs)
                    gen = permit
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    breaker._closed_error(gen, exc, None, None)
                    raise
                if bad is not None and breaker._is_bad(bad, result):
                    breaker._closed_failure(gen, None, None, None)
                    return result
                add()
                if breaker._dirty:
                    breaker._closed_success_slow(gen, None)
                return result

            return run

        def run_timed(*args: P.args, **kwargs: P.kwargs) -> R:
            gen = breaker._closed_gen
            clock = _clock._clock
            start = clock.monotonic()
            if gen is None or start >= breaker._sync_due:
                permit = breaker._admit(start)
                if isinstance(permit, _Probe):
                    return breaker._run_probe(permit, fn, args, kwargs)
                gen = permit
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                breaker._closed_error(gen, exc, start, clock.monotonic())
                raise
            end = clock.monotonic()
            if bad is not None and breaker._is_bad(bad, result):
                breaker._closed_failure(gen, None, start, end)
            elif end - start > slow_s or end >= breaker._bucket_end:
                breaker._closed_success_timed(gen, start, end)
            else:
                add()
                if breaker._dirty:
                    breaker._closed_success_slow(gen, end)
            return result

        return run_timed

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Return coroutine function ``fn`` protected by this breaker."""
        breaker = self
        bad = self._failure_result
        add = self._seq.add
        slow_s = self._slow_s

        if not self._timed:

            async def run(*args: P.args, **kwargs: P.kwargs) -> R:
                gen = breaker._closed_gen
                if gen is None:
                    permit = breaker._admit(None)
                    if isinstance(permit, _Probe):
                        return await breaker._arun_probe(permit, fn, args, kwargs)
                    gen = permit
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    breaker._closed_error(gen, exc, None, None)
                    raise
                if bad is not None and breaker._is_bad(bad, result):
                    breaker._closed_failure(gen, None, None, None)
                    return result
                add()
                if breaker._dirty:
                    breaker._closed_success_slow(gen, None)
                return result

            return run

        # With a store, everything that talks to it is awaited here (see _store_async_sync):
        # an event loop never waits on the store's I/O.
        async def run_timed(*args: P.args, **kwargs: P.kwargs) -> R:
            gen = breaker._closed_gen
            clock = _clock._clock
            start = clock.monotonic()
            if gen is None or start >= breaker._sync_due:
                permit = await breaker._aadmit(start)
                if isinstance(permit, _Probe):
                    return await breaker._arun_probe(permit, fn, args, kwargs)
                gen = permit
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                trip = breaker._error_trip(gen, exc, start, clock.monotonic())
                if trip is not None:
                    await breaker._aafter_trip(*trip)
                raise
            end = clock.monotonic()
            if bad is not None and breaker._is_bad(bad, result):
                trip = breaker._failure_trip(gen, None, start, end)
            elif end - start > slow_s or end >= breaker._bucket_end:
                trip = breaker._timed_success_trip(gen, start, end)
            else:
                add()
                if not breaker._dirty:
                    return result
                trip = breaker._success_trip(gen, end)
            if trip is not None:
                await breaker._aafter_trip(*trip)
            return result

        return run_timed

    def _run_probe(
        self, probe: _Probe, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._probe_done(probe, exc, None)
            raise
        self._probe_done(probe, None, result)
        return result

    async def _arun_probe(
        self,
        probe: _Probe,
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._aprobe_done(probe, exc, None)
            raise
        await self._aprobe_done(probe, None, result)
        return result

    # -- deciding -----------------------------------------------------------------------

    def _is_bad(self, bad: Callable[[Any], object], result: object) -> bool:
        try:
            return bool(bad(result))
        except Exception as exc:
            counters.incr("recovery.breaker_predicate_errors")
            report_once(
                f"breaker-failure-result:{id(bad)}",
                f"circuit breaker {self.name!r}: failure_result raised {type(exc).__name__}; "
                "the result counts as a success",
            )
            return False

    def _is_counted(self, exc: BaseException) -> bool:
        if not isinstance(exc, Exception):  # cancellation, interrupts, exits
            return False
        try:
            return bool(self._counts(exc))
        except Exception as problem:
            counters.incr("recovery.breaker_predicate_errors")
            report_once(
                f"breaker-counts:{id(self._counts)}",
                f"circuit breaker {self.name!r}: its counts predicate raised "
                f"{type(problem).__name__}; the error counts as a failure",
            )
            return True

    def _admit(self, now: float | None) -> int | _Probe:
        """Admit a call that found the breaker not closed (or a store sync due)."""
        if now is None:
            now = get_clock().monotonic()
        store = self._store
        if store is not None and now >= self._sync_due:
            self._routine_sync(now)
        state = self._reject_open(now)
        if store is not None and self._store_up and (state is _OPEN or state is _HALF_OPEN):
            shared = self._admit_shared(now)
            if shared is not None:
                return shared
        return self._admit_local(now)

    async def _aadmit(self, now: float) -> int | _Probe:
        """:meth:`_admit` for async callers: the store is awaited, never waited on."""
        store = self._store
        if store is not None and now >= self._sync_due:
            await self._aroutine_sync(now)
        state = self._reject_open(now)
        if store is not None and self._store_up and (state is _OPEN or state is _HALF_OPEN):
            shared = await self._aadmit_shared(now)
            if shared is not None:
                return shared
        return self._admit_local(now)

    def _reject_open(self, now: float) -> CircuitState:
        state = self._state
        if state is _OPEN:  # the common rejection: no lock
            remaining = self._open_until - now
            if remaining > 0:
                raise self._rejection(state, remaining)
        elif state is _FORCED_OPEN:
            raise self._rejection(state, None)
        return state

    def _admit_local(self, now: float) -> int | _Probe:
        changes: list[StateChange | None] = []
        with self._lock:
            decision = self._admit_local_locked(now, changes)
        self._notify_all(changes)
        if isinstance(decision, _Reject):
            raise self._rejection(decision.state, decision.retry_after)
        return decision

    def _admit_local_locked(
        self, now: float, changes: list[StateChange | None]
    ) -> int | _Probe | _Reject:
        state = self._state
        if state is _CLOSED or state is _FORCED_CLOSED:
            return self._gen
        if state is _FORCED_OPEN:
            return _Reject(state, None)
        if state is _OPEN:
            if now < self._open_until:
                return _Reject(state, self._open_until - now)
            changes.append(self._set_state_locked(_HALF_OPEN, "open_duration_elapsed", now))
        probes = self._probes
        if probes and now - probes[0].start >= self._probe_timeout:
            changes.append(self._probe_timed_out_locked(probes[0], now))
            return _Reject(_OPEN, self._open_until - now)
        if len(probes) < self._half_open_max:
            probe = _Probe(self._gen, now, "")
            probes.append(probe)
            return probe
        return _Reject(_HALF_OPEN, max(0.0, probes[0].start + self._probe_timeout - now))

    def _probe_timed_out_locked(self, probe: _Probe, now: float) -> StateChange | None:
        # The hung probe counts as failed now; its late result is ignored.
        probe.done = True
        self._failures_total += 1
        return self._open_locked(now, True, "probe_timeout", None)

    def _admit_shared(self, now: float) -> int | _Probe | None:
        """Ask the store for a probe slot; ``None``: the store is unreachable."""
        asked = self._probe_ask(now)
        if not isinstance(asked, str):
            return asked
        shared = self._sync(now, probe="acquire", probe_id=asked)
        if shared is None:
            return None
        permit, stale_grant = self._probe_answer(now, shared, asked)
        if stale_grant:  # granted for a period this breaker already left: give it back
            self._sync(now, probe="ignore", probe_id=asked)
        if isinstance(permit, _Reject):
            raise self._rejection(permit.state, permit.retry_after)
        return permit

    async def _aadmit_shared(self, now: float) -> int | _Probe | None:
        """:meth:`_admit_shared`, awaiting the store."""
        asked = self._probe_ask(now)
        if not isinstance(asked, str):
            return asked
        shared = await self._async_sync(now, probe="acquire", probe_id=asked)
        if shared is None:
            return None
        permit, stale_grant = self._probe_answer(now, shared, asked)
        if stale_grant:
            await self._async_sync(now, probe="ignore", probe_id=asked)
        if isinstance(permit, _Reject):
            raise self._rejection(permit.state, permit.retry_after)
        return permit

    def _probe_ask(self, now: float) -> int | str:
        """The generation if closed meanwhile, else a new probe id to ask the store with."""
        store = self._store
        assert store is not None
        with self._lock:
            state = self._state
            if state is _CLOSED or state is _FORCED_CLOSED:
                return self._gen
            asked = now < self._probe_ask_at  # another call asked a moment ago
            if not asked:
                self._probe_ask_at = now + store.sync_interval
            retry_after = self._probe_ask_at - now
        if asked:
            raise self._rejection(state, retry_after)
        return new_id()

    def _probe_answer(
        self, now: float, shared: SharedState, probe_id: str
    ) -> tuple[int | _Probe | _Reject, bool]:
        """The store answered a probe request: (permit, whether to give the slot back)."""
        permit: int | _Probe | _Reject
        with self._lock:
            state = self._state
            if state is _CLOSED or state is _FORCED_CLOSED:
                permit = self._gen
            elif shared.probe_granted and (
                self._shared_gen == shared.generation and state is _HALF_OPEN
            ):
                return _Probe(self._gen, now, probe_id), False
            elif state is _FORCED_OPEN:
                permit = _Reject(state, None)
            elif state is _OPEN and self._open_until > now:
                permit = _Reject(state, self._open_until - now)
            else:
                permit = _Reject(state, max(self._probe_ask_at - now, 0.0))
            return permit, shared.probe_granted

    def _rejection(self, state: CircuitState, retry_after: float | None) -> CircuitOpenError:
        self._rejected.add()
        retry_at = None if retry_after is None else get_clock().time() + retry_after
        if bus.active:
            record(
                "circuit_breaker",
                self.name,
                1,
                "rejected_open",
                0.0,
                0.0,
                None,
                {"state": _VALUES[state], "retry_after": retry_after},
            )
        value = _VALUES[state]
        message = self._messages.get(value)
        if message is None:
            message = self._messages[value] = _rejection_message(self.name, value)
        return CircuitOpenError(
            self.name, state=value, retry_after=retry_after, retry_at=retry_at, message=message
        )

    # -- closed-state outcomes ----------------------------------------------------------

    # Each outcome is counted under the lock and returns what is left to do outside
    # it (a _Trip: notify listeners, sync with the store), or None; the sync wrappers
    # do it at once, the async ones await it (_aafter_trip).
    def _closed_error(
        self, gen: int, exc: BaseException, start: float | None, end: float | None
    ) -> None:
        trip = self._error_trip(gen, exc, start, end)
        if trip is not None:
            self._after_trip(*trip)

    def _closed_failure(
        self, gen: int, exc: BaseException | None, start: float | None, end: float | None
    ) -> None:
        trip = self._failure_trip(gen, exc, start, end)
        if trip is not None:
            self._after_trip(*trip)

    def _closed_success_slow(self, gen: int, end: float | None) -> None:
        """A success that found work to do: reset the consecutive count, evaluate."""
        trip = self._success_trip(gen, end)
        if trip is not None:
            self._after_trip(*trip)

    def _closed_success_timed(self, gen: int, start: float, end: float) -> None:
        """A success that was slow or opened a new time bucket."""
        trip = self._timed_success_trip(gen, start, end)
        if trip is not None:
            self._after_trip(*trip)

    def _error_trip(
        self, gen: int, exc: BaseException, start: float | None, end: float | None
    ) -> _Trip | None:
        if self._is_counted(exc):
            return self._failure_trip(gen, exc, start, end)
        self._ignored.add()
        return None

    def _failure_trip(
        self, gen: int, exc: BaseException | None, start: float | None, end: float | None
    ) -> _Trip | None:
        now = get_clock().monotonic() if end is None else end
        slow = start is not None and now - start > self._slow_s
        with self._lock:
            if now >= self._bucket_end:
                self._rotate_locked(now)
            pos = self._seq.position()
            self._seq_failures += 1
            self._failures_total += 1
            if slow:
                self._slow_total += 1
            if gen != self._closed_gen:
                return None  # admitted before a transition: counted, but not in this period
            self._unsynced_failures += 1
            self._consecutive += 1
            self._dirty = True
            if slow:
                self._unsynced_slow += 1
            if self._windowed:
                if self._window_type == "count":
                    self._fail_pos.append(pos)
                    if slow:
                        self._slow_pos.append(pos)
                else:
                    bucket = self._buckets[-1]
                    bucket.failures += 1
                    self._win_failures += 1
                    if slow:
                        bucket.slow += 1
                        self._win_slow += 1
            reason = self._trip_reason_locked(pos + 1, now)
            change, sync = self._trip_locked(reason, now, exc)
        return _trip(change, sync, gen, reason, now, exc)

    def _success_trip(self, gen: int, end: float | None) -> _Trip | None:
        with self._lock:
            if gen != self._closed_gen:
                return None
            self._consecutive = 0
            reason = None
            now = 0.0
            if self._pending_eval:
                now = get_clock().monotonic() if end is None else end
                reason = self._trip_reason_locked(self._seq.value(), now)
            self._dirty = self._pending_eval
            change, sync = self._trip_locked(reason, now, None)
        return _trip(change, sync, gen, reason, now, None)

    def _timed_success_trip(self, gen: int, start: float, end: float) -> _Trip | None:
        slow = end - start > self._slow_s
        with self._lock:
            rotated = end >= self._bucket_end
            if rotated:
                self._rotate_locked(end)
            pos = self._seq.position()
            if slow:
                self._slow_total += 1
            if gen != self._closed_gen:
                return None
            if slow:
                self._unsynced_slow += 1
                if self._windowed:
                    if self._window_type == "count":
                        self._slow_pos.append(pos)
                    else:
                        self._buckets[-1].slow += 1
                        self._win_slow += 1
            self._consecutive = 0
            reason = None
            if slow or rotated or self._pending_eval:
                reason = self._trip_reason_locked(pos + 1, end)
            self._dirty = self._pending_eval
            change, sync = self._trip_locked(reason, end, None)
        return _trip(change, sync, gen, reason, end, None)

    def _rotate_locked(self, now: float) -> None:
        """Start the time bucket ``now`` falls in (the first call in it gets here)."""
        index = math.floor(now / self._bucket_width)
        buckets = self._buckets
        if not buckets or buckets[-1].index < index:
            buckets.append(_Bucket(index, self._seq.value()))
        self._bucket_end = (index + 1) * self._bucket_width
        self._expire_locked(index)

    def _expire_locked(self, index: int) -> None:
        buckets = self._buckets
        oldest = index - TIME_BUCKETS + 1
        while buckets and buckets[0].index < oldest:
            gone = buckets.popleft()
            self._win_failures -= gone.failures
            self._win_slow -= gone.slow

    def _window_locked(self, calls_so_far: int, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the window when ``calls_so_far`` calls completed."""
        if self._window_type == "count":
            lowest = max(self._base_pos, calls_so_far - int(self._window_size))
            fail_pos, slow_pos = self._fail_pos, self._slow_pos
            while fail_pos and fail_pos[0] < lowest:
                fail_pos.popleft()
            while slow_pos and slow_pos[0] < lowest:
                slow_pos.popleft()
            return calls_so_far - lowest, len(fail_pos), len(slow_pos)
        self._expire_locked(math.floor(now / self._bucket_width))
        if not self._buckets:
            return 0, 0, 0
        first = max(self._base_pos, self._buckets[0].start)
        return calls_so_far - first, self._win_failures, self._win_slow

    def _trip_reason_locked(self, calls_so_far: int, now: float) -> str | None:
        """Why the circuit should open now, or ``None``; sets ``_pending_eval``."""
        settings = self._settings
        if (
            settings.failure_threshold is not None
            and self._consecutive >= settings.failure_threshold
        ):
            return "consecutive_failures"
        if not self._windowed:
            return None
        calls, failures, slow = self._window_locked(calls_so_far, now)
        if calls < self._minimum_calls:
            # Successes must re-evaluate until the window is full enough.
            self._pending_eval = failures > 0 or slow > 0
            if self._pending_eval:
                self._dirty = True
            return None
        self._pending_eval = False
        rate = settings.failure_rate_threshold
        # Compare the quotient: 3 / 10 >= 0.3 holds, 3 >= 0.3 * 10 does not in floats.
        if rate is not None and failures / calls >= rate:
            return "failure_rate"
        slow_rate = settings.slow_call_rate_threshold
        if slow_rate is not None and slow / calls >= slow_rate:
            return "slow_call_rate"
        return None

    def _trip_locked(
        self, reason: str | None, now: float, exc: BaseException | None
    ) -> tuple[StateChange | None, bool]:
        """Act on a threshold crossing: open here, or let the store decide (sync)."""
        if reason is None or self._state is _FORCED_CLOSED:
            return None, False
        if self._store is not None and self._store_up:
            # Shared: the store decides on the merged counts; sync now (rate-limited).
            if now >= self._trip_sync_at:
                self._trip_sync_at = now + _TRIP_SYNC_GAP
                return None, True
            return None, False
        return self._open_locked(now, False, reason, exc), False

    def _after_trip(  # noqa: PLR0917 (private, the state of one trip)
        self,
        change: StateChange | None,
        sync: bool,
        gen: int,
        reason: str | None,
        now: float,
        exc: BaseException | None,
    ) -> None:
        if sync and self._sync(now) is None:
            change = self._open_alone(change, gen, reason, now, exc)
        if change is not None:
            self._notify(change)

    async def _aafter_trip(  # noqa: PLR0917
        self,
        change: StateChange | None,
        sync: bool,
        gen: int,
        reason: str | None,
        now: float,
        exc: BaseException | None,
    ) -> None:
        if sync and await self._async_sync(now) is None:
            change = self._open_alone(change, gen, reason, now, exc)
        if change is not None:
            self._notify(change)

    def _open_alone(
        self,
        change: StateChange | None,
        gen: int,
        reason: str | None,
        now: float,
        exc: BaseException | None,
    ) -> StateChange | None:
        # The store is unreachable: the breaker decides alone.
        with self._lock:
            if gen == self._closed_gen and self._state is _CLOSED and reason is not None:
                return self._open_locked(now, False, reason, exc)
        return change

    # -- transitions --------------------------------------------------------------------

    def _set_state_locked(
        self,
        new: CircuitState,
        reason: str,
        now: float,
        exc: BaseException | None = None,
    ) -> StateChange | None:
        old = self._state
        self._gen += 1
        self._state = new
        self._probes.clear()
        self._probe_ok = 0
        if new is _CLOSED or new is _FORCED_CLOSED:
            self._reset_counts_locked()
            self._closed_gen = self._gen
        else:
            self._closed_gen = None
        if new is _OPEN:
            self._times_opened += 1
        if (
            self._store is not None
            and not self._store_up
            and reason != "shared_state"
            and new is not _HALF_OPEN  # the store half-opens by itself when the time comes
        ):
            self._pending = (new, reason in _MANUAL_REASONS)  # proposed when the store returns
        if old is new:
            return None
        return StateChange(
            self.name,
            old,
            new,
            reason,
            get_clock().time(),
            max(0.0, self._open_until - now) if new is _OPEN else None,
            error_type(exc),
        )

    def _reset_counts_locked(self) -> None:
        position = self._seq.value()
        self._base_pos = position
        self._synced_calls = position
        self._unsynced_failures = 0
        self._unsynced_slow = 0
        self._consecutive = 0
        self._dirty = False
        self._pending_eval = False
        self._fail_pos.clear()
        self._slow_pos.clear()
        self._buckets.clear()
        self._win_failures = 0
        self._win_slow = 0
        if self._bucket_end != _INF:
            self._bucket_end = -_INF

    def _open_locked(
        self, now: float, from_half_open: bool, reason: str, exc: BaseException | None
    ) -> StateChange | None:
        if from_half_open:
            self._reopens += 1
        self._open_until = now + open_duration_for(self._settings, self._reopens)
        return self._set_state_locked(_OPEN, reason, now, exc)

    def _probe_done(self, probe: _Probe, exc: BaseException | None, result: object) -> None:
        settled = self._probe_settle(probe, exc, result)
        if settled is None:
            return
        outcome, timed_out, now, changes = settled
        if probe.probe_id and self._sync(now, probe=outcome, probe_id=probe.probe_id) is None:
            with self._lock:  # the store is unreachable: decide alone
                self._apply_probe_locked(probe, outcome, timed_out, now, exc, changes)
        self._notify_all(changes)

    async def _aprobe_done(self, probe: _Probe, exc: BaseException | None, result: object) -> None:
        settled = self._probe_settle(probe, exc, result)
        if settled is None:
            return
        outcome, timed_out, now, changes = settled
        if (
            probe.probe_id
            and await self._async_sync(now, probe=outcome, probe_id=probe.probe_id) is None
        ):
            with self._lock:
                self._apply_probe_locked(probe, outcome, timed_out, now, exc, changes)
        self._notify_all(changes)

    def _probe_settle(
        self, probe: _Probe, exc: BaseException | None, result: object
    ) -> tuple[ProbeOp, bool, float, list[StateChange | None]] | None:
        """Count a probe's outcome (and apply it, unshared); None if already counted."""
        now = get_clock().monotonic()
        outcome: ProbeOp
        if exc is not None:
            outcome = "failure" if self._is_counted(exc) else "ignore"
        elif self._failure_result is not None and self._is_bad(self._failure_result, result):
            outcome = "failure"
        else:
            outcome = "success"
        timed_out = outcome == "success" and now - probe.start > self._probe_timeout
        if timed_out:
            outcome = "failure"
        changes: list[StateChange | None] = []
        with self._lock:
            if probe.done:
                return None  # the probe timeout already counted it as failed
            probe.done = True
            if outcome == "success":
                self._other_successes += 1
            elif outcome == "failure":
                self._failures_total += 1
            else:
                self._ignored.add()
            if not probe.probe_id:
                self._apply_probe_locked(probe, outcome, timed_out, now, exc, changes)
        return outcome, timed_out, now, changes

    def _apply_probe_locked(  # noqa: PLR0917 (private, the state of one probe)
        self,
        probe: _Probe,
        outcome: ProbeOp,
        timed_out: bool,
        now: float,
        exc: BaseException | None,
        changes: list[StateChange | None],
    ) -> None:
        if probe in self._probes:
            self._probes.remove(probe)
        if probe.generation != self._gen or self._state is not _HALF_OPEN:
            return  # from a period that is over
        if outcome == "success":
            self._probe_ok += 1
            if self._probe_ok >= self._half_open_max:
                self._reopens = 0
                changes.append(self._set_state_locked(_CLOSED, "probes_succeeded", now))
        elif outcome == "failure":
            reason = "probe_timeout" if timed_out else "probe_failed"
            changes.append(self._open_locked(now, True, reason, exc))

    # -- the shared store ---------------------------------------------------------------

    def _routine_sync(self, now: float) -> None:
        """Refresh from the store if no other call is already doing it."""
        if self._claim_routine_sync(now):
            self._sync(now)

    async def _aroutine_sync(self, now: float) -> None:
        if self._claim_routine_sync(now):
            await self._async_sync(now)

    def _claim_routine_sync(self, now: float) -> bool:
        store = self._store
        assert store is not None
        with self._lock:
            if now < self._sync_due:
                return False
            self._sync_due = now + store.sync_interval
        return True

    def _sync(
        self,
        now: float,
        *,
        propose: CircuitState | None = None,
        force: bool = False,
        probe: ProbeOp = "",
        probe_id: str = "",
    ) -> SharedState | None:
        """Exchange with the store: report counts, propose, probe; adopt its answer."""
        begun = self._sync_begin(now, propose, force, probe, probe_id)
        store, request = begun[0], begun[1]
        try:
            shared = store.sync(self.name, self._settings, request)
        except Exception as exc:  # a store must not raise; if one does, run on local state
            _store_raised(store, exc)
            shared = None
        return self._sync_end(now, shared, begun)

    async def _async_sync(
        self,
        now: float,
        *,
        propose: CircuitState | None = None,
        force: bool = False,
        probe: ProbeOp = "",
        probe_id: str = "",
    ) -> SharedState | None:
        """:meth:`_sync` for async callers: the store's I/O is awaited (see _store_async_sync)."""
        begun = self._sync_begin(now, propose, force, probe, probe_id)
        store, request = begun[0], begun[1]
        try:
            shared = await _store_async_sync(store, self.name, self._settings, request)
        except Exception as exc:
            _store_raised(store, exc)
            shared = None
        return self._sync_end(now, shared, begun)

    def _sync_begin(
        self,
        now: float,
        propose: CircuitState | None,
        force: bool,
        probe: ProbeOp,
        probe_id: str,
    ) -> _SyncBegun:
        """Take the counts to report (under the lock) and build the request."""
        store = self._store
        assert store is not None
        wall = get_clock().time()
        with self._lock:
            self._sync_due = now + store.sync_interval
            position = self._seq.value()
            calls = position - self._synced_calls
            self._synced_calls = position
            failures, slow = self._unsynced_failures, self._unsynced_slow
            self._unsynced_failures = self._unsynced_slow = 0
            pending = self._pending
            if propose is None and pending is not None:
                propose, force = pending
            self._sync_seq += 1
            seq = self._sync_seq
            request = SyncRequest(
                now=wall,
                known_generation=self._shared_gen,
                calls=calls if self._state is _CLOSED or self._state is _FORCED_CLOSED else 0,
                failures=failures,
                slow_calls=slow,
                trailing_failures=self._consecutive,
                propose=propose,
                force=force,
                probe=probe,
                probe_id=probe_id,
            )
        return store, request, pending, propose, force, seq, wall

    def _sync_end(
        self, now: float, shared: SharedState | None, begun: _SyncBegun
    ) -> SharedState | None:
        """Adopt the store's answer (``None``: unreachable, keep the proposal pending)."""
        _, _, pending, propose, force, seq, wall = begun
        change = None
        with self._lock:
            if shared is None:
                self._store_up = False
                if propose is not None and self._pending is None:
                    self._pending = (propose, force)
                return None
            self._store_up = True
            if self._pending is pending:
                self._pending = None
            if seq > self._sync_adopted:
                self._sync_adopted = seq
                self._last_shared = shared
                change = self._adopt_locked(shared, now, wall)
        if change is not None:
            self._notify(change)
        return shared

    def _adopt_locked(self, shared: SharedState, now: float, wall: float) -> StateChange | None:
        target = shared.state
        if target is _OPEN:
            self._open_until = now + max(0.0, shared.open_until - wall)
            self._reopens = shared.reopens
        if shared.generation == self._shared_gen and target is self._state:
            return None
        self._shared_gen = shared.generation
        # A new shared period, even in the same state: calls and probes of the old one are stale.
        return self._set_state_locked(target, "shared_state", now)

    # -- manual control and inspection ---------------------------------------------------

    def force_open(self) -> None:
        """Hold the circuit open: every call is rejected until ``reset()`` or ``force_closed()``."""
        self._manual(_FORCED_OPEN, "force_open")

    def force_closed(self) -> None:
        """Hold the circuit closed: calls pass and are counted, never opening it, until reset()."""
        self._manual(_FORCED_CLOSED, "force_closed")

    def reset(self) -> None:
        """Close the circuit and forget its counts and backoff (automatic behaviour again)."""
        self._manual(_CLOSED, "reset")

    def _manual(self, target: CircuitState, reason: str) -> None:
        now = get_clock().monotonic()
        with self._lock:
            if target is _CLOSED:
                self._reopens = 0
                self._open_until = 0.0
            change = self._set_state_locked(target, reason, now)
        self._notify(change)
        if self._store is not None:
            self._sync(now, propose=target, force=True)

    @property
    def state(self) -> CircuitState:
        """The current state (applies due transitions, e.g. open to half-open)."""
        now = get_clock().monotonic()
        if self._store is not None and now >= self._sync_due:
            self._routine_sync(now)
        state = self._state
        if (state is _OPEN or state is _HALF_OPEN) and (self._store is None or not self._store_up):
            changes: list[StateChange | None] = []
            with self._lock:
                if self._state is _OPEN and now >= self._open_until:
                    changes.append(self._set_state_locked(_HALF_OPEN, "open_duration_elapsed", now))
                probes = self._probes
                if (
                    self._state is _HALF_OPEN
                    and probes
                    and now - probes[0].start >= self._probe_timeout
                ):
                    changes.append(self._probe_timed_out_locked(probes[0], now))
                state = self._state
            self._notify_all(changes)
        return state

    def metrics(self) -> BreakerMetrics:
        """A snapshot of the counts, the window and the state."""
        state = self.state
        now = get_clock().monotonic()
        with self._lock:
            position = self._seq.value()
            if self._windowed and (state is _CLOSED or state is _FORCED_CLOSED):
                calls, failures, slow = self._window_locked(position, now)
            else:
                calls = failures = slow = 0
            settings = self._settings
            rates_known = calls > 0 and calls >= self._minimum_calls
            failure_rate = (
                failures / calls
                if rates_known and settings.failure_rate_threshold is not None
                else None
            )
            slow_rate = (
                slow / calls
                if rates_known and settings.slow_call_rate_threshold is not None
                else None
            )
            return BreakerMetrics(
                name=self.name,
                state=self._state,
                successes=position - self._seq_failures + self._other_successes,
                failures=self._failures_total,
                slow_calls=self._slow_total,
                ignored=self._ignored.value(),
                rejected=self._rejected.value(),
                consecutive_failures=self._consecutive,
                window_calls=calls,
                window_failures=failures,
                window_slow_calls=slow,
                failure_rate=failure_rate,
                slow_call_rate=slow_rate,
                times_opened=self._times_opened,
                retry_after=max(0.0, self._open_until - now) if self._state is _OPEN else None,
                half_open_in_flight=len(self._probes),
                listener_errors=self._listener_errors,
                shared=self._last_shared,
                store_available=None if self._store is None else self._store_up,
            )

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener`` with every later :class:`StateChange`."""
        if not callable(listener):
            raise ConfigurationError(f"a listener must be callable, not {listener!r}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: StateListener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x != listener)

    # -- telling others -----------------------------------------------------------------

    def _notify_all(self, changes: list[StateChange | None]) -> None:
        for change in changes:
            if change is not None:
                self._notify(change)

    def _notify(self, change: StateChange | None) -> None:
        """Record a state-change event and call the listeners (never under the lock)."""
        if change is None:
            return
        if bus.active:
            record(
                "circuit_breaker",
                self.name,
                0,
                _STATE_CHANGE,
                0.0,
                0.0,
                None,
                {
                    "from_state": change.from_state.value,
                    "to_state": change.to_state.value,
                    "reason": change.reason,
                    "retry_after": change.retry_after,
                    "error_type": change.error_type,
                },
            )
        for listener in self._listeners:
            try:
                listener(change)
            except Exception as exc:
                with self._lock:
                    self._listener_errors += 1
                counters.incr("recovery.breaker_listener_errors")
                report_once(
                    f"breaker-listener:{id(listener)}",
                    f"circuit breaker {self.name!r}: listener "
                    f"{getattr(listener, '__qualname__', listener)!r} raised "
                    f"{type(exc).__name__}; it stays registered, failures are counted in "
                    "faultlens.stats()['recovery.breaker_listener_errors']",
                )
