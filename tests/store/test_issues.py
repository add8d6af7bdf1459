"""Issues: grouping at write time, status changes, regression, merging, the audit log."""

from __future__ import annotations

import pytest

from faultlens.errors import NotFoundError, ValidationError
from faultlens.store import Issue, Store
from faultlens.testing import FakeClock

from ._helpers import T0, error


def _only_issue(store: Store) -> Issue:
    (issue,) = store.issues()
    return issue


def test_errors_with_one_fingerprint_are_one_issue(store: Store) -> None:
    """Title, culprit, times, counts and distinct users and sessions are kept exactly."""
    store.write_events(
        [
            error(user="ana", session="s1", timestamp=T0 + 5, message="first"),
            error(user="bob", session="s1", timestamp=T0 + 1),
            error(user="ana", session="s2", timestamp=T0 + 9, message="last one"),
            error(user=None, session=None, timestamp=T0 + 3),
        ]
    )
    issue = _only_issue(store)
    assert issue.count == 4
    assert issue.users == 2
    assert issue.sessions == 2
    assert issue.first_seen == T0 + 1
    assert issue.last_seen == T0 + 9
    assert issue.title == "PaymentError: last one"
    assert issue.culprit == "app.orders in checkout"
    assert issue.status == "unresolved"
    assert (issue.category, issue.layer, issue.severity) == ("integration", "service", "high")
    assert issue.grouping_version >= 1
    assert len(issue.fingerprint) >= 32
    assert not issue.regressed
    # Later batches keep the distinct sets exact.
    store.write_events([error(user="bob", session="s2", timestamp=T0 + 20)])
    store.write_events([error(user="cy", session="s3", timestamp=T0 + 2)])
    issue = _only_issue(store)
    assert (issue.count, issue.users, issue.sessions) == (6, 3, 3)
    assert issue.first_seen == T0 + 1
    assert issue.last_seen == T0 + 20
    assert issue.title == "PaymentError: payment declined"


def test_different_fingerprints_and_tenants_are_different_issues(store: Store) -> None:
    """One issue per (tenant, fingerprint): tenants never share counts."""
    store.write_events(
        [
            error(fingerprint="a"),
            error(fingerprint="b"),
            error(fingerprint="a", tenant="acme"),
            error(fingerprint="a", tenant="acme"),
        ]
    )
    issues = store.issues().items
    assert sorted((i.tenant_id or "", i.count) for i in issues) == [
        ("", 1),
        ("", 1),
        ("acme", 2),
    ]
    (acme,) = store.issues(tenant_id="acme").items
    assert acme.count == 2
    assert store.issue(acme.id, tenant_id="acme") == acme
    assert store.issue(acme.id, tenant_id="other") is None


def test_issue_events_lists_an_issues_events_newest_first(store: Store) -> None:
    """issue_events pages through one issue's events by keyset."""
    store.write_events([error(timestamp=T0 + i, event_id=f"e{i:02d}") for i in range(7)])
    store.write_events([error(fingerprint="other", timestamp=T0)])
    issue = store.issues(sort="count").items[0]
    seen: list[str] = []
    page = store.issue_events(issue.id, limit=3)
    while True:
        seen.extend(s.event.id for s in page)
        assert all(s.issue_id == issue.id for s in page)
        if page.next_cursor is None:
            break
        page = store.issue_events(issue.id, limit=3, after=page.next_cursor)
    assert seen == [f"e{i:02d}" for i in reversed(range(7))]


def test_resolving_then_a_new_event_regresses_the_issue() -> None:
    """A resolved issue that gets a newer event is unresolved again, flagged and audited."""
    from faultlens.store import open as open_store

    with FakeClock() as clock, open_store("sqlite:///:memory:") as store:
        store.write_events([error(timestamp=T0 - 10)])
        issue = _only_issue(store)
        resolved = store.set_issue_status(issue.id, "resolved", actor="ana", reason="fixed")
        assert resolved.status == "resolved"
        assert resolved.resolved_at == T0
        # An event from before the resolution arriving late (a spool replay) is not one.
        store.write_events([error(timestamp=T0 - 5)])
        assert _only_issue(store).status == "resolved"
        clock.advance(60)
        late = error(timestamp=T0 + 30)
        store.write_events([late, error(timestamp=T0 + 50)])
        issue = _only_issue(store)
        assert issue.status == "unresolved"
        assert issue.regressed
        assert issue.regressed_at == T0 + 30
        assert issue.count == 4
        entries = store.audit_log(target=f"issue:{issue.id}").items
        assert [e.action for e in entries] == ["issue.regressed", "issue.status"]
        assert entries[0].actor == "faultlens"
        assert entries[0].details["event_id"] == late.id
        assert entries[1].details == {"from": "unresolved", "to": "resolved", "reason": "fixed"}
        # Setting a status again clears the flag.
        assert not store.set_issue_status(issue.id, "unresolved", actor="ana").regressed


