"""Built-in classification rules: the standard library and common third-party libraries.

Keyed by ``"module.QualName"`` of the class as it appears in an MRO, so no library
is imported here; a value is a fixed :class:`Classification` or a function of the
instance returning one (or ``None`` to let the next class in the MRO decide).
docs/errors.md has the table.
"""

from __future__ import annotations

import errno
import http
import sys
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

from faultlens.errors._kinds import Classification, Severity, category_info

__all__ = ["BUILTIN_RULES", "UNKNOWN", "classification_for_status"]

Rule: TypeAlias = Classification | Callable[[BaseException], Classification | None]


def _c(
    category: str,
    code: str | None = None,
    *,
    severity: Severity | None = None,
    layer: str | None = None,
    retryable: bool | None = None,
    status: int | None = None,
) -> Classification:
    info = category_info(category)
    return Classification(
        info.name,
        info.severity if severity is None else severity,
        info.layer if layer is None else layer,
        info.code if code is None else code,
        info.retryable if retryable is None else retryable,
        info.status if status is None else status,
    )


_LOW, _MEDIUM, _HIGH, _CRITICAL = Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL
_INFRA = "infrastructure"

UNKNOWN: Final = _c("unknown")
INTERNAL: Final = _c("internal")

# -- standard library -------------------------------------------------------------------

TIMEOUT: Final = _c("transient", "timeout", status=504)
CONNECTION_FAILED: Final = _c("transient", "connection_failed")
CONNECTION_LOST: Final = _c("transient", "connection_lost")
RESOURCE_BUSY: Final = _c("transient", "resource_busy")
NAME_RESOLUTION: Final = _c("transient", "name_resolution_failed")
DISK_FULL: Final = _c("system", "disk_full")
TOO_MANY_FILES: Final = _c("system", "too_many_open_files")
OUT_OF_MEMORY: Final = _c("system", "out_of_memory")
READ_ONLY: Final = _c("system", "read_only_filesystem")
FILE_NOT_FOUND: Final = _c("system", "file_not_found", severity=_HIGH)
PERMISSION_DENIED: Final = _c("system", "permission_denied", severity=_HIGH)
OS_ERROR: Final = _c("system", "os_error", severity=_HIGH)
TLS_ERROR: Final = _c("integration", "tls_error")
MALFORMED_JSON: Final = _c("data", "malformed_json", severity=_MEDIUM, layer="api", status=400)
MALFORMED_TEXT: Final = _c("data", "malformed_text", severity=_MEDIUM, layer="api", status=400)
RECURSION: Final = _c("internal", "recursion_limit")
MISSING_DEPENDENCY: Final = _c("configuration", "missing_dependency")

