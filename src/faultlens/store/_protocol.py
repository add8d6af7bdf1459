"""The ``Store`` protocol: what every storage backend provides."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

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

__all__ = ["CleanupProgress", "Store"]

CleanupProgress = Callable[[int, int], object]
"""Called as ``progress(deleted_so_far, total_to_delete)`` after each batch."""


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

    def close(self) -> None:
        """Release connections; idempotent.  A closed store raises on use."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...
