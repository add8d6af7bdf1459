"""Errors: the exception tree, classification of any exception, and safe responses.

Exception tree::

    FaultlensError                 root of everything faultlens defines
    ├── ConfigurationError         (also ValueError) faultlens or a registration is misconfigured
    ├── MissingExtraError          (also ImportError) an optional extra is not installed
    ├── ValidationError            the caller's input is invalid              422
    ├── AuthenticationError        not signed in / bad credentials            401
    ├── AuthorizationError         signed in, not allowed                     403
    ├── NotFoundError              absent, or hidden from the caller          404
    ├── ConflictError              duplicate, stale version                   409
    ├── BusinessRuleError          a domain rule forbids it                   422
    ├── IntegrationError           another system failed or refused           502
    ├── TransientError             passing failure, retry later (retryable)   503
    ├── DataError                  stored or received data is inconsistent    500
    └── SystemFault                the platform failed (disk, memory...)      500

Applications raise these (or their own subclasses) with a developer-facing
message and context; :func:`classify` maps *any* exception (these, the standard
library's, sqlite3, psycopg, httpx, requests, pydantic, web frameworks) to a
:class:`Classification`; :func:`handle` turns one into an :class:`ErrorResponse`
whose message comes from a localized catalog and never contains the raw
exception text.  ``faultlens.errors.ValidationError`` is not pydantic's; both
classify as validation errors.  docs/errors.md and docs/messages.md have the rules.
"""

from typing import TYPE_CHECKING

from faultlens.errors._base import ConfigurationError, FaultlensError, MissingExtraError
from faultlens.errors._catalog import locales, messages, negotiate_locale, register_messages
from faultlens.errors._classify import classify, register
from faultlens.errors._kinds import (
    Category,
    CategoryInfo,
    Classification,
    Layer,
    Severity,
    categories,
    layers,
    register_category,
    register_layer,
)
from faultlens.errors._responses import ErrorResponse, handle
from faultlens.errors._taxonomy import (
    AuthenticationError,
    AuthorizationError,
    BusinessRuleError,
    ConflictError,
    DataError,
    IntegrationError,
    NotFoundError,
    SystemFault,
    TransientError,
    ValidationError,
)

__all__ = [
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
]

if TYPE_CHECKING:  # loaded lazily at run time, see __getattr__ below
    from faultlens.errors._capture import CaptureSettings, capture
    from faultlens.errors._hooks import install_asyncio_handler, uninstall_asyncio_handler

# Capture needs the event bus and the context, which import this package: those names
# load on first use instead of at import (an eager import would be circular).
_LAZY = {
    "CaptureSettings": "faultlens.errors._capture",
    "capture": "faultlens.errors._capture",
    "install_asyncio_handler": "faultlens.errors._hooks",
    "uninstall_asyncio_handler": "faultlens.errors._hooks",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faultlens.errors' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
