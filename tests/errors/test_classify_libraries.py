"""classify() on real exceptions of sqlite3, psycopg, httpx, requests, pydantic, frameworks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import urllib.error
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import psycopg
import psycopg.errors
import psycopg_pool
import pydantic
import pytest
import requests

from faultlens.errors import Classification, Severity, classify, handle


def _caught(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("no exception raised")


def _summary(found: Classification) -> tuple[str, str, bool, int]:
    return (found.category, found.code, found.retryable, found.status)


# -- httpx ------------------------------------------------------------------------------


def _httpx_status_error(
    status: int, headers: dict[str, str] | None = None
) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://payments.example/charge")
    response = httpx.Response(status, request=request, headers=headers)
    return _caught(response.raise_for_status)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, ("integration", "upstream_unavailable", True, 502)),
        (502, ("integration", "upstream_unavailable", True, 502)),
        (503, ("integration", "upstream_unavailable", True, 503)),
        (504, ("integration", "upstream_timeout", True, 504)),
        (429, ("integration", "upstream_rate_limited", True, 503)),
        (404, ("integration", "upstream_rejected", False, 502)),
        (401, ("integration", "upstream_rejected", False, 502)),
        (400, ("integration", "upstream_rejected", False, 502)),
    ],
)
def test_httpx_status_errors(status: int, expected: tuple[str, str, bool, int]) -> None:
    """httpx: 5xx and 429 are retryable integration errors, other 4xx are not."""
    exc = _httpx_status_error(status)
    assert isinstance(exc, httpx.HTTPStatusError)
    assert _summary(classify(exc)) == expected


def test_httpx_transport_errors() -> None:
    """httpx: timeouts and connection failures are transient."""
    request = httpx.Request("GET", "https://payments.example/")
    assert _summary(classify(httpx.ReadTimeout("slow", request=request))) == (
        "transient",
        "upstream_timeout",
        True,
        504,
    )
    assert classify(httpx.ConnectTimeout("slow", request=request)).code == "upstream_timeout"
    assert classify(httpx.PoolTimeout("slow", request=request)).code == "upstream_timeout"
    assert _summary(classify(httpx.ConnectError("refused", request=request))) == (
        "transient",
        "upstream_unreachable",
        True,
        503,
    )
    assert classify(httpx.RemoteProtocolError("closed", request=request)).retryable is True
    assert classify(httpx.TooManyRedirects("loop", request=request)).code == (
        "upstream_invalid_response"
    )


def test_httpx_connection_refused_for_real() -> None:
    """A real refused connection through httpx classifies as transient."""
    with socket_listener_closed() as port:
        exc = _caught(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2))
    assert isinstance(exc, httpx.ConnectError)
    assert classify(exc).category == "transient"


def test_httpx_retry_after_reaches_the_response() -> None:
    """A 429 with Retry-After gives the wait to handle()'s response and headers."""
    response = handle(_httpx_status_error(429, {"Retry-After": "7"}))
    assert response.retry_possible is True
    assert response.retry_after == 7
    assert response.headers()["Retry-After"] == "7"
    dated = handle(_httpx_status_error(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert dated.retry_after == 0  # a date in the past: retry now
    garbage = handle(_httpx_status_error(503, {"Retry-After": "soon-ish"}))
    assert garbage.retry_after is None
    assert "Retry-After" not in garbage.headers()


# -- requests ---------------------------------------------------------------------------


def _requests_http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.url = "https://payments.example/charge"
    response.reason = "whatever"
    return _caught(response.raise_for_status)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (500, "upstream_unavailable", True),
        (429, "upstream_rate_limited", True),
        (403, "upstream_rejected", False),
    ],
)
def test_requests_status_errors(status: int, code: str, retryable: bool) -> None:
    """requests: HTTPError from raise_for_status() follows the same rules as httpx."""
    exc = _requests_http_error(status)
    assert isinstance(exc, requests.HTTPError)
    found = classify(exc)
    assert (found.category, found.code, found.retryable) == ("integration", code, retryable)


def test_requests_other_errors() -> None:
    """requests: timeouts and connection errors are transient; bad JSON is an integration error."""
    assert classify(requests.Timeout()).code == "upstream_timeout"
    assert classify(requests.ConnectTimeout()).code == "upstream_timeout"
    assert classify(requests.ConnectionError()).code == "upstream_unreachable"
    assert classify(requests.HTTPError("no response")).code == "integration_error"
    response = requests.Response()
    response._content = b"<html>not json"
    response.status_code = 200
    bad_json = _caught(response.json)
    assert isinstance(bad_json, requests.JSONDecodeError)
    assert classify(bad_json).code == "upstream_invalid_response"
    with socket_listener_closed() as port:
        refused = _caught(lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=2))
    assert classify(refused).category == "transient"


