"""The read side of the SQL stores: timelines, issue listings, counts, the audit log.

Every listing reads an index range: ``timeline`` the ``(correlation_id, timestamp)``
index, ``issues`` ``(status, last_seen, id)`` / ``(last_seen, id)``, ``issue_events``
``(issue_id, timestamp, id)``, ``counts`` ``(kind, timestamp)``.  Pages are keyset
pages: a cursor is the last row's sort key and id, base64url JSON tagged with the
listing it belongs to, so a cursor of another listing (or a forged one) is refused.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import orjson

from faultlens._clock import get_clock
from faultlens.errors import ValidationError
from faultlens.events import Event
from faultlens.store._sanitize import clip
from faultlens.store._types import (
    ISSUE_STATUSES,
    AuditEntry,
    Count,
    CountBy,
    Issue,
    IssueSort,
    IssueStatus,
    Page,
    StoredEvent,
    instant,
    limit,
    seconds,
)

__all__ = ["Cursor", "Queries", "decode_cursor", "encode_cursor"]

EVENT_COLUMNS: Final = (
    "id, kind, name, timestamp, correlation_id, trace_id, span_id, tenant_id, user_id, "
    "issue_id, category, layer, payload"
)
_EVENT_SELECT: Final = (
    "id, kind, name, timestamp, correlation_id, trace_id, span_id, tenant_id, user_id, "
    "issue_id, payload"
)
ISSUE_SELECT: Final = (
    "id, fingerprint, grouping_version, tenant_id, title, culprit, category, layer, severity, "
    "status, first_seen, last_seen, event_count, user_count, session_count, regressed, "
    "regressed_at, resolved_at, merged_into, last_event_id"
)
_AUDIT_SELECT: Final = "id, timestamp, actor, action, target, tenant_id, details"
_SORT_COLUMNS: Final = {
    "last_seen": "last_seen",
    "count": "event_count",
    "first_seen": "first_seen",
}
_COUNT_KEYS: Final = {"category": "category", "layer": "layer", "issue": "issue_id"}
_MAX_BUCKETS: Final = 100_000
_MAX_ACTOR_CHARS: Final = 256


class Cursor(Protocol):
    """The DB-API cursor surface both drivers provide."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def encode_cursor(tag: str, *position: Any) -> str:
    """An opaque keyset position."""
    return base64.urlsafe_b64encode(orjson.dumps([tag, *position])).decode().rstrip("=")


