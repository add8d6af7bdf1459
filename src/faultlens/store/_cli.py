"""``faultlens migrate`` and ``faultlens cleanup``: the store's maintenance commands."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, Any, Final

from faultlens.errors import FaultlensError, ValidationError

__all__ = ["ProgressBar", "add_commands", "run"]

_ENV: Final = "FAULTLENS_STORE"
_DEFAULT: Final = "sqlite:///faultlens.db"


def add_commands(commands: Any) -> None:
    """Add ``migrate`` and ``cleanup`` to the ``faultlens`` command's subparsers."""
    store_help = (
        f"store URL (default: ${_ENV}, else {_DEFAULT}); for example "
        "sqlite:///faultlens.db or postgresql://user@host/dbname?schema=faultlens"
    )
    timeout: dict[str, Any] = {
        "metavar": "SECONDS",
        "type": _seconds,
        "default": 10.0,
        "help": "how long to wait for the database (connection, write lock); default 10",
    }
    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the store's schema",
        description=(
            "Apply the store's pending schema migrations (numbered SQL files shipped with "
            "faultlens). Safe to run from several processes at once and to run again."
        ),
    )
    migrate.add_argument("--store", metavar="URL", default=None, help=store_help)
    migrate.add_argument("--timeout", **timeout)
    cleanup = commands.add_parser(
        "cleanup",
        help="delete old events in small batches",
        description=(
            "Delete events older than an age and/or beyond a number of rows per kind, in "
            "short batches so the store stays usable meanwhile. Issues keep their counts; "
            "the audit log is never deleted."
        ),
    )
    cleanup.add_argument("--store", metavar="URL", default=None, help=store_help)
    cleanup.add_argument("--timeout", **timeout)
    cleanup.add_argument(
        "--older-than",
        metavar="AGE",
        type=_age,
        help="delete events older than AGE: 30d, 12h, 90m, 3600s, 2w",
    )
    cleanup.add_argument(
        "--max-rows-per-kind",
        metavar="N",
        type=_count(1, 10**12),
        help="keep only the newest N events of each kind",
    )
    cleanup.add_argument(
        "--batch-size",
        metavar="N",
        type=_count(1, 100_000),
        default=1000,
        help="rows deleted per transaction (default 1000)",
    )


def _age(text: str) -> float:
    from faultlens.store._retention import parse_age

    try:
        return parse_age(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


def _count(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


class ProgressBar:
    """A one-line progress bar on a terminal; a line per tenth elsewhere (logs, CI)."""

    def __init__(self, stream: IO[str], label: str, *, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._last_tenth = -1
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        fraction = 1.0 if total <= 0 else min(done / total, 1.0)
        if self.tty:
            now = time.monotonic()
            if done < total and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            filled = round(fraction * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {fraction:4.0%} {done}/{total}")
            self._drawn = True
        else:
            tenth = int(fraction * 10)
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
            self.stream.write(f"{self.label}: {done}/{total} ({fraction:.0%})\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    """Run ``migrate`` or ``cleanup``; returns the exit status."""
    from faultlens.redaction import redact_text
    from faultlens.store import open as open_store

    url = args.store or os.environ.get(_ENV) or _DEFAULT
    shown = redact_text(url)
    try:
        with open_store(url, migrate=args.command == "migrate", timeout=args.timeout) as store:
            if args.command == "migrate":
                applied = store.migrate()
                if applied:
                    versions = ", ".join(str(v) for v in applied)
                    print(f"applied migrations {versions} to {shown}")
                else:
                    print(f"{shown}: schema is up to date")
                return 0
            if args.older_than is None and args.max_rows_per_kind is None:
                print(
                    "faultlens cleanup: say what to delete: --older-than AGE, "
                    "--max-rows-per-kind N, or both",
                    file=sys.stderr,
                )
                return 2
            bar = ProgressBar(sys.stderr, "deleting events")
            try:
                deleted = store.cleanup(
                    older_than=args.older_than,
                    max_rows_per_kind=args.max_rows_per_kind,
                    batch_size=args.batch_size,
                    progress=bar,
                )
            finally:
                bar.finish()
    except FaultlensError as exc:
        print(f"faultlens {args.command}: {exc}", file=sys.stderr)
        return 1
    total = sum(deleted.values())
    if total:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(deleted.items()) if n)
        print(f"deleted {total} events from {shown} ({kinds})")
    else:
        print(f"{shown}: nothing to delete")
    return 0
