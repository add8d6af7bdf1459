"""The pattern monitor reuses the fingerprint the store gave an error while writing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from faultlens.analysis import ErrorSample
from faultlens.events import Event
from faultlens.store import _fingerprint
from faultlens.store import open as open_store


def _error(i: int) -> Event:
    return Event(
        "error",
        "app.PaymentError",
        {
            "type": "app.PaymentError",
            "message": f"order {i} declined",
            "frames": [{"module": "app.orders", "function": "checkout", "lineno": 42}],
        },
        correlation_id=f"req-{i}",
    )


def test_a_sample_takes_the_fingerprint_the_store_just_computed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After write_events, from_event finds the issue's fingerprint without recomputing it."""
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        event = _error(1)
        store.write_events([event])
        [issue] = store.issues().items
    finally:
        store.close()
    assert _fingerprint.recent_fingerprint(event.id) == issue.fingerprint

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed again")

    monkeypatch.setattr(_fingerprint, "fingerprint", refuse)
    sample = ErrorSample.from_event(event)
    assert sample is not None
    assert sample.fingerprint == issue.fingerprint


def test_an_error_the_store_never_saw_is_fingerprinted_the_same_way(tmp_path: Path) -> None:
    """A spooled batch (never written) gets the fingerprint computed: the same value."""
    unseen = _error(2)
    assert _fingerprint.recent_fingerprint(unseen.id) is None
    sample = ErrorSample.from_event(unseen)
    assert sample is not None
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        store.write_events([unseen])
        [issue] = store.issues().items
    finally:
        store.close()
    assert sample.fingerprint == issue.fingerprint


def test_the_remembered_fingerprints_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two generations of at most _RECENT_MAX ids: the oldest are forgotten, nothing grows."""
    monkeypatch.setattr(_fingerprint, "_RECENT_MAX", 4)
    monkeypatch.setattr(_fingerprint, "_recent", {})
    monkeypatch.setattr(_fingerprint, "_recent_older", {})
    for i in range(12):
        _fingerprint.remember_fingerprint(f"e{i}", f"fp{i}")
    assert _fingerprint.recent_fingerprint("e11") == "fp11"
    assert _fingerprint.recent_fingerprint("e4") == "fp4"  # in the older generation
    assert _fingerprint.recent_fingerprint("e3") is None
    assert len(_fingerprint._recent) + len(_fingerprint._recent_older) <= 8
