"""The WSGI middleware: context per request and during streaming, headers, close, access log."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import pytest
from flask import Flask, Response, jsonify, stream_with_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faultlens
from faultlens._ids import normalize_id
from faultlens._metrics import counters
from faultlens.context import current_context
from faultlens.integrations.wsgi import FaultlensMiddleware
from faultlens.testing import capture_logs

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"
HEX32 = re.compile(r"[0-9a-f]{32}")
TRACEPARENT_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]")
SAFE_HEADER_VALUE = re.compile(r"[A-Za-z0-9._:\-]+")

StartResponse = Callable[..., Any]


# --- apps and helpers -----------------------------------------------------------------


def flask_app(**options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/ctx")
    def show_context() -> Any:
        ctx = current_context()
        assert ctx is not None
        return jsonify(
            correlation_id=ctx.correlation_id,
            request_id=ctx.request_id,
            trace_id=ctx.trace_id,
            span_id=ctx.span_id,
            parent_span_id=ctx.parent_span_id,
            ip_address=ctx.ip_address,
        )

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return f"item {item_id}"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for n in range(3):
                yield f"{n}:{faultlens.correlation_id()};"

        return Response(chunks(), mimetype="text/plain")

    app.wsgi_app = FaultlensMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


def environ(
    headers: dict[str, str] | None = None, *, path: str = "/", remote: str = "203.0.113.5"
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": remote,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


class Server:
    """A minimal WSGI server side: records start_response calls and consumes the body."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []
        self.written: list[bytes] = []

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.calls and self.written:
            raise exc_info[1].with_traceback(exc_info[2])
        self.calls.append((status, headers, exc_info))
        return self.written.append

    @property
    def headers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.calls[-1][1]:
            out.setdefault(name.lower(), []).append(value)
        return out

    def run(self, app: Any, env: dict[str, Any]) -> bytes:
        result = app(env, self.start_response)
        try:
            for chunk in result:
                self.written.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return b"".join(self.written)


class Recorder:
    """A raw WSGI app that records the context it ran in."""

    def __init__(self) -> None:
        self.contexts: list[faultlens.RequestContext | None] = []

    def __call__(self, env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        self.contexts.append(current_context())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def access_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line.get("logger") == "faultlens.access"]


# --- context and ids ---------------------------------------------------------------------


def test_context_available_inside_the_view() -> None:
    """The Flask view sees a context whose correlation id is the response header."""
    response = flask_app().test_client().get("/ctx")
    data = response.get_json()
    assert HEX32.fullmatch(data["correlation_id"])
    assert response.headers["X-Correlation-ID"] == data["correlation_id"]
    assert response.headers["X-Request-ID"] == data["request_id"]
    assert data["trace_id"] == data["correlation_id"]
    match = TRACEPARENT_RE.fullmatch(response.headers["traceparent"])
    assert match is not None
    assert match.groups() == (data["trace_id"], data["span_id"])
    assert data["ip_address"] == "127.0.0.1"
    assert current_context() is None


def test_incoming_uuid_correlation_id_kept_normalised() -> None:
    """A valid incoming UUID is kept, as 32 lower-case hex digits."""
    response = (
        flask_app()
        .test_client()
        .get("/ctx", headers={"X-Correlation-ID": "123E4567-E89B-12D3-A456-426614174000"})
    )
    assert response.get_json()["correlation_id"] == "123e4567e89b12d3a456426614174000"
    assert response.headers["X-Correlation-ID"] == "123e4567e89b12d3a456426614174000"


def test_valid_traceparent_continues_the_trace() -> None:
    """A valid traceparent keeps the trace id with a new span id for this hop."""
    response = flask_app().test_client().get("/ctx", headers={"traceparent": TRACEPARENT})
    data = response.get_json()
    assert (data["trace_id"], data["correlation_id"], data["parent_span_id"]) == (
        TRACE_ID,
        TRACE_ID,
        SPAN_ID,
    )
    match = TRACEPARENT_RE.fullmatch(response.headers["traceparent"])
    assert match is not None
    assert match.group(1) == TRACE_ID
    assert match.group(2) not in (SPAN_ID, "")


