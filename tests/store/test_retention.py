"""Retention: old events go in small batches; issues and their counts stay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from faultlens.errors import ValidationError
from faultlens.store import Store
from faultlens.store._retention import parse_age
from faultlens.testing import FakeClock

from ._helpers import T0, error, operation

DAY = 86_400.0


def _fill(store: Store) -> None:
    events = []
    for day in range(10):  # days ago: 9 ... 0
        stamp = T0 - (9 - day) * DAY
        events += [error(timestamp=stamp + k, correlation_id=f"d{day}") for k in range(3)]
        events += [operation(timestamp=stamp + k, correlation_id=f"d{day}") for k in range(2)]
    store.write_events(events)


def test_cleanup_by_age_in_batches_keeps_issue_counts(store: Store) -> None:
    """Events older than the age go, batch by batch, with progress; the issue stays whole."""
    _fill(store)
    calls: list[tuple[int, int]] = []
    with FakeClock():
        deleted = store.cleanup(
            older_than=timedelta(days=5, hours=1),
            batch_size=4,
            progress=lambda done, total: calls.append((done, total)),
        )
    assert deleted == {"error": 12, "operation": 8}
    assert calls[0] == (0, 20)
    assert calls[-1] == (20, 20)
    assert len(calls) > 5  # many small batches
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    for day in range(10):
        expected = 0 if day < 4 else 5
        assert len(store.timeline(f"d{day}")) == expected
    (issue,) = store.issues()
    assert issue.count == 30  # counts describe everything ever seen
    assert len(store.issue_events(issue.id, limit=100)) == 18


def test_cleanup_by_rows_per_kind_keeps_the_newest(store: Store) -> None:
    """max_rows_per_kind keeps the newest N events of each kind."""
    _fill(store)
    deleted = store.cleanup(max_rows_per_kind=7, batch_size=5)
    assert deleted == {"error": 23, "operation": 13}
    kept = [s.event for day in range(10) for s in store.timeline(f"d{day}")]
    errors = sorted(e.timestamp for e in kept if e.kind == "error")
    assert len(errors) == 7
    assert errors[-1] == T0 + 2
    assert sum(e.kind == "operation" for e in kept) == 7


def test_both_rules_together_take_the_stricter(store: Store) -> None:
    """With an age and a row limit, whichever deletes more applies, per kind."""
    _fill(store)
    with FakeClock():
        deleted = store.cleanup(older_than=2.5 * DAY, max_rows_per_kind=12)
    assert deleted == {"error": 21, "operation": 14}


def test_cleanup_with_nothing_to_delete(store: Store) -> None:
    """An empty store, or nothing old enough, deletes nothing and still reports progress."""
    calls: list[tuple[int, int]] = []
    assert store.cleanup(older_than=1, progress=lambda d, t: calls.append((d, t))) == {}
    assert calls == [(0, 0)]
    store.write_events([operation(timestamp=T0)])
    with FakeClock():
        assert store.cleanup(older_than=DAY) == {}
        assert store.cleanup(max_rows_per_kind=5) == {}


def test_cleanup_arguments_are_checked(store: Store) -> None:
    """Nothing to go by, or bad values, are ValidationErrors."""
    with pytest.raises(ValidationError, match="say what to delete"):
        store.cleanup()
    with pytest.raises(ValidationError):
        store.cleanup(older_than=-1)
    with pytest.raises(ValidationError):
        store.cleanup(max_rows_per_kind=0)
    with pytest.raises(ValidationError):
        store.cleanup(older_than=1, batch_size=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", 30 * DAY),
        ("12h", 43_200),
        ("90m", 5400),
        ("3600s", 3600),
        ("2w", 14 * DAY),
        ("45", 45),
        (" 1.5D ", 1.5 * DAY),
    ],
)
def test_parse_age(text: str, expected: float) -> None:
    """Ages are a number and an optional unit."""
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "d", "30x", "-1d", "0d", "1 2d", "1e9999d"])
def test_parse_age_refuses_nonsense(text: str) -> None:
    """Anything else is a ValidationError that shows the expected form."""
    with pytest.raises(ValidationError):
        parse_age(text)
