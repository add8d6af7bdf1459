"""classify() on psycopg2's exceptions: built by hand and raised by a real PostgreSQL.

Skipped, with the reason, when psycopg2 is not installed (``pip install
psycopg2-binary``); the tests against a server are skipped when none answers at
``FAULTLENS_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install psycopg2-binary")

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool

from faultlens.errors import Classification, classify, handle

POSTGRES_URL = os.environ.get(
    "FAULTLENS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _summary(found: Classification) -> tuple[str, str, bool, int]:
    return (found.category, found.code, found.retryable, found.status)


def _caught(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("no exception raised")


# -- built by hand (no server) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (psycopg2.errors.UniqueViolation("dup"), ("conflict", "duplicate", False, 409)),
        (psycopg2.errors.ForeignKeyViolation("fk"), ("conflict", "reference_conflict", False, 409)),
        (psycopg2.errors.NotNullViolation("null"), ("data", "constraint_violation", False, 500)),
        (
            psycopg2.errors.SerializationFailure("ser"),
            ("transient", "serialization_failure", True, 503),
        ),
        (psycopg2.errors.DeadlockDetected("dead"), ("transient", "deadlock_detected", True, 503)),
        (psycopg2.errors.QueryCanceled("slow"), ("transient", "database_timeout", True, 504)),
        (psycopg2.errors.TooManyConnections("busy"), ("transient", "database_busy", True, 503)),
        (psycopg2.errors.AdminShutdown("bye"), ("transient", "database_unavailable", True, 503)),
        (psycopg2.errors.DiskFull("full"), ("system", "disk_full", False, 500)),
        (
            psycopg2.errors.InvalidPassword("pw"),
            ("configuration", "database_auth_failed", False, 500),
        ),
        (psycopg2.errors.UndefinedTable("t"), ("internal", "database_misuse", False, 500)),
        (
            psycopg2.errors.InvalidTextRepresentation("uuid"),
            ("data", "invalid_data", False, 500),
        ),
        (
            psycopg2.OperationalError("connection failed"),
            ("transient", "database_unavailable", True, 503),
        ),
        (psycopg2.IntegrityError("no sqlstate"), ("conflict", "conflict", False, 409)),
        (psycopg2.DataError("bad"), ("data", "invalid_data", False, 500)),
        (psycopg2.ProgrammingError("syntax"), ("internal", "database_misuse", False, 500)),
        (
            psycopg2.InterfaceError("connection already closed"),
            ("internal", "database_misuse", False, 500),
        ),
        (psycopg2.InternalError("internal"), ("system", "database_error", False, 500)),
        (
            psycopg2.extensions.QueryCanceledError("canceling statement"),
            ("transient", "database_timeout", True, 504),
        ),
        (
            psycopg2.extensions.TransactionRollbackError("rollback"),
            ("transient", "serialization_failure", True, 503),
        ),
        (
            psycopg2.pool.PoolError("connection pool exhausted"),
            ("transient", "database_busy", True, 503),
        ),
        (
            psycopg2.pool.PoolError("connection pool is closed"),
            ("internal", "database_misuse", False, 500),
        ),
    ],
)
def test_psycopg2_errors(exc: BaseException, expected: tuple[str, str, bool, int]) -> None:
    """psycopg2: classified like psycopg 3, by SQLSTATE first, then by class."""
    found = classify(exc)
    assert _summary(found) == expected
    assert found.layer == "infrastructure"


def test_psycopg2_lookup_by_sqlstate() -> None:
    """Classes psycopg2 looks up by SQLSTATE classify like the named ones."""
    assert classify(psycopg2.errors.lookup("40001")("x")).code == "serialization_failure"
    assert classify(psycopg2.errors.lookup("08006")("lost")).code == "database_unavailable"
    assert classify(psycopg2.errors.lookup("57P03")("starting")).retryable is True


def test_django_wrapped_psycopg2_error_uses_the_driver_cause() -> None:
    """Django's db.utils wrapper around a psycopg2 error takes the driver error's class."""
    import django.db.utils

    wrapped = django.db.utils.IntegrityError("dup")
    wrapped.__cause__ = psycopg2.errors.UniqueViolation("dup")
    assert classify(wrapped).code == "duplicate"


def test_real_connection_failure_is_transient() -> None:
    """A refused connection (nothing listening) is a retryable infrastructure error."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exc = _caught(
        lambda: psycopg2.connect(host="127.0.0.1", port=port, dbname="x", connect_timeout=2)
    )
    assert isinstance(exc, psycopg2.OperationalError)
    found = classify(exc)
    assert (found.category, found.code, found.retryable) == (
        "transient",
        "database_unavailable",
        True,
    )
    assert handle(exc).retry_possible is True


# -- raised by a real PostgreSQL -------------------------------------------------------------


@functools.cache
def _postgres_unavailable() -> str | None:
    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:
        return (
            f"no PostgreSQL answers at {POSTGRES_URL} ({type(exc).__name__}): start one or "
            "set FAULTLENS_TEST_POSTGRES_URL"
        )
    return None


@pytest.fixture
def cursor() -> Iterator[Any]:
    """A cursor in a schema of its own (autocommit), dropped afterwards."""
    reason = _postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"faultlens_psycopg2_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(POSTGRES_URL, connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(f"SET search_path TO {schema}")
            cur.execute("CREATE TABLE parent (id int PRIMARY KEY)")
            cur.execute(
                "CREATE TABLE child (id int PRIMARY KEY, "
                "parent_id int NOT NULL REFERENCES parent (id), amount int CHECK (amount > 0))"
            )
            cur.execute("INSERT INTO parent VALUES (1)")
            yield cur
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("statement", "pgcode", "expected"),
    [
        ("INSERT INTO parent VALUES (1)", "23505", ("conflict", "duplicate", False, 409)),
        (
            "INSERT INTO child VALUES (1, 99, 5)",
            "23503",
            ("conflict", "reference_conflict", False, 409),
        ),
        (
            "INSERT INTO child VALUES (1, NULL, 5)",
            "23502",
            ("data", "constraint_violation", False, 500),
        ),
        (
            "INSERT INTO child VALUES (1, 1, -5)",
            "23514",
            ("data", "constraint_violation", False, 500),
        ),
        ("SELECT 'x'::int", "22P02", ("data", "invalid_data", False, 500)),
        ("SELECT * FROM no_such_table", "42P01", ("internal", "database_misuse", False, 500)),
        (
            "SET statement_timeout = 1; SELECT pg_sleep(5)",
            "57014",
            ("transient", "database_timeout", True, 504),
        ),
    ],
)
def test_real_server_errors(
    cursor: Any, statement: str, pgcode: str, expected: tuple[str, str, bool, int]
) -> None:
    """Errors a real PostgreSQL raises through psycopg2 classify by their SQLSTATE."""
    exc = _caught(lambda: cursor.execute(statement))
    assert isinstance(exc, psycopg2.Error)
    assert exc.pgcode == pgcode
    assert _summary(classify(exc)) == expected
