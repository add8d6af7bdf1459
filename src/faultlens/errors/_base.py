"""The root of every exception faultlens defines, and how it carries its classification."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, ClassVar

from faultlens.errors._kinds import (
    Category,
    Classification,
    Layer,
    Severity,
    category_info,
    check_category,
    check_code,
    check_layer,
    check_severity,
    check_status,
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_CLASSIFIED = ("code", "severity", "layer", "retryable", "status")
_MAX_RETRY_AFTER = 86_400.0  # a day: anything longer is a configuration mistake


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= _MAX_RETRY_AFTER
    ):
        raise ConfigurationError(
            f"retry_after must be seconds (or a timedelta) from 0 to {_MAX_RETRY_AFTER:g}, "
            f"not {value!r}"
        )
    return float(seconds)


def _restore(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    # Rebuild without calling __init__: keyword-only constructors cannot be replayed
    # from ``args`` alone, and the state already holds every attribute.
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class FaultlensError(Exception):
    """Base class of every exception faultlens defines or raises.

    Catch this to handle anything faultlens itself raises; an exception
    faultlens raises to a caller says in its message what to do about it.

    It is also the base of the errors applications raise (``ValidationError``,
    ``NotFoundError``...).  Each class carries its classification as class
    attributes: ``category``, ``severity``, ``layer``, ``code``, ``retryable`` and
    ``status``.  A subclass that sets ``category`` in its own body takes that
    category's defaults for the others it does not set; otherwise it inherits
    them.  Values are checked when the class is defined (an unknown category or
    layer raises :class:`ConfigurationError` saying how to register it).

    An instance overrides any of them by keyword (``severity="critical"``,
    ``code="order_locked"``...), and ``retry_after`` (seconds or a ``timedelta``)
    tells clients when to retry.  Every other keyword goes into ``context``, a
    dict for logs and message templates.  Context values are private: responses
    quote only the keys the message template names (redacted and escaped) and
    those a class lists in ``public_context``.  Set overrides at construction:
    the classification is computed then.
    """

    category: str = Category.UNKNOWN
    severity: Severity = Severity.HIGH
    layer: str = Layer.UNKNOWN
    code: str = "internal_error"
    retryable: bool = False
    status: int = 500
    retry_after: float | None = None
    public_context: ClassVar[tuple[str, ...]] = ()
    """Context keys whose (redacted) values responses may show in ``details``."""

    context: Mapping[str, Any] = _EMPTY
    message: str = ""
    _classification: Classification

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _classify_class(cls)

    def __init__(
        self,
        message: str = "",
        *,
        category: str | None = None,
        severity: Severity | str | None = None,
        layer: str | None = None,
        code: str | None = None,
        retryable: bool | None = None,
        status: int | None = None,
        retry_after: float | timedelta | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        if retry_after is not None:
            self.retry_after = _seconds(retry_after)
        if (
            category is None
            and severity is None
            and layer is None
            and code is None
            and retryable is None
            and status is None
        ):
            return  # the class's classification applies (the common case: nothing to build)
        if category is not None:
            self.category = check_category(category)
        if severity is not None:
            self.severity = check_severity(severity)
        if layer is not None:
            self.layer = check_layer(layer)
        if code is not None:
            self.code = check_code(code)
        if retryable is not None:
            self.retryable = bool(retryable)
        if status is not None:
            self.status = check_status(status)
        self._classification = Classification(
            self.category, self.severity, self.layer, self.code, self.retryable, self.status
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (multiprocessing, task queues) keeps the keywords and context.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _classify_class(cls: type[FaultlensError]) -> None:
    """Fill in category defaults, check the class attributes, cache the classification."""
    own = cls.__dict__
    if "category" in own:
        info = category_info(own["category"])
        for name in _CLASSIFIED:
            if name not in own:
                setattr(cls, name, getattr(info, name))
    cls.category = check_category(cls.category)
    cls.severity = check_severity(cls.severity)
    cls.layer = check_layer(cls.layer)
    cls.code = check_code(cls.code)
    cls.retryable = bool(cls.retryable)
    cls.status = check_status(cls.status)
    cls.public_context = tuple(cls.public_context)
    cls._classification = Classification(
        cls.category, cls.severity, cls.layer, cls.code, cls.retryable, cls.status
    )


_classify_class(FaultlensError)


class ConfigurationError(FaultlensError, ValueError):
    """faultlens was configured with a value it cannot use; the message names it."""

    category = Category.CONFIGURATION


class MissingExtraError(FaultlensError, ImportError):
    """An optional integration was used without its extra installed."""

    category = Category.CONFIGURATION
    code = "missing_extra"

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module} needs an optional dependency: run `pip install 'faultlens[{extra}]'`"
        )
        self.extra = extra