def test_regression_on_both_backends(store: Store) -> None:
    """Regression works the same on every backend (real clock: resolve, then a newer event)."""
    store.write_events([error(timestamp=T0)])
    issue = store.set_issue_status(_only_issue(store).id, "resolved", actor="ana")
    assert issue.resolved_at is not None
    store.write_events([error(timestamp=issue.resolved_at + 1)])
    again = _only_issue(store)
    assert again.status == "unresolved"
    assert again.regressed
    assert again.regressed_at == issue.resolved_at + 1


def test_ignored_issues_stay_ignored(store: Store) -> None:
    """New events count on an ignored issue without changing its status."""
    store.write_events([error()])
    issue = store.set_issue_status(_only_issue(store).id, "ignored", actor="ana")
    store.write_events([error(timestamp=T0 + 10**9)])
    (again,) = store.issues(status="ignored")
    assert (again.id, again.status, again.count) == (issue.id, "ignored", 2)


def test_status_changes_are_checked(store: Store) -> None:
    """Unknown issues, unknown statuses and a blank actor are refused."""
    store.write_events([error()])
    issue = _only_issue(store)
    with pytest.raises(NotFoundError):
        store.set_issue_status(issue.id + 1000, "resolved", actor="ana")
    with pytest.raises(ValidationError):
        store.set_issue_status(issue.id, "merged", actor="ana")
    with pytest.raises(ValidationError):
        store.set_issue_status(issue.id, "done", actor="ana")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.set_issue_status(issue.id, "resolved", actor=" ")
    with pytest.raises(ValidationError):
        store.set_issue_status(0, "resolved", actor="ana")
    assert store.issue(issue.id + 1000) is None


def test_merge_moves_events_and_combines_counts(store: Store) -> None:
    """Source events move, counts add, users union, later source events land on the target."""
    store.write_events(
        [
            error(fingerprint="a", user="ana", session="s1", timestamp=T0 + 1),
            error(fingerprint="a", user="bob", session="s1", timestamp=T0 + 2),
            error(fingerprint="b", user="bob", session="s2", timestamp=T0),
            error(fingerprint="b", user="cy", session="s3", timestamp=T0 + 9),
            error(fingerprint="b", user="cy", session="s3", timestamp=T0 + 5),
        ]
    )
    page = store.issues(sort="count")
    source, target = page.items  # b has 3 events, a has 2
    assert (source.count, target.count) == (3, 2)
    merged = store.merge_issues(target.id, source.id, actor="ana", reason="same bug")
    assert merged.id == target.id
    assert merged.count == 5
    assert merged.users == 3
    assert merged.sessions == 3
    assert merged.first_seen == T0
    assert merged.last_seen == T0 + 9
    gone = store.issue(source.id)
    assert gone is not None
    assert gone.status == "merged"
    assert gone.merged_into == target.id
    assert [i.id for i in store.issues()] == [target.id]
    assert len(store.issue_events(target.id, limit=10)) == 5
    assert len(store.issue_events(source.id, limit=10)) == 0
    # The source's fingerprint now leads to the target.
    store.write_events([error(fingerprint="b", user="dee", timestamp=T0 + 20)])
    after = store.issue(target.id)
    assert after is not None
    assert (after.count, after.users, after.last_seen) == (6, 4, T0 + 20)
    actions = [e.action for e in store.audit_log(target=f"issue:{source.id}")]
    assert actions == ["issue.merged"]
    entry = store.audit_log(target=f"issue:{target.id}").items[0]
    assert entry.details["events_moved"] == 3
    assert entry.actor == "ana"


