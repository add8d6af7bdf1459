"""handle(): turn any exception into a safe, localized ErrorResponse.

The response says what a user may know: a status, a stable code, a message from
the catalog, the correlation id to quote, whether retrying may help, and for
validation errors which fields failed.  The exception's own text, type and stack
never appear in it, except in ``debug`` in a development environment.
``handle()`` does not record anything: call :func:`faultlens.capture` for that
(the web integrations do both).
"""

from __future__ import annotations

import http
import math
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Final

# Modules, not names: faultlens.context is still initialising when this module is
# first imported (it imports faultlens.errors through _w3c).
from faultlens import context as _context
from faultlens._metrics import counters, report_once
from faultlens.errors._base import FaultlensError
from faultlens.errors._catalog import (
    DEFAULT_LOCALE,
    FALLBACK_MESSAGE,
    catalog_for,
    fill,
    negotiate_locale,
    render,
)
from faultlens.errors._classify import classify
from faultlens.errors._kinds import Classification
from faultlens.errors._safe import safe_text, safe_value
from faultlens.errors._taxonomy import ValidationError

__all__ = ["DEVELOPMENT_ENVIRONMENTS", "ErrorResponse", "handle"]

DEVELOPMENT_ENVIRONMENTS: Final = frozenset({"development", "dev", "local"})
"""``faultlens.configure(environment=...)`` values in which ``debug=True`` is honoured."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MAX_FIELD_ERRORS = 50
_MAX_MESSAGE = 200  # a library's per-field message
_MAX_DEBUG_TEXT = 2000
_MAX_STACK_LINES = 200
_MAX_RETRY_AFTER = 86_400
# Where FastAPI puts a request parameter; not part of the field name users know.
_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie", "form"})
_PROBLEM_MEMBERS = frozenset(
    {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "code",
        "correlation_id",
        "retry_possible",
        "retry_after",
        "category",
        "severity",
        "debug",
    }
)


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """What to answer a user about an error: safe to serialise and send as it is.

    ``message`` comes from the catalog in ``locale``; ``details`` holds only
    values faultlens made safe (field errors of validation errors, a class's
    ``public_context``); ``retry_after`` is in seconds when known; ``debug`` is
    set only by ``handle(..., debug=True)`` in a development environment.
    """

    status: int
    code: str
    message: str
    correlation_id: str | None
    retry_possible: bool
    details: Mapping[str, Any]
    category: str
    severity: str
    retry_after: float | None = None
    locale: str = DEFAULT_LOCALE
    debug: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON body (schema in docs/messages.md); always the same keys.

        ``status``, ``code``, ``message``, ``correlation_id``, ``retry_possible``,
        ``category``, ``severity`` and ``details`` are always present;
        ``retry_after`` (whole seconds) and ``debug`` only when set.
        """
        body: dict[str, Any] = {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "correlation_id": self.correlation_id,
            "retry_possible": self.retry_possible,
            "category": self.category,
            "severity": self.severity,
            "details": _plain(self.details),
        }
        if self.retry_after is not None:
            body["retry_after"] = _whole_seconds(self.retry_after)
        if self.debug is not None:
            body["debug"] = _plain(self.debug)
        return body

    def to_problem(
        self, *, instance: str | None = None, type_base: str | None = None
    ) -> dict[str, Any]:
        """Return an RFC 9457 ``application/problem+json`` body.

        ``type`` is ``about:blank`` (``title`` is then the HTTP status phrase), or
        ``type_base + code`` when you publish a page per code.  ``detail`` is the
        message; ``instance`` is the URI of this occurrence if you give one.  The
        other ``to_dict()`` members follow as extensions, and the ``details``
        entries too (``errors`` for validation errors, as in the RFC's example),
        except any that would overwrite a member above.
        """
        problem: dict[str, Any] = {
            "type": f"{type_base}{self.code}" if type_base else "about:blank",
            "title": _phrase(self.status),
            "status": self.status,
            "detail": self.message,
        }
        if instance is not None:
            problem["instance"] = instance
        problem["code"] = self.code
        problem["correlation_id"] = self.correlation_id
        problem["retry_possible"] = self.retry_possible
        problem["category"] = self.category
        problem["severity"] = self.severity
        if self.retry_after is not None:
            problem["retry_after"] = _whole_seconds(self.retry_after)
        for key, value in self.details.items():
            if key not in _PROBLEM_MEMBERS:
                problem[key] = _plain(value)
        if self.debug is not None:
            problem["debug"] = _plain(self.debug)
        return problem

    def headers(self) -> dict[str, str]:
        """Return the headers to send with the response.

        The correlation id under the configured header name (``X-Correlation-ID``
        by default), ``Retry-After`` in whole seconds when retrying may help and
        the wait is known, and ``Content-Language``.  Content-Type is the
        caller's: ``application/json`` for :meth:`to_dict`,
        ``application/problem+json`` for :meth:`to_problem`.
        """
        headers: dict[str, str] = {}
        cid = self.correlation_id
        if cid and _header_safe(cid):
            headers[_context.get_header_names()[0]] = cid
        if self.retry_after is not None and self.retry_possible:
            headers["Retry-After"] = str(_whole_seconds(self.retry_after))
        if _header_safe(self.locale):
            headers["Content-Language"] = self.locale
        return headers


