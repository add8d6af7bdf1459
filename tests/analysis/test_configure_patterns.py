"""configure(detect_patterns=True) runs the detectors on the recorder's writer thread."""

from __future__ import annotations

from pathlib import Path

import pytest

import faultlens
from faultlens.errors import ConfigurationError
from faultlens.recorder import get_recorder
from faultlens.testing import capture_events


def test_detect_patterns_needs_a_store() -> None:
    """Asking for pattern detection without a store is a configuration error."""
    with pytest.raises(ConfigurationError, match="needs a store"):
        faultlens.configure(detect_patterns=True, install_log_handler=False)


def test_detect_patterns_reports_a_recurring_error(tmp_path: Path) -> None:
    """Recorded errors reach the detectors; a recurring one is published as a pattern."""
    faultlens.configure(
        store=f"sqlite:///{tmp_path / 'p.db'}", detect_patterns=True, install_log_handler=False
    )
    try:
        with capture_events("pattern") as patterns:
            for n in range(40):
                with faultlens.correlate():
                    try:
                        raise TimeoutError(f"export {n} timed out")
                    except TimeoutError as exc:
                        faultlens.capture(exc)
            recorder = get_recorder()
            assert recorder is not None
            assert recorder.flush(10)
            assert recorder.flush(10)  # the pattern events published by the first flush
        assert patterns, "no pattern event was published"
        assert {e.payload.get("type") for e in patterns} & {"recurring", "burst"}
        assert all(e.kind == "pattern" for e in patterns)
    finally:
        faultlens.shutdown()
