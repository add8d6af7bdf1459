"""FastAPI / Starlette: install(), safe answers, correlation headers, capture once."""

from __future__ import annotations

import asyncio
import sys
import warnings
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import faultlens
import faultlens.errors
from faultlens._metrics import counters
from faultlens.errors import ConfigurationError, MissingExtraError, NotFoundError
from faultlens.integrations.asgi import FaultlensMiddleware
from faultlens.integrations.fastapi import ErrorResponseMiddleware, install
from faultlens.testing import CapturedEvents, capture_events

from ._hostile import CORRELATION_ID, HEX32, HOSTILE_MESSAGE, SECRET, assert_no_leak

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for httpx2 in its test client
    from starlette.testclient import TestClient

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class Payment(BaseModel):
    amount: int
    card: str


def make_app(**options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(HOSTILE_MESSAGE)

    @app.get("/sync-boom")
    def sync_boom() -> None:
        raise KeyError(HOSTILE_MESSAGE)

    @app.get("/missing/{order_id}")
    async def missing(order_id: int) -> None:
        raise HTTPException(status_code=404, detail=f"order {order_id}: {HOSTILE_MESSAGE}")

    @app.get("/private")
    async def private() -> None:
        raise HTTPException(
            status_code=401, detail=HOSTILE_MESSAGE, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.get("/gone")
    async def gone() -> None:
        raise NotFoundError(HOSTILE_MESSAGE)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.post("/payments")
    async def pay(payment: Payment) -> dict[str, int]:
        return {"amount": payment.amount}

    @app.get("/captured-then-raised")
    async def captured_then_raised() -> None:
        try:
            raise ValueError(HOSTILE_MESSAGE)
        except ValueError as exc:
            faultlens.capture(exc, where="endpoint")
            raise

    @app.get("/ok")
    async def ok() -> dict[str, str | None]:
        return {"correlation_id": faultlens.correlation_id()}

    install(app, **options)
    return app


def client(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def errors() -> Iterator[CapturedEvents]:
    """The error events captured during the test."""
    with capture_events("error") as captured:
        yield captured


# --- unexpected errors -------------------------------------------------------------------


def test_bug_answers_safe_json_500_with_matching_correlation_header(
    errors: CapturedEvents,
) -> None:
    """An unexpected exception gives faultlens's 500 JSON; body id equals X-Correlation-ID."""
    response = client(make_app()).get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == 500
    assert body["code"] == "internal_error"
    assert body["message"]
    assert HEX32.fullmatch(body["correlation_id"])
    assert response.headers["x-correlation-id"] == body["correlation_id"]
    assert_no_leak(response.text, headers=response.headers.items())
    assert len(errors) == 1
    assert errors[0].correlation_id == body["correlation_id"]
    assert errors[0].name == "RuntimeError"


def test_sync_endpoint_bug_answered_the_same(errors: CapturedEvents) -> None:
    """A bug in a sync (threadpool) endpoint is answered and captured once too."""
    response = client(make_app()).get("/sync-boom")
    assert response.status_code == 500
    assert response.headers["x-correlation-id"] == response.json()["correlation_id"]
    assert_no_leak(response.text)
    assert [event.name for event in errors] == ["KeyError"]


def test_incoming_correlation_id_honoured(errors: CapturedEvents) -> None:
    """A valid incoming X-Correlation-ID is the body's, the header's and the event's id."""
    response = client(make_app()).get("/boom", headers={"X-Correlation-ID": CORRELATION_ID})
    assert response.json()["correlation_id"] == CORRELATION_ID
    assert response.headers["x-correlation-id"] == CORRELATION_ID
    assert errors[0].correlation_id == CORRELATION_ID


def test_unsafe_incoming_correlation_id_replaced(errors: CapturedEvents) -> None:
    """A hostile incoming id is replaced, never echoed, and body and header still agree."""
    response = client(make_app()).get("/boom", headers={"X-Correlation-ID": "<script>x</script>"})
    body = response.json()
    assert HEX32.fullmatch(body["correlation_id"])
    assert response.headers["x-correlation-id"] == body["correlation_id"]
    assert "<script" not in response.text


def test_captured_exactly_once_when_the_endpoint_captured_it_first(
    errors: CapturedEvents,
) -> None:
    """An exception the endpoint captured and re-raised is not recorded a second time."""
    response = client(make_app()).get("/captured-then-raised")
    assert response.status_code == 500
    assert len(errors) == 1
    assert errors[0].payload["fields"] == {"where": "endpoint"}


def test_exception_still_reaches_the_server_after_the_safe_answer(
    errors: CapturedEvents,
) -> None:
    """The bug is re-raised after the 500 was sent (servers log it), and sent only once."""
    app = make_app()
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/boom",
        "raw_path": b"/boom",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("203.0.113.9", 5000),
        "server": ("testserver", 80),
    }
    with pytest.raises(RuntimeError):
        asyncio.run(app(scope, receive, send))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1
    assert starts[0]["status"] == 500
    assert len(errors) == 1


def test_error_after_response_started_is_captured_and_reraised(errors: CapturedEvents) -> None:
    """A stream that fails midway cannot be answered: captured once, then re-raised."""

    async def broken_stream(request: Request) -> Response:
        async def chunks() -> Any:
            yield b"partial"
            raise RuntimeError(HOSTILE_MESSAGE)

        return StreamingResponse(chunks())

    app = Starlette(routes=[Route("/stream", broken_stream)])
    install(app)
    with pytest.raises(RuntimeError):
        TestClient(app).get("/stream")
    assert len(errors) == 1


# --- format and language -----------------------------------------------------------------


def test_browser_gets_escaped_html_page(errors: CapturedEvents) -> None:
    """A browser's Accept gets a small HTML page quoting the correlation id, nothing raw."""
    response = client(make_app()).get("/boom", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    cid = response.headers["x-correlation-id"]
    assert f"<code>{cid}</code>" in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert_no_leak(response.text)


def test_json_client_and_wildcard_get_json() -> None:
    """``application/json``, ``*/*`` and no Accept at all get JSON, not HTML."""
    test_client = client(make_app())
    for accept in ("application/json", "*/*", "application/json, text/html;q=0.5"):
        response = test_client.get("/boom", headers={"Accept": accept})
        assert response.headers["content-type"] == "application/json"


def test_problem_json_when_the_client_asks() -> None:
    """``Accept: application/problem+json`` gets an RFC 9457 body with the same id."""
    response = client(make_app()).get("/boom", headers={"Accept": "application/problem+json"})
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 500
    assert problem["correlation_id"] == response.headers["x-correlation-id"]
    assert_no_leak(response.text)


def test_problem_json_when_configured() -> None:
    """``install(problem_json=True)`` answers JSON clients with problem+json."""
    response = client(make_app(problem_json=True)).get("/missing/7")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_portuguese_by_accept_language() -> None:
    """``Accept-Language: pt-BR`` answers with the pt-BR catalog message."""
    test_client = client(make_app())
    ids = {"X-Correlation-ID": CORRELATION_ID}
    english = test_client.get("/boom", headers=ids).json()["message"]
    response = test_client.get(
        "/boom", headers={**ids, "Accept-Language": "pt-BR,pt;q=0.9,en;q=0.5"}
    )
    portuguese = response.json()["message"]
    assert portuguese != english
    with faultlens.correlate(CORRELATION_ID):
        assert portuguese == faultlens.handle(RuntimeError("x"), locale="pt-BR").message
    assert response.headers["content-language"] == "pt-BR"
    html_page = test_client.get(
        "/boom", headers={"Accept": BROWSER_ACCEPT, "Accept-Language": "pt-BR"}
    )
    assert 'lang="pt-BR"' in html_page.text
    assert "Referência" in html_page.text


def test_fixed_locale_wins_over_accept_language() -> None:
    """``install(locale="pt-BR")`` answers in Portuguese whatever the client asks."""
    response = client(make_app(locale="pt-BR")).get(
        "/boom", headers={"Accept-Language": "en-US", "X-Correlation-ID": CORRELATION_ID}
    )
    with faultlens.correlate(CORRELATION_ID):
        expected = faultlens.handle(RuntimeError(), locale="pt-BR").message
    assert response.json()["message"] == expected


# --- HTTP and validation errors -----------------------------------------------------------


def test_http_exception_keeps_status_with_safe_message(errors: CapturedEvents) -> None:
    """HTTPException(404, detail=...) answers 404 with the catalog's message, not the detail."""
    response = client(make_app()).get("/missing/7", headers={"X-Correlation-ID": CORRELATION_ID})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert body["correlation_id"] == CORRELATION_ID == response.headers["x-correlation-id"]
    assert_no_leak(response.text)
    assert len(errors) == 1


def test_http_exception_headers_kept() -> None:
    """The exception's own headers (WWW-Authenticate) survive; its detail does not."""
    response = client(make_app()).get("/private")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert_no_leak(response.text)


def test_unknown_route_answers_safe_404() -> None:
    """The router's own 404 is faultlens's JSON with the correlation id."""
    response = client(make_app()).get("/no/such/page")
    assert response.status_code == 404
    assert response.json()["correlation_id"] == response.headers["x-correlation-id"]


def test_faultlens_error_answered_by_its_classification(errors: CapturedEvents) -> None:
    """A faultlens NotFoundError raised by an endpoint answers 404."""
    response = client(make_app()).get("/gone")
    assert response.status_code == 404
    assert_no_leak(response.text)
    assert len(errors) == 1


def test_request_validation_error_gives_422_without_the_input(errors: CapturedEvents) -> None:
    """A bad path parameter answers 422 with location and reason, never the input."""
    response = client(make_app()).get(f"/items/{SECRET}")
    assert response.status_code == 422
    body = response.json()
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    [error] = body["details"]["errors"]
    assert error["loc"] == ["path", "item_id"]
    assert error["field"] == "item_id"
    assert error["type"] == "int_parsing"
    assert SECRET not in response.text
    assert len(errors) == 1


def test_body_validation_error_does_not_echo_the_body() -> None:
    """A JSON body failing validation answers field locations; the values stay out."""
    # Pydantic quotes neither value in its messages; the secret in the key-less list
    # and the card number must not come back either way.
    response = client(make_app()).post(
        "/payments", json={"amount": f"{SECRET}<script>", "card": ["4111111111111111"]}
    )
    assert response.status_code == 422
    errors = response.json()["details"]["errors"]
    locs = [tuple(error["loc"]) for error in errors]
    assert ("body", "amount") in locs
    assert ("body", "card") in locs
    assert SECRET not in response.text
    assert "4111111111111111" not in response.text
    assert "<script" not in response.text


def test_client_errors_not_captured_when_disabled(errors: CapturedEvents) -> None:
    """``capture_client_errors=False`` records only 5xx answers."""
    test_client = client(make_app(capture_client_errors=False))
    assert test_client.get("/missing/1").status_code == 404
    assert errors == []
    assert test_client.get("/boom").status_code == 500
    assert len(errors) == 1


def test_success_untouched() -> None:
    """A successful request keeps its body and gets the correlation headers."""
    response = client(make_app()).get("/ok")
    assert response.status_code == 200
    assert response.json()["correlation_id"] == response.headers["x-correlation-id"]


def test_handle_failure_still_answers_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    """When handle() itself fails the answer is a fixed safe 500, counted."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(HOSTILE_MESSAGE)

    monkeypatch.setattr(faultlens.errors, "handle", broken)
    response = client(make_app()).get("/boom")
    assert response.status_code == 500
    assert response.json()["correlation_id"] == response.headers["x-correlation-id"]
    assert_no_leak(response.text)
    assert counters.get("integrations.answer_failures") == 1


# --- installation --------------------------------------------------------------------------


def test_plain_starlette_app() -> None:
    """install() works on a Starlette application (no FastAPI validation handler needed)."""

    async def boom(request: Request) -> Response:
        raise RuntimeError(HOSTILE_MESSAGE)

    async def fine(request: Request) -> Response:
        return PlainTextResponse("fine")

    app = Starlette(routes=[Route("/boom", boom), Route("/fine", fine)])
    install(app)
    response = client(app).get("/boom", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 500
    assert response.headers["x-correlation-id"] in response.text
    assert client(app).get("/fine").text == "fine"


def test_existing_middleware_reused_with_its_options() -> None:
    """An application that already has FaultlensMiddleware keeps it (and its header name)."""
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("x")

    app.add_middleware(FaultlensMiddleware, correlation_header="X-Trace-Ref")
    install(app)
    classes = [entry.cls for entry in app.user_middleware]
    assert classes == [FaultlensMiddleware, ErrorResponseMiddleware]
    response = client(app).get("/boom", headers={"X-Trace-Ref": CORRELATION_ID})
    assert response.headers["x-trace-ref"] == CORRELATION_ID == response.json()["correlation_id"]


def test_middleware_options_passed_through() -> None:
    """Options install() does not know are the middleware's, checked at once."""
    app = FastAPI()
    install(app, access_log=False, correlation_header="X-Req-Ref")
    assert client(app).get("/nothing").headers["x-req-ref"]
    with pytest.raises(ConfigurationError, match="unknown middleware option"):
        install(FastAPI(), acess_log=False)
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        install(FastAPI(), trusted_proxies=["not-an-ip"])


def test_install_refuses_misuse() -> None:
    """A second install, options for an existing middleware, a bad locale all fail clearly."""
    app = FastAPI()
    install(app)
    with pytest.raises(ConfigurationError, match="already installed"):
        install(app)
    other = FastAPI()
    other.add_middleware(FaultlensMiddleware)
    with pytest.raises(ConfigurationError, match="already has FaultlensMiddleware"):
        install(other, access_log=False)
    with pytest.raises(ConfigurationError, match="locale"):
        install(FastAPI(), locale="xx-YY")


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Starlette the module raises MissingExtraError naming faultlens[fastapi]."""
    monkeypatch.delitem(sys.modules, "faultlens.integrations.fastapi")
    monkeypatch.setitem(sys.modules, "starlette.applications", None)
    with pytest.raises(MissingExtraError, match=r"faultlens\[fastapi\]"):
        import faultlens.integrations.fastapi  # noqa: F401


def test_http_exception_from_an_inner_middleware_answered_not_reraised(
    errors: CapturedEvents,
) -> None:
    """An HTTPException raised by a middleware (outside the router) keeps its status."""

    class Gate:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/ok":
                raise HTTPException(status_code=403, detail=HOSTILE_MESSAGE)
            await self.app(scope, receive, send)

    app = FastAPI()

    @app.get("/ok")
    async def ok() -> None:
        return None

    app.add_middleware(Gate)
    install(app)
    response = TestClient(app).get("/ok")  # not re-raised: a deliberate answer
    assert response.status_code == 403
    assert response.json()["correlation_id"] == response.headers["x-correlation-id"]
    assert_no_leak(response.text)
    assert len(errors) == 1
