"""The ``Store`` protocol: what every storage backend provides."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from faultlens.events import Event
from faultlens.store._types import (
    AuditEntry,
    Count,
    CountBy,
    Issue,
    IssueSort,
    IssueStatus,
    Page,
    StoredEvent,
)

if TYPE_CHECKING:
    from faultlens.analysis._patterns import Pattern

__all__ = ["Alert", "AlertStatus", "CleanupProgress", "EventStats", "RecoveryStats", "Store"]

CleanupProgress = Callable[[int, int], object]
"""Called as ``progress(deleted_so_far, total_to_delete)`` after each batch."""

AlertStatus = Literal["firing", "resolved"]

_NO_DETAILS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert: a rule's condition held for one key from ``fired_at`` until ``resolved_at``.

    Written by :class:`faultlens.analysis.AlertEngine` at each transition
    (``firing``, then ``resolved``) with :meth:`Store.save_alert`.  ``details``
    holds the rule's ``metric``, ``condition``, ``key``, the ``value`` and
    ``threshold`` seen, a ``message`` and the ``correlation_id`` of a triggering
    event when there is one (JSON-safe values; redacted when stored).
    """

    id: str
    rule: str
    status: AlertStatus
    severity: str
    fired_at: float
    resolved_at: float | None = None
    tenant_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: _NO_DETAILS)

    @property
    def key(self) -> str:
        """What the alert is about within its rule (``"issue:42"``), ``""`` for the whole system."""
        value = self.details.get("key")
        return value if isinstance(value, str) else ""

    @property
    def correlation_id(self) -> str | None:
        """The correlation id of a triggering event, or None."""
        value = self.details.get("correlation_id")
        return value if isinstance(value, str) else None

    @property
    def message(self) -> str:
        """A one-line description of what fired (or resolved)."""
        value = self.details.get("message")
        return value if isinstance(value, str) else self.rule


@dataclass(frozen=True, slots=True, kw_only=True)
class EventStats:
    """What the events of a time window say about traffic, errors and their reach.

    ``events``/``with_correlation`` count events per kind (all of them, and
    those carrying a correlation id); ``operations_ended`` counts ``operation``
    events of phase ``end``; ``errors_by_severity`` counts error events by
    their classification's severity (``"unknown"`` when absent); ``users``,
    ``sessions`` and ``tenants`` are the distinct ids among error events;
    ``latest_correlation`` maps a severity to the correlation id of its newest
    error event that carries one.
    """

    since: float
    until: float
    events: Mapping[str, int]
    with_correlation: Mapping[str, int]
    operations_ended: int
    errors_by_severity: Mapping[str, int]
    users: int
    sessions: int
    tenants: int
    latest_correlation: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryStats:
    """Recovery events of one policy kind, policy name and outcome in a time window.

    ``attempts`` sums the events' ``attempt`` numbers; ``recover_seconds`` sums
    the time to recover of the events that carry one (``recover_count`` of
    them): for ``succeeded_after_retry`` from the start of the first failed
    attempt of the same call (same correlation and policy name) to the success,
    for ``fell_back`` and ``recovered`` the event's own duration.
    """

    policy: str
    name: str
    outcome: str
    events: int
    attempts: int
    recover_seconds: float
    recover_count: int


