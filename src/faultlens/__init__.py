"""faultlens: correlation, structured logging, errors, recovery and analysis for Python apps.

The names below are the stable public surface; everything else lives in its
subpackage (``faultlens.context``, ``faultlens.logs``, ``faultlens.events``,
``faultlens.operations``, ``faultlens.redaction``, ``faultlens.errors``,
``faultlens.recovery``, ``faultlens.store``, ``faultlens.recorder``,
``faultlens.integrations.*``, ``faultlens.testing``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faultlens._config import configure, get_config, shutdown, stats
from faultlens.context import (
    ContextExecutor,
    RequestContext,
    bind,
    correlate,
    correlation_id,
    current_context,
    outgoing_headers,
    wrap,
)
from faultlens.errors import FaultlensError, handle
from faultlens.errors._capture import capture
from faultlens.logs import get_logger
from faultlens.operations import operation

if TYPE_CHECKING:
    from faultlens.recovery import CircuitBreaker, bulkhead, fallback, pipeline, retry, timeout

__all__ = [
    "CircuitBreaker",
    "ContextExecutor",
    "FaultlensError",
    "RequestContext",
    "__version__",
    "bind",
    "bulkhead",
    "capture",
    "configure",
    "correlate",
    "correlation_id",
    "current_context",
    "fallback",
    "get_config",
    "get_logger",
    "handle",
    "operation",
    "outgoing_headers",
    "pipeline",
    "retry",
    "shutdown",
    "stats",
    "timeout",
    "wrap",
]


# The recovery policies are imported on first use: an application that only logs
# and correlates does not pay for loading them at ``import faultlens``.
_RECOVERY_NAMES = frozenset(
    {"CircuitBreaker", "bulkhead", "fallback", "pipeline", "retry", "timeout"}
)


def __getattr__(name: str) -> Any:
    if name in _RECOVERY_NAMES:
        from faultlens import recovery

        value = getattr(recovery, name)
        globals()[name] = value
        return value
    # The version comes from the installed distribution's metadata; looked up lazily
    # because importlib.metadata costs milliseconds at import time.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("faultlens")
        except PackageNotFoundError:  # running from a source tree without install
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'faultlens' has no attribute {name!r}")
