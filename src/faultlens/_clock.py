"""The clock faultlens's timed code reads: replaceable, so tests never sleep.

Policies (retry, breaker, timeout…), analysis windows and the durable queue read
time and wait through :func:`get_clock` *at call time*, so installing another clock
(``faultlens.testing.FakeClock``) takes effect immediately, everywhere.
"""

from __future__ import annotations

import asyncio
import time as _time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "get_clock", "set_clock"]


class Clock(Protocol):
    """What faultlens needs from a clock."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (for durations, deadlines and windows)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic``, ``time.sleep``, ``asyncio.sleep``."""

    __slots__ = ()

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)
    sleep = staticmethod(_time.sleep)

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        await asyncio.sleep(seconds)


_clock: Clock = SystemClock()


def get_clock() -> Clock:
    """Return the clock in use (the system clock unless a test installed another)."""
    return _clock


def set_clock(clock: Clock | None) -> Clock:
    """Install ``clock`` (``None``: the system clock) and return the previous one."""
    global _clock
    previous = _clock
    _clock = clock if clock is not None else SystemClock()
    return previous