def test_urllib_http_error() -> None:
    """The standard library's urllib HTTPError is classified by its status."""
    exc = urllib.error.HTTPError("https://x.example/", 503, "Unavailable", Message(), None)
    assert classify(exc).code == "upstream_unavailable"
    assert classify(urllib.error.URLError("refused")).code == "upstream_unreachable"


# -- sqlite3 ----------------------------------------------------------------------------


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    """An in-memory database with a unique column, a NOT NULL one and a foreign key."""
    connection = sqlite3.connect(":memory:")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL)")
    connection.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customer(id))"
    )
    connection.execute("INSERT INTO customer (id, email) VALUES (1, 'a@example.com')")
    yield connection
    connection.close()


def test_sqlite_integrity_errors(db: sqlite3.Connection) -> None:
    """sqlite3: unique and foreign-key violations are conflicts, NOT NULL a data error."""
    duplicate = _caught(lambda: db.execute("INSERT INTO customer (email) VALUES ('a@example.com')"))
    assert isinstance(duplicate, sqlite3.IntegrityError)
    assert _summary(classify(duplicate)) == ("conflict", "duplicate", False, 409)
    assert classify(duplicate).layer == "infrastructure"
    primary = _caught(lambda: db.execute("INSERT INTO customer (id, email) VALUES (1, 'b@x.y')"))
    assert classify(primary).code == "duplicate"
    dangling = _caught(lambda: db.execute("INSERT INTO orders (customer) VALUES (99)"))
    assert classify(dangling).code == "reference_conflict"
    missing = _caught(lambda: db.execute("INSERT INTO customer (email) VALUES (NULL)"))
    assert _summary(classify(missing)) == ("data", "constraint_violation", False, 500)


def test_sqlite_operational_errors(db: sqlite3.Connection) -> None:
    """sqlite3: a missing table is a system error; hand-made 'locked' text is transient."""
    exc = _caught(lambda: db.execute("SELECT * FROM nowhere"))
    assert isinstance(exc, sqlite3.OperationalError)
    assert _summary(classify(exc)) == ("system", "database_error", False, 500)
    assert classify(sqlite3.OperationalError("database is locked")).code == "database_busy"
    assert classify(sqlite3.ProgrammingError("closed")).category == "internal"


