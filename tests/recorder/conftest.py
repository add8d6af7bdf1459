"""Recorder fixtures: a fake store, recorders that are always closed, a tmp spool."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import faultlens
from faultlens import recorder as recorder_module
from faultlens.recorder import EventWriter, Recorder, RecorderSettings

from ._fakes import FakeStore

MakeRecorder = Callable[..., Recorder]


@pytest.fixture
def store() -> FakeStore:
    """A fresh in-memory store."""
    return FakeStore()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """The spool file path recorders of this test use."""
    return tmp_path / "spool" / "events.jsonl"


@pytest.fixture
def make_recorder(spool: Path) -> Iterator[MakeRecorder]:
    """Build and start recorders with a tmp spool; all are closed after the test."""
    made: list[Recorder] = []

    def make(store: str | EventWriter, **settings: Any) -> Recorder:
        settings.setdefault("spool_path", spool)
        settings.setdefault("retry_initial", 3600)  # tests retry with flush(), never by time
        recorder = Recorder(store, settings=RecorderSettings(**settings)).start()
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        # A generous bound: a writer still running after the test would count into the next.
        recorder.close(timeout=30)
    faultlens.shutdown()
    assert recorder_module.get_recorder() is None
