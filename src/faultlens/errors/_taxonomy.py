"""The errors applications raise, one per built-in category.

Each takes a developer-facing message (logged, never shown to users: responses
come from the message catalog), keyword overrides of its classification and
free-form context; see :class:`~faultlens.errors.FaultlensError`.
"""

from __future__ import annotations

from typing import Any

from faultlens.errors._base import FaultlensError
from faultlens.errors._kinds import Category

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BusinessRuleError",
    "ConflictError",
    "DataError",
    "IntegrationError",
    "NotFoundError",
    "SystemFault",
    "TransientError",
    "ValidationError",
]


class ValidationError(FaultlensError):
    """The caller's input is invalid (422, low severity, not retryable).

    ``field`` names what failed (``"email"``, ``"items.0.quantity"``) and is shown
    to the user; ``value`` is kept on the exception for your own code but never
    appears in a response, a message or ``context``.

    Not :class:`pydantic.ValidationError`: pydantic's is raised by models and is
    classified as a validation error too (its field errors become the response
    details), but the two are unrelated classes.  Import this one as
    ``from faultlens.errors import ValidationError`` (or alias it, e.g.
    ``InvalidInput``) where both are used.
    """

    category = Category.VALIDATION
    field: str | None = None
    value: Any = None

    def __init__(
        self, message: str = "", *, field: str | None = None, value: Any = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.field = field
        self.value = value


class AuthenticationError(FaultlensError):
    """The caller is not signed in, or their credentials are wrong or expired (401)."""

    category = Category.AUTHENTICATION


class AuthorizationError(FaultlensError):
    """The caller is signed in but may not do this (403)."""

    category = Category.AUTHORIZATION


class NotFoundError(FaultlensError):
    """What the caller asked for does not exist, or is hidden from them (404)."""

    category = Category.NOT_FOUND


class ConflictError(FaultlensError):
    """The request clashes with the current state: a duplicate, a stale version (409)."""

    category = Category.CONFLICT


class BusinessRuleError(FaultlensError):
    """A domain rule forbids the operation: a limit, a state machine, a policy (422)."""

    category = Category.BUSINESS_RULE


class IntegrationError(FaultlensError):
    """Another system answered wrongly or refused (502, high severity).

    ``system`` names it (``"payments"``) and ``operation`` what was asked of it
    (``"charge"``); both are for logs and grouping, not shown to users by the
    built-in messages.  Raise it ``from`` the original exception.  Pass
    ``retryable=True`` when the other side may recover by itself.
    """

    category = Category.INTEGRATION
    system: str | None = None
    operation: str | None = None

    def __init__(
        self,
        message: str = "",
        *,
        system: str | None = None,
        operation: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.system = system
        self.operation = operation


class TransientError(FaultlensError):
    """A passing failure: the same request may succeed later (503, retryable).

    Give ``retry_after`` (seconds or a ``timedelta``) when you know how long to
    wait; responses then carry a ``Retry-After`` header.
    """

    category = Category.TRANSIENT


class DataError(FaultlensError):
    """Stored or received data is inconsistent or corrupt (500, high severity)."""

    category = Category.DATA


class SystemFault(FaultlensError):
    """The platform failed: disk, memory, a process, the database itself (500, critical).

    ``component`` names the failing part (``"port_registry"``, ``"disk"``).
    Named ``SystemFault`` so as not to shadow the built-in ``SystemError``.
    """

    category = Category.SYSTEM
    component: str | None = None

    def __init__(self, message: str = "", *, component: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.component = component
