"""Keyset pagination: every row exactly once, in order, whatever the ties."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultlens.errors import ValidationError
from faultlens.store import Issue, Store
from faultlens.store._queries import encode_cursor

from ._helpers import T0, error

_SORT_KEY = {
    "last_seen": lambda i: (i.last_seen, i.id),
    "count": lambda i: (i.count, i.id),
    "first_seen": lambda i: (i.first_seen, i.id),
}


def _all_pages(store: Store, **kwargs: Any) -> list[Issue]:
    out: list[Issue] = []
    page = store.issues(**kwargs)
    while True:
        out.extend(page)
        if page.next_cursor is None:
            return out
        page = store.issues(after=page.next_cursor, **kwargs)


def _write_issues(store: Store, shapes: list[tuple[int, int]], tenant: str) -> None:
    """One issue per shape: (number of events, timestamp offset of the last one)."""
    events = []
    for n, (count, offset) in enumerate(shapes):
        for k in range(count):
            events.append(
                error(fingerprint=f"fp-{n}", tenant=tenant, timestamp=T0 + offset - k * 0.5)
            )
    store.write_events(events)


@pytest.mark.parametrize("sort", ["last_seen", "count", "first_seen"])
def test_pages_cover_every_issue_once_with_ties(store: Store, sort: str) -> None:
    """Many equal sort keys (ties broken by id): pages of 3 list all 20 issues once."""
    shapes = [(1 + n % 3, (n % 4) * 10) for n in range(20)]
    _write_issues(store, shapes, "t")
    everything = sorted(store.issues(limit=1000).items, key=_SORT_KEY[sort], reverse=True)
    paged = _all_pages(store, sort=sort, limit=3, tenant_id="t")
    assert [i.id for i in paged] == [i.id for i in everything]


def test_a_page_does_not_repeat_after_new_issues_arrive(store: Store) -> None:
    """Issues created between two page reads never push an old one onto the next page."""
    _write_issues(store, [(1, n) for n in range(6)], "t")
    first = store.issues(limit=3)
    store.write_events([error(fingerprint="newer", tenant="t", timestamp=T0 + 100)])
    assert first.next_cursor is not None
    second = store.issues(limit=3, after=first.next_cursor)
    ids = [i.id for i in first] + [i.id for i in second]
    assert len(ids) == len(set(ids)) == 6


def test_cursors_are_checked(store: Store) -> None:
    """Forged cursors and cursors of another listing are ValidationErrors."""
    _write_issues(store, [(1, n) for n in range(3)], "t")
    page = store.issues(limit=1)
    assert page.next_cursor is not None
    for bad in ("", "garbage", "!!!", encode_cursor("issues:count", 1.0, 2)):
        with pytest.raises(ValidationError, match="cursor"):
            store.issues(limit=1, after=bad)
    with pytest.raises(ValidationError):
        store.issues(limit=1, sort="count", after=page.next_cursor)
    with pytest.raises(ValidationError):
        store.issues(after=encode_cursor("issues:last_seen", "x", 2))
    with pytest.raises(ValidationError):
        store.issue_events(1, after=page.next_cursor)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 5)), min_size=0, max_size=14),
    size=st.integers(1, 5),
    sort=st.sampled_from(["last_seen", "count", "first_seen"]),
)
def test_pagination_property(
    store: Store, shapes: list[tuple[int, int]], size: int, sort: str
) -> None:
    """For any issues and page size, the pages concatenate to the full sorted listing."""
    tenant = uuid.uuid4().hex  # examples share the store: each has a tenant of its own
    _write_issues(store, shapes, tenant)
    paged = _all_pages(store, sort=sort, limit=size, tenant_id=tenant)
    full = store.issues(tenant_id=tenant, limit=1000).items
    expected = sorted(full, key=_SORT_KEY[sort], reverse=True)
    assert [i.id for i in paged] == [i.id for i in expected]
    assert len(paged) == len(shapes)
    for a, b in itertools.pairwise(paged):
        assert _SORT_KEY[sort](a) > _SORT_KEY[sort](b)