def test_merge_chains_follow_to_the_last_target(store: Store) -> None:
    """Merging a target again carries the earlier merges' fingerprints along."""
    store.write_events([error(fingerprint=f, message=f) for f in ("a", "b", "c")])
    ids = {i.title[-1]: i.id for i in store.issues()}
    store.merge_issues(ids["b"], ids["a"], actor="ana")
    store.merge_issues(ids["c"], ids["b"], actor="ana")
    first = store.issue(ids["a"])
    assert first is not None
    assert first.merged_into == ids["c"]
    store.write_events([error(fingerprint=f, message=f) for f in ("a", "b", "c")])
    assert [(i.id, i.count) for i in store.issues()] == [(ids["c"], 6)]


def test_merge_is_checked(store: Store) -> None:
    """Self-merges, merged issues, unknown ids and cross-tenant merges are refused."""
    store.write_events(
        [error(fingerprint="a"), error(fingerprint="b"), error(fingerprint="c", tenant="t")]
    )
    issues = {i.fingerprint: i for i in store.issues().items}
    ids = sorted(i.id for i in issues.values())
    with pytest.raises(ValidationError):
        store.merge_issues(ids[0], ids[0], actor="ana")
    with pytest.raises(NotFoundError):
        store.merge_issues(ids[0], 10_000, actor="ana")
    tenant_issue = next(i for i in issues.values() if i.tenant_id == "t")
    plain = [i.id for i in issues.values() if i.tenant_id is None]
    with pytest.raises(ValidationError, match="tenants"):
        store.merge_issues(plain[0], tenant_issue.id, actor="ana")
    store.merge_issues(plain[0], plain[1], actor="ana")
    with pytest.raises(ValidationError, match="already merged"):
        store.merge_issues(plain[0], plain[1], actor="ana")
    with pytest.raises(ValidationError, match="merged"):
        store.set_issue_status(plain[1], "resolved", actor="ana")


def test_issue_filters(store: Store) -> None:
    """status, category, layer, tenant and the time window filter the listing."""
    store.write_events(
        [
            error(fingerprint="a", category="data", layer="core", timestamp=T0),
            error(fingerprint="b", category="integration", layer="service", timestamp=T0 + 100),
            error(fingerprint="c", category="data", layer="service", timestamp=T0 + 200),
        ]
    )
    by_fp = {i.fingerprint: i for i in store.issues().items}
    assert len(by_fp) == 3
    titles = {i.id: i for i in store.issues(category="data").items}
    assert len(titles) == 2
    assert len(store.issues(layer="service").items) == 2
    assert len(store.issues(category="data", layer="service").items) == 1
    assert len(store.issues(since=T0 + 100).items) == 2
    assert len(store.issues(until=T0 + 100).items) == 1
    one = next(iter(by_fp.values()))
    store.set_issue_status(one.id, "resolved", actor="ana")
    assert [i.id for i in store.issues(status="resolved")] == [one.id]
    assert len(store.issues(status=["unresolved", "resolved"]).items) == 3
    assert len(store.issues(status="unresolved").items) == 2
    with pytest.raises(ValidationError):
        store.issues(status="open")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.issues(sort="title")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.issues(limit=0)


def test_audit_log_is_append_only_through_the_api(store: Store) -> None:
    """append_audit adds entries; the listing pages newest first; details are redacted."""
    ids = [
        store.append_audit(
            actor="ana",
            action="alert.ack",
            target=f"alert:{i}",
            details={"note": i, "password": "hunter2"},
        )
        for i in range(5)
    ]
    assert ids == sorted(ids)
    page = store.audit_log(limit=2)
    assert [e.id for e in page] == ids[::-1][:2]
    seen = [e.id for e in page]
    while page.next_cursor:
        page = store.audit_log(limit=2, after=page.next_cursor)
        seen.extend(e.id for e in page)
    assert seen == ids[::-1]
    entry = store.audit_log(target="alert:3").items[0]
    assert entry.details == {"note": 3, "password": "[REDACTED]"}
    assert entry.action == "alert.ack"
    for name in ("update", "delete", "truncate", "remove"):
        assert not hasattr(store, f"{name}_audit")
    with pytest.raises(ValidationError):
        store.append_audit(actor="", action="x", target="y")
