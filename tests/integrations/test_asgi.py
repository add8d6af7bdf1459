"""The ASGI middleware: context per request, ids, trace context, headers, access log."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

import faultlens
from faultlens._ids import normalize_id
from faultlens._metrics import counters
from faultlens.context import (
    RequestContext,
    context_from_headers,
    current_context,
    set_header_names,
)
from faultlens.integrations.asgi import FaultlensMiddleware
from faultlens.testing import capture_logs

with warnings.catch_warnings():
    # starlette asks for httpx2 in its test client; the httpx one still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"
HEX32 = re.compile(r"[0-9a-f]{32}")
TRACEPARENT_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]")
SAFE_HEADER_VALUE = re.compile(r"[A-Za-z0-9._:\-]+")


# --- apps and helpers -----------------------------------------------------------------


async def show_context(request: Request) -> Response:
    ctx = current_context()
    assert ctx is not None
    return JSONResponse(
        {
            "correlation_id": ctx.correlation_id,
            "request_id": ctx.request_id,
            "trace_id": ctx.trace_id,
            "span_id": ctx.span_id,
            "parent_span_id": ctx.parent_span_id,
            "tracestate": dict(ctx.tracestate),
            "ip_address": ctx.ip_address,
            "user_agent": ctx.user_agent,
        }
    )


async def item(request: Request) -> Response:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def echo_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(str(current_context()))
    await websocket.close()


def starlette_app(**options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/ctx", show_context),
            Route("/items/{item_id:int}", item),
            Route("/boom", boom),
            WebSocketRoute("/ws", echo_ws),
            Mount("/v1", routes=[Route("/items/{item_id:int}", item)]),
        ]
    )
    app.add_middleware(FaultlensMiddleware, **options)
    return app


def client(app: Any, **kwargs: Any) -> TestClient:
    return TestClient(app, **kwargs)


def http_scope(
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    path: str = "/",
    peer: tuple[str, int] | None = ("203.0.113.5", 40000),
    query: bytes = b"",
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": peer,
        "server": ("testserver", 80),
    }


async def call(app: ASGIApp, scope: dict[str, Any]) -> list[Message]:
    """Call an ASGI app once with an empty request body; return the messages sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def run(app: ASGIApp, scope: dict[str, Any]) -> list[Message]:
    return asyncio.run(call(app, scope))


def response_headers(messages: list[Message]) -> dict[bytes, list[bytes]]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    out: dict[bytes, list[bytes]] = {}
    for name, value in start["headers"]:
        out.setdefault(bytes(name).lower(), []).append(bytes(value))
    return out


