"""Shared fixtures: every test starts from clean global state."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from faultlens import events, logs
from faultlens._metrics import counters
from faultlens.context import set_header_names
from faultlens.redaction import Redactor, set_redactor


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """Reset counters, subscribers, logging and redaction around each test."""
    counters.reset()
    events.get_bus().clear()
    root = logging.getLogger()
    level = root.level
    yield
    events.get_bus().clear()
    logs.reset_logging()
    root.setLevel(level)
    set_redactor(Redactor())
    set_header_names(correlation="X-Correlation-ID", request="X-Request-ID")
    counters.reset()
