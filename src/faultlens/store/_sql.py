"""What the SQLite and PostgreSQL stores share: the write path, issue grouping, retention.

The backends differ in connections, transactions, bulk insertion and a few SQL
spellings; everything else is here (the reads in ``_queries``), written once, so
both stores behave the same and run the same test suite.  Shared SQL is written
with ``?`` placeholders (``?j`` for a JSON value); the PostgreSQL store translates
them.

Writing a batch (one short transaction per chunk of at most ``max_batch`` events):

1. each event is cleaned (``_sanitize``) and each error event fingerprinted, before
   the transaction starts;
2. the backend inserts the events ``ON CONFLICT (id) DO NOTHING`` and learns which
   ones are new;
3. the new error events are grouped by ``(tenant, fingerprint)`` and each group
   updates or creates its issue (:meth:`SQLStore._upsert_group`), in sorted key
   order so that concurrent PostgreSQL writers lock issues in the same order;
4. the new error events point at their issue.
"""

from __future__ import annotations

import hashlib
import math
import threading
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from faultlens._clock import get_clock
from faultlens._metrics import counters, report_once
from faultlens.errors import FaultlensError, NotFoundError, ValidationError
from faultlens.events import ERROR, Event
from faultlens.store._fingerprint import (
    GROUPING_ALGORITHMS,
    GROUPING_VERSION,
    event_title,
    fingerprint,
    remember_fingerprint,
    stack_grouping_json,
)
from faultlens.store._protocol import Alert, CleanupProgress, EventStats, RecoveryStats
from faultlens.store._queries import (
    ISSUE_SELECT,
    Cursor,
    Queries,
    issue_id_arg,
    optional_text,
    text_arg,
)
from faultlens.store._sanitize import Cleaned, clean_event, clean_payload, clip
from faultlens.store._types import (
    Issue,
    IssueStatus,
    StoreError,
    instant,
)
from faultlens.store._types import limit as limit_arg

if TYPE_CHECKING:
    from faultlens.analysis._patterns import Pattern

__all__ = ["SQLStore"]

_MAX_TITLE_CHARS: Final = 1024
_SYSTEM_ACTOR: Final = "faultlens"
_MERGE_HOPS: Final = 32
_SETTABLE_STATUSES: Final = frozenset({"unresolved", "resolved", "ignored"})


