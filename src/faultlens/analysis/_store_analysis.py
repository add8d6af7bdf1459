"""Store-level pattern analysis: what no single process sees, reported by exactly one.

Each process's in-process detectors see only their own errors: a burst of 40
errors spread over four processes is 10 errors in each, under any threshold.
:class:`StoreAnalyzer` runs the burst, degradation and recurring detectors over
the store's per-bucket counts (``Store.counts``), which hold every process's
events, and reports what it finds once for all of them:

* **one leader.**  Every process may run an analyzer; only the one holding
  the leader lock analyses and reports.  PostgreSQL: a session-level advisory
  lock (``pg_try_advisory_lock``) on a connection of its own, keyed by the
  store's schema, released when the process or its connection dies; SQLite: an
  exclusive ``flock`` on ``<database>.analysis.lock``.  Another process takes
  over at its next run.
* **no report twice.**  A new leader first resumes the ongoing store-level
  patterns saved by the previous one (same ids: they are updated, not
  reported anew), then replays the history its detectors need without
  reporting what that history already showed.
* **deltas.**  Each run re-reads the last ``settle`` seconds of counts (events
  arrive late: recorder batches, spools) and feeds only what grew since.

Patterns found here have ``details["source"] == "store"`` and ids of their
own; recurring ones name the issue's fingerprint and ``details["issue_id"]``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import threading
from collections import OrderedDict
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from faultlens import events as _events
from faultlens._clock import get_clock
from faultlens._metrics import counters, report_once
from faultlens.analysis._detectors import (
    BurstDetector,
    DegradationDetector,
    ErrorSample,
    RecurringDetector,
    _Detector,
    _seconds,
)
from faultlens.analysis._patterns import Pattern, PatternChange, pattern_event
from faultlens.errors import ConfigurationError
from faultlens.events import EventBus

try:  # POSIX: the SQLite leader lock
    import fcntl
except ImportError:  # pragma: no cover - Windows: every analyzer leads
    fcntl = None  # type: ignore[assignment]

__all__ = ["StoreAnalyzer"]

_SOURCE = "store"
_ISSUE_PREFIX = "issue:"


class _Leadership(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class _Always:
    """A store only this process uses (``:memory:``, an object without a URL)."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