def body_of(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


class Recorder:
    """A raw ASGI app that records the context it ran in and answers with its ids."""

    def __init__(self) -> None:
        self.contexts: list[faultlens.RequestContext | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        ctx = current_context()
        self.contexts.append(ctx)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def access_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line.get("logger") == "faultlens.access"]


# --- context and ids ---------------------------------------------------------------------


def test_context_available_inside_endpoint() -> None:
    """The endpoint sees a context whose correlation id is the response header."""
    response = client(starlette_app()).get("/ctx")
    data = response.json()
    assert response.status_code == 200
    assert HEX32.fullmatch(data["correlation_id"])
    assert response.headers["x-correlation-id"] == data["correlation_id"]
    assert response.headers["x-request-id"] == data["request_id"]
    # No explicit id and no traceparent: the fresh trace id is the correlation id.
    assert data["trace_id"] == data["correlation_id"]
    trace_id, span_id = TRACEPARENT_RE.fullmatch(response.headers["traceparent"]).groups()  # type: ignore[union-attr]
    assert (trace_id, span_id) == (data["trace_id"], data["span_id"])
    assert data["ip_address"] == "testclient"
    assert data["user_agent"] == "testclient"


def test_incoming_uuid_correlation_id_kept_normalised() -> None:
    """A valid incoming UUID is kept, as 32 lower-case hex digits."""
    response = client(starlette_app()).get(
        "/ctx", headers={"X-Correlation-ID": "123E4567-E89B-12D3-A456-426614174000"}
    )
    expected = "123e4567e89b12d3a456426614174000"
    assert response.json()["correlation_id"] == expected
    assert response.headers["x-correlation-id"] == expected
    # A 32-hex correlation id doubles as the trace id.
    assert response.json()["trace_id"] == expected
    assert counters.snapshot() == {}


def test_incoming_token_ids_kept() -> None:
    """Safe tokens are kept as they are, correlation id and request id alike."""
    response = client(starlette_app()).get(
        "/ctx", headers={"X-Correlation-ID": "order-42.retry:1", "X-Request-ID": "req_7"}
    )
    assert response.json()["correlation_id"] == "order-42.retry:1"
    assert response.headers["x-correlation-id"] == "order-42.retry:1"
    assert response.headers["x-request-id"] == "req_7"


def test_valid_traceparent_continues_the_trace() -> None:
    """A valid traceparent keeps the trace id, which becomes the correlation id."""
    response = client(starlette_app()).get(
        "/ctx", headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc,other=1"}
    )
    data = response.json()
    assert data["trace_id"] == TRACE_ID
    assert data["correlation_id"] == TRACE_ID
    assert data["parent_span_id"] == SPAN_ID
    assert data["tracestate"] == {"vendor": "abc", "other": "1"}
    trace_id, span_id = TRACEPARENT_RE.fullmatch(response.headers["traceparent"]).groups()  # type: ignore[union-attr]
    assert trace_id == TRACE_ID
    assert span_id != SPAN_ID
    assert span_id == data["span_id"]
    assert response.headers["x-correlation-id"] == TRACE_ID


def test_traceparent_with_explicit_correlation_id() -> None:
    """An explicit correlation id is kept while the trace continues."""
    response = client(starlette_app()).get(
        "/ctx", headers={"traceparent": TRACEPARENT, "X-Correlation-ID": "checkout-9"}
    )
    data = response.json()
    assert (data["correlation_id"], data["trace_id"]) == ("checkout-9", TRACE_ID)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        f"00-{'0' * 32}-{SPAN_ID}-01",
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
        f"ff-{TRACE_ID}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",
    ],
)
def test_invalid_traceparent_restarts_the_trace(value: str) -> None:
    """An invalid traceparent restarts the trace; its tracestate is dropped."""
    response = client(starlette_app()).get(
        "/ctx", headers={"traceparent": value, "tracestate": "vendor=abc"}
    )
    data = response.json()
    assert data["trace_id"] != TRACE_ID
    assert data["parent_span_id"] is None
    assert data["tracestate"] == {}
    assert TRACEPARENT_RE.fullmatch(response.headers["traceparent"])


def test_duplicated_traceparent_restarts_the_trace() -> None:
    """Two traceparent fields, even equal ones, restart the trace."""
    recorder = Recorder()
    headers = [(b"traceparent", TRACEPARENT.encode()), (b"traceparent", TRACEPARENT.encode())]
    messages = run(FaultlensMiddleware(recorder), http_scope(headers))
    (ctx,) = recorder.contexts
    assert ctx is not None
    assert ctx.trace_id != TRACE_ID
    assert ctx.parent_span_id is None
    (sent,) = response_headers(messages)[b"traceparent"]
    assert TRACE_ID.encode() not in sent


def test_repeated_tracestate_fields_are_joined() -> None:
    """Several tracestate fields form one list, as W3C specifies."""
    recorder = Recorder()
    headers = [
        (b"traceparent", TRACEPARENT.encode()),
        (b"tracestate", b"a=1"),
        (b"tracestate", b"b=2"),
    ]
    run(FaultlensMiddleware(recorder), http_scope(headers))
    (ctx,) = recorder.contexts
    assert ctx is not None
    assert ctx.tracestate == (("a", "1"), ("b", "2"))


@pytest.mark.parametrize("access_log", [True, False])
def test_context_restored_after_the_request(access_log: bool) -> None:
    """The caller's context is back after the request (and was not seen inside)."""
    recorder = Recorder()

    async def scenario() -> None:
        with faultlens.correlate("outer-id") as outer:
            await call(FaultlensMiddleware(recorder, access_log=access_log), http_scope())
            assert current_context() is outer
        assert current_context() is None

    asyncio.run(scenario())
    (inner,) = recorder.contexts
    assert inner is not None
    assert inner.correlation_id != "outer-id"


def test_header_names_from_configuration_and_options() -> None:
    """Names come from set_header_names at construction, or the options."""
    set_header_names(correlation="X-Trace-Key", request="X-Req")
    configured = starlette_app()
    response = client(configured).get("/ctx", headers={"X-Trace-Key": "abc-1", "X-Req": "r-1"})
    assert response.json()["correlation_id"] == "abc-1"
    assert response.headers["x-trace-key"] == "abc-1"
    assert response.headers["x-req"] == "r-1"
    assert "x-correlation-id" not in response.headers

    explicit = starlette_app(correlation_header="Correlation-Id", request_id_header="Req-Id")
    response = client(explicit).get("/ctx", headers={"Correlation-Id": "abc-2"})
    assert response.headers["correlation-id"] == "abc-2"
    assert "req-id" in response.headers


