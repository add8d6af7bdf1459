"""Fixtures for the errors tests: registrations and one-time warnings reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faultlens import _config
from faultlens.errors import _catalog, _classify, _kinds, _responses


@pytest.fixture(autouse=True)
def _clean_error_registries() -> Iterator[None]:
    """Undo categories, layers, rules and messages a test registered; re-arm warnings."""
    categories = dict(_kinds._categories)
    layers = dict(_kinds._layers)
    rules = _classify._snapshot()
    messages = _catalog._snapshot()
    config = _config.get_config()
    _responses._debug_warned = False
    yield
    _kinds._categories.clear()
    _kinds._categories.update(categories)
    _kinds._layers.clear()
    _kinds._layers.update(layers)
    _classify._restore(rules)
    _catalog._restore(messages)
    _config._config = config
    _responses._debug_warned = False
