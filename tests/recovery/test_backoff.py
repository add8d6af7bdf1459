"""Backoff delays, jitter distributions and Retry-After hints."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from faultlens.errors import ConfigurationError
from faultlens.recovery import Backoff, retry_after_hint

attempts = st.integers(min_value=1, max_value=2000)
unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
initials = st.floats(min_value=0.0, max_value=10.0)


@given(attempt=attempts, r=unit, initial=initials, extra=st.floats(0.0, 100.0))
def test_full_jitter_stays_between_zero_and_the_exponential(
    attempt: int, r: float, initial: float, extra: float
) -> None:
    """Full jitter is within [0, min(max, initial * 2**(n-1))]."""
    b = Backoff(initial, initial + extra, 2.0, "full")
    bound = Backoff(initial, initial + extra, 2.0, None).delay(attempt)
    assert 0.0 <= b.delay(attempt, random=lambda: r) <= bound <= initial + extra


@given(attempt=attempts, r=unit, initial=initials, extra=st.floats(0.0, 100.0))
def test_equal_jitter_stays_in_the_upper_half(
    attempt: int, r: float, initial: float, extra: float
) -> None:
    """Equal jitter is within [exponential / 2, exponential]."""
    b = Backoff(initial, initial + extra, 2.0, "equal")
    bound = Backoff(initial, initial + extra, 2.0, None).delay(attempt)
    assert bound / 2 <= b.delay(attempt, random=lambda: r) <= bound


@given(previous=st.floats(0.0, 1000.0), r=unit, initial=initials, extra=st.floats(0.0, 100.0))
def test_decorrelated_jitter_stays_between_initial_and_three_times_previous(
    previous: float, r: float, initial: float, extra: float
) -> None:
    """Decorrelated jitter is within [initial, min(max, 3 * previous)]."""
    b = Backoff(initial, initial + extra, 2.0, "decorrelated")
    delay = b.delay(5, previous, random=lambda: r)
    assert initial <= delay + 1e-9
    assert delay <= min(initial + extra, 3 * max(previous, initial)) + 1e-9


@given(attempt=attempts, multiplier=st.floats(1.0, 10.0))
def test_exponential_grows_monotonically_to_the_cap(attempt: int, multiplier: float) -> None:
    """Without jitter delays never shrink and never exceed wait_max, even for huge attempts."""
    b = Backoff(0.1, 30.0, multiplier, None)
    assert b.delay(attempt) <= b.delay(attempt + 1) <= 30.0


def test_exponential_sequence() -> None:
    """No jitter: initial, doubled each attempt, capped."""
    b = Backoff(0.5, 3.0, 2.0, None)
    assert [b.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_distribution_is_uniform() -> None:
    """Full jitter's mean is half the exponential and it spans the whole range."""
    rng = random.Random(7)
    b = Backoff(1.0, 100.0, 2.0, "full")
    samples = [b.delay(3, random=rng.random) for _ in range(20_000)]
    assert statistics.fmean(samples) == pytest.approx(2.0, rel=0.03)
    assert min(samples) < 0.05
    assert max(samples) > 3.95


def test_equal_jitter_distribution_is_uniform_in_upper_half() -> None:
    """Equal jitter's mean is three quarters of the exponential."""
    rng = random.Random(7)
    b = Backoff(1.0, 100.0, 2.0, "equal")
    samples = [b.delay(3, random=rng.random) for _ in range(20_000)]
    assert statistics.fmean(samples) == pytest.approx(3.0, rel=0.03)
    assert min(samples) >= 2.0


def test_decorrelated_jitter_walk_stays_bounded() -> None:
    """A decorrelated walk never leaves [initial, max] and does not collapse to initial."""
    rng = random.Random(3)
    b = Backoff(0.1, 5.0, 2.0, "decorrelated")
    previous = 0.0
    walk = []
    for n in range(1, 200):
        previous = b.delay(n, previous, random=rng.random)
        walk.append(previous)
    assert all(0.1 <= d <= 5.0 for d in walk)
    assert statistics.fmean(walk) > 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1.0},
        {"maximum": float("nan")},
        {"initial": 2.0, "maximum": 1.0},
        {"multiplier": 0.5},
        {"jitter": "gaussian"},
    ],
)
def test_bad_settings_raise_configuration_error(kwargs: dict[str, object]) -> None:
    """Invalid backoff settings are rejected with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)  # type: ignore[arg-type]


class _Hinted(Exception):
    def __init__(self, retry_after: object) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3.0),
        (2.5, 2.5),
        (timedelta(seconds=7), 7.0),
        ("12", 12.0),
        (b"4", 4.0),
        (-5, 0.0),
        (10**9, 86_400.0),
        ("soon", None),
        ("x" * 1000, None),
        (float("nan"), None),
        (object(), None),
    ],
)
def test_retry_after_attribute(value: object, expected: float | None) -> None:
    """exc.retry_after in seconds, timedelta or header text is read; junk is ignored."""
    assert retry_after_hint(_Hinted(value), NOW) == expected


def test_retry_after_http_date() -> None:
    """An HTTP-date Retry-After is the time left until that date."""
    when = datetime.fromtimestamp(NOW + 30, UTC)
    assert retry_after_hint(_Hinted(format_datetime(when, usegmt=True)), NOW) == 30.0
    past = datetime.fromtimestamp(NOW - 30, UTC)
    assert retry_after_hint(_Hinted(format_datetime(past, usegmt=True)), NOW) == 0.0


def test_retry_after_from_httpx_response() -> None:
    """An httpx.HTTPStatusError carries the server's Retry-After header."""
    request = httpx.Request("GET", "https://example.test/")
    response = httpx.Response(503, headers={"Retry-After": "9"}, request=request)
    error = httpx.HTTPStatusError("unavailable", request=request, response=response)
    assert retry_after_hint(error, NOW) == 9.0


def test_retry_after_from_requests_response() -> None:
    """A requests.HTTPError carries the server's Retry-After header (case-insensitive)."""
    response = requests.Response()
    response.status_code = 429
    response.headers["retry-after"] = "11"
    assert retry_after_hint(requests.HTTPError(response=response), NOW) == 11.0


def test_no_hint() -> None:
    """Errors without a hint, or with a response lacking the header, give None."""
    assert retry_after_hint(ValueError("x"), NOW) is None
    response = requests.Response()
    assert retry_after_hint(requests.HTTPError(response=response), NOW) is None


def test_hostile_attribute_is_ignored() -> None:
    """A property that raises does not break the hint lookup."""

    class Hostile(Exception):
        @property
        def retry_after(self) -> float:
            raise RuntimeError("no")

    assert retry_after_hint(Hostile(), NOW) is None
