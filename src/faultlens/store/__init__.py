"""Storage: events, issues, patterns, alerts and the audit log, in SQLite or PostgreSQL.

``faultlens.store.open(url)`` returns a :class:`Store`; both backends share one
schema (numbered SQL migrations per backend), one behaviour and one test suite::

    store = faultlens.store.open("sqlite:///faultlens.db")   # or "postgresql://..."
    store.write_events(batch)                  # idempotent; groups errors into issues
    store.timeline(correlation_id)             # everything one request did, in order
    page = store.issues(status="unresolved")   # keyset pages: page.next_cursor
    store.set_issue_status(issue.id, "resolved", actor="ana")
    store.cleanup(older_than=timedelta(days=30))

Exceptions: :class:`StoreError` (a :class:`~faultlens.errors.FaultlensError`)
when the database fails or its schema is wrong;
:class:`~faultlens.errors.ValidationError` for invalid arguments (a bad cursor,
status or sort); :class:`~faultlens.errors.NotFoundError` for an unknown issue
in a change; :class:`~faultlens.errors.ConfigurationError` for a bad URL and
:class:`~faultlens.errors.MissingExtraError` when psycopg is missing.
``docs/storage.md`` describes the schema, sizing, retention and migrations.
"""

from faultlens.store._open import open
from faultlens.store._protocol import CleanupProgress, Store
from faultlens.store._types import (
    AuditEntry,
    Count,
    CountBy,
    Issue,
    IssueSort,
    IssueStatus,
    Page,
    StoredEvent,
    StoreError,
)

__all__ = [
    "AuditEntry",
    "CleanupProgress",
    "Count",
    "CountBy",
    "Issue",
    "IssueSort",
    "IssueStatus",
    "Page",
    "Store",
    "StoreError",
    "StoredEvent",
    "open",
]