class _FileLock:
    """Leader of a SQLite store: an exclusive, non-blocking ``flock`` held while leading."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = os.getpid()

    def acquire(self) -> bool:
        if self._pid != os.getpid():  # forked: the parent's lock is not ours
            self._fd, self._pid = None, os.getpid()
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._pid == os.getpid():
            os.close(fd)  # closing releases the flock


class _AdvisoryLock:
    """Leader of a PostgreSQL store: a session-level advisory lock on a connection of its own."""

    def __init__(self, url: str, name: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "schema"]
        schema = schemas[-1] if schemas else ""
        self._conninfo = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"]))
        )
        digest = hashlib.blake2b(f"{name}\0{schema}".encode(), digest_size=8).digest()
        self.key = int.from_bytes(digest, "big", signed=True)
        self._conn: Any = None
        self._held = False
        self._pid = os.getpid()

    def acquire(self) -> bool:
        if self._pid != os.getpid():  # forked: the parent's session is not ours
            self._conn, self._held, self._pid = None, False, os.getpid()
        try:
            if self._conn is None:
                import psycopg

                self._conn = psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    application_name="faultlens-analysis",
                )
                self._held = False
            if self._held:
                self._conn.execute("SELECT 1")  # the session (and so the lock) is alive
                return True
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            self._held = bool(row and row[0])
            return self._held
        except Exception:  # connection lost: so is the lock
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except Exception:
                counters.incr("analysis.store.lock_errors")

    def release(self) -> None:
        if self._pid == os.getpid():
            if self._held and self._conn is not None:
                # Unlock before closing: the server ends a closed session, and frees
                # its locks, asynchronously, so an analyzer trying right after close()
                # could still find the lock taken.
                # A lost connection fails the unlock: the session's end frees the lock.
                with contextlib.suppress(Exception):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()  # ending the session releases its advisory locks
        else:
            self._conn, self._held = None, False


def _leadership(store: Any, name: str) -> _Leadership:
    url = getattr(store, "url", None)
    backend = getattr(store, "backend", None)
    if not isinstance(url, str):
        return _Always()
    if backend == "postgres":
        return _AdvisoryLock(url, name)
    if backend == "sqlite" and fcntl is not None:
        path = url.partition("://")[2][1:].partition("?")[0]
        if path and path != ":memory:":
            return _FileLock(f"{path}.analysis.lock")
    return _Always()


class StoreAnalyzer:
    """Runs the burst, degradation and recurring detectors over the store's counts, as leader.

    ``store`` is a :class:`faultlens.store.Store` (or a URL, opened and owned
    here).  ``burst``, ``degradation`` and ``recurring`` configure the
    detectors (``None``: defaults; pass ``False`` to leave one out); counts are
    read in buckets of ``bucket`` seconds, which must divide the detectors'
    bucket widths; each run re-reads the last ``settle`` seconds for late
    writes.  ``tenant_id`` analyses one tenant's errors only.  Changes are
    saved to the store and, with ``publish``, published as ``pattern`` events
    (which the leader's recorder writes).  ``lock_name`` names the leader lock:
    analyzers with different names (and detector settings) lead separately.

    :meth:`run_once` analyses once (call it from your scheduler), or
    :meth:`start` runs it every ``interval`` seconds on a daemon thread.
    """

    def __init__(
        self,
        store: Any,
        *,
        burst: BurstDetector | bool | None = None,
        degradation: DegradationDetector | bool | None = None,
        recurring: RecurringDetector | bool | None = None,
        bucket: float | timedelta = 10.0,
        settle: float | timedelta = 120.0,
        publish: bool = True,
        bus: EventBus | None = None,
        lock_name: str = "faultlens.store_analysis",
        tenant_id: str | None = None,
    ) -> None:
        self._owns_store = isinstance(store, str)
        if isinstance(store, str):
            from faultlens.store import open as open_store

            store = open_store(store)
        for method in ("counts", "save_patterns", "patterns"):
            if not callable(getattr(store, method, None)):
                raise ConfigurationError(
                    f"StoreAnalyzer needs a faultlens store (with {method}()), not "
                    f"{type(store).__name__}"
                )
        self.store = store
        self.bucket = _seconds(bucket, "bucket")
        self.settle = _seconds(settle, "settle")
        self.publish = publish
        self.tenant_id = tenant_id
        self._bus = bus
        templates: list[_Detector] = []
        if burst is not False:
            templates.append(
                burst if isinstance(burst, BurstDetector) else BurstDetector(source=_SOURCE)
            )
        if degradation is not False:
            templates.append(
                degradation
                if isinstance(degradation, DegradationDetector)
                else DegradationDetector(source=_SOURCE)
            )
        if recurring is not False:
            templates.append(
                recurring
                if isinstance(recurring, RecurringDetector)
                else RecurringDetector(source=_SOURCE)
            )
        for template in templates:
            template.source = _SOURCE
        self._templates = tuple(copy.deepcopy(t) for t in templates)
        self._history = max(
            [self.settle]
            + [getattr(t, "window", 0.0) * (getattr(t, "trend_windows", 1) + 1) for t in templates]
            + [getattr(t, "baseline_tau", 0.0) for t in templates]
        )
        # Counts per issue are many rows: read only what the recurring window needs.
        self._issue_span = self.settle + max(
            (t.window for t in templates if isinstance(t, RecurringDetector)), default=0.0
        )
        self._leader = _leadership(store, lock_name)
        self.is_leader = False
        """True while this analyzer holds the leader lock."""
        self._detectors: tuple[_Detector, ...] = ()
        self._seen: dict[tuple[float, str, object], int] = {}
        self._issues: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.runs = 0
        """How many analyses ran as leader."""

    # -- one analysis ----------------------------------------------------------------

    def run_once(self, now: float | None = None) -> list[PatternChange]:
        """Analyse the counts up to ``now`` (default: the clock) if this process leads.

        Returns the pattern changes reported (empty when another process
        leads).  Store failures propagate (:class:`~faultlens.store.StoreError`);
        the background loop of :meth:`start` counts and reports them instead.
        """
        with self._lock:
            if now is None:
                now = get_clock().time()
            if not self._leader.acquire():
                if self.is_leader:
                    self._lose()
                return []
            if not self.is_leader:
                self._take_over(now)
            else:
                self._feed(now - self.settle, now)
            changes = [c for d in self._detectors for c in d.collect(now)]
            self.runs += 1
            changes = [self._translate(c) for c in changes]
            if changes:
                self._report(changes)
            return changes

    def _lose(self) -> None:
        self.is_leader = False
        self._detectors = ()
        self._seen.clear()

    def _take_over(self, now: float) -> None:
        """Become leader: replay history, resume stored ongoing patterns, report what is new."""
        self._detectors = tuple(copy.deepcopy(t) for t in self._templates)
        self._seen.clear()
        self.is_leader = True
        self._feed(now - self._history, now - self.settle)
        for detector in self._detectors:
            detector.collect(now - self.settle)  # what the history showed was reported before
        for pattern in self.store.patterns(status="ongoing", limit=1000, tenant_id=self.tenant_id):
            if pattern.details.get("source") != _SOURCE:
                continue
            pattern = self._untranslate(pattern)
            for detector in self._detectors:
                if detector.resume(pattern):
                    break
        self._feed(now - self.settle, now)
        for detector in self._detectors:
            detector.announce_unreported()

    def _feed(self, since: float, until: float) -> None:
        """Feed the growth of the counts in ``[since, until)`` to the detectors."""
        if until <= since:
            return
        start = (since // self.bucket) * self.bucket
        seen = self._seen
        samples: list[tuple[float, object, int, str]] = []
        wanted: set[type] = {type(d) for d in self._detectors}
        by_layer: set[type] = {BurstDetector, DegradationDetector}
        queries: list[str] = []
        if wanted & by_layer:
            queries.append("layer")
        if RecurringDetector in wanted:
            queries.append("issue")
        for by in queries:
            since_by = start
            if by == "issue":
                since_by = max(start, ((until - self._issue_span) // self.bucket) * self.bucket)
            for count in self.store.counts(
                bucket_seconds=self.bucket,
                since=since_by,
                until=until,
                by=by,
                kind="error",
                tenant_id=self.tenant_id,
            ):
                key = (count.bucket, by, count.key)
                grown = count.count - seen.get(key, 0)
                if grown > 0:
                    seen[key] = count.count
                    samples.append((count.bucket, count.key, grown, by))
        for old in [k for k in seen if k[0] < start - self.settle]:
            del seen[old]
        samples.sort(key=lambda s: s[0])
        for bucket, name, grown, by in samples:
            if by == "layer":
                sample = ErrorSample(bucket, "", None if name is None else str(name), count=grown)
                for detector in self._detectors:
                    if not isinstance(detector, RecurringDetector):
                        detector.observe(sample)
            elif name is not None:
                sample = ErrorSample(bucket, f"{_ISSUE_PREFIX}{name}", count=grown)
                for detector in self._detectors:
                    if isinstance(detector, RecurringDetector):
                        detector.observe(sample)

    # -- issue ids <-> fingerprints ---------------------------------------------------

    def _fingerprint_of(self, issue_id: int) -> str | None:
        found = self._issues.get(issue_id)
        if found is None:
            issue = self.store.issue(issue_id)
            if issue is None:
                return None
            found = self._issues[issue_id] = issue.fingerprint
            if len(self._issues) > 10_000:
                self._issues.popitem(last=False)
        return found

    def _translate(self, change: PatternChange) -> PatternChange:
        pattern = change.pattern
        details = dict(pattern.details)
        details["source"] = _SOURCE
        prints = pattern.fingerprints
        if prints and prints[0].startswith(_ISSUE_PREFIX):
            issue_ids = [int(p[len(_ISSUE_PREFIX) :]) for p in prints]
            details["issue_id"] = issue_ids[0]
            prints = tuple(self._fingerprint_of(i) or f"{_ISSUE_PREFIX}{i}" for i in issue_ids)
        else:
            prints = tuple(p for p in prints if p)
        return PatternChange(change.change, _replace(pattern, fingerprints=prints, details=details))

    def _untranslate(self, pattern: Pattern) -> Pattern:
        issue_id = pattern.details.get("issue_id")
        if isinstance(issue_id, int):
            return _replace(pattern, fingerprints=(f"{_ISSUE_PREFIX}{issue_id}",))
        return pattern

    # -- reporting --------------------------------------------------------------------

    def _report(self, changes: list[PatternChange]) -> None:
        self.store.save_patterns([c.pattern for c in changes])
        if self.publish:
            bus = self._bus if self._bus is not None else _events.get_bus()
            for change in changes:
                bus.publish(pattern_event(change))

    def ongoing(self) -> list[Pattern]:
        """The store-level patterns ongoing as this analyzer sees them (none unless leader)."""
        with self._lock:
            return [
                self._translate(PatternChange("updated", p)).pattern
                for d in self._detectors
                for p in d.ongoing()
            ]

    # -- running periodically -----------------------------------------------------------

    def start(self, interval: float | timedelta = 30.0) -> StoreAnalyzer:
        """Run :meth:`run_once` every ``interval`` seconds on a daemon thread (until close)."""
        seconds = _seconds(interval, "interval")
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.run_once()
                except Exception as failure:
                    counters.incr("analysis.store.failures")
                    report_once(
                        "analysis.store",
                        f"the store-level pattern analysis failed ({type(failure).__name__}: "
                        f"{failure!s:.200}); it retries every {seconds:g}s, failures are "
                        "counted in faultlens.stats()['analysis.store.failures']",
                    )
                self._stop.wait(seconds)

        self._thread = threading.Thread(target=loop, name="faultlens-store-analysis", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the loop, give up leadership, close a store opened here; idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        with self._lock:
            self._leader.release()
            if self.is_leader:
                self._lose()
            if self._owns_store:
                self._owns_store = False
                self.store.close()

    def __enter__(self) -> StoreAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _replace(pattern: Pattern, **changes: Any) -> Pattern:
    import dataclasses

    return dataclasses.replace(pattern, **changes)
