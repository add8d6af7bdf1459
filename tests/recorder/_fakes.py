"""Stores for recorder tests: in memory, and a JSON-lines file usable across processes."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson

from faultlens.events import Event


class StoreDown(ConnectionError):
    """What the fake stores raise while they are 'down'."""


class FakeStore:
    """An in-memory store: idempotent by event id, can be taken down or made to block."""

    def __init__(self) -> None:
        self.rows: dict[str, Event] = {}
        self.calls: list[list[str]] = []
        self.down = False
        self.fail_after: int | None = None  # calls that succeed before it goes down
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.failures = 0
        self.closed = False
        self._cond = threading.Condition()

    def write_events(self, events: Sequence[Event], /) -> int:
        """Store the events not stored yet; raise StoreDown while down."""
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(60)  # tests open the gate; this only bounds a failed one
        with self._cond:
            if self.fail_after is not None:
                if self.fail_after <= 0:
                    self.down = True
                self.fail_after -= 1
            if self.down:
                self.failures += 1
                raise StoreDown("store is down")
            self.calls.append([e.id for e in events])
            new = 0
            for event in events:
                if event.id not in self.rows:
                    self.rows[event.id] = event
                    new += 1
            self._cond.notify_all()
            return new

    def close(self) -> None:
        """Remember that the recorder closed it."""
        self.closed = True

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` rows are stored."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.rows) >= count, timeout)

    def names(self, kind: str | None = None) -> list[str]:
        """Stored event names (of ``kind``), in the order first stored."""
        return [e.name for e in self.rows.values() if kind is None or e.kind == kind]


class FileStore:
    """A store in a JSON-lines file, idempotent by id; each instance is one 'connection'.

    ``url`` is ``file://<path>``.  Every write checks it runs in the process that
    opened this instance, and writes a ``violation`` line if not: a forked child
    must never write through its parent's connection.  ``<path>.down`` existing
    makes it unavailable; ``<path>.slow`` makes every batch take that many seconds.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url.removeprefix("file://"))
        self.pid = os.getpid()

    def write_events(self, events: Sequence[Event], /) -> int:
        """Append the events whose id is not in the file yet."""
        if self.path.with_suffix(".down").exists():
            raise StoreDown("store is down")
        slow = self.path.with_suffix(".slow")
        with open(self.path, "ab") as file:
            if os.getpid() != self.pid:
                file.write(orjson.dumps({"violation": os.getpid()}) + b"\n")
            seen = set(read_ids(self.path))
            new = [e for e in events if e.id not in seen]
            for event in new:
                file.write(orjson.dumps({"pid": os.getpid(), **event.to_dict()}) + b"\n")
            file.flush()
            os.fsync(file.fileno())
        if slow.exists():
            threading.Event().wait(float(slow.read_text()))
        return len(new)

    def close(self) -> None:
        """Nothing to release."""


def read_rows(path: Path) -> list[dict[str, object]]:
    """Every complete line of a FileStore file.

    A test may poll the file while a worker appends to it: a last line without its
    newline is still being written (or was cut by a kill), so it is not read.
    """
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines(keepends=True)
    return [orjson.loads(line) for line in lines if line.endswith(b"\n") and line.strip()]


def read_ids(path: Path) -> list[str]:
    """The event ids of a FileStore file, in order (duplicates kept)."""
    return [str(r["id"]) for r in read_rows(path) if "id" in r]