def test_response_headers_can_be_turned_off() -> None:
    """response_headers=False leaves the response headers alone."""
    for access_log in (True, False):
        response = client(starlette_app(response_headers=False, access_log=access_log)).get("/ctx")
        assert response.status_code == 200
        assert "x-correlation-id" not in response.headers
        assert "traceparent" not in response.headers


def test_app_copies_of_the_headers_are_replaced() -> None:
    """An app's own correlation or traceparent header is replaced, not duplicated."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"x-correlation-id", b"from-the-app"),
                    (b"traceparent", b"bogus"),
                    (b"content-type", b"text/plain"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    for access_log in (True, False):
        headers = response_headers(
            run(FaultlensMiddleware(app, access_log=access_log), http_scope())
        )
        assert len(headers[b"x-correlation-id"]) == 1
        assert headers[b"x-correlation-id"] != [b"from-the-app"]
        assert len(headers[b"traceparent"]) == 1
        assert headers[b"content-type"] == [b"text/plain"]


@pytest.mark.parametrize("access_log", [True, False])
def test_app_headers_given_as_a_tuple_and_reused(access_log: bool) -> None:
    """Response headers in any iterable are kept; the app's own message object is reusable."""
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": ((b"content-type", b"text/plain"), (b"x-request-id", b"from-the-app")),
    }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(dict(start))
        await send({"type": "http.response.body", "body": b""})

    middleware = FaultlensMiddleware(app, access_log=access_log)
    for _ in range(2):
        headers = response_headers(run(middleware, http_scope()))
        assert headers[b"content-type"] == [b"text/plain"]
        assert len(headers[b"x-request-id"]) == 1
        assert headers[b"x-request-id"] != [b"from-the-app"]
    assert start["headers"] == (
        (b"content-type", b"text/plain"),
        (b"x-request-id", b"from-the-app"),
    )


@pytest.mark.parametrize("traceparent", [None, TRACEPARENT])
def test_ids_when_the_id_block_is_exhausted(traceparent: str | None) -> None:
    """A request that finds the id pool's block used up still gets fresh, valid ids."""
    from faultlens import _ids

    _ids._discard_inherited_block()  # an exhausted block, as a forked child has
    recorder = Recorder()
    headers = [] if traceparent is None else [(b"traceparent", traceparent.encode())]
    messages = run(FaultlensMiddleware(recorder, access_log=False), http_scope(headers))
    ctx = recorder.contexts[0]
    assert ctx is not None
    assert re.fullmatch(r"[0-9a-f]{16}", ctx.span_id)
    assert HEX32.fullmatch(ctx.trace_id)
    if traceparent is not None:
        assert ctx.trace_id == TRACE_ID
    got = response_headers(messages)
    assert got[b"traceparent"] == [f"00-{ctx.trace_id}-{ctx.span_id}-01".encode()]
    assert got[b"x-correlation-id"] == [ctx.correlation_id.encode()]
    assert got[b"x-request-id"] == [ctx.span_id.encode()]


# --- the positional build matches context_from_headers ---------------------------------

UUID_ID = "123E4567-E89B-12D3-A456-426614174000"
_KNOWN_TRACE_IDS = {
    TRACE_ID,
    "123e4567e89b12d3a456426614174000",
    "0af7651916cd43dd8448eb211c80319c",
}


