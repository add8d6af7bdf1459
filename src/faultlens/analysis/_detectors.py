"""Incremental pattern detectors: recurring errors, bursts, cascades and degradation.

Every detector reads :class:`ErrorSample` values (what the detectors need of an
``error`` event) one at a time; each sample costs O(1) amortised.  Counts live in
rings of time buckets that are advanced, never rescanned; what a detector keeps
per fingerprint or per correlation is an LRU of bounded size (evictions are
counted in ``faultlens.stats()``, ``analysis.<detector>.evicted``), so memory is
bounded whatever the traffic.

Time is the events' own timestamps (epoch seconds), not the time the detector
happens to see them: the recorder hands events over in batches, a fraction of a
second (or, after an outage, much) later, and the store-level analysis reads
stored timestamps.  :meth:`PatternDetector.collect` takes ``now`` for what only
the passing of time changes (a pattern whose condition cleared); the
:class:`DetectorSet` passes the newest timestamp it saw, or the clock
(:func:`faultlens._clock.get_clock`) when asked to :meth:`~DetectorSet.tick`
without events.  Events older than a detector's window when they arrive count
as occurrences of an ongoing pattern but no longer in its windows.

An ongoing pattern is reported ``new`` once, ``updated`` at most once per
``update_interval`` while errors keep joining it, and ``ended`` once its
condition has not held for ``clear_after`` seconds.  Detectors are not
thread-safe: feed each from one thread (the recorder's writer does).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

from faultlens._clock import get_clock
from faultlens._metrics import counters
from faultlens.analysis._patterns import (
    Pattern,
    PatternChange,
    PatternStatus,
    PatternType,
    confidence,
    make_pattern,
    pattern_id,
)
from faultlens.errors import ConfigurationError
from faultlens.events import ERROR, Event

__all__ = [
    "LAYER_ORDER",
    "BurstDetector",
    "CascadeDetector",
    "DegradationDetector",
    "DetectorSet",
    "ErrorSample",
    "PatternDetector",
    "RecurringDetector",
    "mann_kendall",
    "rise_p_value",
]

LAYER_ORDER: Final = ("infrastructure", "core", "service", "api")
"""The layers a cascade moves up through, lowest first."""

_MAX_TRACKED_NAMES: Final = 16  # fingerprints and layers kept per pattern; the rest counted
_SWEEP_S: Final = 1.0  # how often (in detector time) ongoing patterns are checked for an end
_TRIMMED_ALPHA: Final = 0.05  # the broad part of a degradation's rise must be significant too


def _seconds(value: float | timedelta, name: str, *, minimum: float = 0.0) -> float:
    result = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(result, bool)
        or not isinstance(result, int | float)
        or not math.isfinite(result)
        or result <= minimum
    ):
        raise ConfigurationError(
            f"{name} must be a number of seconds (or a timedelta) above {minimum:g}, not {value!r}"
        )
    return float(result)


def _positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, not {value!r}")
    return value


def _number(value: object, name: str, *, minimum: float = 0.0) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigurationError(f"{name} must be a number >= {minimum:g}, not {value!r}")
    return float(value)


# --- what the detectors read --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorSample:
    """One error (or ``count`` errors) as the detectors see it.

    ``timestamp`` is epoch seconds; ``fingerprint`` groups equal errors (the
    store's issue fingerprint); ``layer``, ``severity`` and ``service`` come
    from the event's classification and system info.  The store-level analysis
    feeds per-bucket counts as samples with ``count`` > 1.
    """

    timestamp: float
    fingerprint: str
    layer: str | None = None
    severity: str | None = None
    correlation_id: str | None = None
    service: str | None = None
    tenant_id: str | None = None
    count: int = 1

    @classmethod
    def from_event(cls, event: Event, *, fingerprint: str | None = None) -> ErrorSample | None:
        """The sample of an ``error`` event (``None`` for other kinds); never raises.

        ``fingerprint`` defaults to the store's grouping of the event: the one the
        store gave it when it wrote it lately (the recorder's observers see each
        batch right after it is written), else computed
        (:func:`faultlens.store._fingerprint.fingerprint`, tens of microseconds).
        """
        if event.kind != ERROR:
            return None
        payload: Mapping[str, Any] = event.payload if isinstance(event.payload, Mapping) else {}
        if fingerprint is None and isinstance(event.id, str):
            from faultlens.store._fingerprint import recent_fingerprint

            # The store fingerprinted the events it just wrote; the recorder's
            # observers see them right after: no need to compute it twice.
            fingerprint = recent_fingerprint(event.id)
        if fingerprint is None:
            from faultlens.store._fingerprint import fingerprint as group

            try:
                grouping = group(event)
            except Exception:  # a malformed payload must not stop the analysis
                counters.incr("analysis.fingerprint_failures")
                grouping = None
            fingerprint = grouping.fingerprint if grouping is not None else str(event.name)
        classification = payload.get("classification")
        layer = severity = None
        if isinstance(classification, Mapping):
            layer = _text(classification.get("layer"))
            severity = _text(classification.get("severity"))
        if layer is None:
            operation = payload.get("operation")
            if isinstance(operation, Mapping):
                layer = _text(operation.get("layer"))
        system = payload.get("system")
        service = _text(system.get("service")) if isinstance(system, Mapping) else None
        timestamp = event.timestamp
        if (
            isinstance(timestamp, bool)
            or not isinstance(timestamp, int | float)
            or not math.isfinite(timestamp)
        ):
            timestamp = get_clock().time()
        return cls(
            float(timestamp),
            fingerprint,
            layer,
            severity,
            event.correlation_id if isinstance(event.correlation_id, str) else None,
            service,
            event.tenant_id if isinstance(event.tenant_id, str) else None,
        )


def _text(value: object, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


# --- building blocks --------------------------------------------------------------------


class _Ring:
    """Counts of the last ``n`` time buckets of ``width`` seconds, and their total.

    ``add`` and ``total`` cost O(1) amortised: moving forward clears the buckets
    passed (at most ``n``), nothing is ever rescanned.  An add older than the
    ring is refused (``None``); one into an older bucket still in the ring counts.
    """

    __slots__ = ("counts", "n", "tick", "total", "width")

    def __init__(self, width: float, n: int) -> None:
        self.width = width
        self.n = n
        self.counts = [0] * n
        self.tick: int | None = None
        self.total = 0

    def advance(self, tick: int) -> None:
        last = self.tick
        if last is None:
            self.tick = tick
            return
        if tick <= last:
            return
        counts = self.counts
        n = self.n
        if tick - last >= n:
            for i in range(n):
                counts[i] = 0
            self.total = 0
        else:
            total = self.total
            for t in range(last + 1, tick + 1):
                slot = t % n
                total -= counts[slot]
                counts[slot] = 0
            self.total = total
        self.tick = tick

    def add(self, timestamp: float, amount: int = 1) -> int | None:
        tick = int(timestamp // self.width)
        current = self.tick
        if current is None or tick > current:
            self.advance(tick)
            current = tick
        elif tick <= current - self.n:
            return None  # older than the ring
        self.counts[tick % self.n] += amount
        total = self.total = self.total + amount
        return total

    def total_at(self, now: float) -> int:
        self.advance(int(now // self.width))
        return self.total

    def oldest_start(self) -> float | None:
        """Start time of the oldest non-empty bucket, or None."""
        if self.tick is None:
            return None
        for back in range(self.n - 1, -1, -1):
            t = self.tick - back
            if self.counts[t % self.n]:
                return t * self.width
        return None


class _TenantBuckets:
    """Per time bucket, the tenant of its errors (a small set once they mix): O(1) per sample.

    Slots are tagged with their bucket number, so nothing is ever cleared; a
    window's tenants are read from its buckets when a pattern opens.
    """

    __slots__ = ("n", "ticks", "values")

    def __init__(self, n: int) -> None:
        self.n = n
        self.ticks: list[int | None] = [None] * n
        self.values: list[str | set[str | None] | None] = [None] * n

    def add(self, tick: int, tenant: str | None) -> None:
        slot = tick % self.n
        if self.ticks[slot] != tick:
            self.ticks[slot] = tick
            self.values[slot] = tenant
            return
        value = self.values[slot]
        if isinstance(value, set):
            if len(value) < _MAX_TRACKED_NAMES:  # past that the pattern is mixed anyway
                value.add(tenant)
        elif value != tenant:
            self.values[slot] = {value, tenant}

    def join_into(self, state: _Ongoing, first: int, last: int) -> None:
        """Join the tenants of buckets ``first`` to ``last`` (inclusive) into ``state``."""
        tenants: set[str | None] = set()
        for tick in range(max(first, last - self.n + 1), last + 1):
            slot = tick % self.n
            if self.ticks[slot] != tick:
                continue
            value = self.values[slot]
            if isinstance(value, set):
                tenants |= value
            else:
                tenants.add(value)
        state.join_tenants(tenants)


class _Ongoing:
    """The mutable state of one ongoing pattern (snapshots are :class:`Pattern`)."""

    __slots__ = (
        "counted_until",
        "details",
        "dirty",
        "evidence",
        "first",
        "id",
        "key",
        "last",
        "last_held",
        "layers",
        "new",
        "occurrences",
        "other_fingerprints",
        "prints",
        "reported",
        "resumed",
        "root",
        "tenant_id",
        "tenants",
        "tenants_mixed",
        "threshold",
        "trend_p",
    )

    def __init__(
        self, key: object, pid: str, first: float, last: float, tenant_id: str | None
    ) -> None:
        self.key = key
        self.id = pid
        self.first = first
        self.last = last
        self.last_held = last
        self.occurrences = 0
        self.layers: dict[str, int] = {}
        self.prints: dict[str, int] = {}
        self.other_fingerprints = 0
        self.root: str | None = None
        self.evidence = 0.0
        self.threshold = 1.0
        self.trend_p: float | None = None
        self.details: dict[str, Any] = {}
        self.tenant_id = tenant_id
        # The tenants of the errors behind the pattern (None: errors without one), at
        # most _MAX_TRACKED_NAMES; tenants_mixed when there were more, or a mix whose
        # members are not known.  One tenant: the pattern carries it.
        self.tenants: set[str | None] = set()
        self.tenants_mixed = False
        self.new = True
        self.resumed = False
        self.dirty = False
        self.reported = last
        self.counted_until = -math.inf  # errors up to here were counted by a previous leader

    def touch(self, sample: ErrorSample) -> None:
        """Count ``sample`` into this pattern."""
        ts = sample.timestamp
        if ts <= self.counted_until:
            return
        count = sample.count
        self.occurrences += count
        if ts > self.last:
            self.last = ts
        elif ts < self.first:
            self.first = ts
        self.dirty = True
        tenant = sample.tenant_id
        if tenant not in self.tenants:
            self.join_tenants((tenant,))
        layer = sample.layer
        if layer is not None:
            layers = self.layers
            if layer in layers:
                layers[layer] += count
            elif len(layers) < _MAX_TRACKED_NAMES:
                layers[layer] = count
        prints = self.prints
        fp = sample.fingerprint
        if fp in prints:
            prints[fp] += count
        elif len(prints) < _MAX_TRACKED_NAMES:
            prints[fp] = count
        else:
            self.other_fingerprints += count

    def join_tenants(self, tenants: Iterable[str | None], *, mixed: bool = False) -> None:
        """Count the tenants of errors that joined the pattern (bounded)."""
        known = self.tenants
        for tenant in tenants:
            if tenant in known:
                continue
            if len(known) < _MAX_TRACKED_NAMES:
                known.add(tenant)
            else:
                self.tenants_mixed = True
        if mixed:
            self.tenants_mixed = True

    def tenant(self) -> str | None:
        """The one tenant every error behind the pattern has, else None."""
        if len(self.tenants) == 1 and not self.tenants_mixed:
            return next(iter(self.tenants))
        if not self.tenants and not self.tenants_mixed:
            return self.tenant_id
        return None

    def confidence(self) -> float:
        found = confidence(self.evidence, self.threshold)
        if self.trend_p is not None:
            found = max(found, 1.0 - self.trend_p)
        return found

    def snapshot(
        self,
        type: PatternType,
        actions: tuple[str, ...],
        *,
        ended_at: float | None = None,
    ) -> Pattern:
        if self.root is not None:  # a cascade: the root, then the layers above in order
            prints = [self.root, *(f for f in self.prints if f != self.root)]
        else:
            prints = sorted(self.prints, key=lambda f: (-self.prints[f], f))
        details = dict(self.details)
        if self.other_fingerprints:
            details["other_fingerprint_errors"] = self.other_fingerprints
        tenant = self.tenant()
        if tenant is None and (len(self.tenants) > 1 or self.tenants_mixed):
            # Several tenants: the pattern is no one tenant's; say which ones (bounded).
            details["tenant_ids"] = sorted(self.tenants, key=lambda t: (t is None, t or ""))
        return make_pattern(
            self.id,
            type,
            PatternStatus.ENDED if ended_at is not None else PatternStatus.ONGOING,
            self.first,
            self.last,
            self.occurrences,
            tuple(sorted(self.layers, key=_layer_rank)),
            tuple(prints),
            round(self.confidence(), 4),
            actions,
            MappingProxyType(details),
            tenant,
            ended_at,
        )


_LAYER_RANKS: Final = {name: i for i, name in enumerate(LAYER_ORDER)}


def _layer_rank(layer: str) -> tuple[int, str]:
    return (_LAYER_RANKS.get(layer, len(LAYER_ORDER)), layer)


@runtime_checkable
class PatternDetector(Protocol):
    """What the :class:`DetectorSet` needs from a detector (write your own to add one)."""

    @property
    def type(self) -> PatternType:
        """The type of pattern this detector reports."""
        ...

    def observe(self, sample: ErrorSample) -> None:
        """Count one sample; O(1) amortised, never raises for any sample."""
        ...

    def collect(self, now: float) -> list[PatternChange]:
        """The patterns that started, went on or ended since the last call, as of ``now``."""
        ...

    def ongoing(self) -> list[Pattern]:
        """Snapshots of the ongoing patterns."""
        ...


class _Detector:
    """What the four detectors share: ongoing patterns, their reports and their end."""

    type: PatternType
    actions: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        clear_after: float | timedelta,
        update_interval: float | timedelta,
        max_patterns: int,
        source: str = "process",
    ) -> None:
        self.clear_after = _seconds(clear_after, "clear_after")
        self.update_interval = _seconds(update_interval, "update_interval")
        self.max_patterns = _positive_int(max_patterns, "max_patterns")
        self.source = source
        self._ongoing: dict[object, _Ongoing] = {}
        self._new: list[_Ongoing] = []
        self._swept_at = -math.inf
        self._evicted = 0  # added to analysis.<type>.evicted at the next collect
        self._name = type(self).__name__

    # -- the hooks a detector fills in ---------------------------------------------

    def observe(self, sample: ErrorSample) -> None:
        """Count one sample; O(1) amortised."""
        raise NotImplementedError

    def _holds(self, state: _Ongoing, now: float) -> bool:
        """True while the pattern's condition holds at ``now``."""
        return False

    def _before_collect(self, now: float) -> None:
        """Bring time-based state up to ``now`` (may open patterns)."""

    # -- shared machinery ------------------------------------------------------------

    def _open(
        self, key: object, started: float, last: float, tenant_id: str | None, id_key: str
    ) -> _Ongoing | None:
        if len(self._ongoing) >= self.max_patterns:
            counters.incr(f"analysis.{self.type.value}.patterns_suppressed")
            return None
        state = _Ongoing(
            key,
            pattern_id(self.type.value, id_key, started, source=self.source),
            started,
            last,
            tenant_id,
        )
        self._ongoing[key] = state
        self._new.append(state)
        return state

    def collect(self, now: float) -> list[PatternChange]:
        """The patterns that started, went on or ended since the last call, as of ``now``."""
        if self._evicted:  # counted here, not under the counters' lock for every eviction
            counters.incr(f"analysis.{self.type.value}.evicted", self._evicted)
            self._evicted = 0
        self._before_collect(now)
        changes: list[PatternChange] = []
        for state in self._new:
            if state.new and self._ongoing.get(state.key) is state:
                state.new = False
                state.dirty = False
                state.reported = now
                changes.append(PatternChange("new", state.snapshot(self.type, self.actions)))
        self._new.clear()
        if now - self._swept_at < _SWEEP_S:
            return changes
        self._swept_at = now
        for key, state in list(self._ongoing.items()):
            if self._holds(state, now):
                state.last_held = max(state.last_held, now)
                if state.dirty and now - state.reported >= self.update_interval:
                    state.dirty = False
                    state.reported = now
                    changes.append(
                        PatternChange("updated", state.snapshot(self.type, self.actions))
                    )
            elif now - state.last_held >= self.clear_after:
                del self._ongoing[key]
                # When it formally ended, whatever the sweep's timing.
                ended_at = min(now, max(state.last, state.last_held + self.clear_after))
                changes.append(
                    PatternChange(
                        "ended", state.snapshot(self.type, self.actions, ended_at=ended_at)
                    )
                )
            elif state.dirty and now - state.reported >= self.update_interval:
                state.dirty = False
                state.reported = now
                changes.append(PatternChange("updated", state.snapshot(self.type, self.actions)))
        return changes

    def ongoing(self) -> list[Pattern]:
        """Snapshots of the ongoing patterns, oldest first."""
        return [s.snapshot(self.type, self.actions) for s in self._ongoing.values()]

    def resume(self, pattern: Pattern) -> bool:
        """Adopt a stored ongoing pattern (same id), so that it is updated, not reported anew.

        The store-level analysis calls this when it takes over from another
        process, after replaying the history: a pattern the replay found again
        takes the stored id and counts; one it did not find is kept as stored
        (it ends once its condition has not held for ``clear_after``).  Returns
        False when the pattern is not one this detector makes.
        """
        if pattern.type is not self.type or not pattern.ongoing:
            return False
        key = self._key_of(pattern)
        if key is None:
            return False
        found = self._ongoing.get(key)
        if found is not None:
            found.id = pattern.id
            found.first = min(found.first, pattern.first_occurrence)
            found.occurrences = max(found.occurrences, pattern.occurrences)
            found.counted_until = pattern.last_occurrence
            found.new = False
            found.resumed = True
            found.reported = max(found.reported, pattern.last_occurrence)
            return True
        state = _Ongoing(
            key, pattern.id, pattern.first_occurrence, pattern.last_occurrence, pattern.tenant_id
        )
        state.occurrences = pattern.occurrences
        if pattern.tenant_id is not None:
            state.tenants.add(pattern.tenant_id)
        elif isinstance(tenant_ids := pattern.details.get("tenant_ids"), list):
            state.join_tenants((t if isinstance(t, str) else None for t in tenant_ids), mixed=True)
        state.layers = dict.fromkeys(pattern.layers, 0)
        state.prints = dict.fromkeys(pattern.fingerprints, 0)
        state.details = dict(pattern.details)
        state.evidence = 1.0
        state.new = False
        state.resumed = True
        state.reported = pattern.last_occurrence
        state.counted_until = pattern.last_occurrence
        self._ongoing[key] = state
        return True

    def announce_unreported(self) -> None:
        """Report every ongoing pattern not resumed as ``new`` at the next collect.

        After replaying history whose changes were dropped (a store-level
        analyzer taking over), what is still ongoing and was not saved before
        is announced once.
        """
        for state in self._ongoing.values():
            if not state.resumed and not state.new:
                state.new = True
                self._new.append(state)

    def _key_of(self, pattern: Pattern) -> object | None:
        return None


# --- recurring ---------------------------------------------------------------------------


class _Recurrence:
    __slots__ = ("last", "ring", "streak")

    def __init__(self, width: float, n: int, ts: float) -> None:
        self.ring = _Ring(width, n)
        self.last = ts
        self.streak = ts


class RecurringDetector(_Detector):
    """The same fingerprint at least ``threshold`` times within ``window`` seconds.

    Per fingerprint (and tenant) a ring of ``buckets`` time buckets counts the
    window (the current bucket and those before it): occurrences at most
    ``window - window/buckets`` apart always count together, ones more than
    ``window`` apart never do.  At most ``max_fingerprints``
    fingerprints are tracked (least recently seen evicted first, counted in
    ``analysis.recurring.evicted``).  A pattern ends when the fingerprint has
    stayed under the threshold for ``clear_after`` (default: ``window``).
    Confidence: evidence is the highest count seen in one window.
    """

    type = PatternType.RECURRING
    actions = (
        "Open the issue of this fingerprint and fix its root cause",
        "If the error is expected, handle it where it is raised instead of capturing it",
        "If it comes from a dependency, put a circuit breaker or a fallback around the call",
    )

    def __init__(
        self,
        *,
        threshold: int = 5,
        window: float | timedelta = 300.0,
        buckets: int = 10,
        clear_after: float | timedelta | None = None,
        update_interval: float | timedelta = 60.0,
        max_fingerprints: int = 10_000,
        max_patterns: int = 1_000,
        source: str = "process",
    ) -> None:
        self.threshold = _positive_int(threshold, "threshold")
        self.window = _seconds(window, "window")
        self.buckets = _positive_int(buckets, "buckets")
        self.max_fingerprints = _positive_int(max_fingerprints, "max_fingerprints")
        super().__init__(
            clear_after=self.window if clear_after is None else clear_after,
            update_interval=update_interval,
            max_patterns=max_patterns,
            source=source,
        )
        self._width = self.window / self.buckets
        self._keys: OrderedDict[tuple[str | None, str], _Recurrence] = OrderedDict()

    @property
    def tracked(self) -> int:
        """How many fingerprints are tracked now (at most ``max_fingerprints``)."""
        return len(self._keys)

    def observe(self, sample: ErrorSample) -> None:
        """Count one sample of its fingerprint."""
        key = (sample.tenant_id, sample.fingerprint)
        keys = self._keys
        ts = sample.timestamp
        state = keys.get(key)
        if state is None:
            state = keys[key] = _Recurrence(self._width, self.buckets, ts)
            if len(keys) > self.max_fingerprints:
                keys.popitem(last=False)
                self._evicted += 1
        else:
            keys.move_to_end(key)
            if ts - state.last > self.window:
                state.streak = ts
        if ts > state.last:  # noqa: PLR1730 (per-event path: no builtin call)
            state.last = ts
        total = state.ring.add(ts, sample.count)
        ongoing = self._ongoing.get(key) if self._ongoing else None
        if ongoing is not None:
            ongoing.touch(sample)
            if total is not None and total >= self.threshold:
                if ts > ongoing.last_held:  # noqa: PLR1730
                    ongoing.last_held = ts
                if total > ongoing.evidence:  # noqa: PLR1730
                    ongoing.evidence = total
            return
        if total is None or total < self.threshold:
            return
        oldest = state.ring.oldest_start()
        first = state.streak if oldest is None else max(state.streak, oldest)
        opened = self._open(key, min(first, ts), ts, sample.tenant_id, "\0".join(map(str, key)))
        if opened is None:
            return
        opened.touch(sample)
        opened.occurrences = total
        opened.evidence = total
        opened.threshold = self.threshold
        opened.details = {"threshold": self.threshold, "window_s": self.window}

    def _holds(self, state: _Ongoing, now: float) -> bool:
        key: Any = state.key
        found = self._keys.get(key)
        if found is None:
            return False
        count = found.ring.total_at(now)
        state.details["count_in_window"] = count
        return count >= self.threshold

    def _key_of(self, pattern: Pattern) -> object | None:
        if not pattern.fingerprints:
            return None
        return (pattern.tenant_id, pattern.fingerprints[0])


# --- burst -----------------------------------------------------------------------------------


class BurstDetector(_Detector):
    """At least ``threshold`` errors within ``window`` (60 s), or ``ratio`` times the baseline.

    The window is a ring of ``buckets`` buckets (errors at most ``window -
    window/buckets`` apart always count together, ones more than ``window``
    apart never do).  The baseline is an EWMA of the
    errors per window, updated as each bucket completes, with a time constant
    of ``baseline_tau`` seconds (it adapts ten times slower during a burst, so a
    burst does not become its own baseline).  Error counts are small and not
    normally distributed, so the rate test uses ``max(baseline, baseline_floor)``
    and needs at least ``min_count`` errors; it applies only after ``warmup``
    seconds (default ``baseline_tau``) of history, and a silence (no error)
    longer than ``baseline_tau`` starts the warm-up again: after a quiet night
    the baseline says nothing about the day's traffic.  Confidence: evidence is
    the peak window count, against the lower of the two thresholds in force.  A
    burst ends when the condition has not held for ``clear_after`` seconds
    (default: ``window``).
    """

    type = PatternType.BURST
    actions = (
        "Look at the burst's top fingerprints and layers: one dependency or one release?",
        "Check for an overloaded or failing external system, and shed or rate-limit load",
        "Make sure retries back off (a retry storm multiplies a burst)",
    )

    def __init__(
        self,
        *,
        threshold: int = 30,
        window: float | timedelta = 60.0,
        buckets: int = 6,
        ratio: float = 5.0,
        min_count: int = 10,
        baseline_floor: float = 2.0,
        baseline_tau: float | timedelta = 600.0,
        warmup: float | timedelta | None = None,
        clear_after: float | timedelta | None = None,
        update_interval: float | timedelta = 10.0,
        key: str = "all",
        source: str = "process",
    ) -> None:
        self.threshold = _positive_int(threshold, "threshold")
        self.window = _seconds(window, "window")
        self.buckets = _positive_int(buckets, "buckets")
        self.ratio = _number(ratio, "ratio", minimum=1.0)
        self.min_count = _positive_int(min_count, "min_count")
        self.baseline_floor = _number(baseline_floor, "baseline_floor")
        self.baseline_tau = _seconds(baseline_tau, "baseline_tau")
        self.warmup = (
            self.baseline_tau
            if warmup is None
            else _number(
                warmup.total_seconds() if isinstance(warmup, timedelta) else warmup, "warmup"
            )
        )
        super().__init__(
            clear_after=self.window if clear_after is None else clear_after,
            update_interval=update_interval,
            max_patterns=1,
            source=source,
        )
        self.key = key
        width = self.window / self.buckets
        self._ring = _Ring(width, self.buckets)
        self._tenants = _TenantBuckets(self.buckets)
        self._alpha = 1.0 - math.exp(-width / self.baseline_tau)
        self._scale = float(self.buckets)  # errors per bucket -> errors per window
        self.baseline = 0.0
        self._started: float | None = None
        self._last_seen = -math.inf
        self._folded_tick: int | None = None
        # The latest samples, so a burst names the errors that made it, not only the last.
        self._recent: deque[ErrorSample] = deque(maxlen=4 * _MAX_TRACKED_NAMES)

    def _fold(self, tick: int) -> None:
        """Feed the buckets completed before ``tick`` into the baseline (O(1) amortised)."""
        folded = self._folded_tick
        ring = self._ring
        if folded is None:
            self._folded_tick = tick
            return
        if tick <= folded:
            return
        alpha = self._alpha / 10.0 if self._ongoing else self._alpha
        count = (
            ring.counts[folded % ring.n]
            if ring.tick is not None and folded > ring.tick - ring.n
            else 0
        )
        self.baseline += alpha * (count * self._scale - self.baseline)
        empty = tick - folded - 1
        if empty > 0:  # closed form for a run of empty buckets
            self.baseline *= (1.0 - alpha) ** empty
        self._folded_tick = tick

    def _threshold_now(self, now: float) -> float:
        """The lowest count that makes a burst now."""
        limit = float(self.threshold)
        if self._started is not None and now - self._started >= self.warmup:
            rate = max(float(self.min_count), self.ratio * max(self.baseline, self.baseline_floor))
            limit = min(limit, rate)
        return limit

    def observe(self, sample: ErrorSample) -> None:
        """Count one sample into the window."""
        ts = sample.timestamp
        last_seen = self._last_seen
        if ts > last_seen:
            if ts - last_seen > self.baseline_tau:
                self._started = ts  # first sample, or the first after a long silence
            self._last_seen = ts
        ring = self._ring
        tick = int(ts // ring.width)
        if tick != self._folded_tick:
            self._fold(tick)
        total = ring.add(ts, sample.count)
        self._tenants.add(tick, sample.tenant_id)
        state = self._ongoing.get(self.key) if self._ongoing else None
        if state is None:
            self._recent.append(sample)
        else:
            state.touch(sample)
            if total is not None:
                if ts > state.last_held and (
                    total >= self.threshold or total >= self._threshold_now(ts)
                ):
                    state.last_held = ts
                if total > state.evidence:  # noqa: PLR1730 (per-event path)
                    state.evidence = total
            return
        if total is None:
            return
        limit = self._threshold_now(ts)
        if total < limit:
            return
        window = [s for s in self._recent if ts - s.timestamp < self.window]
        self._recent.clear()
        first = min((s.timestamp for s in window), default=ts)
        opened = self._open(self.key, first, ts, None, self.key)
        if opened is None:
            return
        for earlier in window:  # the burst's errors that are still remembered
            opened.touch(earlier)
        # Every error in the window, remembered or not, says whose burst it is.
        self._tenants.join_into(opened, tick - self.buckets + 1, tick)
        opened.occurrences = total
        opened.evidence = total
        opened.threshold = limit
        opened.details = {
            "window_s": self.window,
            "threshold": self.threshold,
            "trigger": "count" if limit >= self.threshold else "rate",
            "baseline_per_window": round(self.baseline, 3),
            "ratio": self.ratio,
        }

    def _before_collect(self, now: float) -> None:
        self._fold(int(now // self._ring.width))

    def _holds(self, state: _Ongoing, now: float) -> bool:
        count = self._ring.total_at(now)
        state.details["count_in_window"] = count
        state.details["peak_in_window"] = int(state.evidence)
        return count >= self._threshold_now(now)

    def _key_of(self, pattern: Pattern) -> object | None:
        return self.key


# --- cascade ---------------------------------------------------------------------------


class _Chain:
    """Errors of one correlation moving up the layers: (rank, fingerprint, time) per step."""

    __slots__ = ("reported", "steps", "tenant_id")

    def __init__(self, rank: int, fp: str, ts: float, tenant_id: str | None) -> None:
        self.steps: list[tuple[int, str, float]] = [(rank, fp, ts)]
        self.reported: object | None = None
        self.tenant_id = tenant_id


class _LayerSurge:
    """Errors of one layer across correlations: a short ring and the surge it is in."""

    __slots__ = (
        "correlations",
        "errors",
        "follows",
        "onset",
        "prints",
        "recent",
        "reported",
        "ring",
        "tenants",
        "tenants_mixed",
        "top",
        "top_count",
    )

    def __init__(self, width: float, n: int) -> None:
        self.ring = _Ring(width, n)
        # The last errors of the layer, so a surge knows the errors that started it.
        self.recent: deque[tuple[float, str, str | None, int, str | None]] = deque(
            maxlen=_MAX_TRACKED_NAMES
        )
        self.tenants: set[str | None] = set()  # of the surge's errors (bounded)
        self.tenants_mixed = False  # more tenants than kept
        self.onset: float | None = None  # when the count last reached min_errors
        self.prints: dict[str, int] = {}
        self.errors = 0  # since the surge started
        self.follows = False  # it started while a lower layer surged
        self.top = ""  # the most frequent fingerprint of the surge
        self.top_count = 0
        self.correlations: set[str] = set()
        self.reported: float | None = None  # onset of the surge last reported as a root

    def root(self) -> str:
        return self.top

    def start(self, ts: float) -> None:
        """A surge starts at ``ts``: count the recent errors of the layer into it."""
        self.onset = ts
        self.prints.clear()
        self.top, self.top_count = "", 0
        self.errors = 0
        self.correlations.clear()
        self.tenants.clear()
        self.tenants_mixed = False
        span = self.ring.width * self.ring.n
        for at, fp, cid, amount, tenant in self.recent:
            if ts - at < span:
                self.count(fp, cid, amount, tenant)

    def count(self, fp: str, cid: str | None, amount: int, tenant: str | None) -> None:
        self.errors += amount
        tenants = self.tenants
        if tenant not in tenants:
            if len(tenants) < _MAX_TRACKED_NAMES:
                tenants.add(tenant)
            else:
                self.tenants_mixed = True
        prints = self.prints
        if fp in prints:
            prints[fp] += amount
        elif len(prints) < _MAX_TRACKED_NAMES:
            prints[fp] = amount
        else:
            return
        if prints[fp] > self.top_count:  # the most frequent, kept as it changes: O(1)
            self.top, self.top_count = fp, prints[fp]
        if len(self.correlations) < 8:
            # An error without a correlation id is a request (or job) of its own.
            self.correlations.add(cid if cid is not None else f"\0{self.errors}")


class CascadeDetector(_Detector):
    """Errors moving up the layers (infrastructure → core → service → api): a candidate root cause.

    Within one correlation: errors in at least ``min_layers`` layers, each
    higher than the one before, within ``window`` seconds of the first; the
    lowest layer's fingerprint is the candidate root cause.  Across
    correlations: layers whose error count within ``cross_window`` reached
    ``min_errors`` (a surge), each surge starting no earlier than the one below
    it and within ``cross_window`` of it, over at least two correlations; the
    lowest layer's most frequent fingerprint is the root: it must itself
    reach ``min_errors`` and account for more than ``root_share`` of that
    layer's errors since its surge started (errors of every kind in every
    layer at once are a burst), and that surge must not have started while a
    still lower layer surged (then it follows, and the lower one is the root).  Cascades with the
    same root are one pattern (``occurrences`` counts the cascades); it ends
    ``clear_after`` seconds after the last.  Confidence: evidence is the number
    of layers spanned times the square root of the cascades seen (at most 4),
    against ``min_layers``.  At most ``max_correlations`` correlations are
    followed (least recent evicted first, ``analysis.cascade.evicted``).
    """

    type = PatternType.CASCADE
    actions = (
        "Start with the root fingerprint in the lowest layer: the errors above it follow from it",
        "Isolate the failing dependency (circuit breaker, timeout, bulkhead) so it stops "
        "propagating",
        "Answer upper layers from a fallback while the lower layer recovers",
    )

    def __init__(
        self,
        *,
        min_layers: int = 2,
        window: float | timedelta = 30.0,
        cross_window: float | timedelta = 10.0,
        min_errors: int = 3,
        root_share: float = 0.5,
        clear_after: float | timedelta = 300.0,
        update_interval: float | timedelta = 30.0,
        layers: Sequence[str] = LAYER_ORDER,
        max_correlations: int = 10_000,
        max_patterns: int = 1_000,
    ) -> None:
        self.layer_order = tuple(layers)
        if len(self.layer_order) < 2 or len(set(self.layer_order)) != len(self.layer_order):
            raise ConfigurationError(
                f"layers must name at least two distinct layers, lowest first, not {layers!r}"
            )
        self.min_layers = _positive_int(min_layers, "min_layers", minimum=2)
        self.window = _seconds(window, "window")
        self.cross_window = _seconds(cross_window, "cross_window")
        self.min_errors = _positive_int(min_errors, "min_errors")
        self.root_share = _number(root_share, "root_share")
        self.max_correlations = _positive_int(max_correlations, "max_correlations")
        super().__init__(
            clear_after=clear_after, update_interval=update_interval, max_patterns=max_patterns
        )
        self._rank = {name: i for i, name in enumerate(self.layer_order)}
        self._chains: OrderedDict[str, _Chain] = OrderedDict()
        width = self.cross_window / 5
        self._surges = [_LayerSurge(width, 6) for _ in self.layer_order]

    @property
    def tracked(self) -> int:
        """How many correlations are followed now (at most ``max_correlations``)."""
        return len(self._chains)

    def observe(self, sample: ErrorSample) -> None:
        """Follow one sample up its correlation's layers and its layer's surge."""
        layer = sample.layer
        rank = None if layer is None else self._rank.get(layer)
        if rank is None:  # a layer outside the order cannot be placed in a cascade
            return
        cid = sample.correlation_id
        if cid is not None:
            self._follow(cid, rank, sample)
        self._surge(rank, sample)

    def _follow(self, cid: str, rank: int, sample: ErrorSample) -> None:
        chains = self._chains
        ts = sample.timestamp
        chain = chains.get(cid)
        if chain is None or ts - chain.steps[0][2] > self.window or rank < chain.steps[0][0]:
            if chain is None:
                chains[cid] = _Chain(rank, sample.fingerprint, ts, sample.tenant_id)
                if len(chains) > self.max_correlations:
                    chains.popitem(last=False)
                    self._evicted += 1
            else:
                chains[cid] = _Chain(rank, sample.fingerprint, ts, sample.tenant_id)
                chains.move_to_end(cid)
            return
        chains.move_to_end(cid)
        steps = chain.steps
        if rank <= steps[-1][0]:
            return
        steps.append((rank, sample.fingerprint, ts))
        if len(steps) < self.min_layers:
            return
        root = steps[0][1]
        layers = [self.layer_order[r] for r, _, _ in steps]
        if chain.reported is None:
            chain.reported = self._cascade(
                root,
                started=steps[0][2],
                ts=ts,
                layers=layers,
                prints=[fp for _, fp, _ in steps],
                tenants=(chain.tenant_id,),
                tenants_mixed=False,
                scope="correlation",
                cid=cid,
                spanned=len(steps),
            )
        else:  # the same cascade reached a higher layer
            state = self._ongoing.get(root)
            if state is not None and state is chain.reported:
                self._extend(state, layers, [sample.fingerprint], ts, len(steps))

    def _surge(self, rank: int, sample: ErrorSample) -> None:
        ts = sample.timestamp
        surge = self._surges[rank]
        surge.recent.append(
            (ts, sample.fingerprint, sample.correlation_id, sample.count, sample.tenant_id)
        )
        total = surge.ring.add(ts, sample.count)
        if total is None:
            return
        if total < self.min_errors:
            surge.onset = None
            return
        if surge.onset is None:  # the count just reached min_errors: a surge starts
            surge.start(ts)
            # A surge that starts while a lower layer surges follows it: it is no root.
            surge.follows = any(
                below.onset is not None and below.ring.total_at(ts) >= self.min_errors
                for below in self._surges[:rank]
            )
        else:
            surge.count(sample.fingerprint, sample.correlation_id, sample.count, sample.tenant_id)
        if rank == 0:
            return
        # A chain of surges ending here: each lower one started no later, and within the window.
        chain = [rank]
        onset: float = ts if surge.onset is None else surge.onset  # just started: ts
        surges = self._surges
        for lower in range(rank - 1, -1, -1):
            below = surges[lower]
            if below.onset is None:
                continue
            if below.ring.total_at(ts) < self.min_errors:
                below.onset = None  # that surge is over
                continue
            if below.onset <= onset and onset - below.onset <= self.cross_window:
                chain.append(lower)
                onset = below.onset
        if len(chain) < self.min_layers:
            return
        bottom = surges[chain[-1]]
        if bottom.follows:
            return
        top = bottom.top_count
        if top < self.min_errors or top <= self.root_share * bottom.errors:
            return  # many different errors at once at the bottom: a burst, not one root cause
        if len(set().union(*(surges[r].correlations for r in chain))) < 2:
            return  # one request: the correlation's own chain says it better
        root = bottom.top
        layers = [self.layer_order[r] for r in reversed(chain)]
        prints = [self._surges[r].root() for r in reversed(chain)]
        assert bottom.onset is not None
        tenants, mixed = self._tenants_of(chain)
        if bottom.reported == bottom.onset:
            state = self._ongoing.get(root)
            if state is not None:
                self._extend(state, layers, prints, ts, len(chain))
                state.join_tenants(tenants, mixed=mixed)
            return
        bottom.reported = bottom.onset
        self._cascade(
            root,
            started=bottom.onset,
            ts=ts,
            layers=layers,
            prints=prints,
            tenants=tenants,
            tenants_mixed=mixed,
            scope="across",
            cid=None,
            spanned=len(chain),
        )

    def _tenants_of(self, chain: list[int]) -> tuple[set[str | None], bool]:
        """The tenants of every surge in ``chain``: one tenant's cascade, or several's."""
        tenants: set[str | None] = set()
        mixed = False
        for r in chain:
            surge = self._surges[r]
            tenants |= surge.tenants
            mixed = mixed or surge.tenants_mixed
        return tenants, mixed

    def _cascade(
        self,
        root: str,
        *,
        started: float,
        ts: float,
        layers: list[str],
        prints: list[str],
        tenants: Iterable[str | None],
        tenants_mixed: bool,
        scope: str,
        cid: str | None,
        spanned: int,
    ) -> _Ongoing | None:
        state = self._ongoing.get(root)
        if state is None:
            state = self._open(root, started, ts, None, root)
            if state is None:
                return None
            state.root = root
            state.threshold = self.min_layers
            state.details = {"scopes": [], "correlation_ids": [], "max_layers": 0}
            if cid is not None:
                state.details["correlation_id"] = cid
        state.occurrences += 1
        state.join_tenants(tenants, mixed=tenants_mixed)
        state.prints[root] = state.prints.get(root, 0) + 1
        state.dirty = True
        state.last_held = max(state.last_held, ts)
        state.last = max(state.last, ts)
        state.first = min(state.first, started)
        scopes = state.details["scopes"]
        if scope not in scopes:
            scopes.append(scope)
        if cid is not None and len(state.details["correlation_ids"]) < 10:
            state.details["correlation_ids"].append(cid)
        self._extend(state, layers, prints, ts, spanned)
        return state

    def _extend(
        self, state: _Ongoing, layers: list[str], prints: list[str], ts: float, spanned: int
    ) -> None:
        for layer in layers:
            if layer not in state.layers and len(state.layers) < _MAX_TRACKED_NAMES:
                state.layers[layer] = 1
        for fp in prints:
            if fp not in state.prints and len(state.prints) < _MAX_TRACKED_NAMES:
                state.prints[fp] = 0
        if spanned > state.details.get("max_layers", 0):
            state.details["max_layers"] = spanned
        state.last = max(state.last, ts)
        state.last_held = max(state.last_held, ts)
        state.dirty = True
        state.evidence = state.details["max_layers"] * math.sqrt(min(state.occurrences, 4))

    def _key_of(self, pattern: Pattern) -> object | None:
        return pattern.root_fingerprint


# --- degradation -------------------------------------------------------------------------


def rise_p_value(recent: float, previous: float) -> float:
    """The one-sided p-value of ``recent`` errors after ``previous`` under an unchanged rate.

    Given the total, each error falls in either window with probability 1/2;
    the normal approximation of that binomial, with continuity correction.
    """
    n = recent + previous
    if n <= 0 or recent <= previous:
        return 1.0
    z = (recent - n / 2 - 0.5) / math.sqrt(n / 4)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_kendall(values: Sequence[float]) -> tuple[int, float]:
    """The Mann-Kendall statistic ``S`` of ``values`` and the one-sided p-value of a rise.

    ``S`` counts the later-higher pairs minus the later-lower ones; the variance
    is corrected for ties; ``p`` is the normal approximation with continuity
    correction (``1.0`` when ``S <= 0``).  O(n²): meant for a handful of windows.
    """
    n = len(values)
    s = 0
    for i in range(n - 1):
        vi = values[i]
        for j in range(i + 1, n):
            d = values[j] - vi
            if d > 0:
                s += 1
            elif d < 0:
                s -= 1
    if s <= 0 or n < 3:
        return s, 1.0
    ties: dict[float, int] = {}
    for v in values:
        ties[v] = ties.get(v, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties.values())) / 18
    if var <= 0:
        return s, 1.0
    z = (s - 1) / math.sqrt(var)
    return s, 0.5 * math.erfc(z / math.sqrt(2.0))


class DegradationDetector(_Detector):
    """The error rate rising: the recent ``window`` well above the previous one, or a trend.

    Errors are counted in sub-buckets of ``window / 5``; the condition is
    evaluated as each sub-bucket completes (at most once a minute by default;
    detection lags up to one sub-bucket).

    * ratio: the last ``window`` has at least ``min_recent`` errors, the one
      before at least ``min_previous`` (minimum volumes: errors appearing
      from nothing are a burst or a new issue, not a degradation), the recent
      one has ``factor`` times the previous one or more (or times the median
      window of the last ``trend_windows``, when higher: a dip just before is
      no rise), and the rise is significant (a one-sided binomial test of the
      two counts, p <= ``ratio_alpha``: counts of a few dozen errors swing by
      half on their own); the same holds, at p <= 0.05, for the windows
      *trimmed* of their two busiest sub-buckets (the rise is broad: one that a
      minute or two account for is a burst);
    * trend: over the last ``trend_windows`` windows the Mann-Kendall test finds
      a rise with p <= ``trend_alpha``, the later half of them has ``factor``
      times the errors of the earlier half or more, and the last window at
      least ``min_recent``.

    Nothing is evaluated before two windows of history (``trend_windows`` for
    the trend), and a silence (no error) longer than ``window`` starts the
    history again.  Confidence: the ratio against its threshold, or ``1 - p``
    for a trend, whichever is higher.  While a degradation is ongoing both tests
    hold it at p <= ``hold_alpha`` (0.05): a slow rise whose latest windows are
    not significant enough to start a pattern still continues the one it is in.
    It ends once neither test has held for ``clear_after`` (default: two
    windows), so one rise is one pattern, updated, not two or three.
    """

    type = PatternType.DEGRADATION
    actions = (
        "Compare the rising fingerprints with recent deployments and configuration changes",
        "Check resource exhaustion: memory, connections, disk, queues that grow",
        "Watch the trend: a slow rise becomes an outage when a limit is reached",
    )

    _SUB: Final = 5

    def __init__(
        self,
        *,
        window: float | timedelta = 300.0,
        factor: float = 1.5,
        min_recent: int = 10,
        min_previous: int = 5,
        ratio_alpha: float = 0.005,
        trend_windows: int = 8,
        trend_alpha: float = 0.005,
        hold_alpha: float = 0.05,
        clear_after: float | timedelta | None = None,
        update_interval: float | timedelta = 60.0,
        key: str = "all",
        source: str = "process",
    ) -> None:
        self.window = _seconds(window, "window")
        self.hold_alpha = _number(hold_alpha, "hold_alpha")
        self.factor = _number(factor, "factor", minimum=1.0)
        self.min_recent = _positive_int(min_recent, "min_recent")
        self.min_previous = _positive_int(min_previous, "min_previous")
        self.trend_windows = _positive_int(trend_windows, "trend_windows", minimum=4)
        self.trend_alpha = _number(trend_alpha, "trend_alpha")
        self.ratio_alpha = _number(ratio_alpha, "ratio_alpha")
        super().__init__(
            # A while: a slow rise that pauses for a window is still the same degradation.
            clear_after=2 * self.window if clear_after is None else clear_after,
            update_interval=update_interval,
            max_patterns=1,
            source=source,
        )
        self.key = key
        self._width = self.window / self._SUB
        self._size = self.trend_windows * self._SUB
        self._counts = [0] * self._size  # completed sub-buckets, a ring
        self._tenants = _TenantBuckets(self._size + self._SUB)
        self._tick: int | None = None  # the current (open) sub-bucket
        self._current = 0
        self._completed = 0  # sub-buckets completed since the history (re)started
        self._last_seen = -math.inf
        self._holding = False

    def _restart(self, tick: int) -> None:
        for i in range(self._size):
            self._counts[i] = 0
        self._tenants = _TenantBuckets(self._size + self._SUB)
        self._tick = tick
        self._current = 0
        self._completed = 0
        self._holding = False

    def _advance(self, tick: int) -> None:
        last = self._tick
        if last is None:
            self._tick = tick
            return
        if tick <= last:
            return
        size = self._size
        counts = self._counts
        steps = tick - last
        counts[last % size] = self._current
        for t in range(last + 1, last + min(steps, size + 1)):
            counts[t % size] = 0
        self._current = 0
        self._completed += steps
        self._tick = tick
        self._evaluate(tick)

    def _trimmed(self, end: int) -> int:
        """The errors of the window ending before sub-bucket ``end``, less its two busiest."""
        size, sub, counts = self._size, self._SUB, self._counts
        return sum(sorted(counts[t % size] for t in range(end - sub, end))[: sub - 2])

    def _window_sums(self, tick: int) -> list[int]:
        """Errors per window over the last ``trend_windows`` windows, oldest first."""
        size, sub, counts = self._size, self._SUB, self._counts
        sums = []
        for w in range(self.trend_windows - 1, -1, -1):
            end = tick - w * sub  # exclusive
            sums.append(sum(counts[t % size] for t in range(end - sub, end)))
        return sums

    def _evaluate(self, tick: int) -> None:
        """Evaluate both tests on the sub-buckets completed before ``tick`` (O(1) amortised)."""
        self._holding = False
        if self._completed < 2 * self._SUB:
            return
        size, sub, counts = self._size, self._SUB, self._counts
        recent_buckets = [counts[t % size] for t in range(tick - sub, tick)]
        recent = sum(recent_buckets)
        if recent < self.min_recent:
            return
        sums = self._window_sums(tick)
        before = sums[-1 - min(len(sums) - 1, self._completed // sub - 1) : -1]
        previous = before[-1]
        # A dip just before is no rise: compare with the typical window too.
        reference = max(previous, sorted(before)[len(before) // 2])
        limit = self.factor * reference
        # Each window without its two busiest sub-buckets: a burst inside the recent
        # window does not make it a degradation (the same trim on both sides keeps the
        # comparison fair).
        windows = min(len(sums) - 1, self._completed // sub - 1)
        trimmed = [self._trimmed(tick - w * sub) for w in range(windows + 1)]
        trimmed_reference = max(trimmed[1], sorted(trimmed[1:])[windows // 2])
        # An ongoing degradation goes on while the rise is still there at p <= hold_alpha:
        # a slow rise whose last windows are no longer significant enough to *start* a
        # pattern is the same degradation, not a new one when it clears that bar again.
        going = self.key in self._ongoing
        ratio_alpha = max(self.ratio_alpha, self.hold_alpha) if going else self.ratio_alpha
        trend_alpha = max(self.trend_alpha, self.hold_alpha) if going else self.trend_alpha
        by_ratio = (
            previous >= self.min_previous
            and recent >= limit
            and trimmed[0] >= self.factor * trimmed_reference
            and rise_p_value(recent, reference) <= ratio_alpha
            and rise_p_value(trimmed[0], trimmed_reference) <= _TRIMMED_ALPHA
        )
        p = 1.0
        by_trend = False
        if self._completed >= size:
            half = len(sums) // 2
            early, late = sum(sums[:half]), sum(sums[-half:])
            if late >= self.factor * max(early, self.min_previous):
                _, p = mann_kendall(sums)
                by_trend = p <= trend_alpha
        self._holding = by_ratio or by_trend
        if not self._holding:
            return
        at = tick * self._width  # the end of the last completed sub-bucket
        state = self._ongoing.get(self.key)
        if state is None:
            started = (tick - sub) * self._width if by_ratio else (tick - size) * self._width
            state = self._open(self.key, started, at, None, self.key)
            if state is None:
                return
            # Whose errors rose: the tenants of the windows the test compared.
            self._tenants.join_into(state, tick - sub if by_ratio else tick - size, tick - 1)
            state.occurrences = recent
            state.details = {"window_s": self.window, "factor": self.factor}
        state.last_held = max(state.last_held, at)
        state.last = max(state.last, at)
        state.dirty = True
        if by_ratio and recent / max(limit, 1e-9) > state.evidence / state.threshold:
            state.evidence, state.threshold = float(recent), limit
        if by_trend and (state.trend_p is None or p < state.trend_p):
            state.trend_p = p
        state.details.update(
            {
                "recent_errors": recent,
                "previous_errors": previous,
                "trigger": "ratio" if by_ratio else "trend",
                "trend_p": None if state.trend_p is None else round(state.trend_p, 6),
            }
        )

    def observe(self, sample: ErrorSample) -> None:
        """Count one sample into its sub-bucket."""
        ts = sample.timestamp
        tick = int(ts // self._width)
        if ts - self._last_seen > self.window:
            self._restart(tick)  # the first sample, or the first after a silence
        self._last_seen = max(self._last_seen, ts)
        self._advance(tick)
        current = self._tick
        assert current is not None
        if tick == current:
            self._current += sample.count
        elif tick > current - self._size:
            self._counts[tick % self._size] += sample.count
        self._tenants.add(tick, sample.tenant_id)
        state = self._ongoing.get(self.key)
        if state is not None:
            state.touch(sample)

    def _before_collect(self, now: float) -> None:
        if now - self._last_seen > self.window:
            self._holding = False  # silent: nothing to evaluate until errors come back
            return
        self._advance(int(now // self._width))

    def _holds(self, state: _Ongoing, now: float) -> bool:
        return self._holding

    def _key_of(self, pattern: Pattern) -> object | None:
        return self.key


# --- the set of detectors ---------------------------------------------------------------


class DetectorSet:
    """Feeds samples to every detector and gathers what changed.

    ``DetectorSet()`` runs the four built-in detectors with their defaults.
    :meth:`observe` takes a batch of samples (or :meth:`observe_events` a batch
    of events), then returns the pattern changes as of the newest timestamp
    seen; :meth:`tick` moves time on without events (patterns whose condition
    cleared end).  Not thread-safe: feed it from one thread.
    """

    def __init__(self, detectors: Iterable[PatternDetector] | None = None) -> None:
        if detectors is None:
            detectors = (
                RecurringDetector(),
                BurstDetector(),
                CascadeDetector(),
                DegradationDetector(),
            )
        self.detectors: tuple[PatternDetector, ...] = tuple(detectors)
        for detector in self.detectors:
            if not isinstance(detector, PatternDetector):
                raise ConfigurationError(
                    f"{detector!r} is not a PatternDetector (observe, collect, ongoing, type)"
                )
        self._observers = tuple(d.observe for d in self.detectors)
        self.watermark = -math.inf
        """The newest sample timestamp seen."""
        self.samples = 0
        """How many samples were observed."""

    def observe(self, samples: Iterable[ErrorSample]) -> list[PatternChange]:
        """Feed ``samples`` to every detector; return what changed as of the newest one."""
        observers = self._observers
        watermark = self.watermark
        count = 0
        for sample in samples:
            for observe in observers:
                observe(sample)
            watermark = max(watermark, sample.timestamp)
            count += 1
        self.watermark = watermark
        self.samples += count
        if not count:
            return []
        return self.collect(watermark)

    def observe_events(self, events: Iterable[Event]) -> list[PatternChange]:
        """Feed the ``error`` events among ``events``; return what changed."""
        samples = []
        for event in events:
            if event.kind == ERROR:
                sample = ErrorSample.from_event(event)
                if sample is not None:
                    samples.append(sample)
        return self.observe(samples)

    def tick(self, now: float | None = None) -> list[PatternChange]:
        """Move time to ``now`` (default: the clock, or the newest sample if later)."""
        if now is None:
            now = max(get_clock().time(), self.watermark)
        return self.collect(now)

    def collect(self, now: float) -> list[PatternChange]:
        """What changed in every detector as of ``now``."""
        changes: list[PatternChange] = []
        for detector in self.detectors:
            changes.extend(detector.collect(now))
        return changes

    def ongoing(self) -> list[Pattern]:
        """Snapshots of every ongoing pattern."""
        return [p for d in self.detectors for p in d.ongoing()]
