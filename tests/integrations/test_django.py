"""Django: FaultlensMiddleware (sync and async), safe answers, headers, capture once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.test import AsyncClient, Client, override_settings

import faultlens
import faultlens.errors
from faultlens.errors import ConfigurationError, MissingExtraError
from faultlens.integrations.django import FaultlensMiddleware
from faultlens.testing import CapturedEvents, capture_events, capture_logs

from . import djangoapp
from ._hostile import CORRELATION_ID, HEX32, SECRET, assert_no_leak

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def errors() -> Iterator[CapturedEvents]:
    """The error events captured during the test."""
    with capture_events("error") as captured:
        yield captured


def text_of(response: Any) -> str:
    return bytes(response.content).decode()


def test_bug_answers_safe_json_500_with_matching_correlation_header(
    errors: CapturedEvents,
) -> None:
    """A view's bug gives faultlens's 500 JSON; body id equals X-Correlation-ID."""
    response = Client().get("/boom")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "internal_error"
    assert HEX32.fullmatch(body["correlation_id"])
    assert response["X-Correlation-ID"] == body["correlation_id"]
    assert response["traceparent"].split("-")[1] == body["correlation_id"]
    assert_no_leak(text_of(response), headers=response.items())
    assert len(errors) == 1
    assert errors[0].correlation_id == body["correlation_id"]
    assert errors[0].payload["fields"]["route"] == "/boom"


def test_incoming_correlation_id_honoured(errors: CapturedEvents) -> None:
    """A valid incoming X-Correlation-ID is the body's, the header's and the event's id."""
    response = Client().get("/boom", headers={"X-Correlation-ID": CORRELATION_ID})
    assert response.json()["correlation_id"] == CORRELATION_ID
    assert response["X-Correlation-ID"] == CORRELATION_ID
    assert errors[0].correlation_id == CORRELATION_ID


def test_success_gets_headers_and_context() -> None:
    """A successful view sees the context; the response carries its ids."""
    response = Client().get("/ok", headers={"X-Request-ID": "req-42"})
    assert response.json()["correlation_id"] == response["X-Correlation-ID"]
    assert response["X-Request-ID"] == "req-42"


def test_captured_exactly_once_when_the_view_captured_it_first(errors: CapturedEvents) -> None:
    """An exception the view captured and re-raised is not recorded a second time."""
    assert Client().get("/captured-then-raised").status_code == 500
    assert len(errors) == 1
    assert errors[0].payload["fields"] == {"where": "view"}


def test_browser_gets_escaped_html_page() -> None:
    """A browser's Accept gets a small HTML page quoting the correlation id, nothing raw."""
    response = Client().get("/boom", headers={"Accept": BROWSER_ACCEPT})
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert f"<code>{response['X-Correlation-ID']}</code>" in text_of(response)
    assert_no_leak(text_of(response))


def test_portuguese_by_accept_language() -> None:
    """``Accept-Language: pt-BR`` answers with the pt-BR catalog message."""
    response = Client().get(
        "/boom", headers={"Accept-Language": "pt-BR", "X-Correlation-ID": CORRELATION_ID}
    )
    with faultlens.correlate(CORRELATION_ID):
        expected = faultlens.handle(RuntimeError(), locale="pt-BR").message
    assert response.json()["message"] == expected


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/orders/7/", 404, "not_found"),
        ("/denied", 403, "authorization_error"),
        ("/suspicious", 400, "bad_request"),
        ("/bad", 400, "bad_request"),
    ],
)
def test_django_exceptions_mapped(url: str, status: int, code: str, errors: CapturedEvents) -> None:
    """Http404, PermissionDenied, SuspiciousOperation and BadRequest keep their meaning."""
    response = Client().get(url)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert body["correlation_id"] == response["X-Correlation-ID"]
    assert_no_leak(text_of(response))
    assert len(errors) == 1


def test_validation_error_names_fields_not_values() -> None:
    """A Django ValidationError answers 422 with field names and codes, never the message."""
    response = Client().get("/invalid")
    assert response.status_code == 422
    assert response.json()["details"]["errors"] == [
        {"loc": ["email"], "field": "email", "type": "invalid"}
    ]
    assert SECRET not in text_of(response)


def test_unknown_url_answered_by_the_404_handler() -> None:
    """``handler404 = page_not_found`` answers unmatched URLs with faultlens's 404."""
    response = Client().get("/no/such/page", headers={"X-Correlation-ID": CORRELATION_ID})
    assert response.status_code == 404
    assert response.json()["correlation_id"] == CORRELATION_ID == response["X-Correlation-ID"]