class Grouped:
    """How one error event is grouped: fingerprint, version, title and culprit.

    The title is made when first read: only the newest event of each issue in a
    batch gives the issue its title, so the others never pay for one (a title is
    redacted again, which is most of what grouping an event costs).
    """

    __slots__ = ("_event", "_title", "culprit", "fingerprint", "version")

    def __init__(
        self,
        fingerprint: str,
        version: int,
        title: str | None,
        culprit: str | None,
        event: Event | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        self.version = version
        self.culprit = culprit
        self._title = title
        self._event = event  # makes the title when none was given

    @property
    def title(self) -> str:
        title = self._title
        if title is None:
            event = self._event
            if event is None:  # never: either a title or the event is given
                return ""
            title = self._title = _title_of(event)
        return title


def _title_of(event: Event) -> str:
    try:
        title = event_title(event)
    except Exception:  # never expected (the payload is cleaned): the name stands in
        counters.incr("store.fingerprint_failures")
        return event.name
    return clip(str(title), _MAX_TITLE_CHARS) if title else event.name


def group_event(event: Event) -> Grouped:
    """Fingerprint a cleaned error event; a failure falls back to grouping by name."""
    try:
        if event.kind != ERROR:
            raise ValueError("not grouped")
        # A cleaned payload holds JSON types only and is never changed: the part of
        # the grouping made from the stack is memoised, by identity first.
        digest, culprit = stack_grouping_json(event, frozen=True)
        if not digest:
            raise ValueError("empty fingerprint")
        value = clip(str(digest), 256)
        # The pattern monitor observes this event right after the write: it reuses this.
        remember_fingerprint(event.id, value)
        return Grouped(
            value,
            GROUPING_VERSION,
            None,
            None if culprit is None else clip(str(culprit), _MAX_TITLE_CHARS),
            event,
        )
    except Exception as exc:  # grouping must never lose the event
        counters.incr("store.fingerprint_failures")
        report_once(
            "store.fingerprint",
            f"fingerprinting an error event failed ({type(exc).__name__}); such events are "
            "grouped by kind and name, counted in faultlens.stats()['store.fingerprint_failures']",
        )
        fallback = hashlib.sha256(f"{event.kind}\x1f{event.name}".encode()).hexdigest()[:40]
        return Grouped(fallback, 0, event.name, None)


def legacy_versions(current: int) -> list[int]:
    """Grouping versions older than ``current``, newest first."""
    return sorted((v for v in GROUPING_ALGORITHMS if v < current), reverse=True)


def legacy_fingerprint(event: Event, version: int) -> str | None:
    """``event``'s fingerprint under an older grouping version, or None."""
    try:
        result = fingerprint(event, version=version)
    except Exception:
        counters.incr("store.fingerprint_failures")
        return None
    return None if result is None else clip(str(result.fingerprint), 256)


class _Group:
    """New error events of one (tenant, fingerprint) in one batch."""

    __slots__ = ("events", "first", "grouped", "last", "latest", "sessions", "tenant_id", "users")

    def __init__(self, tenant_id: str | None, cleaned: Cleaned, grouped: Grouped) -> None:
        self.tenant_id = tenant_id
        self.grouped = grouped
        self.latest = cleaned
        self.first = self.last = cleaned.event.timestamp
        self.events: list[Cleaned] = []
        self.users: set[str] = set()
        self.sessions: set[str] = set()

    def add(self, cleaned: Cleaned, grouped: Grouped) -> None:
        self.events.append(cleaned)
        timestamp = cleaned.event.timestamp
        if timestamp >= self.last:
            self.last = timestamp
            self.latest = cleaned
            self.grouped = grouped  # the newest event's title and culprit win
        self.first = min(self.first, timestamp)
        if cleaned.event.user_id:
            self.users.add(cleaned.event.user_id)
        if cleaned.session_id:
            self.sessions.add(cleaned.session_id)


# --- cursors ----------------------------------------------------------------------------


class SQLStore(Queries):
    """The store logic shared by the SQLite and PostgreSQL backends."""

    backend: Literal["sqlite", "postgres"]
    _db_errors: tuple[type[BaseException], ...] = ()
    _for_update: str = ""
    _max_batch: int = 500

    def __init__(self, *, url: str, shown: str, auto_migrate: bool) -> None:
        self.url = url
        self._shown = shown
        self._auto_migrate = auto_migrate
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._closed = False

    # -- backend hooks -----------------------------------------------------------------

    @abstractmethod
    def _write(self) -> AbstractContextManager[Cursor]:
        """A cursor in a write transaction, committed on success (serialised writers)."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]:
        """A cursor for reading."""

    @abstractmethod
    def _sql(self, text: str) -> str:
        """Shared SQL (``?`` placeholders, ``?j`` for JSON) in the backend's spelling."""

    @abstractmethod
    def _load_json(self, value: Any) -> Any:
        """A JSON column value as read from the driver, as Python."""

    @abstractmethod
    def _write_chunk(self, cur: Cursor, chunk: list[Cleaned], groups: dict[str, Grouped]) -> int:
        """Insert ``chunk``, group its new error events (``_upsert_issues``); return new rows."""

    @abstractmethod
    def _add_members(self, cur: Cursor, table: str, issue_id: int, values: Iterable[str]) -> int:
        """Insert (issue_id, value) rows into issue_users/issue_sessions; return rows added."""

    @abstractmethod
    def _bucket_sql(self) -> str:
        """SQL of the bucket number of ``timestamp`` for one ``?`` bucket size."""

    @abstractmethod
    def _apply_migrations(self) -> list[int]:
        """Apply pending migrations under the backend's lock; return versions applied."""

    @abstractmethod
    def _schema_is_current(self) -> bool:
        """True when every known migration is applied (a read-only check)."""

    @abstractmethod
    def _release(self) -> None:
        """Close connections."""

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Translate driver errors into StoreError; make sure the schema exists first."""
        if self._closed:
            raise StoreError(f"{what}: the store {self._shown} is closed; open a new one")
        try:
            if not self._schema_ready:
                self._ensure_schema()
            yield
        except FaultlensError:
            raise
        except self._db_errors as exc:
            raise self._failure(what, exc) from exc

    def _failure(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"{what} failed on the {self.backend} store {self._shown}: "
            f"{type(exc).__name__}: {str(exc).strip()[:500]}{self._hint(exc)}"
        )

    def _hint(self, exc: BaseException) -> str:
        return ""

    def _ensure_schema(self) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            if self._auto_migrate:
                if not self._schema_is_current():
                    self._apply_migrations()
            elif not self._schema_is_current():
                raise StoreError(
                    f"the {self.backend} store {self._shown} needs schema migrations: run "
                    "`faultlens migrate --store URL` (or open it with migrate=True)"
                )
            self._schema_ready = True

    def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied (often none)."""
        if self._closed:
            raise StoreError(f"migrate: the store {self._shown} is closed; open a new one")
        try:
            with self._schema_lock:
                applied = self._apply_migrations()
                self._schema_ready = True
                return applied
        except FaultlensError:
            raise
        except self._db_errors as exc:
            raise self._failure("migrating", exc) from exc

    def close(self) -> None:
        """Release connections; idempotent.  A closed store raises on use."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._shown}>"

    # -- writing -----------------------------------------------------------------------

    def write_events(self, events: Sequence[Event]) -> int:
        """Store ``events``; return how many were new (see the protocol)."""
        if isinstance(events, Event):
            raise ValidationError("write_events takes a sequence of events, not one event")
        batch: list[Cleaned] = []
        seen: set[str] = set()
        for event in events:
            if not isinstance(event, Event):
                raise ValidationError(
                    f"write_events takes faultlens.events.Event objects, not {type(event)!r}"
                )
            cleaned = clean_event(event)
            if cleaned.event.id in seen:
                continue
            seen.add(cleaned.event.id)
            batch.append(cleaned)
        if not batch:
            return 0
        written = 0
        with self._guard("writing events"):
            for start in range(0, len(batch), self._max_batch):
                chunk = batch[start : start + self._max_batch]
                groups = {c.event.id: group_event(c.event) for c in chunk if c.event.kind == ERROR}
                with self._write() as cur:
                    written += self._write_chunk(cur, chunk, groups)
        return written

    def _upsert_issues(
        self, cur: Cursor, new_errors: Iterable[tuple[Cleaned, Grouped]]
    ) -> dict[str, int]:
        """Group new error events into issues; return ``{event id: issue id}``."""
        groups: dict[tuple[str, str], _Group] = {}
        for cleaned, grouped in new_errors:
            key = (cleaned.event.tenant_id or "", grouped.fingerprint)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(cleaned.event.tenant_id, cleaned, grouped)
            group.add(cleaned, grouped)
        assignments: dict[str, int] = {}
        if not groups:
            return assignments
        now = get_clock().time()
        for key in sorted(groups):  # one lock order for every writer
            group = groups[key]
            issue_id = self._upsert_group(cur, key[0], group, now)
            for cleaned in group.events:
                assignments[cleaned.event.id] = issue_id
        return assignments

    def _upsert_group(self, cur: Cursor, tenant_key: str, group: _Group, now: float) -> int:
        fingerprint = group.grouped.fingerprint
        while True:
            cur.execute(
                self._sql(
                    "SELECT issue_id FROM issue_fingerprints "
                    "WHERE tenant_key = ? AND fingerprint = ?"
                ),
                (tenant_key, fingerprint),
            )
            row = cur.fetchone()
            if row is not None:
                issue = self._locked_issue(cur, int(row[0]))
                if issue is not None:
                    self._update_issue(cur, issue, group, now)
                    return issue.id
                counters.incr("store.dangling_fingerprints")  # never expected: repoint it
                cur.execute(
                    self._sql(
                        "DELETE FROM issue_fingerprints WHERE tenant_key = ? AND fingerprint = ?"
                    ),
                    (tenant_key, fingerprint),
                )
            legacy = self._legacy_issue(cur, tenant_key, group, now)
            if legacy is not None:
                return legacy
            created = self._create_issue(cur, tenant_key, group, now)
            if created is not None:
                return created
            # Another writer created this issue concurrently and won: update theirs.

    def _legacy_issue(self, cur: Cursor, tenant_key: str, group: _Group, now: float) -> int | None:
        """The issue an older grouping version gave this group, now answering to the new one.

        When the default grouping algorithm changes, existing issues keep receiving
        their events: the newest event is fingerprinted under every older version,
        and a match adds the new fingerprint to that issue.
        """
        for version in legacy_versions(group.grouped.version):
            old = legacy_fingerprint(group.latest.event, version)
            if old is None:
                continue
            cur.execute(
                self._sql(
                    "SELECT issue_id FROM issue_fingerprints "
                    "WHERE tenant_key = ? AND fingerprint = ?"
                ),
                (tenant_key, old),
            )
            row = cur.fetchone()
            issue = None if row is None else self._locked_issue(cur, int(row[0]))
            if issue is None:
                continue
            cur.execute(
                self._sql(
                    "INSERT INTO issue_fingerprints (tenant_key, fingerprint, issue_id, "
                    "grouping_version, created_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (tenant_key, fingerprint) DO NOTHING"
                ),
                (tenant_key, group.grouped.fingerprint, issue.id, group.grouped.version, now),
            )
            self._update_issue(cur, issue, group, now)
            return issue.id
        return None

    def _locked_issue(self, cur: Cursor, issue_id: int) -> Issue | None:
        """The issue (following merges), locked for update on PostgreSQL."""
        for _ in range(_MERGE_HOPS):
            cur.execute(
                self._sql(f"SELECT {ISSUE_SELECT} FROM issues WHERE id = ?{self._for_update}"),
                (issue_id,),
            )
            row = cur.fetchone()
            if row is None:
                return None
            issue = self._issue_row(row)
            if issue.status != "merged" or issue.merged_into is None:
                return issue
            issue_id = issue.merged_into
        raise StoreError(f"issue merges form a chain longer than {_MERGE_HOPS} hops or a cycle")

    def _create_issue(self, cur: Cursor, tenant_key: str, group: _Group, now: float) -> int | None:
        grouped = group.grouped
        latest = group.latest
        cur.execute(
            self._sql(
                "INSERT INTO issues (fingerprint, grouping_version, tenant_id, title, culprit, "
                "category, layer, severity, status, first_seen, last_seen, event_count, "
                "user_count, session_count, regressed, last_event_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'unresolved', ?, ?, ?, ?, ?, ?, ?) RETURNING id"
            ),
            (
                grouped.fingerprint,
                grouped.version,
                group.tenant_id,
                grouped.title,
                grouped.culprit,
                latest.category,
                latest.layer,
                latest.severity,
                group.first,
                group.last,
                len(group.events),
                len(group.users),
                len(group.sessions),
                False,
                latest.event.id,
            ),
        )
        issue_id = int(cur.fetchone()[0])
        cur.execute(
            self._sql(
                "INSERT INTO issue_fingerprints (tenant_key, fingerprint, issue_id, "
                "grouping_version, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant_key, fingerprint) DO NOTHING"
            ),
            (tenant_key, grouped.fingerprint, issue_id, grouped.version, now),
        )
        if cur.rowcount != 1:
            cur.execute(self._sql("DELETE FROM issues WHERE id = ?"), (issue_id,))
            return None
        if group.users:
            self._add_members(cur, "issue_users", issue_id, group.users)
        if group.sessions:
            self._add_members(cur, "issue_sessions", issue_id, group.sessions)
        return issue_id

    def _update_issue(self, cur: Cursor, issue: Issue, group: _Group, now: float) -> None:
        first, last = group.first, group.last
        users = self._add_members(cur, "issue_users", issue.id, group.users) if group.users else 0
        sessions = (
            self._add_members(cur, "issue_sessions", issue.id, group.sessions)
            if group.sessions
            else 0
        )
        status: str = issue.status
        regressed = issue.regressed
        regressed_at = issue.regressed_at
        resolved_at = issue.resolved_at
        if status == "resolved":
            since = resolved_at if resolved_at is not None else -math.inf
            # Events from before the resolution (a late replay) do not regress it.
            after = [c for c in group.events if c.event.timestamp > since]
            if after:
                trigger = min(after, key=lambda c: c.event.timestamp)
                status, regressed, regressed_at = "unresolved", True, trigger.event.timestamp
                self._audit(
                    cur,
                    actor=_SYSTEM_ACTOR,
                    action="issue.regressed",
                    target=f"issue:{issue.id}",
                    tenant_id=issue.tenant_id,
                    details={
                        "event_id": trigger.event.id,
                        "resolved_at": resolved_at,
                        "regressed_at": regressed_at,
                    },
                    timestamp=now,
                )
        latest = group.latest
        newest = last >= issue.last_seen
        grouped = group.grouped
        cur.execute(
            self._sql(
                "UPDATE issues SET event_count = event_count + ?, user_count = user_count + ?, "
                "session_count = session_count + ?, first_seen = ?, last_seen = ?, "
                "title = ?, culprit = ?, category = ?, layer = ?, severity = ?, "
                "grouping_version = ?, last_event_id = ?, status = ?, regressed = ?, "
                "regressed_at = ? WHERE id = ?"
            ),
            (
                len(group.events),
                users,
                sessions,
                min(first, issue.first_seen),
                max(last, issue.last_seen),
                grouped.title if newest else issue.title,
                grouped.culprit if newest else issue.culprit,
                (latest.category if newest else issue.category),
                (latest.layer if newest else issue.layer),
                (latest.severity if newest else issue.severity),
                grouped.version if newest else issue.grouping_version,
                latest.event.id if newest else issue.last_event_id,
                status,
                regressed,
                regressed_at,
                issue.id,
            ),
        )

    def _audit(
        self,
        cur: Cursor,
        *,
        actor: str,
        action: str,
        target: str,
        tenant_id: str | None,
        details: Mapping[str, Any] | None,
        timestamp: float,
    ) -> int:
        _, details_json = clean_payload(details or {})
        cur.execute(
            self._sql(
                "INSERT INTO audit_log (timestamp, actor, action, target, tenant_id, details) "
                "VALUES (?, ?, ?, ?, ?, ?j) RETURNING id"
            ),
            (timestamp, actor, action, target, tenant_id, details_json),
        )
        return int(cur.fetchone()[0])

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
        actor = text_arg(actor, "actor")
        action = text_arg(action, "action")
        target = text_arg(target, "target")
        tenant_id = optional_text(tenant_id, "tenant_id")
        if details is not None and not isinstance(details, Mapping):
            raise ValidationError("details must be a mapping or None", field="details")
        with self._guard("appending to the audit log"), self._write() as cur:
            return self._audit(
                cur,
                actor=actor,
                action=action,
                target=target,
                tenant_id=tenant_id,
                details=details,
                timestamp=get_clock().time(),
            )

    def set_issue_status(
        self, issue_id: int, status: IssueStatus, *, actor: str, reason: str | None = None
    ) -> Issue:
        """Set an issue ``unresolved``, ``resolved`` or ``ignored``; audited; return it."""
        issue_id = issue_id_arg(issue_id)
        if status not in _SETTABLE_STATUSES:
            raise ValidationError(
                f"status must be one of {sorted(_SETTABLE_STATUSES)}, not {status!r} "
                "(merge issues with merge_issues)",
                field="status",
            )
        actor = text_arg(actor, "actor")
        reason = optional_text(reason, "reason")
        with self._guard("changing an issue's status"), self._write() as cur:
            cur.execute(
                self._sql(f"SELECT {ISSUE_SELECT} FROM issues WHERE id = ?{self._for_update}"),
                (issue_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise NotFoundError(f"no issue {issue_id} in this store")
            issue = self._issue_row(row)
            if issue.status == "merged":
                raise ValidationError(
                    f"issue {issue_id} was merged into issue {issue.merged_into}: "
                    "change that one instead",
                    field="issue_id",
                )
            now = get_clock().time()
            resolved_at = now if status == "resolved" else issue.resolved_at
            cur.execute(
                self._sql(
                    "UPDATE issues SET status = ?, resolved_at = ?, regressed = ? WHERE id = ?"
                ),
                (status, resolved_at, False, issue_id),
            )
            self._audit(
                cur,
                actor=actor,
                action="issue.status",
                target=f"issue:{issue_id}",
                tenant_id=issue.tenant_id,
                details={"from": issue.status, "to": status, "reason": reason},
                timestamp=now,
            )
            cur.execute(self._sql(f"SELECT {ISSUE_SELECT} FROM issues WHERE id = ?"), (issue_id,))
            return self._issue_row(cur.fetchone())

    def merge_issues(
        self, target: int, source: int, *, actor: str, reason: str | None = None
    ) -> Issue:
        """Merge ``source`` into ``target`` (same tenant); audited; return the target."""
        target = issue_id_arg(target, "target")
        source = issue_id_arg(source, "source")
        if target == source:
            raise ValidationError("cannot merge an issue into itself", field="source")
        actor = text_arg(actor, "actor")
        reason = optional_text(reason, "reason")
        with self._guard("merging issues"), self._write() as cur:
            found: dict[int, Issue] = {}
            for issue_id in sorted((target, source)):  # one lock order
                cur.execute(
                    self._sql(f"SELECT {ISSUE_SELECT} FROM issues WHERE id = ?{self._for_update}"),
                    (issue_id,),
                )
                row = cur.fetchone()
                if row is None:
                    raise NotFoundError(f"no issue {issue_id} in this store")
                found[issue_id] = self._issue_row(row)
            into, merged = found[target], found[source]
            for issue in (into, merged):
                if issue.status == "merged":
                    raise ValidationError(
                        f"issue {issue.id} was already merged into issue {issue.merged_into}",
                        field="source" if issue is merged else "target",
                    )
            if into.tenant_id != merged.tenant_id:
                raise ValidationError(
                    "issues of different tenants cannot be merged", field="source"
                )
            params = (target, source)
            cur.execute(self._sql("UPDATE events SET issue_id = ? WHERE issue_id = ?"), params)
            moved = cur.rowcount
            cur.execute(
                self._sql("UPDATE issue_fingerprints SET issue_id = ? WHERE issue_id = ?"), params
            )
            cur.execute(
                self._sql("UPDATE issues SET merged_into = ? WHERE merged_into = ?"), params
            )
            for table, column in (("issue_users", "user_id"), ("issue_sessions", "session_id")):
                cur.execute(
                    self._sql(
                        f"INSERT INTO {table} (issue_id, {column}) SELECT ?, {column} "
                        f"FROM {table} WHERE issue_id = ? ON CONFLICT DO NOTHING"
                    ),
                    params,
                )
            newest = merged.last_seen > into.last_seen
            cur.execute(
                self._sql(
                    "UPDATE issues SET event_count = event_count + ?, "
                    "first_seen = ?, last_seen = ?, last_event_id = ?, "
                    "user_count = (SELECT COUNT(*) FROM issue_users WHERE issue_id = ?), "
                    "session_count = (SELECT COUNT(*) FROM issue_sessions WHERE issue_id = ?) "
                    "WHERE id = ?"
                ),
                (
                    merged.count,
                    min(into.first_seen, merged.first_seen),
                    max(into.last_seen, merged.last_seen),
                    merged.last_event_id if newest else into.last_event_id,
                    target,
                    target,
                    target,
                ),
            )
            cur.execute(
                self._sql("UPDATE issues SET status = 'merged', merged_into = ? WHERE id = ?"),
                params,
            )
            now = get_clock().time()
            details = {
                "source": source,
                "target": target,
                "events_moved": moved,
                "source_count": merged.count,
                "reason": reason,
            }
            for name in (f"issue:{target}", f"issue:{source}"):
                self._audit(
                    cur,
                    actor=actor,
                    action="issue.merged",
                    target=name,
                    tenant_id=into.tenant_id,
                    details=details,
                    timestamp=now,
                )
            cur.execute(self._sql(f"SELECT {ISSUE_SELECT} FROM issues WHERE id = ?"), (target,))
            return self._issue_row(cur.fetchone())

    # -- alerts and the reads insights need (used by faultlens.analysis) -----------------

    _ALERT_COLUMNS: Final = "id, rule, status, severity, tenant_id, fired_at, resolved_at, details"
    # How far back the first failed attempt of a retried call is looked for.
    _RECOVERY_HORIZON: Final = 3600.0

    @abstractmethod
    def _json_text_sql(self, column: str, *path: str) -> str:
        """SQL of the value at ``path`` in the JSON ``column`` as text (NULL when absent)."""

    @abstractmethod
    def _json_number_sql(self, column: str, *path: str) -> str:
        """SQL of the number at ``path`` in the JSON ``column`` (NULL when absent or not one)."""

    def save_alert(self, alert: Alert) -> None:
        """Insert ``alert``, or update the stored one with its id (status, resolution, details)."""
        if not isinstance(alert, Alert):
            raise ValidationError(
                f"save_alert takes a faultlens.store Alert, not {type(alert).__name__}"
            )
        if alert.status not in ("firing", "resolved"):
            raise ValidationError(
                f"alert status must be 'firing' or 'resolved', not {alert.status!r}",
                field="status",
            )
        if not isinstance(alert.details, Mapping):
            raise ValidationError("alert details must be a mapping", field="details")
        fired_at = instant(alert.fired_at, "fired_at")
        row = (
            text_arg(alert.id, "id", 200),
            text_arg(alert.rule, "rule", 200),
            alert.status,
            text_arg(alert.severity, "severity", 64),
            optional_text(alert.tenant_id, "tenant_id"),
            fired_at,
            instant(alert.resolved_at, "resolved_at"),
            clean_payload(alert.details)[1],
        )
        sql = self._sql(
            f"INSERT INTO alerts ({self._ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?j) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
            "severity = excluded.severity, resolved_at = excluded.resolved_at, "
            "details = excluded.details"
        )
        with self._guard("saving an alert"), self._write() as cur:
            cur.execute(sql, row)

    def alerts(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        since: float | datetime | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts, the most recently fired first (see the protocol for ``since``)."""
        size = limit_arg(limit, "limit")
        sql = f"SELECT {self._ALERT_COLUMNS} FROM alerts WHERE 1 = 1"
        params: list[Any] = []
        if status is not None:
            if status not in ("firing", "resolved"):
                raise ValidationError(
                    f"status must be 'firing', 'resolved' or None, not {status!r}",
                    field="status",
                )
            sql += " AND status = ?"
            params.append(status)
        if optional_text(rule, "rule") is not None:
            sql += " AND rule = ?"
            params.append(rule)
        start = instant(since, "since")
        if start is not None:
            sql += " AND (fired_at >= ? OR resolved_at IS NULL OR resolved_at >= ?)"
            params.extend((start, start))
        sql += " ORDER BY fired_at DESC, id DESC LIMIT ?"
        params.append(size)
        with self._guard("listing alerts"), self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        out: list[Alert] = []
        for row in rows:
            details = self._load_json(row[7])
            out.append(
                Alert(
                    id=row[0],
                    rule=row[1],
                    status=row[2],
                    severity=row[3],
                    tenant_id=row[4],
                    fired_at=float(row[5]),
                    resolved_at=None if row[6] is None else float(row[6]),
                    details=details if isinstance(details, dict) else {},
                )
            )
        return out

    @staticmethod
    def _span(
        since: float | datetime,
        until: float | datetime | None,
        tenant_id: str | None,
        table: str = "",
    ) -> tuple[float, float, str, list[Any]]:
        """``(start, end, where, params)`` of a time window of events (and a tenant)."""
        start = instant(since, "since")
        if start is None:
            raise ValidationError("since is required", field="since")
        end = instant(until, "until")
        if end is None:
            end = get_clock().time()
        where = f"{table}timestamp >= ? AND {table}timestamp < ?"
        params: list[Any] = [start, end]
        if optional_text(tenant_id, "tenant_id") is not None:
            where += f" AND {table}tenant_id = ?"
            params.append(tenant_id)
        return start, end, where, params

    def event_stats(
        self,
        *,
        since: float | datetime,
        until: float | datetime | None = None,
        tenant_id: str | None = None,
    ) -> EventStats:
        """Counts of the events in ``[since, until)``; see :class:`EventStats`."""
        start, end, where, base = self._span(since, until, tenant_id)
        text = self._json_text_sql
        severity = (
            f"COALESCE({text('payload', 'classification', 'severity')}, "
            f"{text('payload', 'severity')}, 'unknown')"
        )
        events: dict[str, int] = {}
        carried: dict[str, int] = {}
        by_severity: dict[str, int] = {}
        latest: dict[str, str] = {}
        operations = users = sessions = tenants = 0
        with self._guard("summarising events"):
            kinds = self._kinds() if end > start else []
            with self._read() as cur:
                for kind in kinds:  # one index range per kind
                    cur.execute(
                        self._sql(
                            "SELECT COUNT(*), COUNT(correlation_id) FROM events "
                            f"WHERE kind = ? AND {where}"
                        ),
                        [kind, *base],
                    )
                    total, with_id = cur.fetchone()
                    if total:
                        events[kind] = int(total)
                        carried[kind] = int(with_id)
                if events.get("operation"):
                    cur.execute(
                        self._sql(
                            "SELECT COUNT(*) FROM events WHERE kind = 'operation' "
                            f"AND {where} AND {text('payload', 'phase')} = 'end'"
                        ),
                        base,
                    )
                    operations = int(cur.fetchone()[0])
                if events.get(ERROR):
                    cur.execute(
                        self._sql(
                            f"SELECT {severity}, COUNT(*) FROM events "
                            f"WHERE kind = 'error' AND {where} GROUP BY 1"
                        ),
                        base,
                    )
                    by_severity = {str(row[0]): int(row[1]) for row in cur.fetchall()}
                    cur.execute(
                        self._sql(
                            "SELECT COUNT(DISTINCT user_id), COUNT(DISTINCT tenant_id), "
                            f"COUNT(DISTINCT {text('payload', 'context', 'session_id')}) "
                            f"FROM events WHERE kind = 'error' AND {where}"
                        ),
                        base,
                    )
                    users, tenants, sessions = (int(v) for v in cur.fetchone())
                    for level in sorted(by_severity):
                        cur.execute(
                            self._sql(
                                f"SELECT correlation_id FROM events WHERE kind = 'error' "
                                f"AND {where} AND correlation_id IS NOT NULL "
                                f"AND {severity} = ? ORDER BY timestamp DESC LIMIT 1"
                            ),
                            [*base, level],
                        )
                        row = cur.fetchone()
                        if row is not None:
                            latest[level] = row[0]
        return EventStats(
            since=start,
            until=end,
            events=events,
            with_correlation=carried,
            operations_ended=operations,
            errors_by_severity=by_severity,
            users=users,
            sessions=sessions,
            tenants=tenants,
            latest_correlation=latest,
        )

    def recovery_stats(
        self,
        *,
        since: float | datetime,
        until: float | datetime | None = None,
        tenant_id: str | None = None,
    ) -> list[RecoveryStats]:
        """Recovery events in ``[since, until)`` per policy kind, name and outcome."""
        _, _, where, base = self._span(since, until, tenant_id, "e.")
        text, number = self._json_text_sql, self._json_number_sql
        outcome, r_outcome = text("e.payload", "outcome"), text("r.payload", "outcome")
        duration, r_duration = (
            number("e.payload", "duration_ms"),
            number("r.payload", "duration_ms"),
        )
        # Time to recover: a retried call's success minus the start of its first
        # failed attempt (the newest attempt-1 failure of the same correlation and
        # policy before it); a fallback's or a strategy's own duration.
        sql = (
            "SELECT policy, name, outcome, COUNT(*), SUM(attempt), SUM(ttr), COUNT(ttr) FROM ("
            f" SELECT COALESCE({text('e.payload', 'policy')}, '') AS policy, e.name AS name,"
            f" COALESCE({outcome}, '') AS outcome,"
            f" COALESCE({number('e.payload', 'attempt')}, 0) AS attempt,"
            " CASE"
            f"  WHEN {outcome} IN ('fell_back', 'recovered')"
            f"   THEN COALESCE({duration}, 0) / 1000.0"
            f"  WHEN {outcome} = 'succeeded_after_retry' AND e.correlation_id IS NOT NULL"
            "   THEN e.timestamp - ("
            f"    SELECT r.timestamp - COALESCE({r_duration}, 0) / 1000.0 FROM events r"
            "    WHERE r.correlation_id = e.correlation_id AND r.kind = 'recovery'"
            "     AND r.name = e.name AND r.timestamp <= e.timestamp"
            "     AND r.timestamp >= e.timestamp - ?"
            f"     AND {r_outcome} = 'retrying' AND {number('r.payload', 'attempt')} = 1"
            "    ORDER BY r.timestamp DESC LIMIT 1)"
            " END AS ttr"
            f" FROM events e WHERE e.kind = 'recovery' AND {where}"
            ") t GROUP BY policy, name, outcome ORDER BY policy, name, outcome"
        )
        with self._guard("summarising recovery events"), self._read() as cur:
            cur.execute(self._sql(sql), [self._RECOVERY_HORIZON, *base])
            rows = cur.fetchall()
        return [
            RecoveryStats(
                policy=str(row[0]),
                name=str(row[1]),
                outcome=str(row[2]),
                events=int(row[3]),
                attempts=int(row[4] or 0),
                recover_seconds=float(row[5] or 0.0),
                recover_count=int(row[6]),
            )
            for row in rows
        ]

    # -- retention (see _retention.py for the algorithm) --------------------------------

    def cleanup(
        self,
        *,
        older_than: float | timedelta | None = None,
        max_rows_per_kind: int | None = None,
        batch_size: int = 1000,
        progress: CleanupProgress | None = None,
    ) -> dict[str, int]:
        """Delete old events in short batches; return how many went, per kind."""
        from faultlens.store._retention import run_cleanup

        with self._guard("cleaning up"):
            return run_cleanup(
                self,
                older_than=older_than,
                max_rows_per_kind=max_rows_per_kind,
                batch_size=batch_size,
                progress=progress,
            )

    _delete_batch_sql: str = (
        "DELETE FROM events WHERE id IN "
        "(SELECT id FROM events WHERE kind = ? AND timestamp < ? LIMIT ?)"
    )

    def _kinds(self) -> list[str]:
        """The distinct event kinds, by a loose index scan (one probe per kind)."""
        with self._read() as cur:
            cur.execute(
                self._sql(
                    "WITH RECURSIVE k(kind) AS ("
                    " SELECT MIN(kind) FROM events"
                    " UNION ALL"
                    " SELECT (SELECT MIN(kind) FROM events WHERE kind > k.kind) FROM k"
                    " WHERE k.kind IS NOT NULL"
                    ") SELECT kind FROM k WHERE kind IS NOT NULL"
                )
            )
            return [row[0] for row in cur.fetchall()]

    def _count_older(self, kind: str, threshold: float) -> int:
        with self._read() as cur:
            cur.execute(
                self._sql("SELECT COUNT(*) FROM events WHERE kind = ? AND timestamp < ?"),
                (kind, threshold),
            )
            return int(cur.fetchone()[0])

    def _nth_newest(self, kind: str, n: int) -> float | None:
        """The timestamp of the ``n``-th newest event of ``kind`` (1-based), or None."""
        with self._read() as cur:
            cur.execute(
                self._sql(
                    "SELECT timestamp FROM events WHERE kind = ? "
                    "ORDER BY timestamp DESC LIMIT 1 OFFSET ?"
                ),
                (kind, n - 1),
            )
            row = cur.fetchone()
            return None if row is None else float(row[0])

    def _delete_batch(self, kind: str, threshold: float, size: int) -> int:
        with self._write() as cur:
            cur.execute(self._sql(self._delete_batch_sql), (kind, threshold, size))
            return int(cur.rowcount)

    # -- patterns (written by faultlens.analysis) ---------------------------------------
    # suggested_actions and ended_at live in the details JSON under those two keys.

    _PATTERN_COLUMNS: Final = (
        "id, type, status, tenant_id, first_occurrence, last_occurrence, occurrences, "
        "layers, fingerprints, confidence, details"
    )

    def save_patterns(self, patterns: Iterable[Pattern]) -> int:
        """Insert or update ``patterns`` by id (the latest snapshot wins); return how many."""
        from faultlens.analysis._patterns import Pattern

        rows: list[tuple[Any, ...]] = []
        for pattern in patterns:
            if not isinstance(pattern, Pattern):
                raise ValidationError(
                    "save_patterns takes faultlens.analysis.Pattern objects, "
                    f"not {type(pattern).__name__}"
                )
            details = dict(pattern.details)
            details["suggested_actions"] = list(pattern.suggested_actions)
            details["ended_at"] = pattern.ended_at
            _, details_json = clean_payload(details)
            layers_json = orjson.dumps([clip(str(x), 200) for x in pattern.layers[:64]])
            prints_json = orjson.dumps([clip(str(x), 200) for x in pattern.fingerprints[:64]])
            rows.append(
                (
                    clip(pattern.id, 200),
                    pattern.type.value,
                    pattern.status.value,
                    pattern.tenant_id,
                    float(pattern.first_occurrence),
                    float(pattern.last_occurrence),
                    int(pattern.occurrences),
                    layers_json.decode(),
                    prints_json.decode(),
                    float(pattern.confidence),
                    details_json,
                )
            )
        if not rows:
            return 0
        rows.sort(key=lambda r: r[0])  # concurrent writers lock rows in one order
        sql = self._sql(
            f"INSERT INTO patterns ({self._PATTERN_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?j, ?j, ?, ?j) ON CONFLICT (id) DO UPDATE SET "
            "type = excluded.type, status = excluded.status, tenant_id = excluded.tenant_id, "
            "first_occurrence = excluded.first_occurrence, "
            "last_occurrence = excluded.last_occurrence, occurrences = excluded.occurrences, "
            "layers = excluded.layers, fingerprints = excluded.fingerprints, "
            "confidence = excluded.confidence, details = excluded.details"
        )
        with self._guard("saving patterns"), self._write() as cur:
            cur.executemany(sql, rows)
        return len(rows)

    def patterns(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        since: float | datetime | None = None,
        limit: int = 100,
        tenant_id: str | None = None,
    ) -> list[Pattern]:
        """Stored patterns, the most recent ``last_occurrence`` first (ties by id)."""
        from faultlens.analysis._patterns import Pattern, PatternStatus, PatternType

        size = limit_arg(limit, "limit")
        sql = f"SELECT {self._PATTERN_COLUMNS} FROM patterns WHERE 1 = 1"
        params: list[Any] = []
        for name, value, allowed in (
            ("status", status, PatternStatus),
            ("type", type, PatternType),
        ):
            if value is None:
                continue
            if value not in {m.value for m in allowed}:
                raise ValidationError(
                    f"{name} must be one of {sorted(m.value for m in allowed)} or None, "
                    f"not {value!r}",
                    field=name,
                )
            sql += f" AND {name} = ?"
            params.append(str(value))
        start = instant(since, "since")
        if start is not None:
            sql += " AND last_occurrence >= ?"
            params.append(start)
        if optional_text(tenant_id, "tenant_id") is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        sql += " ORDER BY last_occurrence DESC, id DESC LIMIT ?"
        params.append(size)
        with self._guard("listing patterns"), self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        out: list[Pattern] = []
        for row in rows:
            details = self._load_json(row[10])
            details = dict(details) if isinstance(details, dict) else {}
            layers, prints = self._load_json(row[7]), self._load_json(row[8])
            try:
                out.append(
                    Pattern.from_dict(
                        {
                            "id": row[0],
                            "type": row[1],
                            "status": row[2],
                            "tenant_id": row[3],
                            "first_occurrence": row[4],
                            "last_occurrence": row[5],
                            "occurrences": row[6],
                            "layers": layers if isinstance(layers, list) else [],
                            "fingerprints": prints if isinstance(prints, list) else [],
                            "confidence": row[9],
                            "suggested_actions": details.pop("suggested_actions", None) or [],
                            "ended_at": details.pop("ended_at", None),
                            "details": details,
                        }
                    )
                )
            except (KeyError, TypeError, ValueError):  # a row edited by hand
                counters.incr("store.unreadable_patterns")
        return out
