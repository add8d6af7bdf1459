"""The pattern model: what a detector reports, and how a change to it is published.

A :class:`Pattern` is a frozen snapshot of one detected pattern (a burst, a
recurring error, a cascade, a degradation).  Detectors keep the mutable state of
an ongoing pattern to themselves and hand out snapshots inside
:class:`PatternChange` values: ``new`` once when it starts, ``updated`` (at most
once per ``update_interval``) while it goes on, ``ended`` once when its
condition has cleared for a while.

Confidence (``Pattern.confidence``, from 0 to 1) is how strongly the evidence
clears the detection threshold, not a calibrated probability: a pattern whose
evidence just meets its threshold has 0.5, and above it
``1 - 0.5 * threshold / evidence`` (twice the threshold gives 0.75, ten times
0.95).  A trend found by the Mann-Kendall test has ``1 - p``.  ``docs/patterns.md``
lists what "evidence" is for each detector.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from faultlens import events as _events

__all__ = [
    "PATTERN",
    "Pattern",
    "PatternChange",
    "PatternStatus",
    "PatternType",
    "confidence",
    "make_pattern",
    "pattern_event",
    "pattern_id",
]

PATTERN: Final = "pattern"
"""The event kind of a pattern change (``new``, ``updated``, ``ended``), published on the bus."""

ChangeKind = Literal["new", "updated", "ended"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class PatternType(enum.StrEnum):
    """The kinds of pattern the detectors find."""

    RECURRING = "recurring"
    BURST = "burst"
    CASCADE = "cascade"
    DEGRADATION = "degradation"


class PatternStatus(enum.StrEnum):
    """A pattern is ``ongoing`` until its condition has cleared for a while, then ``ended``."""

    ONGOING = "ongoing"
    ENDED = "ended"


def confidence(evidence: float, threshold: float) -> float:
    """The documented confidence of ``evidence`` that met ``threshold``: 0.5 at it, toward 1 above.

    ``1 - 0.5 * threshold / evidence``, clamped to ``[0, 1]`` (0 for no evidence).
    """
    if not (evidence > 0 and threshold > 0) or not math.isfinite(evidence):
        return 0.0 if not evidence > 0 else 1.0
    return max(0.0, min(1.0, 1.0 - 0.5 * threshold / evidence))


def pattern_id(type: str, key: str, started: float, *, source: str = "process") -> str:
    """A stable id for the pattern of ``type`` about ``key`` that started at ``started``.

    Equal inputs give equal ids, so saving a pattern again updates it (the store
    upserts by id).  ``source`` separates in-process patterns from store-level ones.
    """
    digest = hashlib.blake2b(
        f"{type}\0{key}\0{round(started * 1000)}\0{source}".encode("utf-8", "surrogatepass"),
        digest_size=10,
    ).hexdigest()
    return f"{type}-{digest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pattern:
    """One detected pattern, as a snapshot.

    ``first_occurrence``/``last_occurrence`` are epoch seconds of the first and
    latest error that belongs to it; ``occurrences`` counts those errors (for a
    cascade: the cascades seen, one per correlation or cross-correlation chain).
    ``layers`` and ``fingerprints`` are the affected layers (lowest first for a
    cascade) and error fingerprints (most frequent first, at most 16; a
    cascade's first one is its candidate root cause).  ``confidence`` is
    described in the module docstring.  ``details`` holds what is specific to
    the detector (rates, thresholds, the trend's p-value...), JSON-safe.
    ``ended_at`` is set once the pattern ended.
    """

    id: str
    type: PatternType
    status: PatternStatus
    first_occurrence: float
    last_occurrence: float
    occurrences: int
    layers: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()
    confidence: float = 0.5
    suggested_actions: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    tenant_id: str | None = None
    ended_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.details, MappingProxyType):
            object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def ongoing(self) -> bool:
        """True while the pattern has not ended."""
        return self.status is PatternStatus.ONGOING

    @property
    def root_fingerprint(self) -> str | None:
        """A cascade's candidate root cause (the lowest layer's fingerprint); else the first."""
        return self.fingerprints[0] if self.fingerprints else None

    def to_dict(self) -> dict[str, Any]:
        """Return the pattern as a JSON-ready dict (what the ``pattern`` event carries)."""
        return {
            "id": self.id,
            "type": self.type.value,
            "status": self.status.value,
            "first_occurrence": self.first_occurrence,
            "last_occurrence": self.last_occurrence,
            "occurrences": self.occurrences,
            "layers": list(self.layers),
            "fingerprints": list(self.fingerprints),
            "confidence": self.confidence,
            "suggested_actions": list(self.suggested_actions),
            "details": dict(self.details),
            "tenant_id": self.tenant_id,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pattern:
        """Build a pattern from :meth:`to_dict`'s output (as read back from a store or an event).

        Raises ``ValueError`` (or ``KeyError``/``TypeError``) for data that is not a pattern.
        """
        ended_at = data.get("ended_at")
        return cls(
            id=str(data["id"]),
            type=PatternType(data["type"]),
            status=PatternStatus(data["status"]),
            first_occurrence=float(data["first_occurrence"]),
            last_occurrence=float(data["last_occurrence"]),
            occurrences=int(data["occurrences"]),
            layers=tuple(str(x) for x in data.get("layers") or ()),
            fingerprints=tuple(str(x) for x in data.get("fingerprints") or ()),
            confidence=float(data.get("confidence", 0.0)),
            suggested_actions=tuple(str(x) for x in data.get("suggested_actions") or ()),
            details=dict(data.get("details") or {}),
            tenant_id=None if data.get("tenant_id") is None else str(data["tenant_id"]),
            ended_at=None if ended_at is None else float(ended_at),
        )


@dataclass(frozen=True, slots=True)
class PatternChange:
    """A pattern that started (``new``), went on (``updated``) or ``ended``, as of ``pattern``."""

    change: ChangeKind
    pattern: Pattern


def pattern_event(change: PatternChange, *, correlation_id: str | None = None) -> _events.Event:
    """The ``pattern`` event that publishes ``change``.

    ``name`` is the pattern type; the payload is :meth:`Pattern.to_dict` plus
    ``change``.  A cascade inside one correlation carries that correlation id,
    so it shows on the correlation's timeline.
    """
    pattern = change.pattern
    payload = pattern.to_dict()
    payload["change"] = change.change
    if correlation_id is None:
        cid = pattern.details.get("correlation_id")
        correlation_id = cid if isinstance(cid, str) else None
    return _events.Event(
        PATTERN,
        pattern.type.value,
        payload,
        correlation_id=correlation_id,
        tenant_id=pattern.tenant_id,
        timestamp=pattern.ended_at
        if change.change == "ended" and pattern.ended_at
        else pattern.last_occurrence,
    )


# A frozen dataclass's __init__ stores each field through object.__setattr__; detectors
# snapshot ongoing patterns often (every update), so they build them through the slot
# descriptors directly, as events.py does for events: same object, a third of the time.
_FIELDS: Final = (
    "id",
    "type",
    "status",
    "first_occurrence",
    "last_occurrence",
    "occurrences",
    "layers",
    "fingerprints",
    "confidence",
    "suggested_actions",
    "details",
    "tenant_id",
    "ended_at",
)
_SETTERS: Final = tuple(getattr(Pattern, name).__set__ for name in _FIELDS)
_new_object = object.__new__


def make_pattern(*values: Any) -> Pattern:
    """A :class:`Pattern` of ``values`` in field order (``details`` already a mapping proxy)."""
    pattern: Pattern = _new_object(Pattern)
    for setter, value in zip(_SETTERS, values, strict=True):
        setter(pattern, value)
    return pattern