def test_inner_middleware_failure_answered_and_captured_once(errors: CapturedEvents) -> None:
    """A middleware inside faultlens's fails: handler500 answers, the signal captures once."""
    stack = [djangoapp.MIDDLEWARE, f"{djangoapp.__name__}.BrokenMiddleware"]
    with override_settings(MIDDLEWARE=stack):
        response = Client(raise_request_exception=False).get("/ok")
    assert response.status_code == 500
    assert response.json()["correlation_id"] == response["X-Correlation-ID"]
    assert_no_leak(text_of(response))
    assert [event.name for event in errors] == ["LookupError"]


INNER_FAILURES = ["BrokenMiddleware", "AsyncBrokenMiddleware"]


def _stack(inner: str) -> list[str]:
    return [djangoapp.MIDDLEWARE, f"{djangoapp.__name__}.{inner}"]


@pytest.mark.parametrize("inner", INNER_FAILURES)
@pytest.mark.parametrize("error_views", [True, False], ids=["handler500", "django-500"])
def test_inner_middleware_failure_captured_once_under_wsgi(
    inner: str, error_views: bool, errors: CapturedEvents
) -> None:
    """WSGI: an inner middleware's exception is captured once, with the request's id."""
    urlconf: Any = djangoapp if error_views else djangoapp.without_error_views
    with override_settings(MIDDLEWARE=_stack(inner), ROOT_URLCONF=urlconf):
        response = Client(raise_request_exception=False).get(
            "/ok", headers={"X-Correlation-ID": CORRELATION_ID}
        )
    assert response.status_code == 500
    assert response["X-Correlation-ID"] == CORRELATION_ID
    assert [(event.name, event.correlation_id) for event in errors] == [
        ("LookupError", CORRELATION_ID)
    ]
    assert errors[0].payload["fields"]["integration"] == "django"


@pytest.mark.parametrize("inner", INNER_FAILURES)
@pytest.mark.parametrize("error_views", [True, False], ids=["handler500", "django-500"])
def test_inner_middleware_failure_captured_once_under_asgi(
    inner: str, error_views: bool, errors: CapturedEvents
) -> None:
    """ASGI (AsyncClient): an inner middleware's exception is captured once, with the id.

    Django converts it to a response in a worker thread (``sync_to_async``), with
    the exception re-raised there and the request's contextvars copied, so the
    ``got_request_exception`` receiver sees both.
    """
    urlconf: Any = djangoapp if error_views else djangoapp.without_error_views

    async def scenario() -> Any:
        client = AsyncClient(raise_request_exception=False)
        return await client.get("/ok", headers={"X-Correlation-ID": CORRELATION_ID})

    with override_settings(MIDDLEWARE=_stack(inner), ROOT_URLCONF=urlconf):
        response = asyncio.run(scenario())
    assert response.status_code == 500
    assert response["X-Correlation-ID"] == CORRELATION_ID
    if error_views:
        assert response.json()["correlation_id"] == CORRELATION_ID
        assert_no_leak(text_of(response))
    assert [(event.name, event.correlation_id) for event in errors] == [
        ("LookupError", CORRELATION_ID)
    ]


@pytest.mark.parametrize("mode", ["wsgi", "asgi"])
def test_inner_middleware_refusal_answered_by_handler403(mode: str, errors: CapturedEvents) -> None:
    """An inner middleware's PermissionDenied is answered and captured by the 403 view."""

    async def scenario() -> Any:
        client = AsyncClient(raise_request_exception=False)
        return await client.get("/ok", headers={"X-Correlation-ID": CORRELATION_ID})

    with override_settings(MIDDLEWARE=_stack("DenyingMiddleware")):
        if mode == "wsgi":
            response = Client().get("/ok", headers={"X-Correlation-ID": CORRELATION_ID})
        else:
            response = asyncio.run(scenario())
    assert response.status_code == 403
    assert response.json()["code"] == "authorization_error"
    assert response.json()["correlation_id"] == CORRELATION_ID == response["X-Correlation-ID"]
    assert [(event.name, event.correlation_id) for event in errors] == [
        ("django.core.exceptions.PermissionDenied", CORRELATION_ID)
    ]