def _shape(ctx: RequestContext) -> dict[str, Any]:
    """The context's fields with its generated values (fresh ids, start time) named, not valued."""
    fields = ctx._asdict()
    generated = {ctx.span_id: "<span id>"}
    if ctx.trace_id not in _KNOWN_TRACE_IDS:
        generated[ctx.trace_id] = "<trace id>"
    for name, value in fields.items():
        if isinstance(value, str) and value in generated:
            fields[name] = generated[value]
    fields["started_at"] = "<time>"
    return fields


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> Any:
    values = [value for key, value in headers if key == name]
    if not values:
        return None
    return values[0] if name in (b"x-correlation-id", b"x-request-id", b"user-agent") else values


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"traceparent", TRACEPARENT.encode())],
        [(b"traceparent", TRACEPARENT.encode()), (b"tracestate", b"a=1"), (b"tracestate", b"b=2")],
        [
            (b"traceparent", b"00-" + b"0" * 32 + b"-" + SPAN_ID.encode() + b"-01"),
            (b"tracestate", b"a=1"),
        ],
        [(b"traceparent", TRACEPARENT.encode()), (b"traceparent", TRACEPARENT.encode())],
        [(b"traceparent", f"cc-{TRACE_ID}-{SPAN_ID}-03-future".encode())],
        [(b"x-correlation-id", UUID_ID.encode()), (b"traceparent", TRACEPARENT.encode())],
        [(b"x-correlation-id", b"0af7651916cd43dd8448eb211c80319c")],
        [(b"x-correlation-id", b"order-42"), (b"x-request-id", b"req-7")],
        [(b"x-correlation-id", b"bad id\r\n"), (b"x-request-id", b"req-7")],
        [(b"x-request-id", b"\xff\xfe")],
        [(b"user-agent", b"ua/" + b"x" * 600), (b"user-agent", b"second")],
        [(b"user-agent", "caf\u00e9".encode("latin-1"))],
    ],
)
@pytest.mark.parametrize("peer", [("203.0.113.5", 40000), None])
def test_context_matches_context_from_headers(
    headers: list[tuple[bytes, bytes]], peer: tuple[str, int] | None
) -> None:
    """The middleware builds the context context_from_headers would from the same headers."""
    recorder = Recorder()
    run(FaultlensMiddleware(recorder, access_log=False), http_scope(headers, peer=peer))
    got = recorder.contexts[0]
    assert got is not None
    ua = _header(headers, b"user-agent")
    expected, _ = context_from_headers(
        correlation_id=_header(headers, b"x-correlation-id"),
        request_id=_header(headers, b"x-request-id"),
        traceparent=_header(headers, b"traceparent"),
        tracestate=_header(headers, b"tracestate"),
        ip_address=peer[0] if peer else None,
        user_agent=None if ua is None else ua[:512].decode("latin-1"),
    )
    assert type(got) is RequestContext
    assert _shape(got) == _shape(expected)
    assert got.journey_steps == []
    assert got.journey_steps is not expected.journey_steps


def test_context_uses_an_active_opentelemetry_span() -> None:
    """With an OpenTelemetry span active, the request joins its trace, as correlate() does."""
    pytest.importorskip("opentelemetry.trace")
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    tracer = sdk.TracerProvider().get_tracer("test")
    recorder = Recorder()
    headers = [(b"traceparent", TRACEPARENT.encode()), (b"tracestate", b"a=1")]
    with tracer.start_as_current_span("server") as span:
        sc = span.get_span_context()
        messages = run(
            FaultlensMiddleware(recorder, access_log=False), http_scope(headers, peer=None)
        )
        expected, _ = context_from_headers(traceparent=TRACEPARENT, tracestate="a=1")
    got = recorder.contexts[0]
    assert got is not None
    assert (got.trace_id, got.span_id) == (f"{sc.trace_id:032x}", f"{sc.span_id:016x}")
    assert _shape(got) == _shape(expected)
    assert response_headers(messages)[b"x-correlation-id"] == [got.trace_id.encode()]


# --- invalid ids ----------------------------------------------------------------------------

