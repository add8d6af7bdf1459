"""The values a store returns, and the store's exception."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, Literal, TypeVar

from faultlens.errors import Category, FaultlensError, Layer, ValidationError
from faultlens.events import Event

__all__ = [
    "ISSUE_STATUSES",
    "AuditEntry",
    "Count",
    "CountBy",
    "Issue",
    "IssueSort",
    "IssueStatus",
    "Page",
    "StoreError",
    "StoredEvent",
]

IssueStatus = Literal["unresolved", "resolved", "ignored", "merged"]
"""``merged`` is set by :meth:`Store.merge_issues` only."""
IssueSort = Literal["last_seen", "count", "first_seen"]
CountBy = Literal["category", "layer", "issue"]

ISSUE_STATUSES: Final[frozenset[str]] = frozenset({"unresolved", "resolved", "ignored", "merged"})

_T = TypeVar("_T")


class StoreError(FaultlensError):
    """The store failed: the database is unreachable, locked too long, or its schema is wrong.

    The message says what failed and what to do; the database driver's exception,
    when there is one, is chained as ``__cause__``.  Writes are atomic per
    transaction, so a batch that raised can be written again (writes are
    idempotent by event id).
    """

    category = Category.SYSTEM
    layer = Layer.INFRASTRUCTURE
    code = "store_error"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored, with the issue it was grouped into (error events only)."""

    event: Event
    issue_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """A group of error events sharing a fingerprint (within one tenant).

    ``count``, ``users`` and ``sessions`` count every event ever grouped here
    (distinct users and sessions exactly); retention deletes old events but
    leaves these figures alone.  ``regressed`` is set when a resolved issue gets
    a new event and cleared when its status is set again; ``merged_into`` names
    the issue a merged one lives on in.
    """

    id: int
    fingerprint: str
    grouping_version: int
    tenant_id: str | None
    title: str
    culprit: str | None
    category: str | None
    layer: str | None
    severity: str | None
    status: IssueStatus
    first_seen: float
    last_seen: float
    count: int
    users: int
    sessions: int
    regressed: bool
    regressed_at: float | None
    resolved_at: float | None
    merged_into: int | None
    last_event_id: str | None


@dataclass(frozen=True, slots=True)
class Count:
    """Events of one time bucket and one key (category, layer or issue id)."""

    bucket: float
    """Start of the bucket, seconds since the epoch, a multiple of the bucket size."""
    key: str | int | None
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One line of the append-only audit log."""

    id: int
    timestamp: float
    actor: str
    action: str
    target: str
    tenant_id: str | None
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Page(Generic[_T]):
    """One page of a listing; pass ``next_cursor`` as ``after=`` for the next one.

    ``next_cursor`` is ``None`` on the last page.  Cursors are opaque keyset
    positions: a page never repeats or skips a row because rows were added or
    changed elsewhere in the listing since the previous page (a row whose sort key
    changed may move past the cursor, as with any keyset pagination).
    """

    items: tuple[_T, ...]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[_T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


# --- argument checks shared by the backends ----------------------------------------


def seconds(value: float | timedelta, name: str) -> float:
    """A duration in seconds from ``float | timedelta``; must be finite and > 0."""
    result = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(result, bool)
        or not isinstance(result, int | float)
        or not math.isfinite(result)
        or result <= 0
    ):
        raise ValidationError(
            f"{name} must be a positive number of seconds or a timedelta, not {value!r}",
            field=name,
        )
    return float(result)


def instant(value: float | datetime | None, name: str) -> float | None:
    """A point in time as epoch seconds from ``float | datetime`` (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(
            f"{name} must be epoch seconds or a datetime, not {value!r}", field=name
        )
    return float(value)


def limit(value: int, name: str = "limit", maximum: int = 10_000) -> int:
    """A page size from 1 to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(
            f"{name} must be an int from 1 to {maximum}, not {value!r}", field=name
        )
    return value