@runtime_checkable
class Store(Protocol):
    """Where events, issues, patterns, alerts and the audit log are kept.

    Get one with :func:`faultlens.store.open`.  Every method is thread-safe.
    Database failures raise :class:`~faultlens.store.StoreError` (the driver's
    exception chained); invalid arguments raise
    :class:`~faultlens.errors.ValidationError`; an unknown issue id in a
    change raises :class:`~faultlens.errors.NotFoundError`.  Times are seconds
    since the epoch (``float``) or ``datetime`` (naive means UTC); durations are
    seconds or ``timedelta``.
    """

    backend: Literal["sqlite", "postgres"]
    url: str
    """The URL the store was opened with (it may hold a password: do not log it;
    ``repr(store)`` and error messages mask it).  Re-open with ``open(store.url)``."""

    def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied (often none)."""
        ...

    def write_events(self, events: Sequence[Event]) -> int:
        """Store ``events``; return how many were new.

        Idempotent by event id: an event already stored (or repeated in the batch)
        is skipped, so replaying a batch is safe.  Payloads are redacted and made
        safe (see ``docs/storage.md``).  Error events are grouped into issues in
        the same transaction.  Large batches are written in several short
        transactions; each is atomic.
        """
        ...

    def timeline(
        self, correlation_id: str, *, limit: int = 1000, tenant_id: str | None = None
    ) -> list[StoredEvent]:
        """Events of one correlation in time order (the first ``limit``)."""
        ...

    def issues(
        self,
        *,
        status: IssueStatus | Iterable[IssueStatus] | None = None,
        category: str | None = None,
        layer: str | None = None,
        tenant_id: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        sort: IssueSort = "last_seen",
        limit: int = 50,
        after: str | None = None,
    ) -> Page[Issue]:
        """Issues, newest (or most frequent) first, one keyset page at a time.

        ``status=None`` lists every issue except merged ones.  ``since``/``until``
        keep issues seen in that window (``last_seen >= since``,
        ``first_seen < until``).  ``sort`` orders by ``last_seen``, ``count`` or
        ``first_seen``, descending, ties by id.
        """
        ...

    def issue(self, issue_id: int, *, tenant_id: str | None = None) -> Issue | None:
        """One issue (also a merged one), or None; with ``tenant_id``, only that tenant's."""
        ...

    def issue_events(
        self,
        issue_id: int,
        *,
        limit: int = 50,
        after: str | None = None,
        tenant_id: str | None = None,
    ) -> Page[StoredEvent]:
        """Events grouped into an issue, newest first, one keyset page at a time."""
        ...

    def set_issue_status(
        self, issue_id: int, status: IssueStatus, *, actor: str, reason: str | None = None
    ) -> Issue:
        """Set an issue ``unresolved``, ``resolved`` or ``ignored``; audited; return it.

        Resolving records ``resolved_at``; a later event regresses the issue.
        Any change clears ``regressed``.
        """
        ...

    def merge_issues(
        self, target: int, source: int, *, actor: str, reason: str | None = None
    ) -> Issue:
        """Merge ``source`` into ``target`` (same tenant); audited; return the target.

        The source's events move to the target, counts and distinct users and
        sessions combine, the source becomes ``merged`` and every fingerprint it
        answered to now leads to the target, so later events land there.
        """
        ...

    def counts(
        self,
        *,
        bucket_seconds: float | timedelta,
        since: float | datetime,
        until: float | datetime | None = None,
        by: CountBy = "category",
        kind: str = "error",
        tenant_id: str | None = None,
    ) -> list[Count]:
        """Events of ``kind`` per time bucket and per category, layer or issue id.

        Buckets are aligned to multiples of ``bucket_seconds`` since the epoch;
        empty buckets are absent.  Sorted by bucket, then key (None first).
        At most 100 000 buckets per call.
        """
        ...

    def cleanup(
        self,
        *,
        older_than: float | timedelta | None = None,
        max_rows_per_kind: int | None = None,
        batch_size: int = 1000,
        progress: CleanupProgress | None = None,
    ) -> dict[str, int]:
        """Delete old events in short batches; return how many went, per kind.

        ``older_than`` deletes events older than that age; ``max_rows_per_kind``
        keeps only the newest N events of each kind (rows sharing the cut-off
        timestamp are kept).  Issue counts, issues, the audit log, patterns and
        alerts stay.
        """
        ...

    def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> int:
        """Append to the audit log (there is no way to change or delete an entry)."""
        ...

    def audit_log(
        self,
        *,
        target: str | None = None,
        tenant_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[AuditEntry]:
        """Audit entries, newest first, optionally of one target (``"issue:42"``)."""
        ...

    def save_patterns(self, patterns: Iterable[Pattern]) -> int:
        """Insert or update ``faultlens.analysis.Pattern`` snapshots by id; return how many.

        The latest snapshot of a pattern wins (a pattern is saved again as it
        goes on and when it ends).
        """
        ...

    def patterns(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        since: float | datetime | None = None,
        limit: int = 100,
        tenant_id: str | None = None,
    ) -> list[Pattern]:
        """Stored patterns, the most recent ``last_occurrence`` first.

        ``status`` (``ongoing``/``ended``) and ``type`` (``recurring``, ``burst``,
        ``cascade``, ``degradation``) filter; ``since`` keeps patterns whose last
        occurrence is at or after it.
        """
        ...

    def save_alert(self, alert: Alert) -> None:
        """Insert ``alert``, or update the stored one with its id (status, resolution, details)."""
        ...

    def alerts(
        self,
        *,
        status: AlertStatus | None = None,
        rule: str | None = None,
        since: float | datetime | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts, the most recently fired first.

        ``since`` keeps alerts fired at or after it and those still firing (or
        resolved after it) then: the alerts active at some point since then.
        """
        ...

    def event_stats(
        self,
        *,
        since: float | datetime,
        until: float | datetime | None = None,
        tenant_id: str | None = None,
    ) -> EventStats:
        """Counts of the events in ``[since, until)`` (default: now); see :class:`EventStats`."""
        ...

    def recovery_stats(
        self,
        *,
        since: float | datetime,
        until: float | datetime | None = None,
        tenant_id: str | None = None,
    ) -> list[RecoveryStats]:
        """Recovery events in ``[since, until)`` per policy kind, name and outcome."""
        ...

    def close(self) -> None:
        """Release connections; idempotent.  A closed store raises on use."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...