def decode_cursor(cursor: str, tag: str, types: tuple[type, ...]) -> list[Any]:
    """The position in ``cursor``; a cursor of another listing or a forged one is refused."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, list) or len(data) != len(types) + 1 or data[0] != tag:
            raise ValueError
        position = data[1:]
        for value, kind in zip(position, types, strict=True):
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError
        return [float(v) if k is float else v for v, k in zip(position, types, strict=True)]
    except (ValueError, TypeError, UnicodeError, orjson.JSONDecodeError):
        raise ValidationError(
            "invalid cursor: pass the next_cursor of the previous page of the same listing",
            field="after",
        ) from None


def text_arg(value: object, name: str, maximum: int = _MAX_ACTOR_CHARS) -> str:
    """A required, non-blank string argument, cut to ``maximum`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string, not {value!r}", field=name)
    return clip(value, maximum)


def optional_text(value: object, name: str) -> str | None:
    """A string argument that may be None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string or None, not {value!r}", field=name)
    return value


def issue_id_arg(value: object, name: str = "issue_id") -> int:
    """An issue id argument: a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{name} must be a positive int, not {value!r}", field=name)
    return value


def _check_limit(value: int, maximum: int = 10_000) -> int:
    return limit(value, "limit", maximum)


class Queries(ABC):
    """The read methods of a SQL store; the backend supplies connections and SQL spelling."""

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
    def _bucket_sql(self) -> str:
        """SQL of the bucket number of ``timestamp`` for one ``?`` bucket size."""

    @abstractmethod
    def _guard(self, what: str) -> AbstractContextManager[None]:
        """Translate driver errors; make sure the schema exists first."""

    # -- reading -----------------------------------------------------------------------

    def _event_row(self, row: Sequence[Any]) -> StoredEvent:
        payload = self._load_json(row[10])
        event = Event(
            row[1],
            row[2],
            payload if isinstance(payload, dict) else {"value": payload},
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            float(row[3]),
            row[0],
        )
        return StoredEvent(event, None if row[9] is None else int(row[9]))

    @staticmethod
    def _issue_row(row: Sequence[Any]) -> Issue:
        return Issue(
            id=int(row[0]),
            fingerprint=row[1],
            grouping_version=int(row[2]),
            tenant_id=row[3],
            title=row[4],
            culprit=row[5],
            category=row[6],
            layer=row[7],
            severity=row[8],
            status=row[9],
            first_seen=float(row[10]),
            last_seen=float(row[11]),
            count=int(row[12]),
            users=int(row[13]),
            sessions=int(row[14]),
            regressed=bool(row[15]),
            regressed_at=None if row[16] is None else float(row[16]),
            resolved_at=None if row[17] is None else float(row[17]),
            merged_into=None if row[18] is None else int(row[18]),
            last_event_id=row[19],
        )

    def timeline(
        self, correlation_id: str, *, limit: int = 1000, tenant_id: str | None = None
    ) -> list[StoredEvent]:
        """Events of one correlation in time order (the first ``limit``)."""
        correlation_id = text_arg(correlation_id, "correlation_id", 10_000)
        size = _check_limit(limit)
        tenant_id = optional_text(tenant_id, "tenant_id")
        sql = f"SELECT {_EVENT_SELECT} FROM events WHERE correlation_id = ?"
        params: list[Any] = [correlation_id]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        sql += " ORDER BY timestamp, id LIMIT ?"
        params.append(size)
        with self._guard("reading a timeline"), self._read() as cur:
            cur.execute(self._sql(sql), params)
            return [self._event_row(row) for row in cur.fetchall()]

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
        """Issues, newest (or most frequent) first, one keyset page at a time."""
        column = _SORT_COLUMNS.get(sort) if isinstance(sort, str) else None
        if column is None:
            raise ValidationError(
                f"sort must be one of {sorted(_SORT_COLUMNS)}, not {sort!r}", field="sort"
            )
        size = _check_limit(limit, 1000)
        where: list[str] = []
        params: list[Any] = []
        if status is None:
            where.append("status <> 'merged'")
        else:
            statuses = [status] if isinstance(status, str) else list(status)
            if not statuses or any(s not in ISSUE_STATUSES for s in statuses):
                raise ValidationError(
                    f"status must be among {sorted(ISSUE_STATUSES)}, not {status!r}",
                    field="status",
                )
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        for name, value in (("category", category), ("layer", layer), ("tenant_id", tenant_id)):
            if optional_text(value, name) is not None:
                where.append(f"{name} = ?")
                params.append(value)
        start = instant(since, "since")
        if start is not None:
            where.append("last_seen >= ?")
            params.append(start)
        end = instant(until, "until")
        if end is not None:
            where.append("first_seen < ?")
            params.append(end)
        tag = f"issues:{sort}"
        if after is not None:
            value, last_id = decode_cursor(after, tag, (float, int))
            where.append(f"({column}, id) < (?, ?)")
            params.extend((value, last_id))
        sql = (
            f"SELECT {ISSUE_SELECT} FROM issues WHERE {' AND '.join(where)} "
            f"ORDER BY {column} DESC, id DESC LIMIT ?"
        )
        params.append(size + 1)
        with self._guard("listing issues"), self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        items = tuple(self._issue_row(row) for row in rows[:size])
        cursor = None
        if len(rows) > size:
            last = items[-1]
            key = {"last_seen": last.last_seen, "count": last.count, "first_seen": last.first_seen}
            cursor = encode_cursor(tag, key[sort], last.id)
        return Page(items, cursor)

    def issue(self, issue_id: int, *, tenant_id: str | None = None) -> Issue | None:
        """One issue (also a merged one), or None; with ``tenant_id``, only that tenant's."""
        issue_id = issue_id_arg(issue_id)
        tenant_id = optional_text(tenant_id, "tenant_id")
        with self._guard("reading an issue"), self._read() as cur:
            cur.execute(self._sql(f"SELECT {ISSUE_SELECT} FROM issues WHERE id = ?"), (issue_id,))
            row = cur.fetchone()
        if row is None:
            return None
        issue = self._issue_row(row)
        if tenant_id is not None and issue.tenant_id != tenant_id:
            return None
        return issue

    def issue_events(
        self,
        issue_id: int,
        *,
        limit: int = 50,
        after: str | None = None,
        tenant_id: str | None = None,
    ) -> Page[StoredEvent]:
        """Events grouped into an issue, newest first, one keyset page at a time."""
        issue_id = issue_id_arg(issue_id)
        size = _check_limit(limit, 1000)
        tenant_id = optional_text(tenant_id, "tenant_id")
        sql = f"SELECT {_EVENT_SELECT} FROM events WHERE issue_id = ?"
        params: list[Any] = [issue_id]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        if after is not None:
            timestamp, event_id = decode_cursor(after, f"events:{issue_id}", (float, str))
            sql += " AND (timestamp, id) < (?, ?)"
            params.extend((timestamp, event_id))
        sql += " ORDER BY timestamp DESC, id DESC LIMIT ?"
        params.append(size + 1)
        with self._guard("listing an issue's events"), self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        items = tuple(self._event_row(row) for row in rows[:size])
        cursor = None
        if len(rows) > size:
            last = items[-1].event
            cursor = encode_cursor(f"events:{issue_id}", last.timestamp, last.id)
        return Page(items, cursor)

    def audit_log(
        self,
        *,
        target: str | None = None,
        tenant_id: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[AuditEntry]:
        """Audit entries, newest first, optionally of one target (``"issue:42"``)."""
        size = _check_limit(limit, 1000)
        where = ["1 = 1"]
        params: list[Any] = []
        if optional_text(target, "target") is not None:
            where.append("target = ?")
            params.append(target)
        if optional_text(tenant_id, "tenant_id") is not None:
            where.append("tenant_id = ?")
            params.append(tenant_id)
        if after is not None:
            (last_id,) = decode_cursor(after, "audit", (int,))
            where.append("id < ?")
            params.append(last_id)
        sql = (
            f"SELECT {_AUDIT_SELECT} FROM audit_log WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT ?"
        )
        params.append(size + 1)
        with self._guard("reading the audit log"), self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        items = tuple(
            AuditEntry(
                id=int(row[0]),
                timestamp=float(row[1]),
                actor=row[2],
                action=row[3],
                target=row[4],
                tenant_id=row[5],
                details=self._load_json(row[6]),
            )
            for row in rows[:size]
        )
        cursor = encode_cursor("audit", items[-1].id) if len(rows) > size else None
        return Page(items, cursor)

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
        """Events of ``kind`` per time bucket and per category, layer or issue id."""
        bucket = seconds(bucket_seconds, "bucket_seconds")
        key_column = _COUNT_KEYS.get(by) if isinstance(by, str) else None
        if key_column is None:
            raise ValidationError(
                f"by must be one of {sorted(_COUNT_KEYS)}, not {by!r}", field="by"
            )
        start = instant(since, "since")
        if start is None:
            raise ValidationError("since is required", field="since")
        end = instant(until, "until")
        if end is None:
            end = get_clock().time()
        if end <= start:
            return []
        if (end - start) / bucket > _MAX_BUCKETS:
            raise ValidationError(
                f"{(end - start) / bucket:.0f} buckets requested; at most {_MAX_BUCKETS}: "
                "use a larger bucket_seconds or a shorter window",
                field="bucket_seconds",
            )
        kind = text_arg(kind, "kind")
        sql = (
            f"SELECT {self._bucket_sql()} AS bucket, {key_column}, COUNT(*) FROM events "
            "WHERE kind = ? AND timestamp >= ? AND timestamp < ?"
        )
        params: list[Any] = [bucket, kind, start, end]
        if optional_text(tenant_id, "tenant_id") is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        sql += f" GROUP BY 1, {key_column}"
        with self._guard("counting events"), self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        out = [
            Count(
                float(row[0]) * bucket,
                None if row[1] is None else (int(row[1]) if by == "issue" else row[1]),
                int(row[2]),
            )
            for row in rows
        ]
        out.sort(key=lambda c: (c.bucket, c.key is not None, str(c.key)))
        return out
