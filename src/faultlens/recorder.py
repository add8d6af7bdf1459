"""The recorder: moves events from the bus into the store without slowing the caller.

``faultlens.configure(store="sqlite:///faultlens.db")`` starts one.  It subscribes
to every event on the bus; the publishing thread only appends the event to a
bounded in-memory queue (well under two microseconds, see
``benchmarks/bench_recorder.py``).  A background writer thread takes batches of
up to ``batch_size`` events, or what arrived within ``flush_interval``, and hands
them to ``store.write_events``.

What a caller can rely on:

* Recording never raises into the application and never blocks it.  The writer
  thread survives any exception (``recorder.writer_errors``).
* Nothing is dropped silently.  When the queue is full, ``operation`` events are
  dropped before ``recovery`` (and other) events, and those before ``error``,
  ``alert`` and ``audit`` events; each drop is counted by kind
  (``recorder.dropped.<kind>``).
* When the store is unavailable (``write_events`` raises, or it cannot be
  opened), batches go to a local append-only spool file (JSON lines, fsynced per
  batch, capped at ``spool_max_bytes``; what does not fit is dropped and
  counted, lowest priority first).  The store is retried with backoff; once it
  answers, the spool is replayed in order *before* any newer event, and
  truncated only after the whole replay succeeded.  A spool left by a previous
  run (or by a crashed process) is replayed on start.  Writes are idempotent by
  event id, so a replay interrupted half-way (even by SIGKILL) writes nothing
  twice when it runs again.
* ``faultlens.shutdown()`` and interpreter exit flush with a bounded wait
  (``shutdown_timeout``).
* Batch observers (:meth:`Recorder.add_observer`, e.g. the pattern detectors of
  ``faultlens.analysis``) run on the writer thread after each batch, off the
  application's threads.
* After ``os.fork()`` the child starts its own writer on its first event and
  re-opens the store from its URL: it never uses the parent's connection.  A
  store passed as an object without a ``url`` cannot be re-opened; the child
  spools its events, and whichever process next finds the spool replays it.

``faultlens.stats()`` reports ``recorder.recorded`` (written directly),
``recorder.spooled``, ``recorder.replayed``, ``recorder.store_failures``,
``recorder.dropped.<kind>``, ``recorder.queue_depth`` and ``recorder.spool_bytes``.
``docs/recorder.md`` has the details.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Final, Protocol, runtime_checkable

import orjson

from faultlens import events as _events
from faultlens._clock import get_clock
from faultlens._metrics import counters, report_once
from faultlens.errors import ConfigurationError, MissingExtraError
from faultlens.events import Event, EventBus

try:  # POSIX: the spool is shared safely between processes
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per spool
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BatchObserver",
    "EventWriter",
    "Recorder",
    "RecorderSettings",
    "default_spool_path",
    "get_recorder",
]

_LOW: Final = 0
_MID: Final = 1
_HIGH: Final = 2
# Which queue each kind goes to; kinds not listed (recovery, job, custom) are _MID.
_RANKS: Final[dict[str, int]] = {
    _events.OPERATION: _LOW,
    _events.ERROR: _HIGH,
    _events.ALERT: _HIGH,
    _events.AUDIT: _HIGH,
    "pattern": _HIGH,  # faultlens.analysis.PATTERN: few, and what the dashboard leads with
}
_MiB: Final = 1024 * 1024
_OBSERVER_IDLE_S: Final = 1.0

BatchObserver = Callable[[Sequence[Event]], object]
"""Called on the writer thread with each batch taken off the queue (see ``add_observer``)."""


@runtime_checkable
class EventWriter(Protocol):
    """What the recorder needs from a store (``faultlens.store.Store`` is one).

    ``write_events`` must be idempotent by event id and raise when the store is
    unavailable.  A store that has a ``url`` string attribute can be re-opened
    in a forked child.
    """

    def write_events(self, events: Sequence[Event], /) -> int:
        """Write ``events``; return how many were new."""
        ...


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderSettings:
    """How the recorder batches, bounds and spools; pass as ``configure(recorder=...)``.

    ``queue_size`` events wait in memory at most (all kinds together).  The
    writer writes when ``batch_size`` events are waiting or ``flush_interval``
    after the first one arrived.  ``spool_path`` (default
    :func:`default_spool_path` of the store) holds batches the store refused,
    up to ``spool_max_bytes``.  A failing store is retried after
    ``retry_initial`` seconds, doubling up to ``retry_max``.  Shutdown and
    interpreter exit wait ``shutdown_timeout`` at most for the last writes.
    Times are seconds or ``timedelta``.  Invalid values raise
    :class:`~faultlens.errors.ConfigurationError`.
    """

    batch_size: int = 500
    flush_interval: float | timedelta = 0.2
    queue_size: int = 10_000
    spool_path: str | os.PathLike[str] | None = None
    spool_max_bytes: int = 64 * _MiB
    retry_initial: float | timedelta = 0.5
    retry_max: float | timedelta = 30.0
    shutdown_timeout: float | timedelta = 5.0

    def __post_init__(self) -> None:
        for name, minimum in (("batch_size", 1), ("queue_size", 1), ("spool_max_bytes", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigurationError(
                    f"RecorderSettings({name}={value!r}) must be an int >= {minimum}"
                )
        for name in ("flush_interval", "retry_initial", "retry_max", "shutdown_timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float | timedelta)
                or not 0 <= _seconds(value) <= 3600
            ):
                raise ConfigurationError(
                    f"RecorderSettings({name}={value!r}) must be seconds (or a timedelta) "
                    "from 0 to 3600"
                )
        if self.spool_path is not None and not isinstance(self.spool_path, str | os.PathLike):
            raise ConfigurationError(
                f"RecorderSettings(spool_path={self.spool_path!r}) must be a file path"
            )


def default_spool_path(store: str | object) -> Path:
    """Where the spool of ``store`` lives unless ``RecorderSettings.spool_path`` says.

    One file per store URL (so processes writing to the same store share it)
    under ``$XDG_CACHE_HOME/faultlens/spool`` (``~/.cache/...``): it must
    survive a restart to be replayed.
    """
    key = store if isinstance(store, str) else getattr(store, "url", None)
    if not isinstance(key, str):
        key = f"{type(store).__module__}.{type(store).__qualname__}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "faultlens" / "spool" / f"{digest.hexdigest()[:16]}.jsonl"


class _StoreUnavailable(Exception):
    """The store cannot be reached or (in a forked child) re-opened."""


# --- the spool -----------------------------------------------------------------------------


def _json_default(value: object) -> str:
    return repr(value)


def _event_from(data: object) -> Event:
    if not isinstance(data, dict):
        raise TypeError("not an event object")
    kind, name, event_id = data.get("kind"), data.get("name"), data.get("id")
    if not (isinstance(kind, str) and isinstance(name, str) and isinstance(event_id, str)):
        raise TypeError("an event needs string kind, name and id")
    payload = data.get("payload")
    timestamp = data.get("timestamp")
    optional = {}
    for key in ("correlation_id", "trace_id", "span_id", "tenant_id", "user_id"):
        value = data.get(key)
        optional[key] = value if isinstance(value, str) else None
    return Event(
        kind,
        name,
        payload if isinstance(payload, dict) else {},
        timestamp=float(timestamp) if isinstance(timestamp, int | float) else 0.0,
        id=event_id,
        **optional,
    )


class _Spool:
    """An append-only JSON-lines file of events the store refused.

    Every operation opens the file, takes an exclusive ``flock`` (processes
    sharing the spool take turns; a forked child never shares a descriptor with
    its parent) and closes it again: the spool is only used while the store is
    down, so simplicity beats speed here.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.drops = 0  # events this spool dropped (flush() reports them)

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a+b") as file:
            if fcntl is not None:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX)
            yield file  # closing the file releases the lock

    def append(self, batch: Sequence[Event]) -> None:
        """Append ``batch`` (fsynced); drop what exceeds the cap, lowest priority first."""
        lines: list[tuple[Event, bytes]] = []
        for event in batch:
            try:
                line = orjson.dumps(
                    event.to_dict(), default=_json_default, option=orjson.OPT_NON_STR_KEYS
                )
            except Exception:  # e.g. an int beyond 64 bits in a custom payload
                _count_drop(event.kind)
                self.drops += 1
                counters.incr("recorder.spool_failures")
                continue
            lines.append((event, line + b"\n"))
        if not lines:
            return
        with self._locked() as file:
            fd = file.fileno()
            size = os.fstat(fd).st_size
            # A process killed mid-write leaves a torn last line: end it, so the
            # first line appended now is not glued to it and lost as well.
            prefix = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
            room = self.max_bytes - size - len(prefix)
            total = sum(len(line) for _, line in lines)
            if total > room:
                lines = self._fit(lines, room)
            if not lines:
                return
            file.write(prefix + b"".join(line for _, line in lines))
            file.flush()
            os.fsync(fd)
        counters.incr("recorder.spooled", len(lines))

    def _fit(self, lines: list[tuple[Event, bytes]], room: int) -> list[tuple[Event, bytes]]:
        order = sorted(range(len(lines)), key=lambda i: -_RANKS.get(lines[i][0].kind, _MID))
        keep: set[int] = set()
        for i in order:
            if len(lines[i][1]) <= room:
                keep.add(i)
                room -= len(lines[i][1])
        for i, (event, _) in enumerate(lines):
            if i not in keep:
                _count_drop(event.kind)
                self.drops += 1
                counters.incr("recorder.spool_overflow")
        return [lines[i] for i in sorted(keep)]

    def replay(self, write: Callable[[list[Event]], object], batch_size: int) -> int:
        """Write every spooled event, in order, then truncate; return how many.

        An exception from ``write`` leaves the spool as it was (the batches
        already written are written again next time: writes are idempotent).
        """
        if self.size() == 0:
            return 0
        with self._locked() as file:
            file.seek(0)
            count = corrupt = 0
            batch: list[Event] = []
            for line in file:
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("torn line")
                    batch.append(_event_from(orjson.loads(line)))
                except Exception:  # torn by a crash, or edited by hand
                    corrupt += bool(line.strip())
                    continue
                if len(batch) >= batch_size:
                    write(batch)
                    count += len(batch)
                    batch = []
            if batch:
                write(batch)
                count += len(batch)
            file.truncate(0)
            file.flush()
            os.fsync(file.fileno())
        if corrupt:  # counted once, when the lines are given up with the spool
            counters.incr("recorder.spool_corrupt", corrupt)
        return count


