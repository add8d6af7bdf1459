"""Writing events and reading them back: idempotency, timelines, counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from faultlens.errors import ValidationError
from faultlens.events import Event
from faultlens.store import Count, Store, StoredEvent

from ._helpers import T0, error, operation


def test_a_store_is_a_store(store: Store) -> None:
    """Both backends satisfy the Store protocol."""
    assert isinstance(store, Store)
    assert store.backend in ("sqlite", "postgres")


def test_write_returns_the_rows_newly_written(store: Store) -> None:
    """Writing the same batch twice writes nothing the second time; issues count once."""
    batch = [error(user=f"u{i}", correlation_id="c1", timestamp=T0 + i) for i in range(5)]
    batch.append(operation(correlation_id="c1", timestamp=T0 + 10))
    assert store.write_events(batch) == 6
    assert store.write_events(batch) == 0
    assert store.write_events([*batch[:2], error(correlation_id="c1", timestamp=T0 + 20)]) == 1
    (issue,) = store.issues()
    assert issue.count == 6
    assert issue.users == 5
    assert len(store.timeline("c1")) == 7


def test_duplicates_inside_a_batch_are_written_once(store: Store) -> None:
    """An id repeated in one batch is one row and one count."""
    event = error(correlation_id="c1")
    assert store.write_events([event, event, event]) == 1
    (issue,) = store.issues()
    assert issue.count == 1


def test_empty_batches_write_nothing(store: Store) -> None:
    """An empty batch returns 0 without touching the database."""
    assert store.write_events([]) == 0


def test_write_refuses_what_is_not_an_event(store: Store) -> None:
    """A dict, or a single event instead of a list, is a ValidationError."""
    with pytest.raises(ValidationError):
        store.write_events([{"kind": "error"}])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        store.write_events(error())  # type: ignore[arg-type]


def test_timeline_is_every_event_of_a_correlation_in_order(store: Store) -> None:
    """Events come back in time order (ties by id) with every field and the payload."""
    events = [
        operation("load", correlation_id="req-1", timestamp=T0 + 3),
        error(correlation_id="req-1", timestamp=T0 + 1, user="ana", tenant="acme"),
        operation("save", correlation_id="req-1", timestamp=T0 + 2),
        operation("other", correlation_id="req-2", timestamp=T0),
    ]
    store.write_events(events)
    timeline = store.timeline("req-1")
    assert [s.event.name for s in timeline] == ["app.PaymentError", "save", "load"]
    first = timeline[0]
    assert isinstance(first, StoredEvent)
    original = events[1]
    assert first.event.id == original.id
    assert first.event.kind == "error"
    assert first.event.timestamp == original.timestamp
    assert first.event.user_id == "ana"
    assert first.event.tenant_id == "acme"
    assert first.event.payload["message"] == "payment declined"
    assert first.event.payload["frames"][0]["function"] == "checkout"
    assert first.issue_id is not None
    assert timeline[1].issue_id is None
    assert store.timeline("req-1", limit=2)[-1].event.name == "save"
    assert store.timeline("nobody") == []


def test_timeline_can_be_limited_to_a_tenant(store: Store) -> None:
    """tenant_id keeps a tenant's view of a correlation to its own events."""
    store.write_events(
        [
            operation("a", correlation_id="c", tenant="t1"),
            operation("b", correlation_id="c", tenant="t2", timestamp=T0 + 1),
        ]
    )
    assert [s.event.name for s in store.timeline("c", tenant_id="t2")] == ["b"]


def test_timestamps_round_trip_exactly(store: Store) -> None:
    """Float timestamps come back bit for bit (keyset cursors depend on it)."""
    stamps = [T0 + 0.1, 1_700_000_000.123456789, 1e9 + 1 / 3]
    store.write_events([operation(correlation_id="t", timestamp=t) for t in stamps])
    assert [s.event.timestamp for s in store.timeline("t")] == sorted(stamps)


def test_counts_by_category_layer_and_issue(store: Store) -> None:
    """Events per bucket and key; empty buckets are absent; None sorts first."""
    store.write_events(
        [
            error(category="integration", layer="service", timestamp=T0 + 1),
            error(category="integration", layer="service", timestamp=T0 + 2),
            error(category="data", layer="core", fingerprint="other", timestamp=T0 + 61),
            error(category="data", layer="core", fingerprint="other", timestamp=T0 + 3600),
            operation(timestamp=T0 + 5),
        ]
    )
    start = T0 - (T0 % 60)
    by_category = store.counts(bucket_seconds=60, since=start, until=T0 + 120)
    assert by_category == [
        Count(start, "integration", 2),
        Count(start + 60, "data", 1),
    ]
    by_layer = store.counts(
        bucket_seconds=timedelta(hours=1), since=start, until=T0 + 7200, by="layer"
    )
    hour = T0 - (T0 % 3600)
    assert [(c.bucket, c.key, c.count) for c in by_layer] == [
        (hour, "core", 1),
        (hour, "service", 2),
        (hour + 3600, "core", 1),
    ]
    by_issue = store.counts(bucket_seconds=86_400, since=start, until=T0 + 7200, by="issue")
    assert sorted(c.count for c in by_issue) == [2, 2]
    assert all(isinstance(c.key, int) for c in by_issue)
    operations = store.counts(
        bucket_seconds=60, since=start, until=T0 + 120, kind="operation", by="layer"
    )
    assert operations == [Count(start, "service", 1)]


def test_counts_accepts_datetimes_and_checks_its_arguments(store: Store) -> None:
    """since/until take datetimes; too many buckets or a bad key are ValidationErrors."""
    store.write_events([error(timestamp=T0 + 1)])
    since = datetime.fromtimestamp(T0 - 10, tz=UTC)
    assert store.counts(bucket_seconds=60, since=since, until=T0 + 60)[0].count == 1
    assert store.counts(bucket_seconds=60, since=T0, until=T0 - 5) == []
    with pytest.raises(ValidationError, match="buckets"):
        store.counts(bucket_seconds=1, since=0, until=T0)
    with pytest.raises(ValidationError):
        store.counts(bucket_seconds=60, since=T0, by="colour")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.counts(bucket_seconds=0, since=T0)


def test_event_without_payload_or_ids_is_stored(store: Store) -> None:
    """Minimal events (no correlation, empty payload) are stored and counted."""
    assert store.write_events([Event("job", "nightly")]) == 1
    assert store.write_events([Event("error", "Boom")]) == 1
    (issue,) = store.issues()
    assert issue.title == "Boom"
