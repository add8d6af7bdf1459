"""Schema and migrations: applied once, checked, raced safely; the audit log is append-only."""

from __future__ import annotations

import sqlite3
import sys
import threading
from multiprocessing.context import SpawnContext
from typing import Any

import pytest

from faultlens.errors import ConfigurationError, MissingExtraError
from faultlens.store import Store, StoreError
from faultlens.store import open as open_store
from faultlens.store._migrate import migrations, split_sqlite

from ._helpers import error, migrate_from_process


def _execute(store_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run SQL on the store's database directly, outside the store."""
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg

    base, _, schema = store_url.rpartition("schema=")
    with psycopg.connect(base.rstrip("?&"), autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cur = conn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def test_migrate_applies_every_version_once(store_url: str) -> None:
    """migrate() applies version 1 and then nothing; the versions are recorded."""
    store = open_store(store_url, migrate=False)
    try:
        with pytest.raises(StoreError, match="faultlens migrate"):
            store.issues()
        assert store.migrate() == [m.version for m in migrations(store.backend)]
        assert store.migrate() == []
        assert store.issues().items == ()
    finally:
        store.close()
    rows = _execute(store_url, "SELECT version, name FROM schema_migrations")
    assert rows == [(1, "initial")]


def test_first_use_migrates_automatically(store: Store) -> None:
    """A fresh store creates its schema on first use."""
    assert store.write_events([error()]) == 1
    assert store.migrate() == []


def test_an_edited_migration_is_reported(store: Store, store_url: str) -> None:
    """A checksum that no longer matches the file is a StoreError, not a silent run."""
    store.migrate()
    _execute(store_url, "UPDATE schema_migrations SET checksum = 'edited'")
    with pytest.raises(StoreError, match="changed after it was applied"):
        open_store(store_url).issues()


def test_a_newer_schema_is_refused(store: Store, store_url: str) -> None:
    """A database migrated by a newer faultlens asks for an upgrade."""
    store.migrate()
    _execute(
        store_url,
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
        (999, "future", "x", 0.0),
    )
    other = open_store(store_url)
    try:
        with pytest.raises(StoreError, match="upgrade faultlens"):
            other.issues()
    finally:
        other.close()


def test_concurrent_migrations_from_threads(store_url: str) -> None:
    """Six stores migrating at once: the schema is created exactly once."""
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            store = open_store(store_url, timeout=30, migrate=False)
            try:
                results.append(store.migrate())
            finally:
                store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [[], [], [], [], [], [1]]


@pytest.mark.timeout(600)  # spawned processes start slowly on a loaded machine
def test_concurrent_migrations_from_processes(store_url: str, spawn: SpawnContext) -> None:
    """Three processes migrating one database at once apply each version once."""
    with spawn.Pool(3) as pool:
        results = pool.map(migrate_from_process, [store_url] * 3)
    assert sorted(results) == [[], [], [1]]


def test_audit_log_refuses_update_and_delete_in_the_database(
    store: Store, store_url: str, backend: str
) -> None:
    """Even with direct SQL, audit entries cannot be changed or deleted."""
    store.append_audit(actor="ana", action="x", target="y")
    statements = ["UPDATE audit_log SET actor = 'eve'", "DELETE FROM audit_log"]
    if backend == "postgres":
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        with pytest.raises(Exception, match="append-only"):
            _execute(store_url, statement)
    assert [e.actor for e in store.audit_log()] == ["ana"]


def test_tables_and_indexes_exist(store: Store, store_url: str, backend: str) -> None:
    """The schema has the tables and the indexes the queries rely on."""
    store.migrate()
    if backend == "sqlite":
        rows = _execute(store_url, "SELECT name FROM sqlite_master WHERE type IN ('table','index')")
    else:
        rows = _execute(
            store_url,
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "UNION SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()",
        )
    names = {row[0] for row in rows}
    assert {
        "events",
        "issues",
        "issue_fingerprints",
        "issue_users",
        "issue_sessions",
        "patterns",
        "alerts",
        "audit_log",
        "schema_migrations",
        "events_correlation",
        "events_kind_time",
        "events_issue_time",
        "issues_status_last_seen",
    } <= names


def test_split_sqlite_keeps_triggers_whole() -> None:
    """Statements split at complete statements; a trigger body stays one statement."""
    statements = split_sqlite(
        "-- comment\nCREATE TABLE a (x);\nCREATE TRIGGER t BEFORE DELETE ON a\nBEGIN\n"
        "    SELECT RAISE(ABORT, 'no');\nEND;\n"
    )
    assert len(statements) == 2
    assert statements[1].endswith("END;")
    with pytest.raises(StoreError):
        split_sqlite("CREATE TABLE b (x")


# --- opening ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["mysql://localhost/db", "faultlens.db", "sqlite://", "sqlite:///", "", "redis://x"],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    """Unknown schemes and URLs without a path say what to write instead."""
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_bad_options_are_configuration_errors() -> None:
    """timeout, pool_size and schema names are checked when opening."""
    with pytest.raises(ConfigurationError):
        open_store("sqlite:///:memory:", timeout=0)
    with pytest.raises(ConfigurationError):
        open_store("postgresql://localhost/db", pool_size=0)
    with pytest.raises(ConfigurationError, match="schema"):
        open_store("postgresql://localhost/db?schema=bad;name")


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg, opening a PostgreSQL store says which extra to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingExtraError, match=r"faultlens\[postgres\]"):
        open_store("postgresql://localhost/db")


def test_password_is_masked_in_repr_and_errors() -> None:
    """The URL's password never appears in repr() or in error messages."""
    store = open_store("postgresql://app:s3cret@127.0.0.1:1/db", timeout=0.5)
    try:
        assert "s3cret" not in repr(store)
        assert store.url == "postgresql://app:s3cret@127.0.0.1:1/db"  # for re-opening
        with pytest.raises(StoreError) as info:
            store.issues()
        assert "s3cret" not in str(info.value)
        assert "reachable" in str(info.value)
    finally:
        store.close()


def test_unwritable_sqlite_path_is_a_store_error(tmp_path: Any) -> None:
    """A missing directory is a StoreError that says to check it, raised on first use."""
    store = open_store(f"sqlite:///{tmp_path}/missing/dir/f.db")
    with pytest.raises(StoreError, match="directory"):
        store.write_events([error()])
    store.close()


def test_closed_store_refuses_use(store: Store) -> None:
    """After close() every call raises StoreError; close() is idempotent."""
    store.write_events([error()])
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.issues()
    with pytest.raises(StoreError, match="closed"):
        store.migrate()


def test_context_manager_closes(store_url: str) -> None:
    """with open(url) as store: closes the store on exit."""
    with open_store(store_url) as store:
        store.write_events([error()])
    with pytest.raises(StoreError):
        store.issues()