def _header_safe(value: str) -> bool:
    return len(value) <= 256 and value.isascii() and value.isprintable()


def _whole_seconds(seconds: float) -> int:
    return max(0, math.ceil(seconds))


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """A JSON-ready copy: mappings become dicts, sequences lists."""
    if type(value) in _SCALARS:
        return value
    if value is _EMPTY:
        return {}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# -- handle -----------------------------------------------------------------------------


def handle(exc: BaseException, *, locale: str | None = None, debug: bool = False) -> ErrorResponse:
    """Return the :class:`ErrorResponse` to send a user for ``exc``; never raises.

    ``locale`` is a language tag or an ``Accept-Language`` value (``"pt-BR"``,
    ``"pt_br"``, ``"pt"``, ``"pt-BR,pt;q=0.9"``); without one, the current
    context's ``preferences["locale"]`` is used, then English.  The message comes
    from the catalog (see :func:`register_messages`); values it quotes are
    redacted, escaped and capped.  The correlation id is the current one.

    ``debug=True`` adds the exception type, text and stack (still redacted) under
    ``debug``, but only when ``faultlens.configure(environment=...)`` is one of
    :data:`DEVELOPMENT_ENVIRONMENTS`; elsewhere it is ignored, counted
    (``errors.debug_ignored``) and warned about once.
    """
    try:
        classification = classify(exc)
        ctx = _context.current_context()
        cid = None if ctx is None else ctx.correlation_id
        if locale is None and ctx is not None and ctx.preferences:
            preferred = ctx.preferences.get("locale")
            locale = preferred if isinstance(preferred, str) else None
        tag = negotiate_locale(locale) if locale else DEFAULT_LOCALE
        retry_after = _retry_after(exc) if classification.retryable else None
        field: str | None = None
        field_errors: list[dict[str, Any]] | None = None
        omitted = 0
        if classification.category == "validation":
            if isinstance(exc, ValidationError):
                if exc.field is not None:
                    field = safe_value("field", exc.field)
            else:
                field_errors, omitted, field = _library_field_errors(exc)
        # The common case is a template without values: two dict lookups.
        catalog = catalog_for(tag)
        template = catalog.get(classification.code)
        if template is None:
            template = catalog.get(f"category.{classification.category}")
        if isinstance(template, str):
            message = template
        else:
            values = _Values(exc, classification, cid, field, retry_after)
            text = None if template is None else fill(template, values)
            message = (
                text
                if text is not None
                else render(
                    tag, (classification.code, f"category.{classification.category}"), values
                )
            )
        if (
            field_errors is not None
            or field is not None
            or (isinstance(exc, FaultlensError) and exc.public_context)
        ):
            details = _details(
                exc,
                classification=classification,
                field=field,
                field_errors=field_errors,
                omitted=omitted,
                message=message,
                locale=tag,
            )
        else:
            details = _EMPTY
        return _response(
            classification.status,
            classification.code,
            message,
            cid,
            classification.retryable,
            details,
            classification.category,
            str.__str__(classification.severity),  # the plain string, without Enum's .value
            retry_after,
            tag,
            _debug(exc, classification) if debug else None,
        )
    except Exception as failure:  # answering must never fail: a plain 500 instead
        counters.incr("errors.handle_failed")
        report_once(
            "errors.handle_failed",
            f"faultlens.handle() failed ({type(failure).__name__}); answered a generic 500. "
            "Failures are counted in faultlens.stats()['errors.handle_failed']",
        )
        try:
            cid = _context.correlation_id()
        except Exception:
            cid = None
        return ErrorResponse(
            500, "internal_error", FALLBACK_MESSAGE, cid, False, _EMPTY, "unknown", "high"
        )