@pytest.mark.parametrize("value", ["garbage", f"{TRACEPARENT},{TRACEPARENT}"])
def test_invalid_or_repeated_traceparent_restarts(value: str) -> None:
    """An invalid traceparent, or several joined by the server, restart the trace."""
    recorder = Recorder()
    Server().run(FaultlensMiddleware(recorder), environ({"traceparent": value}))
    ctx = recorder.contexts[0]
    assert ctx is not None
    assert ctx.trace_id != TRACE_ID
    assert ctx.parent_span_id is None


HOSTILE_IDS = [
    pytest.param("abc\r\nSet-Cookie: session=evil", id="crlf"),
    pytest.param("has space", id="space"),
    pytest.param("ctl\x01char", id="control"),
    pytest.param("caf\xc3\xa9-id", id="non-ascii-latin1-decoded-utf8"),
    pytest.param("a" * 129, id="over-long"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("raw", HOSTILE_IDS)
@pytest.mark.parametrize(
    ("header", "counter"),
    [
        ("X-Correlation-ID", "context.invalid_correlation_id"),
        ("X-Request-ID", "context.invalid_request_id"),
    ],
)
def test_invalid_ids_replaced_counted_never_echoed(raw: str, header: str, counter: str) -> None:
    """Unsafe ids are replaced by fresh ones, counted, and echoed nowhere."""
    recorder = Recorder()
    server = Server()
    with capture_logs() as logs:
        server.run(FaultlensMiddleware(recorder), environ({header: raw}))
    ctx = recorder.contexts[0]
    assert ctx is not None
    assert server.headers["x-correlation-id"] == [ctx.correlation_id]
    assert server.headers["x-request-id"] == [ctx.request_id]
    if raw:
        assert all(raw not in value for values in server.headers.values() for value in values)
        assert raw not in logs.stream.getvalue()
    assert counters.get(counter) == 1


def test_reject_invalid_ids_answers_400_without_calling_the_app() -> None:
    """reject_invalid_ids=True answers 400 JSON with a fresh id; the app never runs."""
    recorder = Recorder()
    server = Server()
    with capture_logs() as logs:
        body = server.run(
            FaultlensMiddleware(recorder, reject_invalid_ids=True),
            environ({"X-Correlation-ID": "evil\r\nX-Injected: 1"}),
        )
    assert recorder.contexts == []
    assert server.calls[0][0] == "400 Bad Request"
    data = orjson.loads(body)
    assert data["error"] == "invalid_request_id_header"
    assert server.headers["x-correlation-id"] == [data["correlation_id"]]
    assert server.headers["content-length"] == [str(len(body))]
    assert b"evil" not in body
    (line,) = access_lines(logs)
    assert (line["status"], line["bytes"], line["correlation_id"]) == (
        400,
        len(body),
        data["correlation_id"],
    )
    assert "evil" not in logs.stream.getvalue()


def test_reject_invalid_ids_through_flask() -> None:
    """Through Flask's test client, bad ids get 400 and good ones reach the view."""
    test_client = flask_app(reject_invalid_ids=True).test_client()
    assert test_client.get("/ctx", headers={"X-Request-ID": "bad id"}).status_code == 400
    assert test_client.get("/ctx", headers={"X-Request-ID": "good-id"}).status_code == 200


_ENV_HEADERS = [
    "X-Correlation-ID",
    "X-Request-ID",
    "traceparent",
    "tracestate",
    "X-Forwarded-For",
    "Forwarded",
    "User-Agent",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.dictionaries(
        st.sampled_from(_ENV_HEADERS),
        # PEP 3333: header values arrive as bytes decoded as Latin-1.
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
        max_size=7,
    ),
    trusted=st.booleans(),
)
def test_arbitrary_header_values_never_crash(values: dict[str, str], trusted: bool) -> None:
    """Any value in any of the headers gives safe, well-formed response headers."""
    recorder = Recorder()
    server = Server()
    proxies = ["203.0.113.0/24"] if trusted else []
    server.run(FaultlensMiddleware(recorder, trusted_proxies=proxies), environ(values))
    (cid,) = server.headers["x-correlation-id"]
    (rid,) = server.headers["x-request-id"]
    (traceparent,) = server.headers["traceparent"]
    assert SAFE_HEADER_VALUE.fullmatch(cid)
    assert SAFE_HEADER_VALUE.fullmatch(rid)
    assert TRACEPARENT_RE.fullmatch(traceparent)
    sent = values.get("X-Correlation-ID")
    if sent is not None and normalize_id(sent) is not None:
        assert cid == normalize_id(sent)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(_ENV_HEADERS),
    prefix=st.text(max_size=30),
    tail=st.text(max_size=30),
)
def test_hostile_header_values_never_echoed_nor_logged(name: str, prefix: str, tail: str) -> None:
    """A hostile value in any header appears in no response header and no log line."""
    value = (prefix + "EVIL\r\n" + tail).encode("utf-8").decode("latin-1")
    server = Server()
    with capture_logs() as logs:
        server.run(
            FaultlensMiddleware(Recorder(), trusted_proxies=["203.0.113.0/24"]),
            environ({name: value}),
        )
    assert all("EVIL" not in v for values in server.headers.values() for v in values)
    assert "EVIL" not in logs.stream.getvalue()


# --- streaming, close, errors ----------------------------------------------------------------


@pytest.mark.parametrize("access_log", [True, False])
def test_streaming_generator_runs_in_the_context_and_restores_between_chunks(
    access_log: bool,
) -> None:
    """Each chunk is produced inside the request's context; outside it is restored."""
    seen: list[str | None] = []

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        def body() -> Iterator[bytes]:
            for n in range(3):
                seen.append(faultlens.correlation_id())
                yield f"{n}".encode()

        start_response("200 OK", [])
        return body()

    server = Server()
    with capture_logs() as logs:
        with faultlens.correlate("outer") as outer:
            middleware = FaultlensMiddleware(app, access_log=access_log)
            result = middleware(environ(), server.start_response)
            assert current_context() is outer
            iterator = iter(result)
            assert next(iterator) == b"0"
            assert current_context() is outer  # restored between chunks
            assert list(iterator) == [b"1", b"2"]
            assert current_context() is outer
            result.close()  # type: ignore[attr-defined]
        assert current_context() is None
    cid = server.headers["x-correlation-id"][0]
    assert seen == [cid, cid, cid]
    assert cid != "outer"
    if access_log:
        (line,) = access_lines(logs)
        assert (line["bytes"], line["correlation_id"]) == (3, cid)
    else:
        assert access_lines(logs) == []


def test_streaming_is_not_buffered() -> None:
    """The first chunk is handed to the server before the app produces the second."""
    handed_over: list[bytes] = []

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        def body() -> Iterator[bytes]:
            yield b"first"
            assert handed_over == [b"first"]
            yield b"second"

        start_response("200 OK", [])
        return body()

    for chunk in FaultlensMiddleware(app)(environ(), Server().start_response):
        handed_over.append(chunk)
    assert handed_over == [b"first", b"second"]


def test_flask_streaming_response_in_context() -> None:
    """A Flask generator response runs in the request's context, chunk by chunk."""
    with capture_logs() as logs:
        response = flask_app().test_client().get("/stream", buffered=False)
        cid = response.headers["X-Correlation-ID"]
        chunks = [bytes(chunk) for chunk in response.iter_encoded()]
        response.close()
    assert b"".join(chunks) == f"0:{cid};1:{cid};2:{cid};".encode()
    (line,) = access_lines(logs)
    assert line["bytes"] == len(b"".join(chunks))
    assert line["path"] == "/stream"


def test_flask_stream_with_context_still_works() -> None:
    """Flask's own stream_with_context composes with the middleware."""
    app = Flask(__name__)

    @app.get("/s")
    def s() -> Response:
        def chunks() -> Iterator[str]:
            yield str(faultlens.correlation_id())

        return Response(stream_with_context(chunks()))

    app.wsgi_app = FaultlensMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    response = app.test_client().get("/s")
    assert response.text == response.headers["X-Correlation-ID"]


class ClosingBody:
    """An app iterable with close(), recording the context close() ran in."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed_in: list[str | None] = []

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed_in.append(faultlens.correlation_id())


@pytest.mark.parametrize("access_log", [True, False])
def test_iterable_close_called_in_context(access_log: bool) -> None:
    """The app iterable's close() is called exactly once, inside the context."""
    body = ClosingBody([b"a", b"bc"])

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return body

    server = Server()
    with capture_logs() as logs:
        assert server.run(FaultlensMiddleware(app, access_log=access_log), environ()) == b"abc"
    cid = server.headers["x-correlation-id"][0]
    assert body.closed_in == [cid]
    assert current_context() is None
    assert [line["bytes"] for line in access_lines(logs)] == ([3] if access_log else [])


def test_iterable_closed_when_the_client_goes_away() -> None:
    """A body abandoned after one chunk is closed and logged with the bytes sent."""
    body = ClosingBody([b"a", b"bc"])

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return body

    with capture_logs() as logs:
        result = FaultlensMiddleware(app)(environ(), Server().start_response)
        assert next(iter(result)) == b"a"
        result.close()  # type: ignore[attr-defined]
    assert len(body.closed_in) == 1
    (line,) = access_lines(logs)
    assert (line["message"], line["bytes"]) == ("request completed", 1)


def test_list_body_returned_as_is() -> None:
    """A list body needs no wrapper: the same list is handed back."""
    chunks = [b"x", b"yz"]

    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("201 Created", [])
        return chunks

    with capture_logs() as logs:
        assert FaultlensMiddleware(app)(environ(), Server().start_response) is chunks
    (line,) = access_lines(logs)
    assert (line["status"], line["bytes"]) == (201, 3)


def test_exception_before_start_response_is_reraised() -> None:
    """An error in the app is re-raised unchanged, logged as failed, context cleared."""
    error = RuntimeError("no")

    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise error

    with capture_logs() as logs, pytest.raises(RuntimeError) as info:
        Server().run(FaultlensMiddleware(app), environ())
    assert info.value is error
    assert current_context() is None
    (line,) = access_lines(logs)
    assert (line["message"], line["level"], line["status"]) == ("request failed", "ERROR", 500)


def test_exception_during_iteration_is_reraised_and_iterable_closed() -> None:
    """An error while streaming is re-raised; close() still runs; context cleared."""
    closed: list[bool] = []

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        def body() -> Iterator[bytes]:
            try:
                yield b"part"
                raise ValueError("mid-stream")
            finally:
                closed.append(True)

        start_response("200 OK", [])
        return body()

    with capture_logs() as logs, pytest.raises(ValueError, match="mid-stream"):
        Server().run(FaultlensMiddleware(app), environ())
    assert closed == [True]
    assert current_context() is None
    (line,) = access_lines(logs)
    assert (line["message"], line["status"], line["bytes"]) == ("request failed", 200, 4)


def test_exception_reraised_through_flask() -> None:
    """With Flask propagating exceptions, the view's error reaches the caller."""
    app = flask_app()
    app.testing = True
    with capture_logs() as logs, pytest.raises(RuntimeError, match="boom"):
        app.test_client().get("/boom")
    (line,) = access_lines(logs)
    assert line["message"] == "request failed"


def test_start_response_with_exc_info_is_passed_through() -> None:
    """An app replacing its response with exc_info gets the server's behaviour."""

    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"error page"]

    server = Server()
    with capture_logs() as logs:
        server.run(FaultlensMiddleware(app), environ())
    (first, second) = server.calls
    assert first[2] is None
    assert second[0] == "500 Internal Server Error"
    assert second[2] is not None
    assert second[2][0] is KeyError
    assert "x-correlation-id" in server.headers
    (line,) = access_lines(logs)
    assert line["status"] == 500


