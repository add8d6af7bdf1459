"""The framework-free error answer: format negotiation, the HTML page, the fallback."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import faultlens
import faultlens.errors
from faultlens._metrics import counters
from faultlens.errors import ConfigurationError, NotFoundError
from faultlens.integrations._errors import (
    ErrorSettings,
    answer,
    choose_format,
    choose_locale,
    html_page,
    render,
)
from faultlens.testing import capture_events

from ._hostile import CORRELATION_ID, HOSTILE_MESSAGE, assert_no_leak

DEFAULT = ErrorSettings.create()


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "html"),
        ("text/html;q=0.5, application/json", "json"),
        ("text/html, application/json", "json"),
        ("text/*", "html"),
        ("application/problem+json", "problem"),
        ("application/json;q=0.5, application/problem+json", "problem"),
        ("application/json, application/problem+json;q=0.2", "json"),
        ("text/html;q=nan, */*", "json"),
        ("garbage;;;,,,", "json"),
    ],
)
def test_format_negotiation(accept: str | None, expected: str) -> None:
    """HTML only when preferred over JSON; problem+json when listed and not outweighed."""
    assert choose_format(accept, DEFAULT) == expected


def test_format_options() -> None:
    """problem_json answers JSON clients with problem+json; html=False never answers HTML."""
    assert choose_format("application/json", ErrorSettings.create(problem_json=True)) == "problem"
    assert choose_format("text/html", ErrorSettings.create(html=False)) == "json"


@given(st.text(max_size=300))
def test_format_negotiation_never_raises(accept: str) -> None:
    """Any Accept value, however hostile, gives one of the three formats."""
    assert choose_format(accept, DEFAULT) in ("json", "problem", "html")


def test_locale_negotiation_and_validation() -> None:
    """Accept-Language picks a catalog locale; a fixed locale wins; unknown ones are refused."""
    assert choose_locale("pt-BR,pt;q=0.9,en;q=0.5", DEFAULT) == "pt-BR"
    assert choose_locale("pt", DEFAULT) == "pt-BR"
    assert choose_locale("de-DE", DEFAULT) == "en"
    assert choose_locale(None, DEFAULT) == "en"
    assert choose_locale("en", ErrorSettings.create(locale="pt_br")) == "pt-BR"
    assert ErrorSettings.create(locale="en-US").locale == "en"
    with pytest.raises(ConfigurationError, match="pt-BR"):
        ErrorSettings.create(locale="de")


def test_html_page_escapes_every_value() -> None:
    """Markup in a message, an id or details is escaped on the page."""
    with faultlens.correlate(CORRELATION_ID):
        response = faultlens.handle(NotFoundError("x"))
    forged = replace(
        response,
        message="<script>alert(1)</script>",
        details={"<img src=x>": "<b>bold</b>"},
    )
    page = html_page(forged, "en")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "<img" not in page
    assert "<b>bold" not in page
    assert f"<code>{CORRELATION_ID}</code>" in page


def test_rendered_json_is_the_stable_body() -> None:
    """JSON is ErrorResponse.to_dict(); headers carry no CR/LF and own no Content-Type twice."""
    with faultlens.correlate(CORRELATION_ID):
        response = faultlens.handle(RuntimeError(HOSTILE_MESSAGE))
    rendered = render(response, "json", "en", extra_headers=[("X-Bad", "a\r\nb: c")])
    assert orjson.loads(rendered.body) == response.to_dict()
    names = [name.lower() for name, _ in rendered.header_list()]
    assert names.count("content-type") == 1
    assert "x-bad" not in names
    assert_no_leak(rendered.body, headers=rendered.header_list())


def test_answer_captures_once_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """answer() captures the exception once; if handle() breaks, a fixed 500 is answered."""
    exc = RuntimeError(HOSTILE_MESSAGE)
    with capture_events("error") as events, faultlens.correlate(CORRELATION_ID):
        first = answer(exc, DEFAULT, accept=None, accept_language=None)
        second = answer(exc, DEFAULT, accept="text/html", accept_language="pt-BR")

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken")

        monkeypatch.setattr(faultlens.errors, "handle", broken)
        fallback = answer(ValueError("x"), DEFAULT, accept="text/html", accept_language=None)
    assert first.status == second.status == 500
    assert len(events) == 2  # exc once, the ValueError once
    assert fallback.status == 500
    assert fallback.content_type.startswith("text/html")
    assert CORRELATION_ID.encode() in fallback.body
    assert counters.get("integrations.answer_failures") == 1


def test_answer_without_capture() -> None:
    """capture=False answers without recording (an answer standing for no exception)."""
    with capture_events("error") as events:
        rendered = answer(
            NotFoundError("x"), DEFAULT, accept=None, accept_language=None, capture=False
        )
    assert rendered.status == 404
    assert events == []
