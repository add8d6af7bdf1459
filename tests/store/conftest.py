"""Store fixtures: one fresh store per test, on SQLite and on PostgreSQL.

PostgreSQL tests run against ``FAULTLENS_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each in a schema of its own that
is dropped afterwards; they are skipped, with the reason, when no server answers.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import types
import uuid
from collections.abc import Iterator
from multiprocessing.context import SpawnContext
from pathlib import Path

import pytest

from faultlens.store import Store
from faultlens.store import open as open_store

POSTGRES_URL = os.environ.get(
    "FAULTLENS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@functools.cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install 'faultlens[postgres]'"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except Exception as exc:
        return (
            f"no PostgreSQL answers at {POSTGRES_URL} ({type(exc).__name__}): start one or "
            "set FAULTLENS_TEST_POSTGRES_URL"
        )
    return None


def postgres_schema_url(schema: str) -> str:
    """The test server's URL with faultlens's tables in ``schema``."""
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}schema={schema}"


def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Each store test runs once per backend."""
    name: str = request.param
    if name == "postgres":
        reason = postgres_unavailable()
        if reason is not None:
            pytest.skip(reason)
    return name


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty store of ``backend`` that only this test uses."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'faultlens.db'}"
        return
    schema = f"faultlens_test_{uuid.uuid4().hex[:12]}"
    try:
        yield postgres_schema_url(schema)
    finally:
        drop_schema(schema)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store on ``store_url``, closed after the test."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def spawn(monkeypatch: pytest.MonkeyPatch) -> SpawnContext:
    """A spawn context whose children do not re-run the parent's ``__main__``.

    Spawned children import the parent's main module; under pytest that may be
    anything another test left in ``sys.modules["__main__"]``.  The workers need
    none of it.
    """
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    return multiprocessing.get_context("spawn")
