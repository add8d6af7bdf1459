"""Backoff: how long to wait before the next attempt.

The delays are pure functions of the attempt number and a random source (and, for
decorrelated jitter, the previous delay), so they are testable without a clock:

- no jitter: ``min(maximum, initial * multiplier ** (attempt - 1))``;
- ``"full"``: uniform in ``[0, that]`` (spreads retries the most; AWS's advice);
- ``"equal"``: uniform in ``[that / 2, that]`` (never retries almost at once);
- ``"decorrelated"``: uniform in ``[initial, 3 * previous]``, capped at ``maximum``
  (grows like the exponential on average but each client walks its own path).

A server's ``Retry-After`` hint (see :func:`retry_after_hint`) overrides a shorter
computed delay.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal

from faultlens import _clock
from faultlens.errors import ConfigurationError

__all__ = [
    "Backoff",
    "Jitter",
    "decorrelated_jitter",
    "equal_jitter",
    "exponential",
    "full_jitter",
    "retry_after_hint",
    "seconds",
]

Jitter = Literal["full", "equal", "decorrelated"]
RandomSource = Callable[[], float]
"""A function returning a float uniformly distributed in ``[0, 1)`` (``random.random``)."""

_JITTERS: Final = (None, "full", "equal", "decorrelated")
_MAX_HINT_S: Final = 86_400.0  # a Retry-After beyond a day is treated as a day
_MAX_HEADER_LENGTH: Final = 64


def seconds(value: float | timedelta, what: str, *, allow_zero: bool = True) -> float:
    """Return ``value`` (seconds or a timedelta) as float seconds, validated.

    Raises :class:`~faultlens.errors.ConfigurationError` naming ``what`` when it
    is negative, not finite, not a number, or zero when ``allow_zero`` is False.
    """
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    else:
        raise ConfigurationError(
            f"{what} must be seconds (a number) or a timedelta, not {type(value).__name__}"
        )
    if not math.isfinite(result) or result < 0 or (result == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(
            f"{what} must be a finite number of seconds {bound}, got {value!r}"
        )
    return result


def exponential(attempt: int, initial: float, maximum: float, multiplier: float = 2.0) -> float:
    """The un-jittered delay after failed attempt ``attempt`` (1-based)."""
    if attempt <= 1:
        return min(initial, maximum)
    try:
        delay = initial * multiplier ** (attempt - 1)
    except OverflowError:
        return maximum
    return min(delay, maximum)


def full_jitter(
    attempt: int, random: RandomSource, initial: float, maximum: float, multiplier: float = 2.0
) -> float:
    """A delay uniform in ``[0, exponential(attempt)]``."""
    return random() * exponential(attempt, initial, maximum, multiplier)


def equal_jitter(
    attempt: int, random: RandomSource, initial: float, maximum: float, multiplier: float = 2.0
) -> float:
    """A delay uniform in ``[exponential(attempt) / 2, exponential(attempt)]``."""
    half = exponential(attempt, initial, maximum, multiplier) / 2
    return half + random() * half


def decorrelated_jitter(
    previous: float, random: RandomSource, initial: float, maximum: float
) -> float:
    """A delay uniform in ``[initial, 3 * previous]`` capped at ``maximum``.

    ``previous`` is the last delay (0 or less before the first retry: treated as
    ``initial``).
    """
    previous = max(previous, initial)
    upper = previous * 3
    return min(maximum, initial + random() * (upper - initial))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff settings; :meth:`delay` computes one wait.

    ``initial`` is the first delay, ``maximum`` caps every delay, ``multiplier``
    is the growth per attempt, ``jitter`` one of ``"full"``, ``"equal"``,
    ``"decorrelated"`` or ``None``.
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: Jitter | None = "full"

    def __post_init__(self) -> None:
        initial = seconds(self.initial, "wait_initial")
        maximum = seconds(self.maximum, "wait_max")
        if maximum < initial:
            raise ConfigurationError(
                f"wait_max ({maximum}) must not be smaller than wait_initial ({initial})"
            )
        if (
            not isinstance(self.multiplier, int | float)
            or not math.isfinite(self.multiplier)
            or self.multiplier < 1
        ):
            raise ConfigurationError(
                f"wait_exp_base must be a number >= 1, got {self.multiplier!r}"
            )
        if self.jitter not in _JITTERS:
            raise ConfigurationError(
                f"jitter must be 'full', 'equal', 'decorrelated' or None, got {self.jitter!r}"
            )
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "maximum", maximum)
        object.__setattr__(self, "multiplier", float(self.multiplier))

    def delay(
        self, attempt: int, previous: float = 0.0, random: RandomSource = _random.random
    ) -> float:
        """The wait after failed attempt ``attempt`` (1-based); ``previous`` is the last wait."""
        jitter = self.jitter
        if jitter == "full":
            return full_jitter(attempt, random, self.initial, self.maximum, self.multiplier)
        if jitter == "equal":
            return equal_jitter(attempt, random, self.initial, self.maximum, self.multiplier)
        if jitter == "decorrelated":
            return decorrelated_jitter(previous, random, self.initial, self.maximum)
        return exponential(attempt, self.initial, self.maximum, self.multiplier)


def retry_after_hint(exc: BaseException, now: float | None = None) -> float | None:
    """The wait, in seconds, a server asked for through ``exc``; ``None`` without a hint.

    Looks at ``exc.retry_after`` (seconds, a timedelta or a header value) and then
    at the ``Retry-After`` header of ``exc.response`` (httpx and requests errors
    carry one): delay-seconds or an HTTP-date, compared with ``now`` (epoch
    seconds; default: the faultlens clock's time).  Malformed or hostile values
    are ignored; a date in the past means 0; anything beyond a day is capped at
    a day.
    """
    try:
        value: Any = getattr(exc, "retry_after", None)
        if value is None:
            response = getattr(exc, "response", None)
            headers = getattr(response, "headers", None) if response is not None else None
            if headers is None:
                return None
            value = _header(headers)
            if value is None:
                return None
        return _parse_hint(value, now)
    except Exception:  # a hostile attribute or header must not break the retry
        return None


def _header(headers: Any) -> Any:
    get = getattr(headers, "get", None)
    if get is None:
        return None
    value = get("Retry-After")
    if value is None and isinstance(headers, Mapping):
        # A plain dict is case-sensitive; httpx/requests headers are not.
        value = get("retry-after")
    return value


def _parse_hint(value: Any, now: float | None) -> float | None:
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    else:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str) or len(value) > _MAX_HEADER_LENGTH:
            return None
        text = value.strip()
        if not text:
            return None
        if text.isdigit():
            result = float(text)
        else:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:  # HTTP-dates are GMT; an unzoned one is taken as such
                from datetime import UTC

                when = when.replace(tzinfo=UTC)
            if now is None:
                now = _clock.get_clock().time()
            result = when.timestamp() - now
    if not math.isfinite(result):
        return None
    return min(max(result, 0.0), _MAX_HINT_S)


class _TestingSwitch:
    """Set by :func:`faultlens.testing.no_wait`: waits become 0, attempts capped."""

    __slots__ = ("active", "max_attempts")

    def __init__(self) -> None:
        self.active = False
        self.max_attempts: int | None = None


testing: Final = _TestingSwitch()
"""Policies read this on their failure path only (never on success)."""
