"""Severity, the open sets of categories and layers, and the Classification record.

Categories and layers are plain strings drawn from registries: the built-ins are
below, an application adds its own with :func:`register_category` and
:func:`register_layer`.  Every place that accepts a category or a layer (error
classes, instance overrides, :func:`faultlens.errors.register`) checks it against
the registry, so a typo fails at once with a message saying how to register.
"""

from __future__ import annotations

import enum
import re
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "Category",
    "CategoryInfo",
    "Classification",
    "Layer",
    "Severity",
    "categories",
    "check_category",
    "check_code",
    "check_layer",
    "check_severity",
    "check_status",
    "layers",
    "register_category",
    "register_layer",
]


class Severity(enum.StrEnum):
    """How bad an error is: ``low < medium < high < critical``.

    Members are strings (``Severity.HIGH == "high"``), but they order by
    seriousness, not alphabetically; comparing with a plain severity string
    works too (``Severity.HIGH > "medium"``).
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for ``low`` up to 3 for ``critical``."""
        return _RANKS[self]

    def _other_rank(self, other: object) -> int | None:
        if isinstance(other, Severity):
            return _RANKS[other]
        if isinstance(other, str):
            found = _BY_VALUE.get(other)
            return None if found is None else _RANKS[found]
        return None

    def __lt__(self, other: object) -> bool:
        rank = self._other_rank(other)
        if rank is None:
            return NotImplemented
        return _RANKS[self] < rank

    def __le__(self, other: object) -> bool:
        rank = self._other_rank(other)
        if rank is None:
            return NotImplemented
        return _RANKS[self] <= rank

    def __gt__(self, other: object) -> bool:
        rank = self._other_rank(other)
        if rank is None:
            return NotImplemented
        return _RANKS[self] > rank

    def __ge__(self, other: object) -> bool:
        rank = self._other_rank(other)
        if rank is None:
            return NotImplemented
        return _RANKS[self] >= rank


_RANKS: Final = {member: index for index, member in enumerate(Severity)}
_BY_VALUE: Final = {member.value: member for member in Severity}


class Category:
    """Names of the built-in error categories (plain strings; the set is open).

    Register your own with :func:`register_category`; :func:`categories` lists
    all of them with their defaults.
    """

    VALIDATION: Final = "validation"
    AUTHENTICATION: Final = "authentication"
    AUTHORIZATION: Final = "authorization"
    NOT_FOUND: Final = "not_found"
    CONFLICT: Final = "conflict"
    BUSINESS_RULE: Final = "business_rule"
    INTEGRATION: Final = "integration"
    TRANSIENT: Final = "transient"
    DATA: Final = "data"
    SYSTEM: Final = "system"
    CONFIGURATION: Final = "configuration"
    INTERNAL: Final = "internal"
    UNKNOWN: Final = "unknown"


class Layer:
    """Names of the built-in architectural layers (plain strings; the set is open).

    Register your own with :func:`register_layer`; :func:`layers` lists them.
    """

    API: Final = "api"
    UI: Final = "ui"
    SERVICE: Final = "service"
    CORE: Final = "core"
    INFRASTRUCTURE: Final = "infrastructure"
    BACKGROUND: Final = "background"
    UNKNOWN: Final = "unknown"


@dataclass(frozen=True, slots=True)
class Classification:
    """What faultlens knows about an error: category, severity, layer and how to answer.

    ``code`` is the stable machine-readable name clients and message catalogs key
    on; ``retryable`` says whether the same request may succeed later; ``status``
    is the HTTP status to answer with (400-599).  Instances are shared and
    immutable: :func:`faultlens.errors.classify` returns cached ones.
    """

    category: str
    severity: Severity
    layer: str
    code: str
    retryable: bool
    status: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; ``severity`` is its string value."""
        return {
            "category": self.category,
            "severity": self.severity.value,
            "layer": self.layer,
            "code": self.code,
            "retryable": self.retryable,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    """A registered category and the defaults it gives what names it.

    An error class that sets ``category`` in its own body, and a
    :func:`faultlens.errors.register` rule that gives only a category, take the
    category's ``code``, ``severity``, ``layer``, ``retryable`` and ``status`` for
    everything they do not set themselves.
    """

    name: str
    code: str
    severity: Severity
    layer: str
    retryable: bool
    status: int
    description: str = ""

    def classification(self) -> Classification:
        """Return the classification made of this category's defaults."""
        return Classification(
            self.name, self.severity, self.layer, self.code, self.retryable, self.status
        )