def test_sqlite_database_is_locked_for_real(tmp_path: Path) -> None:
    """sqlite3: a write blocked by another connection's lock is transient and retryable."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        exc = _caught(lambda: waiter.execute("INSERT INTO t VALUES (1)"))
    finally:
        holder.close()
        waiter.close()
    assert isinstance(exc, sqlite3.OperationalError)
    assert "locked" in str(exc)
    found = classify(exc)
    assert _summary(found) == ("transient", "database_busy", True, 503)
    assert found.layer == "infrastructure"


# -- psycopg ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (psycopg.errors.UniqueViolation("dup"), ("conflict", "duplicate", False, 409)),
        (psycopg.errors.ForeignKeyViolation("fk"), ("conflict", "reference_conflict", False, 409)),
        (psycopg.errors.NotNullViolation("null"), ("data", "constraint_violation", False, 500)),
        (
            psycopg.errors.SerializationFailure("ser"),
            ("transient", "serialization_failure", True, 503),
        ),
        (psycopg.errors.DeadlockDetected("dead"), ("transient", "deadlock_detected", True, 503)),
        (psycopg.errors.QueryCanceled("slow"), ("transient", "database_timeout", True, 504)),
        (psycopg.errors.TooManyConnections("busy"), ("transient", "database_busy", True, 503)),
        (psycopg.errors.AdminShutdown("bye"), ("transient", "database_unavailable", True, 503)),
        (psycopg.errors.DiskFull("full"), ("system", "disk_full", False, 500)),
        (
            psycopg.errors.InvalidPassword("pw"),
            ("configuration", "database_auth_failed", False, 500),
        ),
        (psycopg.errors.UndefinedTable("t"), ("internal", "database_misuse", False, 500)),
        (psycopg.errors.InvalidTextRepresentation("uuid"), ("data", "invalid_data", False, 500)),
        (
            psycopg.OperationalError("connection failed"),
            ("transient", "database_unavailable", True, 503),
        ),
        (psycopg.IntegrityError("no sqlstate"), ("conflict", "conflict", False, 409)),
        (psycopg_pool.PoolTimeout("pool exhausted"), ("transient", "database_busy", True, 503)),
        (psycopg.InterfaceError("closed"), ("internal", "database_misuse", False, 500)),
    ],
)
def test_psycopg_errors(exc: psycopg.Error, expected: tuple[str, str, bool, int]) -> None:
    """psycopg: classified by SQLSTATE first, then by class."""
    assert _summary(classify(exc)) == expected


def test_psycopg_lookup_by_sqlstate() -> None:
    """Classes psycopg builds from a SQLSTATE classify like the named ones."""
    exc = psycopg.errors.lookup("40001")("could not serialize")
    assert classify(exc).code == "serialization_failure"
    assert classify(psycopg.errors.lookup("08006")("lost")).code == "database_unavailable"


def test_psycopg_real_connection_failure() -> None:
    """A real failed connection (nothing listening) is a transient infrastructure error."""
    with socket_listener_closed() as port:
        exc = _caught(
            lambda: psycopg.connect(host="127.0.0.1", port=port, connect_timeout=2, dbname="x")
        )
    assert isinstance(exc, psycopg.OperationalError)
    found = classify(exc)
    assert (found.category, found.retryable, found.layer) == ("transient", True, "infrastructure")


# -- pydantic and frameworks ------------------------------------------------------------


class Signup(pydantic.BaseModel):
    """A model with a few constraints."""

    email: str
    age: int = pydantic.Field(ge=18)


def test_pydantic_validation_error() -> None:
    """pydantic: a real ValidationError is a validation error (422)."""
    exc = _caught(lambda: Signup.model_validate({"email": 3, "age": 5}))
    assert isinstance(exc, pydantic.ValidationError)
    assert classify(exc) == Classification(
        "validation", Severity.LOW, "api", "validation_error", False, 422
    )


def test_framework_http_exceptions() -> None:
    """Starlette/FastAPI, Werkzeug and Django HTTP exceptions map by their status."""
    import django.core.exceptions
    import django.http
    import fastapi
    import starlette.exceptions
    import werkzeug.exceptions

    assert classify(starlette.exceptions.HTTPException(404)).code == "not_found"
    assert classify(fastapi.HTTPException(status_code=403)).category == "authorization"
    assert classify(fastapi.HTTPException(status_code=418)).status == 418
    assert classify(fastapi.HTTPException(status_code=429)).retryable is True
    assert classify(werkzeug.exceptions.NotFound()).status == 404
    assert classify(werkzeug.exceptions.MethodNotAllowed()).code == "method_not_allowed"
    assert classify(werkzeug.exceptions.InternalServerError()).category == "internal"
    assert classify(django.http.Http404()).status == 404
    assert classify(django.core.exceptions.PermissionDenied()).status == 403

    class DoesNotExist(django.core.exceptions.ObjectDoesNotExist):
        pass

    assert classify(DoesNotExist()).category == "not_found"


def test_fastapi_request_validation_error_details() -> None:
    """FastAPI's RequestValidationError gives field errors without the 'body' prefix."""
    from fastapi.exceptions import RequestValidationError

    exc = RequestValidationError(
        [{"loc": ("body", "email"), "type": "missing", "msg": "Field required", "input": {}}]
    )
    response = handle(exc)
    assert response.status == 422
    assert response.details["errors"] == [
        {"loc": ["body", "email"], "field": "email", "type": "missing", "msg": "Field required"}
    ]
    assert "email" in response.message


def test_django_database_error_uses_the_driver_cause() -> None:
    """Django's wrapped database errors are classified by the chained driver error."""
    import django.db.utils

    wrapped = django.db.utils.IntegrityError("dup")
    wrapped.__cause__ = psycopg.errors.UniqueViolation("dup")
    assert classify(wrapped).code == "duplicate"
    assert classify(django.db.utils.OperationalError("gone")).category == "transient"


def test_import_faultlens_imports_no_third_party_library() -> None:
    """Classifying does not import the libraries the built-in rules know about."""
    code = (
        "import sys, faultlens, faultlens.errors as e;"
        "e.classify(KeyError()); e.handle(ValueError());"
        "libs=('httpx','requests','psycopg','psycopg2','pydantic','sqlite3','django','werkzeug',"
        "'starlette');"
        "print([m for m in libs if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- helpers ----------------------------------------------------------------------------


class socket_listener_closed:
    """A localhost port with nothing listening (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        return port

    def __exit__(self, *exc: Any) -> None:
        return None