def _count_drop(kind: str) -> None:
    counters.incr(f"recorder.dropped.{kind}")


# --- the recorder ----------------------------------------------------------------------------

_live: set[Recorder] = set()
_live_lock = threading.Lock()
# Store objects a forked child inherited from its parent: never used, and never
# garbage-collected either, since closing them could close the parent's connection.
_inherited: list[object] = []


class Recorder:
    """Records the bus's events into a store; see the module docstring.

    ``store`` is a URL (opened here with ``faultlens.store.open``, which checks
    it and connects nothing yet: a bad URL raises
    :class:`~faultlens.errors.ConfigurationError`) or an object with
    ``write_events`` (an :class:`EventWriter`; it is not closed by :meth:`close`,
    a store opened from a URL is).
    ``faultlens.configure(store=...)`` makes and starts one; build one yourself
    only to record a private bus (``bus=``) or in tests.
    """

    def __init__(
        self,
        store: str | EventWriter,
        *,
        settings: RecorderSettings | None = None,
        bus: EventBus | None = None,
    ) -> None:
        settings = settings or RecorderSettings()
        if not isinstance(settings, RecorderSettings):
            raise ConfigurationError("Recorder(settings=...) takes a RecorderSettings")
        self.settings = settings
        self._store: EventWriter | None
        if isinstance(store, str):
            if "://" not in store:  # not echoed: it may hold a password
                raise ConfigurationError(
                    "store must be a URL such as 'sqlite:///faultlens.db' or "
                    "'postgresql://user@host/dbname', or a store object"
                )
            self._url: str | None = store
            self._owns_store = True
            # Opening connects nothing yet; it checks the URL and the driver now, so a
            # typo fails configure() instead of spooling forever.
            try:
                self._store = self._open_store()
            except (ConfigurationError, MissingExtraError):
                raise
            except Exception:  # anything else: the writer opens it later (and counts)
                self._store = None
        elif isinstance(store, EventWriter):
            url = getattr(store, "url", None)
            self._url = url if isinstance(url, str) else None
            self._store = store
            self._owns_store = False
        else:
            raise ConfigurationError(
                "store must be a URL ('sqlite:///faultlens.db') or an object with "
                f"write_events(events), not {type(store).__name__}"
            )
        spool_path = settings.spool_path
        self._spool = _Spool(
            Path(spool_path) if spool_path is not None else default_spool_path(store),
            settings.spool_max_bytes,
        )
        self._bus = bus if bus is not None else _events.get_bus()
        self._batch_size = settings.batch_size
        self._capacity = settings.queue_size
        self._wake_depth = settings.batch_size - 1
        self._interval = _seconds(settings.flush_interval)
        self._retry_initial = _seconds(settings.retry_initial)
        self._retry_max = max(_seconds(settings.retry_max), self._retry_initial)
        self._subscription: _events.Subscription | None = None
        self._closed = False
        self._drops = 0  # events this recorder dropped, spool excluded
        self._drops_reported = 0
        self._queues: tuple[deque[Event], deque[Event], deque[Event]] = (
            deque(),
            deque(),
            deque(),
        )
        self._handoff = self._make_handoff()
        self._observers: tuple[BatchObserver, ...] = ()
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        """Empty queues, fresh signals and writer state (at start, and in a forked child)."""
        # The hand-off closure holds these deques: they are emptied, never replaced.
        # In a forked child what the parent had queued is the parent's to write.
        for queue in self._queues:
            queue.clear()
        self._signal = threading.Event()
        self._cond = threading.Condition(threading.Lock())
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False
        self._idle = True  # the writer waits for a first event: wake it on hand-off
        self._stopping = False
        self._flush_requested = 0
        self._flush_done = 0
        self._flush_ok = True
        self._retry_at = 0.0
        self._backoff = self._retry_initial
        self._spool_pending = True  # unknown until the writer looks
        self._first_seen: float | None = None
        self._observed_at = 0.0

    # --- the hot path ---------------------------------------------------------------------

    def _make_handoff(self) -> Callable[[Event], None]:
        """Build the bus subscriber, with everything it reads bound to local names.

        It runs on the application's thread for every event: queue and return.
        (A closure over locals costs about half of a method reading attributes.)
        """
        low, mid, high = queues = self._queues
        rank = _RANKS.get
        capacity = self._capacity
        wake_depth = self._wake_depth
        recorder = self

        def handoff(event: Event) -> None:
            try:
                queue = queues[rank(event.kind, 1)]
                depth = len(low) + len(mid) + len(high)
                if depth >= capacity and not recorder._make_room(event):
                    return
                queue.append(event)
                if recorder._idle or depth >= wake_depth:
                    recorder._wake()
            except Exception:
                recorder._handoff_failed(event)

        return handoff

    def _handoff_failed(self, event: Event) -> None:
        counters.incr("recorder.handoff_errors")
        try:
            self._drop(event.kind)
        except Exception:
            counters.incr("recorder.dropped.unknown")

    def _make_room(self, event: Event) -> bool:
        """Evict a lower-priority event for ``event``, or drop ``event``; count the drop."""
        rank = _RANKS.get(event.kind, _MID)
        for lower in self._queues[:rank]:
            try:
                evicted = lower.pop()  # the newest: as if it had been refused on arrival
            except IndexError:  # empty, or the writer took the last one meanwhile
                continue
            self._drop(evicted.kind)
            return True
        self._drop(event.kind)
        return False

    def _drop(self, kind: str) -> None:
        _count_drop(kind)
        self._drops += 1

    def _wake(self) -> None:
        if not self._running:
            self._start_writer()
        if not self._signal.is_set():
            self._signal.set()

    def _start_writer(self) -> None:
        """Start the writer thread unless it runs (or this recorder is closed); never raises."""
        with self._start_lock:
            if self._running or self._closed:
                return
            self._running = True
            self._stopping = False
            thread = threading.Thread(target=self._run, name="faultlens-recorder", daemon=True)
            self._thread = thread
            try:
                thread.start()
            except Exception as failure:  # no more threads, or the interpreter is exiting
                self._running = False
                counters.incr("recorder.writer_errors")
                report_once(
                    "recorder.thread",
                    f"the recorder could not start its writer thread ({failure!s:.200}); "
                    "events wait in its bounded queue, see faultlens.stats()",
                )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Recorder:
        """Subscribe to the bus and start the writer (which first replays any spool)."""
        if self._closed:
            raise ConfigurationError("this Recorder was closed; make a new one")
        if self._subscription is None:
            self._subscription = self._bus.subscribe(self._handoff)
        with _live_lock:
            _live.add(self)
        _install_process_hooks()
        self._start_writer()
        return self

    def flush(self, timeout: float | timedelta = 5.0) -> bool:
        """Write everything queued so far; wait ``timeout`` seconds at most.

        Returns True when every event queued before the call is in the store
        (none left in the queue or the spool) and none was dropped since the
        previous flush; False when the time ran out, events were dropped, or the
        store is unavailable (the events are then in the spool, or still
        queued).  A spooled backlog is retried at once, whatever the backoff.
        """
        seconds = _seconds(timeout)
        if self._closed:
            return False
        if threading.current_thread() is self._thread:
            return False  # the writer cannot wait for itself
        with self._cond:
            self._flush_requested += 1
            target = self._flush_requested
        self._wake()
        deadline = time.monotonic() + seconds
        with self._cond:
            while self._flush_done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return self._flush_ok

    def close(self, timeout: float | timedelta | None = None) -> bool:
        """Stop recording: unsubscribe, flush (``shutdown_timeout`` by default), stop the writer.

        Events still queued when the time runs out are dropped and counted.
        Returns what the final :meth:`flush` returned.  Safe to call twice.
        """
        if self._closed:
            return True
        seconds = _seconds(timeout if timeout is not None else self.settings.shutdown_timeout)
        deadline = time.monotonic() + seconds
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        ok = self.flush(seconds)
        with self._start_lock:
            self._closed = True
            self._stopping = True
        self._signal.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        for queue in self._queues:
            while queue:
                try:
                    self._drop(queue.popleft().kind)
                except IndexError:
                    break
        if self._owns_store and self._store is not None and not _alive(thread):
            _close_store(self._store)
            self._store = None
        with _live_lock:
            _live.discard(self)
        return ok

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def queue_depth(self) -> int:
        """Events waiting in memory now."""
        return sum(len(q) for q in self._queues)

    @property
    def spool_path(self) -> Path:
        """The spool file (it may not exist)."""
        return self._spool.path

    def gauges(self) -> dict[str, int]:
        """Current levels for ``faultlens.stats()``: queue depth and spool size in bytes."""
        return {
            "recorder.queue_depth": self.queue_depth,
            "recorder.spool_bytes": self._spool.size(),
        }

    @property
    def store(self) -> EventWriter | None:
        """The store the writer writes to (None while it is not open, e.g. in a forked child)."""
        return self._store

    def add_observer(self, observer: BatchObserver) -> None:
        """Call ``observer(batch)`` on the writer thread after each batch is written or spooled.

        Each event taken off the queue is observed once (events replayed from
        the spool are not observed again).  While the writer is idle the
        observers get an empty batch about once a second, so time-based state
        (a pattern whose condition cleared) moves on without traffic.  An
        observer must not block for long: it delays the next batch.  One that
        raises is counted (``recorder.observer_errors``), reported once, and
        kept.
        """
        if not callable(observer):
            raise ConfigurationError("add_observer takes a callable observer(batch)")
        with self._start_lock:
            self._observers = (*self._observers, observer)
        self._wake()

    def remove_observer(self, observer: BatchObserver) -> None:
        """Stop calling ``observer`` (no error if it was not added)."""
        with self._start_lock:
            self._observers = tuple(o for o in self._observers if o is not observer)

    # --- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                try:
                    if not self._cycle():
                        return
                except BaseException as failure:  # the writer must outlive any bug
                    counters.incr("recorder.writer_errors")
                    report_once(
                        "recorder.writer",
                        f"the recorder's writer failed ({type(failure).__name__}: "
                        f"{failure!s:.200}); it keeps running, failures are counted in "
                        "faultlens.stats()['recorder.writer_errors']",
                    )
                    self._finish_flush(False, self._flush_requested)
                    self._signal.wait(0.05)  # never spin on a persistent failure
        finally:
            with self._start_lock:
                self._running = False
                self._idle = True  # the next hand-off starts a new writer

    def _depth(self) -> int:
        queues = self._queues
        return len(queues[0]) + len(queues[1]) + len(queues[2])

    def _wait_for_work(self) -> None:
        """Return when a batch is due, a flush or stop was asked, or a retry is due."""
        clock = get_clock()
        while True:
            self._idle = True
            depth = self._depth()
            if self._stopping or self._flush_requested > self._flush_done:
                break
            now = clock.monotonic()
            timeout: float | None = None
            if depth:
                self._idle = False
                if depth >= self._batch_size:
                    break
                if self._first_seen is None:
                    self._first_seen = now
                timeout = self._first_seen + self._interval - now
                if timeout <= 0:
                    break
            if self._spool_pending and self._store_due(now):
                break
            if self._spool_pending:
                wait = max(self._retry_at - now, 0.001)
                timeout = wait if timeout is None else min(timeout, wait)
            if self._observers:
                wait = self._observed_at + _OBSERVER_IDLE_S - now
                if wait <= 0:
                    break
                timeout = wait if timeout is None else min(timeout, wait)
            self._signal.wait(timeout)
            self._signal.clear()
        self._idle = False
        self._first_seen = None

    def _store_due(self, now: float) -> bool:
        return now >= self._retry_at

    def _cycle(self) -> bool:
        """One round of the writer; False when it should exit."""
        self._wait_for_work()
        target = self._flush_requested
        forced = target > self._flush_done
        stopping = self._stopping
        if not self._spool_pending:
            # Another process (a forked child, a crashed run) may have spooled.
            self._spool_pending = self._spool.size() > 0
        if self._spool_pending and (forced or self._store_due(self._now())):
            self._replay()
        limit = self._depth() + self._capacity  # bounded even under sustained load
        observed = False
        while limit > 0:
            batch = self._take(min(self._batch_size, limit))
            if not batch:
                break
            limit -= len(batch)
            self._deliver(batch)
            observed = self._observe(batch) or observed
        if not observed and self._observers and self._now() >= self._observed_at + _OBSERVER_IDLE_S:
            self._observe([])
        if forced:
            drops = self._drops + self._spool.drops
            lost, self._drops_reported = drops != self._drops_reported, drops
            self._finish_flush(not self._spool_pending and not lost, target)
        return not (stopping and self._depth() == 0)

    def _observe(self, batch: Sequence[Event]) -> bool:
        """Hand ``batch`` to the observers; False when there are none."""
        observers = self._observers
        if not observers:
            return False
        self._observed_at = self._now()
        for observer in observers:
            try:
                observer(batch)
            except Exception as failure:
                counters.incr("recorder.observer_errors")
                report_once(
                    f"recorder.observer:{id(observer)}",
                    f"a recorder batch observer {getattr(observer, '__qualname__', observer)!r} "
                    f"raised {type(failure).__name__}: {failure!s:.200}; it stays registered, "
                    "failures are counted in faultlens.stats()['recorder.observer_errors']",
                )
        return True

    def _finish_flush(self, ok: bool, target: int) -> None:
        with self._cond:
            if target > self._flush_done:
                self._flush_done = target
                self._flush_ok = ok
            self._cond.notify_all()

    def _take(self, limit: int) -> list[Event]:
        batch: list[Event] = []
        for queue in reversed(self._queues):  # errors first
            while len(batch) < limit:
                try:
                    batch.append(queue.popleft())
                except IndexError:
                    break
        return batch

    def _now(self) -> float:
        return get_clock().monotonic()

    def _deliver(self, batch: list[Event]) -> None:
        """Write ``batch`` to the store, or spool it: after the spool, to keep order."""
        if not self._spool_pending:
            try:
                self._write(batch)
            except BaseException as failure:  # whatever the store raises, keep the batch
                self._store_failed(failure)
            else:
                counters.incr("recorder.recorded", len(batch))
                return
        try:
            self._spool.append(batch)
        except Exception as failure:
            counters.incr("recorder.spool_failures")
            for event in batch:
                self._drop(event.kind)
            report_once(
                "recorder.spool",
                f"the recorder could not write its spool {str(self._spool.path)!r} "
                f"({type(failure).__name__}); events the store refused meanwhile are dropped "
                "and counted in faultlens.stats()['recorder.dropped.<kind>']",
            )
        else:
            self._spool_pending = True

    def _replay(self) -> None:
        try:
            count = self._spool.replay(self._write, self._batch_size)
        except BaseException as failure:
            self._store_failed(failure)
            return
        self._spool_pending = False
        self._backoff = self._retry_initial
        if count:
            counters.incr("recorder.replayed", count)

    def _write(self, batch: Sequence[Event]) -> None:
        store = self._store
        if store is None:
            store = self._store = self._open_store()
        store.write_events(batch)

    def _open_store(self) -> EventWriter:
        if self._url is None:
            raise _StoreUnavailable(
                "a store passed as an object without a `url` cannot be re-opened in a forked "
                "child; its events are spooled for the parent. Pass the store as a URL."
            )
        from faultlens.store import open as open_store

        store: EventWriter = open_store(self._url)
        self._owns_store = True
        return store

    def _store_failed(self, failure: BaseException) -> None:
        counters.incr("recorder.store_failures")
        self._spool_pending = True
        self._retry_at = self._now() + self._backoff
        self._backoff = min(self._backoff * 2, self._retry_max)
        report_once(
            "recorder.store",
            f"the recorder's store is unavailable ({type(failure).__name__}: {failure!s:.200}); "
            f"events are spooled to {str(self._spool.path)!r} and replayed when it answers "
            "(see faultlens.stats()['recorder.store_failures'])",
        )

    # --- fork ----------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        if self._store is not None:
            _inherited.append(self._store)
            self._store = None
        self._reset_runtime()
        if self._closed:
            return
        # The writer starts on the child's first event (self._idle makes the
        # hand-off wake it); nothing the parent had queued is written twice.


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()


def _close_store(store: object) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            counters.incr("recorder.store_failures")


# --- process hooks ---------------------------------------------------------------------------

_hooks_installed = False


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_close_all_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_fork_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()  # another thread may have held it at the fork
    for recorder in list(_live):
        try:
            recorder._after_fork_in_child()
        except Exception:
            counters.incr("recorder.writer_errors")


def _close_all_at_exit() -> None:
    for recorder in list(_live):
        try:
            recorder.close()
        except Exception:
            counters.incr("recorder.writer_errors")


# --- the process's recorder --------------------------------------------------------------------

_current: Recorder | None = None


def get_recorder() -> Recorder | None:
    """The recorder ``faultlens.configure(store=...)`` started, or None."""
    return _current


def _install(recorder: Recorder | None) -> None:
    """Stop the current recorder and start ``recorder`` instead (``configure`` calls this)."""
    global _current
    _stop()
    if recorder is not None:
        _current = recorder.start()


def _stop(timeout: float | timedelta | None = None) -> bool:
    """Flush and stop the current recorder, if any (``shutdown`` calls this)."""
    global _current
    recorder, _current = _current, None
    if recorder is None:
        return True
    return recorder.close(timeout)