_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CODE = re.compile(r"[a-z][a-z0-9_.]{0,79}")

_lock = threading.Lock()
_layers: dict[str, str] = {
    Layer.API: "HTTP and RPC endpoints, request parsing",
    Layer.UI: "user interface: pages, forms, Streamlit scripts",
    Layer.SERVICE: "application services orchestrating a use case",
    Layer.CORE: "domain logic and pure computation",
    Layer.INFRASTRUCTURE: "databases, queues, files, network, other services",
    Layer.BACKGROUND: "jobs, workers, scheduled tasks",
    Layer.UNKNOWN: "not known",
}
_BUILTIN_LAYERS: Final = frozenset(_layers)


_S = Severity
_categories: dict[str, CategoryInfo] = {
    info.name: info
    for info in (
        CategoryInfo(
            "validation", "validation_error", _S.LOW, "api", False, 422, "the input is invalid"
        ),
        CategoryInfo(
            "authentication",
            "authentication_error",
            _S.MEDIUM,
            "api",
            False,
            401,
            "the caller is not (or no longer) signed in",
        ),
        CategoryInfo(
            "authorization",
            "authorization_error",
            _S.MEDIUM,
            "service",
            False,
            403,
            "the caller may not do this",
        ),
        CategoryInfo(
            "not_found", "not_found", _S.LOW, "service", False, 404, "what was asked for is absent"
        ),
        CategoryInfo(
            "conflict",
            "conflict",
            _S.LOW,
            "service",
            False,
            409,
            "the request clashes with the current state (duplicate, stale version)",
        ),
        CategoryInfo(
            "business_rule",
            "business_rule_violation",
            _S.MEDIUM,
            "service",
            False,
            422,
            "a domain rule forbids the operation",
        ),
        CategoryInfo(
            "integration",
            "integration_error",
            _S.HIGH,
            "infrastructure",
            False,
            502,
            "another system answered wrongly or refused",
        ),
        CategoryInfo(
            "transient",
            "transient_error",
            _S.MEDIUM,
            "infrastructure",
            True,
            503,
            "a passing failure; the same request may succeed later",
        ),
        CategoryInfo(
            "data",
            "data_error",
            _S.HIGH,
            "core",
            False,
            500,
            "stored or received data is inconsistent or corrupt",
        ),
        CategoryInfo(
            "system",
            "system_fault",
            _S.CRITICAL,
            "infrastructure",
            False,
            500,
            "the platform failed: disk, memory, processes, the database itself",
        ),
        CategoryInfo(
            "configuration",
            "configuration_error",
            _S.HIGH,
            "core",
            False,
            500,
            "the application is configured wrongly",
        ),
        CategoryInfo(
            "internal",
            "internal_error",
            _S.HIGH,
            "core",
            False,
            500,
            "a bug: an exception the code did not expect (KeyError, TypeError...)",
        ),
        CategoryInfo(
            "unknown",
            "internal_error",
            _S.HIGH,
            "unknown",
            False,
            500,
            "no rule knows this exception",
        ),
    )
}
_BUILTIN_CATEGORIES: Final = frozenset(_categories)


def _configuration_error(message: str) -> Exception:
    # Imported here: _base imports this module, so a top-level import would cycle.
    from faultlens.errors._base import ConfigurationError

    return ConfigurationError(message)


def check_category(name: object) -> str:
    """Return ``name`` if it is a registered category, else raise ConfigurationError."""
    if isinstance(name, str) and name in _categories:
        return str(name)
    raise _configuration_error(
        f"unknown error category {name!r}: register it first with "
        f"faultlens.errors.register_category({name!r}, ...); "
        f"known categories: {', '.join(sorted(_categories))}"
    )


