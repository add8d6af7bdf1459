"""Schema migrations: numbered SQL files per backend, applied once each, in order.

``migrations/<backend>/NNNN_name.sql`` (package data) holds version NNNN.  The
``schema_migrations`` table records every version applied with its file's
SHA-256, so a file edited after it was applied, or a database written by a newer
faultlens, is reported instead of silently run against.  Each backend applies all
pending files in one transaction under a lock (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: ``pg_advisory_lock``), so concurrent processes starting at once
migrate exactly once.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from faultlens.store._types import StoreError

__all__ = ["Migration", "migrations", "pending", "split_sqlite"]

_FILE: Final = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

SCHEMA_MIGRATIONS_SQL: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " checksum TEXT NOT NULL,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str
    checksum: str


@cache
def migrations(backend: str) -> tuple[Migration, ...]:
    """Every migration of ``backend`` (``sqlite`` or ``postgres``), by version."""
    folder = resources.files("faultlens.store").joinpath("migrations").joinpath(backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.fullmatch(entry.name)
        if match is None:
            continue
        sql = entry.read_text(encoding="utf-8")
        found.append(
            Migration(
                int(match[1]),
                match[2],
                sql,
                hashlib.sha256(sql.encode("utf-8")).hexdigest(),
            )
        )
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise StoreError(
            f"faultlens's {backend} migrations are not numbered 1, 2, 3...: "
            f"{[m.version for m in found]} (a broken installation: reinstall faultlens)"
        )
    return tuple(found)


def pending(backend: str, applied: Iterable[tuple[int, str]]) -> list[Migration]:
    """The migrations still to apply, given the ``(version, checksum)`` rows applied.

    Raises :class:`StoreError` when the database has a version this faultlens does
    not know (it is newer) or an applied file has changed since.
    """
    known = {m.version: m for m in migrations(backend)}
    done: set[int] = set()
    for version, checksum in applied:
        migration = known.get(version)
        if migration is None:
            raise StoreError(
                f"the database has schema version {version}, newer than this faultlens "
                f"knows ({max(known, default=0)}): upgrade faultlens to use this store"
            )
        if migration.checksum != checksum:
            raise StoreError(
                f"migration {version:04d}_{migration.name}.sql changed after it was applied "
                "to this database; restore the original file (migrations are append-only: "
                "add a new numbered file instead)"
            )
        done.add(version)
    return [m for v, m in sorted(known.items()) if v not in done]


def split_sqlite(sql: str) -> list[str]:
    """Split a SQLite script into statements (at line ends that complete one)."""
    statements: list[str] = []
    buffer: list[str] = []
    for line in sql.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer.append(line)
        text = "".join(buffer)
        if sqlite3.complete_statement(text):
            statements.append(text.strip())
            buffer.clear()
    rest = "".join(buffer).strip()
    if rest:
        raise StoreError(f"incomplete SQL statement in a migration: {rest[:80]!r}")
    return statements
