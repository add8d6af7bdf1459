"""faultlens.store's public names are a contract."""

from __future__ import annotations

import faultlens.store


def test_store_exports() -> None:
    """faultlens.store exports exactly these names, sorted as ruff keeps them."""
    names = faultlens.store.__all__
    classes = sorted(n for n in names if n[0].isupper())
    functions = sorted(n for n in names if n[0].islower())
    assert names == classes + functions
    assert set(names) == {
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
    }
    for name in names:
        assert getattr(faultlens.store, name) is not None


def test_store_error_is_a_faultlens_error() -> None:
    """StoreError derives from the one exception root."""
    assert issubclass(faultlens.store.StoreError, faultlens.errors.FaultlensError)
