"""Process-wide counters of what faultlens neutralised, dropped or failed to do.

Nothing faultlens drops or replaces is silent: every such event increments a named
counter here, and :func:`faultlens.stats` returns a snapshot.  Increments take an
uncontended lock held for nanoseconds; they happen only on exceptional paths.
"""

from __future__ import annotations

import os
import sys
import threading


class Counters:
    """Named monotonically increasing counters."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name``."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def get(self, name: str) -> int:
        """Return the current value of ``name`` (0 when never incremented)."""
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """Return a copy of all counters, sorted by name."""
        with self._lock:
            return dict(sorted(self._values.items()))

    def reset(self) -> None:
        """Set every counter back to zero (tests use this)."""
        with self._lock:
            self._values.clear()

    def _after_fork(self) -> None:
        # A thread of the parent may have held the lock at fork time; the child has
        # no such thread, so it gets a fresh lock (the values are kept).
        self._lock = threading.Lock()


counters = Counters()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=counters._after_fork)


_reported: set[str] = set()


def report_once(key: str, message: str) -> None:
    """Write ``faultlens: message`` to stderr the first time ``key`` is reported.

    For failures inside faultlens that it must not raise into the application
    (a broken log stream, a failing subscriber): the operator hears about it once
    per process, and the matching counter keeps the total.
    """
    if key in _reported:
        return
    _reported.add(key)
    try:
        sys.stderr.write(f"faultlens: {message}\n")
    except Exception:  # stderr itself may be closed; the counter still records it
        counters.incr("internal.stderr_unavailable")
