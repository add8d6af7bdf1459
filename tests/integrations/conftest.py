"""Fixtures of the HTTP middleware tests: clean counters, logging and header names."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from faultlens import logs
from faultlens._metrics import counters
from faultlens.context import get_header_names, set_header_names


@pytest.fixture(autouse=True)
def _clean_boundary_state() -> Iterator[None]:
    """Reset counters, the root logger and the header names around each test."""
    counters.reset()
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    access_level = logging.getLogger("faultlens.access").level
    correlation, request = get_header_names()
    yield
    logs.reset_logging()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("faultlens.access").setLevel(access_level)
    set_header_names(correlation=correlation, request=request)
    counters.reset()
