"""The public names are a contract: this pins them."""

from __future__ import annotations

import faultlens
import faultlens.context
import faultlens.errors
import faultlens.events
import faultlens.logs
import faultlens.operations
import faultlens.recorder
import faultlens.recovery
import faultlens.store
import faultlens.testing


def _isort_order(names: list[str]) -> list[str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""

    def key(name: str) -> tuple[int, str]:
        if name.isupper():
            return (0, name)
        if name[0].isupper():
            return (1, name)
        return (2, name)

    return sorted(names, key=key)


def test_top_level_names() -> None:
    """faultlens exports exactly the documented surface, sorted."""
    assert faultlens.__all__ == _isort_order(faultlens.__all__)
    assert set(faultlens.__all__) == {
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
    }
    assert faultlens.retry is faultlens.recovery.retry
    assert faultlens.CircuitBreaker is faultlens.recovery.CircuitBreaker
    for name in faultlens.__all__:
        assert getattr(faultlens, name) is not None


def test_subpackage_exports_are_sorted_and_present() -> None:
    """Each public module's __all__ is sorted and every name exists."""
    for module in (
        faultlens.context,
        faultlens.errors,
        faultlens.events,
        faultlens.logs,
        faultlens.operations,
        faultlens.recorder,
        faultlens.recovery,
        faultlens.store,
        faultlens.testing,
    ):
        assert module.__all__ == _isort_order(module.__all__), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_errors_names() -> None:
    """faultlens.errors exports exactly the taxonomy, classification and response names."""
    assert set(faultlens.errors.__all__) == {
        "AuthenticationError",
        "AuthorizationError",
        "BusinessRuleError",
        "CaptureSettings",
        "Category",
        "CategoryInfo",
        "Classification",
        "ConfigurationError",
        "ConflictError",
        "DataError",
        "ErrorResponse",
        "FaultlensError",
        "IntegrationError",
        "Layer",
        "MissingExtraError",
        "NotFoundError",
        "Severity",
        "SystemFault",
        "TransientError",
        "ValidationError",
        "capture",
        "categories",
        "classify",
        "handle",
        "install_asyncio_handler",
        "layers",
        "locales",
        "messages",
        "negotiate_locale",
        "register",
        "register_category",
        "register_layer",
        "register_messages",
        "uninstall_asyncio_handler",
    }
    assert faultlens.handle is faultlens.errors.handle
    assert faultlens.capture is faultlens.errors.capture


def test_version_comes_from_metadata() -> None:
    """__version__ is the installed distribution's version."""
    from importlib.metadata import version

    assert faultlens.__version__ == version("faultlens")


def test_import_does_not_import_frameworks() -> None:
    """import faultlens pulls in no optional framework."""
    import subprocess
    import sys

    code = (
        "import sys, faultlens, faultlens.integrations;"
        "bad=[m for m in ('starlette','flask','fastapi','httpx','django','opentelemetry')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