def check_layer(name: object) -> str:
    """Return ``name`` if it is a registered layer, else raise ConfigurationError."""
    if isinstance(name, str) and name in _layers:
        return str(name)
    raise _configuration_error(
        f"unknown layer {name!r}: register it first with "
        f"faultlens.errors.register_layer({name!r}); known layers: {', '.join(sorted(_layers))}"
    )


def check_severity(value: object) -> Severity:
    """Return ``value`` as a :class:`Severity` (members or their strings)."""
    if isinstance(value, Severity):
        return value
    if isinstance(value, str):
        found = _BY_VALUE.get(value.lower())
        if found is not None:
            return found
    raise _configuration_error(
        f"severity must be one of {', '.join(s.value for s in Severity)}, not {value!r}"
    )


def check_code(value: object) -> str:
    """Return ``value`` if it is a valid error code (``[a-z][a-z0-9_.]*``, <= 80 chars)."""
    if isinstance(value, str) and _CODE.fullmatch(value):
        return str(value)
    raise _configuration_error(
        f"error code {value!r} is not valid: use lower-case letters, digits, '_' and '.', "
        "starting with a letter, at most 80 characters (e.g. 'order_out_of_stock')"
    )


def check_status(value: object) -> int:
    """Return ``value`` if it is an HTTP error status (400-599)."""
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return int(value)
    raise _configuration_error(
        f"status must be an HTTP error status from 400 to 599, not {value!r}"
    )


def _check_name(kind: str, name: object) -> str:
    if isinstance(name, str) and _NAME.fullmatch(name):
        return str(name)
    raise _configuration_error(
        f"{kind} name {name!r} is not valid: use lower-case letters, digits and '_', "
        "starting with a letter, at most 64 characters (e.g. 'inventory')"
    )


# Listeners told when a registry changes (the classification cache clears itself).
_listeners: list[Any] = []


def _changed() -> None:
    for listener in _listeners:
        listener()


def register_category(
    name: str,
    *,
    code: str | None = None,
    severity: Severity | str = Severity.MEDIUM,
    layer: str = Layer.SERVICE,
    retryable: bool = False,
    status: int = 500,
    description: str = "",
) -> CategoryInfo:
    """Add an application category (``"inventory"``, ``"billing"``...) and its defaults.

    ``code`` defaults to ``"<name>_error"``.  Registering the same name again with
    the same values is a no-op; with different values it replaces the previous
    registration (error classes defined before keep the values they took; rules
    registered before keep theirs too).  The built-in categories cannot be
    redefined (subclass their error classes instead).  Raises
    :class:`~faultlens.errors.ConfigurationError` for an invalid name, code,
    severity, layer or status.
    """
    name = _check_name("category", name)
    info = CategoryInfo(
        name,
        check_code(code if code is not None else f"{name}_error"),
        check_severity(severity),
        check_layer(layer),
        bool(retryable),
        check_status(status),
        str(description),
    )
    with _lock:
        current = _categories.get(name)
        if current == info:
            return current
        if name in _BUILTIN_CATEGORIES:
            raise _configuration_error(
                f"{name!r} is a built-in category and cannot be redefined; register a "
                "new category, or subclass its error class to change the defaults"
            )
        _categories[name] = info
    _changed()
    return info


def register_layer(name: str, *, description: str = "") -> str:
    """Add an application layer (``"business_logic"``, ``"etl"``...); returns the name.

    Registering a layer twice is harmless.
    """
    name = _check_name("layer", name)
    with _lock:
        _layers.setdefault(name, str(description))
    return name


def categories() -> MappingProxyType[str, CategoryInfo]:
    """Return a read-only snapshot of the registered categories, by name."""
    return MappingProxyType(dict(_categories))


def layers() -> MappingProxyType[str, str]:
    """Return a read-only snapshot of the registered layers and their descriptions."""
    return MappingProxyType(dict(_layers))


def category_info(name: str) -> CategoryInfo:
    """Return the registration of category ``name`` (ConfigurationError if unknown)."""
    return _categories[check_category(name)]