HOSTILE_IDS = [
    pytest.param(b"abc\r\nSet-Cookie: session=evil", id="crlf"),
    pytest.param(b"has space", id="space"),
    pytest.param(b"ctl\x01char", id="control"),
    pytest.param(b"tab\there", id="tab"),
    pytest.param("caf\u00e9-id".encode(), id="non-ascii-utf8"),
    pytest.param(b"\xff\xfe\xfd", id="non-ascii-bytes"),
    pytest.param(b"a" * 129, id="over-long"),
    pytest.param(b"<script>alert(1)</script>", id="markup"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("raw", HOSTILE_IDS)
def test_invalid_correlation_id_replaced_counted_never_echoed(raw: bytes) -> None:
    """An unsafe correlation id is replaced by a fresh one, counted and never echoed."""
    recorder = Recorder()
    with capture_logs() as logs:
        messages = run(FaultlensMiddleware(recorder), http_scope([(b"x-correlation-id", raw)]))
    (ctx,) = recorder.contexts
    assert ctx is not None
    assert HEX32.fullmatch(ctx.correlation_id)
    headers = response_headers(messages)
    assert headers[b"x-correlation-id"] == [ctx.correlation_id.encode()]
    if raw:
        assert all(raw not in value for values in headers.values() for value in values)
        assert raw.decode("latin-1") not in logs.stream.getvalue()
    assert faultlens.stats()["context.invalid_correlation_id"] == 1


@pytest.mark.parametrize("raw", HOSTILE_IDS)
def test_invalid_request_id_replaced_counted_never_echoed(raw: bytes) -> None:
    """An unsafe request id is replaced by a fresh one, counted and never echoed."""
    recorder = Recorder()
    messages = run(FaultlensMiddleware(recorder), http_scope([(b"x-request-id", raw)]))
    (ctx,) = recorder.contexts
    assert ctx is not None
    assert ctx.request_id is not None
    assert SAFE_HEADER_VALUE.fullmatch(ctx.request_id)
    headers = response_headers(messages)
    assert headers[b"x-request-id"] == [ctx.request_id.encode()]
    if raw:
        assert all(raw not in value for values in headers.values() for value in values)
    assert counters.get("context.invalid_request_id") == 1


@pytest.mark.parametrize("header", [b"x-correlation-id", b"x-request-id"])
def test_reject_invalid_ids_answers_400_without_calling_the_app(header: bytes) -> None:
    """reject_invalid_ids=True answers 400 JSON with a fresh id; the app never runs."""
    recorder = Recorder()
    raw = b"evil\r\nX-Injected: 1"
    app = FaultlensMiddleware(recorder, reject_invalid_ids=True)
    with capture_logs() as logs:
        messages = run(app, http_scope([(header, raw)]))
    assert recorder.contexts == []
    start = messages[0]
    assert start["status"] == 400
    headers = response_headers(messages)
    assert headers[b"content-type"] == [b"application/json"]
    body = body_of(messages)
    assert headers[b"content-length"] == [str(len(body)).encode()]
    data = orjson.loads(body)
    assert data["error"] == "invalid_request_id_header"
    assert "X-Correlation-ID" in data["message"]
    assert headers[b"x-correlation-id"] == [data["correlation_id"].encode()]
    assert b"evil" not in body
    assert all(b"evil" not in v for values in headers.values() for v in values)
    (line,) = access_lines(logs)
    assert (line["status"], line["bytes"]) == (400, len(body))
    assert line["correlation_id"] == data["correlation_id"]
    assert "evil" not in logs.stream.getvalue()
    assert current_context() is None


def test_reject_invalid_ids_lets_valid_and_missing_ids_through() -> None:
    """With reject_invalid_ids=True valid or absent ids reach the app."""
    test_client = client(starlette_app(reject_invalid_ids=True))
    assert test_client.get("/ctx").status_code == 200
    response = test_client.get("/ctx", headers={"X-Correlation-ID": "fine-1"})
    assert response.json()["correlation_id"] == "fine-1"
    assert test_client.get("/ctx", headers={"X-Request-ID": "bad id"}).status_code == 400


_HEADER_NAMES = [
    b"x-correlation-id",
    b"x-request-id",
    b"traceparent",
    b"tracestate",
    b"x-forwarded-for",
    b"forwarded",
    b"user-agent",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.tuples(st.sampled_from(_HEADER_NAMES), st.binary(max_size=300)), max_size=8),
    trusted=st.booleans(),
)
def test_arbitrary_header_bytes_never_crash(
    values: list[tuple[bytes, bytes]], trusted: bool
) -> None:
    """Any bytes in any of the headers give a response with safe, well-formed headers."""
    recorder = Recorder()
    proxies = ["203.0.113.0/24"] if trusted else []
    messages = run(FaultlensMiddleware(recorder, trusted_proxies=proxies), http_scope(values))
    (ctx,) = recorder.contexts
    assert ctx is not None
    headers = response_headers(messages)
    (cid,) = headers[b"x-correlation-id"]
    (rid,) = headers[b"x-request-id"]
    (traceparent,) = headers[b"traceparent"]
    assert SAFE_HEADER_VALUE.fullmatch(cid.decode("latin-1"))
    assert SAFE_HEADER_VALUE.fullmatch(rid.decode("latin-1"))
    assert TRACEPARENT_RE.fullmatch(traceparent.decode("latin-1"))
    sent_cids = [v for k, v in values if k == b"x-correlation-id"]
    if sent_cids and normalize_id(sent_cids[0]) is not None:
        assert cid.decode() == normalize_id(sent_cids[0])
    ip = ctx.ip_address
    assert ip == "203.0.113.5" or (trusted and ip is not None and "," not in ip)


_hostile = st.builds(
    lambda prefix, tail: prefix + b"EVIL\r\n" + tail,
    st.binary(max_size=40),
    st.binary(max_size=40),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(_HEADER_NAMES),
    value=_hostile,
    access_log=st.booleans(),
)
def test_hostile_header_values_never_echoed_nor_logged(
    name: bytes, value: bytes, access_log: bool
) -> None:
    """A hostile value in any header appears in no response header and no log line."""
    recorder = Recorder()
    app = FaultlensMiddleware(recorder, trusted_proxies=["203.0.113.0/24"], access_log=access_log)
    with capture_logs() as logs:
        messages = run(app, http_scope([(name, value)]))
    headers = response_headers(messages)
    assert all(b"EVIL" not in v for values in headers.values() for v in values)
    assert "EVIL" not in logs.stream.getvalue()


# --- streaming, errors, other scopes ------------------------------------------------------------


def test_streaming_response_is_not_buffered() -> None:
    """Each chunk reaches the server before the generator produces the next one."""
    sent_bodies: list[bytes] = []
    observed: list[str | None] = []

    async def chunks() -> AsyncIterator[bytes]:
        observed.append(faultlens.correlation_id())
        yield b"first"
        # The middleware must have passed the first chunk on already.
        assert sent_bodies == [b"first"]
        yield b"second!"
        assert sent_bodies == [b"first", b"second!"]

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks(), media_type="text/plain")

    app = Starlette(routes=[Route("/stream", stream)])
    app.add_middleware(FaultlensMiddleware)

    async def scenario() -> list[Message]:
        messages: list[Message] = []

        async def receive() -> Message:
            await asyncio.sleep(3600)  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                sent_bodies.append(message["body"])

        await app(http_scope(path="/stream"), receive, send)
        return messages

    with capture_logs() as logs:
        messages = asyncio.run(scenario())
    assert sent_bodies == [b"first", b"second!"]
    headers = response_headers(messages)
    assert observed == [headers[b"x-correlation-id"][0].decode()]
    (line,) = access_lines(logs)
    assert line["bytes"] == len(b"firstsecond!")
    assert line["status"] == 200


