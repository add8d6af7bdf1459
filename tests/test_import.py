"""``import faultlens`` loads what logging and correlation need, not the rest."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import faultlens
loaded = sorted(m for m in sys.modules if m.startswith(("faultlens.", "asyncio", "sqlite3")))
print("\\n".join(loaded))
"""


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_import_faultlens_leaves_recovery_recorder_store_and_asyncio_unloaded() -> None:
    """The recovery, recorder, store and analysis modules load on first use only."""
    loaded = _loaded_after(_PROBE)
    assert "faultlens.context" in loaded
    assert "faultlens.logs" in loaded
    for module in ("faultlens.recovery", "faultlens.recorder", "faultlens.store", "asyncio"):
        assert module not in loaded
    assert not any(m.startswith("faultlens.analysis") for m in loaded)


def test_recovery_names_resolve_on_first_access() -> None:
    """faultlens.retry and friends are the recovery package's objects, loaded lazily."""
    code = (
        "import faultlens, faultlens.recovery as r\n"
        "assert faultlens.retry is r.retry and faultlens.pipeline is r.pipeline\n"
        "assert faultlens.CircuitBreaker is r.CircuitBreaker\n"
        "print('ok')"
    )
    assert _loaded_after(code) == {"ok"}
