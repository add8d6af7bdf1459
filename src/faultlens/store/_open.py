"""``open(url)``: a store from a URL."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from faultlens.errors import ConfigurationError, ValidationError
from faultlens.redaction import get_redactor
from faultlens.store._protocol import Store
from faultlens.store._types import seconds

__all__ = ["DEFAULT_URL", "open"]

DEFAULT_URL: Final = "sqlite:///faultlens.db"
_SCHEMA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_POSTGRES_SCHEMES: Final = frozenset({"postgresql", "postgres"})


def open(
    url: str = DEFAULT_URL,
    *,
    migrate: bool = True,
    timeout: float | timedelta = 5.0,
    pool_size: int = 4,
) -> Store:
    """Open the store at ``url``; nothing connects until the first call.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` and
    ``sqlite:///:memory:`` (one in-process database, for tests) open the SQLite
    store; ``postgresql://user:password@host:5432/dbname`` (any libpq URL; add
    ``?schema=name`` to keep faultlens's tables in their own schema, created if
    missing) opens the PostgreSQL store, which needs ``pip install
    'faultlens[postgres]'``.

    ``migrate=True`` applies pending schema migrations on first use;
    ``migrate=False`` raises :class:`~faultlens.store.StoreError` instead
    (run ``faultlens migrate --store URL`` at deploy time).  ``timeout`` bounds
    how long a call waits for the SQLite write lock (``busy_timeout``) or for a
    PostgreSQL connection; ``pool_size`` is the most PostgreSQL connections
    held.  An unknown scheme or a malformed URL raises
    :class:`~faultlens.errors.ConfigurationError`; a missing driver raises
    :class:`~faultlens.errors.MissingExtraError`.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"store URL {_shown(url)} is not a URL: use sqlite:///path/to/faultlens.db or "
            "postgresql://user@host/dbname"
        )
    try:
        wait = seconds(timeout, "timeout")
    except ValidationError as exc:
        raise ConfigurationError(str(exc)) from None
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or not 1 <= pool_size <= 100:
        raise ConfigurationError(f"pool_size must be an int from 1 to 100, not {pool_size!r}")
    scheme = url.partition("://")[0].lower()
    shown = _shown(url)
    if scheme == "sqlite":
        from faultlens.store._sqlite import SQLiteStore

        path = url.partition("://")[2]
        if not path.startswith("/") or len(path) < 2:
            raise ConfigurationError(
                f"store URL {shown} has no path: use sqlite:///relative.db, "
                "sqlite:////absolute/path.db or sqlite:///:memory:"
            )
        return SQLiteStore(path[1:], url=url, shown=shown, auto_migrate=migrate, busy_timeout=wait)
    if scheme in _POSTGRES_SCHEMES:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "schema"]
        schema = schemas[-1] if schemas else None
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"schema={schema!r} in the store URL must be a plain identifier "
                "(letters, digits and _, at most 63 characters)"
            )
        conninfo = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"]))
        )
        from faultlens.store._postgres import PostgresStore

        return PostgresStore(
            conninfo,
            schema=schema,
            url=url,
            shown=shown,
            auto_migrate=migrate,
            pool_size=pool_size,
            timeout=wait,
        )
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r} in {shown}: use sqlite:///path.db or "
        "postgresql://user@host/dbname"
    )


def _shown(url: object) -> str:
    """The URL as it may appear in messages: password masked, bounded."""
    text = url if isinstance(url, str) else repr(url)
    return repr(get_redactor().redact_text(text[:500]))