def test_exception_before_response_start_is_reraised_and_context_cleared() -> None:
    """An error before the response started is logged as failed and re-raised as is."""
    error = RuntimeError("before start")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert current_context() is not None
        raise error

    async def scenario() -> None:
        with pytest.raises(RuntimeError) as info:
            await call(FaultlensMiddleware(app), http_scope())
        assert info.value is error
        assert current_context() is None
        with pytest.raises(RuntimeError):
            await call(FaultlensMiddleware(app, access_log=False), http_scope())
        assert current_context() is None

    with capture_logs() as logs:
        asyncio.run(scenario())
    (line,) = access_lines(logs)
    assert line["message"] == "request failed"
    assert line["level"] == "ERROR"
    assert line["status"] == 500
    assert line["error"]["type"] == "RuntimeError"
    assert HEX32.fullmatch(line["correlation_id"])


def test_exception_after_response_start_is_reraised() -> None:
    """An error after the response started is re-raised; the line keeps the status."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("mid-stream")

    async def scenario() -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        async def send(message: Message) -> None:
            sent.append(message)

        with pytest.raises(ValueError, match="mid-stream"):
            await FaultlensMiddleware(app)(http_scope(), receive, send)
        assert current_context() is None
        return sent

    with capture_logs() as logs:
        sent = asyncio.run(scenario())
    assert b"x-correlation-id" in response_headers(sent)
    (line,) = access_lines(logs)
    assert (line["message"], line["status"], line["bytes"]) == ("request failed", 200, 4)


def test_exception_reraised_without_access_log() -> None:
    """With access_log=False errors are re-raised unchanged too."""
    error = KeyError("k")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise error

    for set_headers in (True, False):
        middleware = FaultlensMiddleware(app, access_log=False, response_headers=set_headers)
        with pytest.raises(KeyError) as info:
            run(middleware, http_scope())
        assert info.value is error


def test_starlette_endpoint_error_reaches_the_test_client() -> None:
    """Through Starlette, an endpoint error is re-raised to the server layer."""
    with capture_logs() as logs, pytest.raises(RuntimeError, match="boom"):
        client(starlette_app()).get("/boom")
    (line,) = access_lines(logs)
    assert (line["message"], line["path"], line["status"]) == ("request failed", "/boom", 500)


def test_cancellation_logged_as_cancelled_and_reraised() -> None:
    """A cancelled request is re-raised and logged as cancelled, not failed."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError

    with capture_logs() as logs, pytest.raises(asyncio.CancelledError):
        run(FaultlensMiddleware(app), http_scope())
    (line,) = access_lines(logs)
    assert (line["message"], line["level"]) == ("request cancelled", "WARNING")


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
def test_non_http_scopes_pass_straight_through(scope_type: str) -> None:
    """websocket and lifespan scopes reach the app untouched, with no context."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send, current_context()))

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        return None

    scope = {"type": scope_type, "headers": [(b"x-correlation-id", b"abc")]}
    with capture_logs() as logs:
        asyncio.run(FaultlensMiddleware(app)(scope, receive, send))
    assert seen == [(scope, receive, send, None)]
    assert scope == {"type": scope_type, "headers": [(b"x-correlation-id", b"abc")]}
    assert access_lines(logs) == []


def test_websocket_and_lifespan_through_starlette() -> None:
    """A Starlette websocket endpoint and the lifespan work behind the middleware."""
    with client(starlette_app()) as test_client, test_client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "None"


# --- the access log --------------------------------------------------------------------------


def test_access_line_fields() -> None:
    """One line per request: method, route template, status, duration, bytes, client."""
    with capture_logs() as logs:
        response = client(starlette_app()).get(
            "/items/42?token=hunter2-secret", headers={"X-Correlation-ID": "access-1"}
        )
    (line,) = access_lines(logs)
    assert line["message"] == "request completed"
    assert line["level"] == "INFO"
    assert line["method"] == "GET"
    assert line["path"] == "/items/{item_id:int}"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert line["bytes"] == len(response.content)
    assert line["client_ip"] == "testclient"
    assert line["correlation_id"] == "access-1"
    assert line["request_id"] == response.headers["x-request-id"]
    # (httpx logs the URL itself, redacted; the access line has no query at all.)
    text = json.dumps(line)
    assert "hunter2" not in text
    assert "token" not in text
    assert "42" not in line["path"]


def test_access_line_route_inside_a_mount() -> None:
    """A route in a mounted router is logged with the mount prefix and the template."""
    with capture_logs() as logs:
        client(starlette_app()).get("/v1/items/7")
    (line,) = access_lines(logs)
    assert line["path"] == "/v1/items/{item_id:int}"


def test_access_line_raw_path_when_no_route_matched() -> None:
    """Without a matched route the raw path is logged (404), never the query."""
    with capture_logs() as logs:
        response = client(starlette_app()).get("/nowhere?api_key=abc")
    assert response.status_code == 404
    (line,) = access_lines(logs)
    assert (line["path"], line["status"]) == ("/nowhere", 404)
    assert "api_key" not in json.dumps(line)


def test_access_line_fastapi_route_template() -> None:
    """FastAPI routes included with a prefix are logged by their full template."""
    from fastapi import APIRouter, FastAPI

    router = APIRouter(prefix="/api")

    @router.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        return {"user_id": user_id, "correlation_id": faultlens.correlation_id()}

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(FaultlensMiddleware)
    with capture_logs() as logs:
        response = client(app).get("/api/users/5")
    assert response.json()["correlation_id"] == response.headers["x-correlation-id"]
    (line,) = access_lines(logs)
    assert line["path"] == "/api/users/{user_id}"
    assert line["correlation_id"] == response.headers["x-correlation-id"]


def test_access_log_off() -> None:
    """access_log=False writes no line but still sets the context and headers."""
    with capture_logs() as logs:
        response = client(starlette_app(access_log=False)).get("/ctx")
    assert response.json()["correlation_id"] == response.headers["x-correlation-id"]
    assert access_lines(logs) == []


def test_access_log_level() -> None:
    """access_log_level sets the level of the line; a disabled level writes none."""
    with capture_logs("DEBUG") as logs:
        client(starlette_app(access_log_level=logging.DEBUG)).get("/ctx")
    assert [line["level"] for line in access_lines(logs)] == ["DEBUG"]
    with capture_logs("INFO") as logs:
        client(starlette_app(access_log_level="DEBUG")).get("/ctx")
    assert access_lines(logs) == []


def test_app_that_never_answers_is_logged_as_500() -> None:
    """An app returning without a response is logged with status 500."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with capture_logs() as logs:
        run(FaultlensMiddleware(app), http_scope())
    (line,) = access_lines(logs)
    assert (line["message"], line["status"], line["bytes"]) == ("request completed", 500, 0)