def test_start_response_exc_info_after_headers_sent_reraises() -> None:
    """When headers were already sent the server re-raises the app's exc_info."""

    def app(env: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        def body() -> Iterator[bytes]:
            yield b"sent"
            try:
                raise KeyError("too late")
            except KeyError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"never"

        start_response("200 OK", [])
        return body()

    with pytest.raises(KeyError, match="too late"):
        Server().run(FaultlensMiddleware(app, access_log=False), environ())
    assert current_context() is None


def test_legacy_write_callable_bytes_counted() -> None:
    """Bytes written through start_response's write() are counted."""

    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"12345")
        return [b"67"]

    server = Server()
    with capture_logs() as logs:
        assert server.run(FaultlensMiddleware(app), environ()) == b"1234567"
    (line,) = access_lines(logs)
    assert line["bytes"] == 7


# --- access log, options, addresses ------------------------------------------------------------


def test_access_line_fields_with_flask_route_template() -> None:
    """One line per request with the Flask route template, never the query string."""
    with capture_logs() as logs:
        response = (
            flask_app()
            .test_client()
            .get("/items/42?password=hunter2", headers={"X-Correlation-ID": "wsgi-1"})
        )
        # The test client consumes the body lazily; the line is written at its end.
        data = response.data
    (line,) = access_lines(logs)
    assert line["message"] == "request completed"
    assert line["method"] == "GET"
    assert line["path"] == "/items/<int:item_id>"
    assert line["status"] == 200
    assert line["bytes"] == len(data)
    assert line["duration_ms"] >= 0
    assert line["client_ip"] == "127.0.0.1"
    assert line["correlation_id"] == "wsgi-1"
    assert "hunter2" not in logs.stream.getvalue()