_ERRNO: dict[int, Classification] = {}
for _names, _classification in (
    (("ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "EHOSTDOWN"), CONNECTION_FAILED),
    (("EADDRNOTAVAIL",), CONNECTION_FAILED),
    (("ECONNRESET", "ECONNABORTED", "EPIPE", "ENETRESET", "ESHUTDOWN"), CONNECTION_LOST),
    (("ETIMEDOUT",), TIMEOUT),
    (("EAGAIN", "EWOULDBLOCK", "EBUSY", "EINTR"), RESOURCE_BUSY),
    (("ENOSPC", "EDQUOT"), DISK_FULL),
    (("EMFILE", "ENFILE"), TOO_MANY_FILES),
    (("ENOMEM",), OUT_OF_MEMORY),
    (("EROFS",), READ_ONLY),
    (("ENOENT",), FILE_NOT_FOUND),
    (("EACCES", "EPERM"), PERMISSION_DENIED),
):
    for _name in _names:
        _number = getattr(errno, _name, None)  # not every platform has every errno
        if _number is not None:
            _ERRNO[_number] = _classification


def _os_error(exc: BaseException) -> Classification:
    number = getattr(exc, "errno", None)
    found = _ERRNO.get(number) if isinstance(number, int) else None
    return OS_ERROR if found is None else found


def _exception_group(exc: BaseException) -> Classification | None:
    """The most severe classification among the group's leaves (the first on a tie)."""
    from faultlens.errors._classify import classify

    best: Classification | None = None
    pending = list(getattr(exc, "exceptions", ()))
    seen = 0
    while pending and seen < 256:  # groups nest; a hostile one is cut off, not walked forever
        leaf = pending.pop(0)
        seen += 1
        if isinstance(leaf, BaseExceptionGroup):
            pending.extend(leaf.exceptions)
            continue
        found = classify(leaf)
        if best is None or found.severity > best.severity:
            best = found
    return best


# -- HTTP statuses ----------------------------------------------------------------------


def _status_code(status: int) -> str:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return "client_error" if status < 500 else "server_error"
    return "".join(ch if ch.isalnum() else "_" for ch in phrase.lower()).strip("_")


_BY_STATUS: Mapping[int, Classification] = {
    400: _c("validation", "bad_request", status=400),
    401: _c("authentication"),
    403: _c("authorization"),
    404: _c("not_found"),
    405: _c("validation", "method_not_allowed", status=405),
    406: _c("validation", "not_acceptable", status=406),
    408: _c("transient", "request_timeout", status=408),
    409: _c("conflict"),
    410: _c("not_found", "gone", status=410),
    413: _c("validation", "payload_too_large", status=413),
    415: _c("validation", "unsupported_media_type", status=415),
    422: _c("validation"),
    429: _c("transient", "rate_limited", status=429, severity=_LOW),
    500: INTERNAL,
    501: _c("internal", "not_implemented", status=501),
    502: _c("integration", "bad_gateway"),
    503: _c("transient", "service_unavailable"),
    504: _c("transient", "upstream_timeout", status=504),
}
_status_cache: dict[int, Classification] = {}


def classification_for_status(status: int) -> Classification | None:
    """The classification of an HTTP error status a framework raised (None below 400)."""
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    if not 400 <= status <= 599:
        return None
    found = _status_cache.get(status)
    if found is None:
        if status < 500:
            found = _c("validation", _status_code(status), status=status)
        else:
            found = _c("system", _status_code(status), severity=_HIGH, status=status)
        if len(_status_cache) < 256:
            _status_cache[status] = found
    return found


def _int_attribute(exc: object, *names: str) -> int | None:
    for name in names:
        value = getattr(exc, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _framework_http(exc: BaseException) -> Classification | None:
    # starlette/fastapi HTTPException.status_code, werkzeug HTTPException.code
    status = _int_attribute(exc, "status_code", "code")
    return None if status is None else classification_for_status(status)


# -- calls to other services ------------------------------------------------------------

UPSTREAM_RATE_LIMITED: Final = _c(
    "integration", "upstream_rate_limited", severity=_MEDIUM, retryable=True, status=503
)
UPSTREAM_UNAVAILABLE: Final = _c("integration", "upstream_unavailable", retryable=True)
UPSTREAM_SERVICE_UNAVAILABLE: Final = _c(
    "integration", "upstream_unavailable", retryable=True, status=503
)
UPSTREAM_GATEWAY_TIMEOUT: Final = _c("integration", "upstream_timeout", retryable=True, status=504)
UPSTREAM_REJECTED: Final = _c("integration", "upstream_rejected")
UPSTREAM_TIMEOUT: Final = _c("transient", "upstream_timeout", status=504)
UPSTREAM_UNREACHABLE: Final = _c("transient", "upstream_unreachable")
UPSTREAM_INVALID: Final = _c("integration", "upstream_invalid_response")
INTEGRATION: Final = _c("integration")


def upstream_status(status: int | None) -> Classification | None:
    """Classify a failed call by the HTTP status the other service answered."""
    if status is None:
        return None
    if status == 429:
        return UPSTREAM_RATE_LIMITED
    if status in (408, 504):
        return UPSTREAM_GATEWAY_TIMEOUT
    if status == 503:
        return UPSTREAM_SERVICE_UNAVAILABLE
    if 500 <= status <= 599:
        return UPSTREAM_UNAVAILABLE
    if 400 <= status <= 499:
        return UPSTREAM_REJECTED
    return None


def _response_status(exc: BaseException) -> Classification | None:
    # httpx.HTTPStatusError.response.status_code, requests.HTTPError.response.status_code
    response = getattr(exc, "response", None)
    return upstream_status(_int_attribute(response, "status_code"))


def _urllib_status(exc: BaseException) -> Classification | None:
    return upstream_status(_int_attribute(exc, "code"))


# -- databases --------------------------------------------------------------------------

DATABASE_BUSY: Final = _c("transient", "database_busy", layer=_INFRA)
DATABASE_UNAVAILABLE: Final = _c("transient", "database_unavailable", layer=_INFRA)
DATABASE_TIMEOUT: Final = _c("transient", "database_timeout", layer=_INFRA, status=504)
SERIALIZATION_FAILURE: Final = _c("transient", "serialization_failure", layer=_INFRA)
DEADLOCK: Final = _c("transient", "deadlock_detected", layer=_INFRA)
DUPLICATE: Final = _c("conflict", "duplicate", layer=_INFRA)
REFERENCE_CONFLICT: Final = _c("conflict", "reference_conflict", layer=_INFRA)
CONSTRAINT_VIOLATION: Final = _c("data", "constraint_violation", layer=_INFRA)
INVALID_DATA: Final = _c("data", "invalid_data", layer=_INFRA)
DATABASE_CORRUPT: Final = _c("data", "database_corrupt", severity=_CRITICAL, layer=_INFRA)
DATABASE_ERROR: Final = _c("system", "database_error", severity=_HIGH)
DATABASE_MISUSE: Final = _c("internal", "database_misuse", layer=_INFRA)
DATABASE_READ_ONLY: Final = _c("system", "database_read_only")
DATABASE_AUTH: Final = _c("configuration", "database_auth_failed", layer=_INFRA)
DATABASE_CONFIG: Final = _c("configuration", "database_misconfigured", layer=_INFRA)
DATABASE_DISK_FULL: Final = _c("system", "disk_full")
DATABASE_OUT_OF_MEMORY: Final = _c("system", "out_of_memory")
DATABASE_FAILURE: Final = _c("system", "database_failure")

_SQLITE_BY_NAME: Mapping[str, Classification] = {
    "SQLITE_BUSY": DATABASE_BUSY,
    "SQLITE_LOCKED": DATABASE_BUSY,
    "SQLITE_FULL": DATABASE_DISK_FULL,
    "SQLITE_NOMEM": DATABASE_OUT_OF_MEMORY,
    "SQLITE_READONLY": DATABASE_READ_ONLY,
    "SQLITE_CANTOPEN": DATABASE_FAILURE,
    "SQLITE_IOERR": DATABASE_FAILURE,
    "SQLITE_CORRUPT": DATABASE_CORRUPT,
    "SQLITE_NOTADB": DATABASE_CORRUPT,
    "SQLITE_CONSTRAINT_UNIQUE": DUPLICATE,
    "SQLITE_CONSTRAINT_PRIMARYKEY": DUPLICATE,
    "SQLITE_CONSTRAINT_FOREIGNKEY": REFERENCE_CONFLICT,
    "SQLITE_CONSTRAINT_NOTNULL": CONSTRAINT_VIOLATION,
    "SQLITE_CONSTRAINT_CHECK": CONSTRAINT_VIOLATION,
    "SQLITE_TOOBIG": INVALID_DATA,
    "SQLITE_MISMATCH": INVALID_DATA,
}
# When the error name is missing (errors raised by hand, old builds): the message.
_SQLITE_BY_TEXT: tuple[tuple[str, Classification], ...] = (
    ("database is locked", DATABASE_BUSY),
    ("database table is locked", DATABASE_BUSY),
    ("database is busy", DATABASE_BUSY),
    ("unique constraint failed", DUPLICATE),
    ("foreign key constraint failed", REFERENCE_CONFLICT),
    ("constraint failed", CONSTRAINT_VIOLATION),
    ("database or disk is full", DATABASE_DISK_FULL),
    ("unable to open database", DATABASE_FAILURE),
    ("disk i/o error", DATABASE_FAILURE),
    ("readonly database", DATABASE_READ_ONLY),
    ("file is not a database", DATABASE_CORRUPT),
    ("malformed", DATABASE_CORRUPT),
)


def _sqlite(fallback: Classification) -> Callable[[BaseException], Classification]:
    def rule(exc: BaseException) -> Classification:
        name = getattr(exc, "sqlite_errorname", None)
        if isinstance(name, str):
            found = _SQLITE_BY_NAME.get(name)
            if found is None:
                # Extended codes share their primary code's prefix (SQLITE_IOERR_READ...).
                found = _SQLITE_BY_NAME.get("_".join(name.split("_")[:2]))
            if found is not None:
                return found
        text = str(exc)[:200].lower()
        for needle, classification in _SQLITE_BY_TEXT:
            if needle in text:
                return classification
        return fallback

    return rule


_SQLSTATE: Mapping[str, Classification] = {
    "23505": DUPLICATE,
    "23503": REFERENCE_CONFLICT,
    "23P01": _c("conflict", layer=_INFRA),  # exclusion_violation: overlapping ranges
    "23502": CONSTRAINT_VIOLATION,
    "23514": CONSTRAINT_VIOLATION,
    "40001": SERIALIZATION_FAILURE,
    "40P01": DEADLOCK,
    "55P03": DATABASE_BUSY,  # lock_not_available
    "57014": DATABASE_TIMEOUT,  # query_canceled (statement_timeout)
    "57P01": DATABASE_UNAVAILABLE,  # admin_shutdown
    "57P02": DATABASE_UNAVAILABLE,  # crash_shutdown
    "57P03": DATABASE_UNAVAILABLE,  # cannot_connect_now
    "53100": DATABASE_DISK_FULL,
    "53200": DATABASE_OUT_OF_MEMORY,
    "53300": DATABASE_BUSY,  # too_many_connections
    "XX000": DATABASE_FAILURE,
    "XX001": DATABASE_CORRUPT,
    "XX002": DATABASE_CORRUPT,
}
_SQLSTATE_CLASS: Mapping[str, Classification] = {
    "08": DATABASE_UNAVAILABLE,  # connection exception
    "22": INVALID_DATA,  # data exception
    "23": CONSTRAINT_VIOLATION,  # integrity constraint violation
    "25": DATABASE_MISUSE,  # invalid transaction state
    "28": DATABASE_AUTH,  # invalid authorization specification
    "3D": DATABASE_CONFIG,  # invalid catalog name
    "3F": DATABASE_CONFIG,  # invalid schema name
    "40": SERIALIZATION_FAILURE,  # transaction rollback
    "42": DATABASE_MISUSE,  # syntax error or access rule violation
    "53": DATABASE_BUSY,  # insufficient resources
    "54": DATABASE_MISUSE,  # program limit exceeded
    "57": DATABASE_UNAVAILABLE,  # operator intervention
    "58": DATABASE_FAILURE,  # system error
    "XX": DATABASE_FAILURE,  # internal error
}


def sqlstate(state: object) -> Classification | None:
    """Classify a PostgreSQL SQLSTATE (``"23505"``...), or None when unknown."""
    if not isinstance(state, str) or len(state) != 5:
        return None
    return _SQLSTATE.get(state) or _SQLSTATE_CLASS.get(state[:2])


def _psycopg(fallback: Classification | None) -> Callable[[BaseException], Classification | None]:
    def rule(exc: BaseException) -> Classification | None:
        return sqlstate(getattr(exc, "sqlstate", None)) or fallback

    return rule


# psycopg2 keeps the SQLSTATE in ``pgcode``; an instance built by hand (tests, mocks) has
# none, but its class (psycopg2.errors.UniqueViolation...) stands for one SQLSTATE.
_psycopg2_codes: dict[type, str] | None = None


def _psycopg2_class_state(cls: type) -> str | None:
    global _psycopg2_codes
    if _psycopg2_codes is None:
        # Already imported when one of its exceptions exists: looked up, never imported.
        module = sys.modules.get("psycopg2._psycopg")
        by_code = getattr(module, "sqlstate_errors", None)
        if not isinstance(by_code, dict):
            return None
        _psycopg2_codes = {klass: code for code, klass in by_code.items()}
    return _psycopg2_codes.get(cls)


def _psycopg2(
    fallback: Classification | None,
) -> Callable[[BaseException], Classification | None]:
    def rule(exc: BaseException) -> Classification | None:
        state = getattr(exc, "pgcode", None) or _psycopg2_class_state(type(exc))
        return sqlstate(state) or fallback

    return rule


def _psycopg2_pool(exc: BaseException) -> Classification:
    # psycopg2.pool.PoolError: "connection pool exhausted" is load; the rest
    # ("connection pool is closed", "trying to put unkeyed connection") are bugs.
    return DATABASE_BUSY if "exhausted" in str(exc)[:200] else DATABASE_MISUSE


def _django_database(
    fallback: Classification | None,
) -> Callable[[BaseException], Classification | None]:
    # Django wraps the driver's exception and chains it: the driver's is precise.
    def rule(exc: BaseException) -> Classification | None:
        cause = exc.__cause__
        if cause is not None and cause is not exc:
            from faultlens.errors._classify import classify

            found = classify(cause)
            if found.category != "unknown":
                return found
        return fallback

    return rule


# -- validation libraries ---------------------------------------------------------------

VALIDATION: Final = _c("validation")

BUILTIN_RULES: Mapping[str, Rule] = {
    # standard library
    "builtins.TimeoutError": TIMEOUT,
    "builtins.ConnectionRefusedError": CONNECTION_FAILED,
    "builtins.ConnectionResetError": CONNECTION_LOST,
    "builtins.ConnectionAbortedError": CONNECTION_LOST,
    "builtins.BrokenPipeError": CONNECTION_LOST,
    "builtins.ConnectionError": CONNECTION_FAILED,
    "builtins.BlockingIOError": RESOURCE_BUSY,
    "builtins.PermissionError": PERMISSION_DENIED,
    "builtins.FileNotFoundError": FILE_NOT_FOUND,
    "builtins.OSError": _os_error,
    "socket.gaierror": NAME_RESOLUTION,
    "ssl.SSLError": TLS_ERROR,
    "json.decoder.JSONDecodeError": MALFORMED_JSON,
    "builtins.UnicodeDecodeError": MALFORMED_TEXT,
    "builtins.MemoryError": OUT_OF_MEMORY,
    "builtins.RecursionError": RECURSION,
    "builtins.ImportError": MISSING_DEPENDENCY,
    "builtins.KeyError": INTERNAL,
    "builtins.IndexError": INTERNAL,
    "builtins.LookupError": INTERNAL,
    "builtins.ValueError": INTERNAL,
    "builtins.TypeError": INTERNAL,
    "builtins.AttributeError": INTERNAL,
    "builtins.NameError": INTERNAL,
    "builtins.AssertionError": INTERNAL,
    "builtins.ArithmeticError": INTERNAL,
    "builtins.NotImplementedError": INTERNAL,
    "builtins.RuntimeError": INTERNAL,
    "builtins.BaseExceptionGroup": _exception_group,
    "urllib.error.HTTPError": _urllib_status,
    "urllib.error.URLError": UPSTREAM_UNREACHABLE,
    # sqlite3
    "sqlite3.OperationalError": _sqlite(DATABASE_ERROR),
    "sqlite3.IntegrityError": _sqlite(CONSTRAINT_VIOLATION),
    "sqlite3.DataError": INVALID_DATA,
    "sqlite3.ProgrammingError": DATABASE_MISUSE,
    "sqlite3.InterfaceError": DATABASE_MISUSE,
    "sqlite3.NotSupportedError": DATABASE_MISUSE,
    "sqlite3.DatabaseError": _sqlite(DATABASE_ERROR),
    "sqlite3.Error": DATABASE_ERROR,
    # psycopg 3 (by SQLSTATE first, then by class)
    "psycopg_pool.PoolTimeout": DATABASE_BUSY,
    "psycopg.OperationalError": _psycopg(DATABASE_UNAVAILABLE),
    "psycopg.IntegrityError": _psycopg(_c("conflict", layer=_INFRA)),
    "psycopg.DataError": _psycopg(INVALID_DATA),
    "psycopg.ProgrammingError": _psycopg(DATABASE_MISUSE),
    "psycopg.InterfaceError": DATABASE_MISUSE,
    "psycopg.Error": _psycopg(DATABASE_ERROR),
    # psycopg2 (by pgcode first, then by class), consistent with psycopg 3
    "psycopg2.pool.PoolError": _psycopg2_pool,
    "psycopg2.extensions.QueryCanceledError": _psycopg2(DATABASE_TIMEOUT),
    "psycopg2.extensions.TransactionRollbackError": _psycopg2(SERIALIZATION_FAILURE),
    "psycopg2.OperationalError": _psycopg2(DATABASE_UNAVAILABLE),
    "psycopg2.IntegrityError": _psycopg2(_c("conflict", layer=_INFRA)),
    "psycopg2.DataError": _psycopg2(INVALID_DATA),
    "psycopg2.ProgrammingError": _psycopg2(DATABASE_MISUSE),
    "psycopg2.InterfaceError": DATABASE_MISUSE,
    "psycopg2.Error": _psycopg2(DATABASE_ERROR),
    # Django's database wrappers: the chained driver error decides
    "django.db.utils.OperationalError": _django_database(DATABASE_UNAVAILABLE),
    "django.db.utils.IntegrityError": _django_database(_c("conflict", layer=_INFRA)),
    "django.db.utils.Error": _django_database(None),
    # httpx
    "httpx.HTTPStatusError": _response_status,
    "httpx.TimeoutException": UPSTREAM_TIMEOUT,
    "httpx.ConnectError": UPSTREAM_UNREACHABLE,
    "httpx.NetworkError": CONNECTION_LOST,
    "httpx.RemoteProtocolError": CONNECTION_LOST,
    "httpx.ProxyError": UPSTREAM_UNREACHABLE,
    "httpx.DecodingError": UPSTREAM_INVALID,
    "httpx.TooManyRedirects": UPSTREAM_INVALID,
    "httpx.UnsupportedProtocol": INTERNAL,
    "httpx.LocalProtocolError": INTERNAL,
    "httpx.InvalidURL": INTERNAL,
    "httpx.StreamError": INTERNAL,
    "httpx.HTTPError": INTEGRATION,
    # requests
    "requests.exceptions.HTTPError": _response_status,
    "requests.exceptions.ConnectTimeout": UPSTREAM_TIMEOUT,
    "requests.exceptions.Timeout": UPSTREAM_TIMEOUT,
    "requests.exceptions.SSLError": TLS_ERROR,
    "requests.exceptions.ProxyError": UPSTREAM_UNREACHABLE,
    "requests.exceptions.ConnectionError": UPSTREAM_UNREACHABLE,
    "requests.exceptions.ChunkedEncodingError": CONNECTION_LOST,
    "requests.exceptions.ContentDecodingError": UPSTREAM_INVALID,
    "requests.exceptions.InvalidJSONError": UPSTREAM_INVALID,
    "requests.exceptions.TooManyRedirects": UPSTREAM_INVALID,
    "requests.exceptions.MissingSchema": INTERNAL,
    "requests.exceptions.InvalidSchema": INTERNAL,
    "requests.exceptions.InvalidURL": INTERNAL,
    "requests.exceptions.RequestException": INTEGRATION,
    # validation libraries and web frameworks
    "pydantic_core._pydantic_core.ValidationError": VALIDATION,
    "fastapi.exceptions.RequestValidationError": VALIDATION,
    "fastapi.exceptions.WebSocketRequestValidationError": VALIDATION,
    "fastapi.exceptions.ResponseValidationError": INTERNAL,
    "starlette.exceptions.HTTPException": _framework_http,
    "werkzeug.exceptions.HTTPException": _framework_http,
    "django.http.response.Http404": _BY_STATUS[404],
    "django.core.exceptions.ObjectDoesNotExist": _BY_STATUS[404],
    "django.core.exceptions.PermissionDenied": _BY_STATUS[403],
    "django.core.exceptions.SuspiciousOperation": _c(
        "validation", "bad_request", severity=_MEDIUM, status=400
    ),
    "django.core.exceptions.ValidationError": VALIDATION,
}