# --- concurrency --------------------------------------------------------------------------------


def test_no_leak_between_concurrent_requests() -> None:
    """Many concurrent requests each see only their own id, before and after awaiting."""

    async def endpoint(request: Request) -> Response:
        expected = request.headers["x-correlation-id"]
        assert faultlens.correlation_id() == expected
        await asyncio.sleep(0.001 * (int(expected.rsplit("-", 1)[1]) % 5))
        assert faultlens.correlation_id() == expected
        faultlens.bind(user_id=expected)
        await asyncio.sleep(0)
        ctx = current_context()
        assert ctx is not None
        assert ctx.user_id == expected
        return PlainTextResponse(ctx.correlation_id)

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(FaultlensMiddleware, access_log=False)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *(http.get("/", headers={"X-Correlation-ID": f"req-{i}"}) for i in range(60))
            )

    responses = asyncio.run(scenario())
    for i, response in enumerate(responses):
        assert response.status_code == 200
        assert response.text == f"req-{i}"
        assert response.headers["x-correlation-id"] == f"req-{i}"


# --- client address ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("203.0.113.5", [(b"x-forwarded-for", b"198.51.100.1")], "203.0.113.5"),
        ("10.0.0.1", [(b"x-forwarded-for", b"198.51.100.1, 10.0.0.2")], "198.51.100.1"),
        (
            "10.0.0.1",
            [(b"x-forwarded-for", b"198.51.100.9"), (b"x-forwarded-for", b"198.51.100.1")],
            "198.51.100.1",
        ),
        ("10.0.0.1", [(b"forwarded", b'for="[2001:db8::1]:4711";proto=https')], "2001:db8::1"),
        ("10.0.0.1", [(b"forwarded", b"for=198.51.100.2, for=10.0.0.9")], "198.51.100.2"),
        ("10.0.0.1", [(b"x-forwarded-for", b"\xff\xfe not an ip")], "10.0.0.1"),
        ("10.0.0.1", [], "10.0.0.1"),
        ("fd00::1", [(b"x-forwarded-for", b"2001:db8::7")], "2001:db8::7"),
    ],
)
def test_client_ip_behind_trusted_proxies(
    peer: str, headers: list[tuple[bytes, bytes]], expected: str
) -> None:
    """Forwarding headers are believed only from trusted proxies; garbage is ignored."""
    recorder = Recorder()
    app = FaultlensMiddleware(recorder, trusted_proxies=["10.0.0.0/8", "fd00::/8"])
    with capture_logs() as logs:
        run(app, http_scope(headers, peer=(peer, 1234)))
    (ctx,) = recorder.contexts
    assert ctx is not None
    assert ctx.ip_address == expected
    (line,) = access_lines(logs)
    assert line["client_ip"] == expected