async def _asgi_get(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """One GET through an ASGI application, as a server would send it; the sent messages."""
    sent: list[Any] = []
    pending = [{"type": "http.request", "body": b"", "more_body": False}]
    disconnect = asyncio.Event()

    async def receive() -> Any:
        if pending:
            return pending.pop(0)
        await disconnect.wait()  # the client stays connected; Django cancels this wait
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("inner", INNER_FAILURES)
def test_inner_middleware_failure_through_get_asgi_application(
    inner: str, errors: CapturedEvents
) -> None:
    """Django's real ASGI handler: the failure is answered with the headers, captured once."""
    from django.core.asgi import get_asgi_application

    with override_settings(MIDDLEWARE=_stack(inner), ROOT_URLCONF=djangoapp.without_error_views):
        app = get_asgi_application()
        sent = asyncio.run(_asgi_get(app, "/ok", [(b"x-correlation-id", CORRELATION_ID.encode())]))
    start = sent[0]
    assert start["status"] == 500
    assert dict(start["headers"])[b"X-Correlation-ID"] == CORRELATION_ID.encode()
    assert [(event.name, event.correlation_id) for event in errors] == [
        ("LookupError", CORRELATION_ID)
    ]


def test_view_failure_through_get_asgi_application(errors: CapturedEvents) -> None:
    """Django's real ASGI handler: a view's bug is answered by faultlens and captured once."""
    from django.core.asgi import get_asgi_application

    app = get_asgi_application()
    sent = asyncio.run(
        _asgi_get(app, "/async-boom", [(b"x-correlation-id", CORRELATION_ID.encode())])
    )
    body = orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert sent[0]["status"] == 500
    assert body["correlation_id"] == CORRELATION_ID
    assert [(event.name, event.correlation_id) for event in errors] == [
        ("RuntimeError", CORRELATION_ID)
    ]


def test_options_from_settings() -> None:
    """FAULTLENS_MIDDLEWARE sets header names, locale and problem JSON."""
    options = {"correlation_header": "X-Trace-Ref", "locale": "pt-BR", "problem_json": True}
    with override_settings(FAULTLENS_MIDDLEWARE=options):
        response = Client().get("/boom", headers={"X-Trace-Ref": CORRELATION_ID})
    assert response["Content-Type"] == "application/problem+json"
    assert response["X-Trace-Ref"] == CORRELATION_ID == response.json()["correlation_id"]
    assert response["Content-Language"] == "pt-BR"


def test_bad_options_fail_when_django_loads_the_middleware() -> None:
    """An unknown option key or a bad value raises ConfigurationError naming it."""
    with override_settings(FAULTLENS_MIDDLEWARE={"acess_log": False}):
        with pytest.raises(ConfigurationError, match="acess_log"):
            FaultlensMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]
    with override_settings(FAULTLENS_MIDDLEWARE={"trusted_proxies": ["nope"]}):
        with pytest.raises(ConfigurationError, match="nope"):
            FaultlensMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]


def test_rejects_unsafe_ids_when_asked() -> None:
    """``reject_invalid_ids`` answers 400 without calling the view, never echoing the id."""
    with override_settings(FAULTLENS_MIDDLEWARE={"reject_invalid_ids": True}):
        response = Client().get("/ok", headers={"X-Correlation-ID": "bad id\r\nX: y"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request_id_header"
    assert "X: y" not in text_of(response)


def test_access_log_line_uses_the_route() -> None:
    """One access line per request, with the URL pattern rather than the raw path."""
    with capture_logs() as logs:
        Client().get("/orders/12345/")
    [line] = [entry for entry in logs if entry.get("logger") == "faultlens.access"]
    assert line["path"] == "/orders/<int:pk>/"
    assert line["status"] == 404


# --- async ------------------------------------------------------------------------------------


def test_async_stack_answers_bug_once(errors: CapturedEvents) -> None:
    """Under ASGI the middleware runs async: the bug is answered safely and captured once."""

    async def scenario() -> Any:
        return await AsyncClient().get("/async-boom", headers={"X-Correlation-ID": CORRELATION_ID})

    response = asyncio.run(scenario())
    assert response.status_code == 500
    assert response.json()["correlation_id"] == CORRELATION_ID == response["X-Correlation-ID"]
    assert_no_leak(text_of(response))
    assert len(errors) == 1
    assert errors[0].correlation_id == CORRELATION_ID


def test_async_success_sees_context() -> None:
    """An async view sees the request's context; the header matches."""

    async def scenario() -> Any:
        return await AsyncClient().get("/async-ok")

    response = asyncio.run(scenario())
    assert response.json()["correlation_id"] == response["X-Correlation-ID"]


def test_middleware_is_sync_and_async_capable() -> None:
    """Django may build it either way; in async mode it is a coroutine function."""
    from asgiref.sync import iscoroutinefunction

    async def get_response(request: Any) -> Any:
        return None

    assert FaultlensMiddleware.sync_capable
    assert FaultlensMiddleware.async_capable
    assert iscoroutinefunction(FaultlensMiddleware(get_response))
    assert not iscoroutinefunction(FaultlensMiddleware(lambda request: None))  # type: ignore[arg-type,return-value]


def test_handle_failure_still_answers_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    """When handle() itself fails the answer is a fixed safe 500 with the correlation id."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("handle is broken")

    monkeypatch.setattr(faultlens.errors, "handle", broken)
    response = Client().get("/boom")
    assert response.status_code == 500
    assert response.json()["correlation_id"] == response["X-Correlation-ID"]


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Django the module raises MissingExtraError naming faultlens[django]."""
    monkeypatch.delitem(sys.modules, "faultlens.integrations.django")
    monkeypatch.setitem(sys.modules, "django.conf", None)
    with pytest.raises(MissingExtraError, match=r"faultlens\[django\]"):
        import faultlens.integrations.django  # noqa: F401