def test_access_line_raw_path_outside_flask() -> None:
    """A plain WSGI app is logged by SCRIPT_NAME + PATH_INFO (UTF-8 restored)."""
    env = environ(path="/caf\u00e9".encode().decode("latin-1"))
    env["SCRIPT_NAME"] = "/app"
    env["QUERY_STRING"] = "token=secret"
    with capture_logs() as logs:
        Server().run(FaultlensMiddleware(Recorder()), env)
    (line,) = access_lines(logs)
    assert line["path"] == "/app/caf\u00e9"
    assert "secret" not in logs.stream.getvalue()


def test_access_log_off_and_headers_off() -> None:
    """access_log=False writes nothing; response_headers=False adds no header."""
    with capture_logs() as logs:
        response = flask_app(access_log=False, response_headers=False).test_client().get("/ctx")
    assert response.status_code == 200
    assert "X-Correlation-ID" not in response.headers
    assert access_lines(logs) == []


def test_app_copy_of_correlation_header_is_replaced() -> None:
    """An app's own X-Correlation-ID is replaced, not duplicated."""

    def app(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("x-correlation-id", "from-app"), ("Content-Type", "a/b")])
        return [b""]

    server = Server()
    server.run(FaultlensMiddleware(app), environ())
    assert len(server.headers["x-correlation-id"]) == 1
    assert server.headers["x-correlation-id"] != ["from-app"]
    assert server.headers["content-type"] == ["a/b"]


@pytest.mark.parametrize(
    ("remote", "headers", "expected"),
    [
        ("203.0.113.5", {"X-Forwarded-For": "198.51.100.1"}, "203.0.113.5"),
        ("10.0.0.1", {"X-Forwarded-For": "198.51.100.1, 10.0.0.2"}, "198.51.100.1"),
        ("10.0.0.1", {"Forwarded": 'for="[2001:db8::1]:4711"'}, "2001:db8::1"),
        ("10.0.0.1", {"X-Forwarded-For": "garbage"}, "10.0.0.1"),
        ("", {"X-Forwarded-For": "198.51.100.1"}, None),
    ],
)
def test_client_ip_behind_trusted_proxies(
    remote: str, headers: dict[str, str], expected: str | None
) -> None:
    """REMOTE_ADDR, or who a trusted proxy forwards for; garbage is ignored."""
    recorder = Recorder()
    with capture_logs() as logs:
        Server().run(
            FaultlensMiddleware(recorder, trusted_proxies=["10.0.0.0/8"]),
            environ(headers, remote=remote),
        )
    ctx = recorder.contexts[0]
    assert ctx is not None
    assert ctx.ip_address == expected
    assert access_lines(logs)[0]["client_ip"] == expected