_new = object.__new__
# The slots' own setters: a frozen dataclass's __init__ goes through object.__setattr__
# once per field, which costs twice as much on the hot path of every error answer.
(
    _set_status,
    _set_code,
    _set_message,
    _set_correlation_id,
    _set_retry_possible,
    _set_details,
    _set_category,
    _set_severity,
    _set_retry_after,
    _set_locale,
    _set_debug,
) = (getattr(ErrorResponse, name).__set__ for name in ErrorResponse.__dataclass_fields__)


def _response(  # noqa: PLR0917 - mirrors the dataclass fields, in order
    status: int,
    code: str,
    message: str,
    correlation_id: str | None,
    retry_possible: bool,
    details: Mapping[str, Any],
    category: str,
    severity: str,
    retry_after: float | None,
    locale: str,
    debug: Mapping[str, Any] | None,
) -> ErrorResponse:
    """ErrorResponse(...) with every field, built through its slot descriptors."""
    response: ErrorResponse = _new(ErrorResponse)
    _set_status(response, status)
    _set_code(response, code)
    _set_message(response, message)
    _set_correlation_id(response, correlation_id)
    _set_retry_possible(response, retry_possible)
    _set_details(response, details)
    _set_category(response, category)
    _set_severity(response, severity)
    _set_retry_after(response, retry_after)
    _set_locale(response, locale)
    _set_debug(response, debug)
    return response


class _Values:
    """The values a template may quote, each made safe when asked for."""

    __slots__ = ("cid", "classification", "exc", "field", "retry_after")

    def __init__(
        self,
        exc: BaseException,
        classification: Classification,
        cid: str | None,
        field: str | None,
        retry_after: float | None,
    ) -> None:
        self.exc = exc
        self.classification = classification
        self.cid = cid
        self.field = field
        self.retry_after = retry_after

    def __call__(self, name: str) -> str | None:
        if name == "correlation_id":
            return self.cid
        if name == "field":
            return self.field
        if name == "retry_after":
            return None if self.retry_after is None else str(_whole_seconds(self.retry_after))
        if name == "status":
            return str(self.classification.status)
        exc = self.exc
        if name == "value" or not isinstance(exc, FaultlensError):
            return None  # ValidationError.value is never shown
        if name in ("system", "operation", "component"):
            return safe_value(name, getattr(exc, name, None))
        return safe_value(name, exc.context.get(name))


def _details(
    exc: BaseException,
    *,
    classification: Classification,
    field: str | None,
    field_errors: list[dict[str, Any]] | None,
    omitted: int,
    message: str,
    locale: str,
) -> Mapping[str, Any]:
    details: dict[str, Any] = {}
    if field_errors is not None:
        for entry in field_errors:
            if "msg" not in entry:  # the library's text was unsafe: ours instead
                entry["msg"] = render(
                    locale, ("validation_error", "category.validation"), _only_field(entry["field"])
                )
        details["errors"] = field_errors
        if omitted:
            details["errors_omitted"] = omitted
    elif field is not None:
        details["errors"] = [
            {"loc": _loc_of(field), "field": field, "type": classification.code, "msg": message}
        ]
    if isinstance(exc, FaultlensError) and exc.public_context:
        for key in exc.public_context:
            if key in exc.context and key not in details:
                shown = safe_value(key, exc.context[key])
                if shown is not None:
                    details[key] = shown
    return MappingProxyType(details) if details else _EMPTY


def _only_field(field: str) -> Callable[[str], str | None]:
    def value(name: str) -> str | None:
        return field if name == "field" and field else None

    return value


def _loc_of(field: str) -> list[str | int]:
    return [int(part) if part.isascii() and part.isdigit() else part for part in field.split(".")]