def test_forwarding_headers_ignored_without_trusted_proxies() -> None:
    """With no trusted proxies X-Forwarded-For is never read."""
    recorder = Recorder()
    run(
        FaultlensMiddleware(recorder),
        http_scope([(b"x-forwarded-for", b"198.51.100.1")], peer=("10.0.0.1", 1)),
    )
    assert recorder.contexts[0] is not None
    assert recorder.contexts[0].ip_address == "10.0.0.1"


def test_missing_peer_gives_no_address() -> None:
    """A scope without a client (unix socket) gives no ip_address."""
    recorder = Recorder()
    with capture_logs() as logs:
        run(FaultlensMiddleware(recorder, trusted_proxies=["10.0.0.0/8"]), http_scope(peer=None))
    assert recorder.contexts[0] is not None
    assert recorder.contexts[0].ip_address is None
    assert access_lines(logs)[0]["client_ip"] is None


def test_user_agent_is_bounded() -> None:
    """A huge User-Agent is cut to a bounded length in the context."""
    recorder = Recorder()
    run(FaultlensMiddleware(recorder), http_scope([(b"user-agent", b"x" * 10_000)]))
    ctx = recorder.contexts[0]
    assert ctx is not None
    assert ctx.user_agent == "x" * 512


def test_rejection_body_is_json_for_clients() -> None:
    """Through Starlette, the 400 is a JSON response the client can parse."""
    response = client(starlette_app(reject_invalid_ids=True)).get(
        "/ctx", headers={"X-Correlation-ID": "bad value"}
    )
    assert response.status_code == 400
    assert json.loads(response.text)["correlation_id"] == response.headers["x-correlation-id"]
