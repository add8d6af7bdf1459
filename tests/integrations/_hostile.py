"""Hostile error messages, and the checks that none of them reaches a response."""

from __future__ import annotations

import re
from collections.abc import Iterable

SECRET = "sk_live_51HxQz8dGs3cr3tK3y"
PASSWORD = "hunter2-pa55"
HOSTILE_MESSAGE = (
    f"db login failed password={PASSWORD} api_key={SECRET} "
    "<script>alert('pwned')</script>\r\nX-Injected: yes\r\n\r\n<h1>owned</h1>"
)
"""An exception message with secrets, HTML and CR/LF: none of it may be answered."""

LEAKS = (SECRET, PASSWORD, "<script", "alert(", "X-Injected", "<h1>owned", "db login failed")

CORRELATION_ID = "3f2a9c1e8b7d4e6fa1b2c3d4e5f60718"
"""A valid incoming correlation id (32 hex: kept as it is)."""

HEX32 = re.compile(r"[0-9a-f]{32}")


def assert_no_leak(*texts: str | bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
    """Fail when a response text or header carries any part of the hostile message."""
    for text in texts:
        decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for leak in LEAKS:
            assert leak not in decoded, f"{leak!r} leaked into the response"
    for name, value in headers:
        assert "\r" not in value
        assert "\n" not in value
        for leak in LEAKS:
            assert leak not in name, f"{leak!r} leaked into a header name"
            assert leak not in value, f"{leak!r} leaked into a header value"