def _library_field_errors(
    exc: BaseException,
) -> tuple[list[dict[str, Any]] | None, int, str | None]:
    """Safe field errors from pydantic-style ``exc.errors()``: loc, field, type, msg.

    Returns the entries, how many were left out, and the failing field's name when
    exactly one field failed.  The input value, context and URLs are dropped; a
    message that quotes the input is replaced by the catalog's.
    """
    errors_method = getattr(exc, "errors", None)
    if not callable(errors_method):
        return None, 0, None
    try:
        raw = errors_method()
    except Exception:
        counters.incr("errors.field_errors_failed")
        return None, 0, None
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        return None, 0, None
    strip_part = type(exc).__module__.startswith("fastapi")
    entries: list[dict[str, Any]] = []
    for item in raw[:_MAX_FIELD_ERRORS]:
        if not isinstance(item, Mapping):
            continue
        loc = _safe_loc(item.get("loc"))
        named = loc[1:] if strip_part and len(loc) > 1 and loc[0] in _REQUEST_PARTS else loc
        entry: dict[str, Any] = {
            "loc": loc,
            "field": ".".join(str(part) for part in named),
            "type": safe_value("type", item.get("type")) or "invalid",
        }
        msg = _safe_library_message(item)
        if msg is not None:
            entry["msg"] = msg
        entries.append(entry)
    omitted = max(0, len(raw) - _MAX_FIELD_ERRORS)
    fields = {entry["field"] for entry in entries}
    single = next(iter(fields)) if len(fields) == 1 and not omitted else None
    return entries, omitted, (single or None)


def _safe_loc(loc: object) -> list[str | int]:
    if not isinstance(loc, list | tuple):
        loc = () if loc is None else (loc,)
    out: list[str | int] = []
    for part in loc[:16]:
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(part)
        else:
            shown = safe_value("loc", part if isinstance(part, str) else str(part), 64)
            out.append(shown if shown is not None else "?")
    return out


def _safe_library_message(item: Mapping[Any, Any]) -> str | None:
    msg = item.get("msg")
    if not isinstance(msg, str):
        return None
    given = item.get("input")
    if isinstance(given, str | int | float) and not isinstance(given, bool):
        echoed = str(given)
        if len(echoed) >= 4 and echoed in msg:
            return None  # the message quotes what the user sent
    return safe_text(msg, _MAX_MESSAGE)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds to wait: the exception's ``retry_after``, else a response's Retry-After."""
    try:
        if isinstance(exc, FaultlensError):
            return exc.retry_after
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        getter: Callable[[str], Any] | None = getattr(headers, "get", None)
        if getter is None:
            return None
        return _parse_retry_after(getter("Retry-After"))
    except Exception:  # a hostile attribute: no wait is known
        return None


def _parse_retry_after(value: object) -> float | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = max(0.0, when.timestamp() - time.time())
    return min(seconds, float(_MAX_RETRY_AFTER))


# -- debug ------------------------------------------------------------------------------

_debug_warned = False


def _debug(exc: BaseException, classification: Classification) -> Mapping[str, Any] | None:
    global _debug_warned
    from faultlens._config import get_config  # _config imports this package

    config = get_config()
    environment = (config.environment or "") if config is not None else ""
    if environment.lower() not in DEVELOPMENT_ENVIRONMENTS:
        counters.incr("errors.debug_ignored")
        if not _debug_warned:
            _debug_warned = True
            warnings.warn(
                "faultlens.handle(debug=True) is ignored outside development: configure "
                "faultlens with environment='development' (or 'dev', 'local') to see "
                f"exception details in responses (environment is {environment or 'unset'!r})",
                RuntimeWarning,
                stacklevel=4,
            )
        return None
    try:
        text = str(exc)
    except Exception:
        text = "<str() failed>"
    kind = type(exc)
    lines = "".join(traceback.format_exception(exc)).splitlines()[-_MAX_STACK_LINES:]
    return MappingProxyType(
        {
            "exception": f"{kind.__module__}.{kind.__qualname__}",
            "message": safe_text(text, _MAX_DEBUG_TEXT),
            "classification": classification.to_dict(),
            "stack": [safe_text(line, 500) for line in lines],
        }
    )
