"""Whose pattern it is: one tenant behind all its errors carries it; a mix: None and a list."""

from __future__ import annotations

from faultlens.analysis import (
    BurstDetector,
    CascadeDetector,
    DegradationDetector,
    Pattern,
    PatternType,
    RecurringDetector,
)
from faultlens.analysis._patterns import PatternStatus, make_pattern

from .test_detectors import T, feed, kinds, sample


def _cross_cascade(tenants: tuple[str | None, str | None, str | None]) -> list[Pattern]:
    """A database surge, then service and API surges in other requests (one tenant each)."""
    db, svc, api = tenants
    detector = CascadeDetector()
    changes = feed(
        detector,
        [sample(i * 1.2, "db", "infrastructure", tenant=db) for i in range(4)]
        + [sample(3 + i, "svc", "service", tenant=svc) for i in range(3)]
        + [sample(5 + i * 0.8, "api", "api", tenant=api) for i in range(3)],
    )
    assert kinds(changes) == ["new"]
    return detector.ongoing()


def test_a_cross_correlation_cascade_of_one_tenant_carries_it() -> None:
    """Every error of every surge belongs to one tenant: the cascade is that tenant's."""
    [pattern] = _cross_cascade(("acme", "acme", "acme"))
    assert pattern.details["scopes"] == ["across"]
    assert pattern.tenant_id == "acme"
    assert "tenant_ids" not in pattern.details


def test_a_cross_correlation_cascade_of_several_tenants_names_them() -> None:
    """Surges of different tenants: no one tenant, the tenants listed in the details."""
    [pattern] = _cross_cascade(("acme", "globex", "acme"))
    assert pattern.tenant_id is None
    assert pattern.details["tenant_ids"] == ["acme", "globex"]


def test_errors_without_a_tenant_make_a_mix_with_a_tenant() -> None:
    """A tenant's errors and errors without one: not that tenant's; None listed last."""
    [pattern] = _cross_cascade(("acme", None, "acme"))
    assert pattern.tenant_id is None
    assert pattern.details["tenant_ids"] == ["acme", None]
    [untenanted] = _cross_cascade((None, None, None))
    assert untenanted.tenant_id is None
    assert "tenant_ids" not in untenanted.details


def test_a_burst_of_one_tenant_carries_it() -> None:
    """Thirty errors of one tenant in a minute: that tenant's burst."""
    detector = BurstDetector()
    [change] = feed(detector, [sample(i, fp=f"f{i}", tenant="acme") for i in range(30)])
    assert change.pattern.type is PatternType.BURST
    assert change.pattern.tenant_id == "acme"


def test_a_burst_counts_the_tenants_of_errors_it_no_longer_remembers() -> None:
    """One globex error among 200 acme ones, too early to be remembered, still makes a mix."""
    detector = BurstDetector(threshold=200)
    samples = [sample(0.0, fp="early", tenant="globex")]
    samples += [sample(1 + i * 0.2, fp=f"f{i % 20}", tenant="acme") for i in range(199)]
    [change] = feed(detector, samples)
    assert change.pattern.occurrences == 200
    assert "early" not in change.pattern.fingerprints  # not among the errors remembered
    assert change.pattern.tenant_id is None
    assert change.pattern.details["tenant_ids"] == ["acme", "globex"]


def test_an_ongoing_burst_joined_by_another_tenant_is_no_longer_its_own() -> None:
    """A tenant's burst that another tenant's errors join: its updates carry None."""
    detector = BurstDetector()
    feed(detector, [sample(i * 0.5, tenant="acme") for i in range(30)])
    [ongoing] = detector.ongoing()
    assert ongoing.tenant_id == "acme"
    detector.observe(sample(16, tenant="globex"))
    [pattern] = detector.ongoing()
    assert pattern.tenant_id is None
    assert pattern.details["tenant_ids"] == ["acme", "globex"]


def test_recurring_patterns_keep_their_tenant() -> None:
    """Recurring errors are per tenant already: the pattern carries it, nothing listed."""
    detector = RecurringDetector()
    [change] = feed(detector, [sample(i * 10, tenant="acme") for i in range(5)])
    assert change.pattern.tenant_id == "acme"
    assert "tenant_ids" not in change.pattern.details


def test_a_degradation_of_one_tenant_carries_it() -> None:
    """The error rate of one tenant doubling: that tenant's degradation."""
    detector = DegradationDetector()
    before = [sample(i * 6.0, fp=f"f{i % 7}", tenant="acme") for i in range(100)]  # 10/min
    after = [sample(600 + i * 2.0, fp=f"f{i % 7}", tenant="acme") for i in range(150)]  # 30/min
    changes = feed(detector, before + after)
    changes += detector.collect(T + 900)
    [new] = [c for c in changes if c.change == "new"]
    assert new.pattern.tenant_id == "acme"


def test_a_resumed_mixed_pattern_stays_mixed() -> None:
    """A stored pattern of several tenants, adopted by a new leader, is not given to one."""
    detector = BurstDetector()
    stored = make_pattern(
        "burst-x",
        PatternType.BURST,
        PatternStatus.ONGOING,
        T,
        T + 10,
        40,
        ("service",),
        ("fp",),
        0.6,
        (),
        {"tenant_ids": ["acme", "globex"]},
        None,
        None,
    )
    assert detector.resume(stored)
    detector.observe(sample(11, tenant="acme"))
    [pattern] = detector.ongoing()
    assert pattern.tenant_id is None
    assert pattern.details["tenant_ids"] == ["acme", "globex"]
