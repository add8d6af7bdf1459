"""ASGI middleware: a correlation context for every HTTP request (Starlette, FastAPI, any ASGI app).

    from faultlens.integrations.asgi import FaultlensMiddleware

    app.add_middleware(FaultlensMiddleware)                       # Starlette / FastAPI
    app = FaultlensMiddleware(app, trusted_proxies=["10.0.0.0/8"])  # any ASGI app

Pure ASGI (never ``BaseHTTPMiddleware``, which breaks contextvar propagation):
``websocket`` and ``lifespan`` scopes pass through untouched, bodies are never
buffered, and every exception the application raises is re-raised unchanged.
See ``docs/middleware.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from time import perf_counter_ns, time
from typing import Any, TypeAlias

from faultlens._ids import is_hex_trace_id, new_span_id, new_trace_ids
from faultlens._w3c import parse_tracestate, traceparent_ids
from faultlens.context import RequestContext, _current, _otel_span_ids, use
from faultlens.integrations._http import (
    MAX_USER_AGENT,
    BoundarySettings,
    ProxyEntry,
    TrustedProxies,
    accept_header_id,
    log_access,
    rejection_body,
    resolve_client_ip,
)

__all__ = ["FaultlensMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
Header: TypeAlias = tuple[bytes, bytes]

# Where each wanted request header goes; request header names are lower-case in ASGI.
_CORRELATION, _REQUEST, _TRACEPARENT, _TRACESTATE, _USER_AGENT, _XFF, _FORWARDED = range(7)
_HeaderValue: TypeAlias = bytes | list[bytes] | None
_FLAGS = ("-00", "-01")
# The defaults of the RequestContext fields a request leaves unset, for building it
# positionally (as faultlens.context does on its hot path); a test checks the
# result against context_from_headers, so a change of fields cannot go unnoticed.
_new_tuple = tuple.__new__
_DEFAULTS = RequestContext._field_defaults
_NO_PERMISSIONS: frozenset[str] = _DEFAULTS["permissions"]
_EMPTY: Mapping[str, Any] = _DEFAULTS["fields"]
_INVALID_CORRELATION = "context.invalid_correlation_id"
_INVALID_REQUEST = "context.invalid_request_id"
_RESPONSE_START = "http.response.start"


class FaultlensMiddleware:
    """Open a faultlens context per HTTP request and answer with its ids.

    For each ``http`` request: reads the correlation id, request id,
    ``traceparent``/``tracestate`` and ``User-Agent`` headers (unsafe ids are
    replaced by fresh ones and counted, never echoed), resolves the client
    address (behind ``trusted_proxies`` from ``Forwarded`` / ``X-Forwarded-For``),
    runs the application with that context current (as
    :func:`faultlens.context.use` would) and restores the previous one
    afterwards, also when it raises.  The response gets the
    correlation header, ``traceparent`` (this hop) and the request-id header
    (``response_headers=False`` turns that off), and one access-log line is
    written to the ``faultlens.access`` logger (``access_log=False`` turns that
    off).  ``reject_invalid_ids=True`` answers a request carrying an unsafe id
    with a 400 JSON body without calling the application.

    Header names default to :func:`faultlens.context.get_header_names` at
    construction.  Bad options raise :class:`~faultlens.errors.ConfigurationError`.
    """

    __slots__ = (
        "_access_log",
        "_headers_wanted",
        "_lean",
        "_level",
        "_logger",
        "_reject",
        "_response_names",
        "_set_headers",
        "_trusted",
        "app",
        "settings",
    )

    def __init__(
        self,
        app: ASGIApp,
        *,
        correlation_header: str | None = None,
        request_id_header: str | None = None,
        trusted_proxies: Iterable[ProxyEntry] | TrustedProxies = (),
        reject_invalid_ids: bool = False,
        access_log: bool = True,
        access_log_level: int | str = logging.INFO,
        response_headers: bool = True,
    ) -> None:
        self.app = app
        settings = BoundarySettings.create(
            correlation_header=correlation_header,
            request_id_header=request_id_header,
            trusted_proxies=trusted_proxies,
            reject_invalid_ids=reject_invalid_ids,
            access_log=access_log,
            access_log_level=access_log_level,
            response_headers=response_headers,
        )
        self.settings = settings
        correlation = settings.correlation_header.lower().encode("ascii")
        request = settings.request_id_header.lower().encode("ascii")
        wanted = {
            correlation: _CORRELATION,
            request: _REQUEST,
            b"traceparent": _TRACEPARENT,
            b"tracestate": _TRACESTATE,
            b"user-agent": _USER_AGENT,
        }
        if settings.trusted_proxies:
            wanted[b"x-forwarded-for"] = _XFF
            wanted[b"forwarded"] = _FORWARDED
        self._headers_wanted = wanted
        # Response header names as written (lower-case, as ASGI asks), and the set of
        # them to drop from the app's own headers so no header is sent twice.
        self._response_names = (correlation, b"traceparent", request)
        # None rather than an empty TrustedProxies: its __bool__ is a Python call.
        self._trusted = settings.trusted_proxies if settings.trusted_proxies else None
        self._reject = settings.reject_invalid_ids
        self._access_log = settings.access_log
        self._set_headers = settings.response_headers
        # Neither the access line nor rejection: the lean path, decided once here.
        self._lean = not (settings.access_log or settings.reject_invalid_ids)
        self._level = settings.access_log_level
        self._logger = settings.logger

    def _context_for(self, scope: Scope) -> tuple[RequestContext, bool]:  # noqa: PLR0915 (hot path, one frame)
        """Build the request's context from its headers and peer, in one pass over them.

        What :func:`faultlens.context.context_from_headers` does, specialised for
        ASGI's raw ``bytes`` headers: ids go through :func:`accept_header_id`
        (same answers, no decoding first) and the context is built positionally.
        """
        wanted = self._headers_wanted
        correlation = request_id = user_agent = None
        traceparent: _HeaderValue = None
        tracestate: _HeaderValue = None
        forwarded: _HeaderValue = None
        x_forwarded_for: _HeaderValue = None
        for name, value in scope.get("headers", ()):
            if name not in wanted:  # most headers: one hash lookup, no call
                continue
            slot = wanted[name]
            # A repeated id or User-Agent keeps the first field; traceparent keeps all
            # (its parser rejects several, as W3C asks), the others are lists to join.
            if slot == _TRACEPARENT:
                traceparent = value if traceparent is None else _append(traceparent, value)
            elif slot == _USER_AGENT:
                if user_agent is None:
                    user_agent = value
            elif slot == _CORRELATION:
                if correlation is None:
                    correlation = value
            elif slot == _REQUEST:
                if request_id is None:
                    request_id = value
            elif slot == _TRACESTATE:
                tracestate = value if tracestate is None else _append(tracestate, value)
            elif slot == _XFF:
                x_forwarded_for = _append(x_forwarded_for, value)
            else:
                forwarded = _append(forwarded, value)
        rejected = False
        cid = rid = None
        if correlation is not None:
            cid = accept_header_id(correlation, _INVALID_CORRELATION)
            rejected = cid is None
        if request_id is not None:
            rid = accept_header_id(request_id, _INVALID_REQUEST)
            rejected = rejected or rid is None
        client = scope.get("client")
        ip: str | None = client[0] if client else None
        if self._trusted is not None:
            ip = resolve_client_ip(ip, self._trusted, _joined(forwarded), _joined(x_forwarded_for))
        agent: str | None = None
        if user_agent is not None:
            agent = user_agent[:MAX_USER_AGENT].decode("latin-1")
        # What faultlens.context._build does, for a request: an active OpenTelemetry
        # span wins, else a valid traceparent is continued, else a trace starts here.
        # An invalid traceparent restarts the trace, and its tracestate goes too.
        parent = traceparent_ids(traceparent) if traceparent is not None else None
        state: tuple[tuple[str, str], ...] = ()
        if parent is not None and tracestate is not None:
            state = parse_tracestate(tracestate)
        parent_id = None
        otel = _otel_span_ids()
        if otel is not None:
            trace_id, span_id, flags = otel
        elif parent is not None:
            trace_id, parent_id, flags = parent
            flags &= 1
            span_id = new_span_id()
        else:
            trace_id, span_id = new_trace_ids()
            flags = 1
            # A 32-hex correlation id doubles as the trace id of a new trace, so logs,
            # traces and the timeline all share one key.
            if cid is not None and is_hex_trace_id(cid):
                trace_id = cid
        ctx: RequestContext = _new_tuple(
            RequestContext,
            (
                cid or trace_id,
                trace_id,
                span_id,
                parent_id,
                flags,
                state,
                rid or span_id,  # without a valid incoming request id: the span id
                None,
                None,
                None,
                ip,
                agent,
                _NO_PERMISSIONS,
                _EMPTY,
                _EMPTY,
                time(),
                _EMPTY,
                None,
                [],
            ),
        )
        return ctx, rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one ASGI connection: ``http`` with a context, anything else untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._lean:
            started_ns = perf_counter_ns()
            ctx, rejected = self._context_for(scope)
            if rejected and self._reject:
                await self._answer_rejected(scope, ctx, send, started_ns)
                return
            if self._access_log:
                await self._call_logged(scope, receive, send, ctx, started_ns)
                return
        else:
            ctx = self._context_for(scope)[0]
        # The lean path (no access log), inlined: one coroutine frame less per request.
        if self._set_headers:
            names = self._response_names
            server_send = send

            # A plain function returning the server's awaitable: the application
            # awaits that directly, so no coroutine is created per message here.
            def send_with_ids(message: Message) -> Awaitable[None]:
                if message["type"] == _RESPONSE_START:
                    _add_ids(message, ctx, names)
                return server_send(message)

            send = send_with_ids
        # contextvar set/reset rather than faultlens.context.use: same effect (the
        # reset runs in this coroutine, so in the same Context), 0.3 µs cheaper.
        token = _current.set(ctx)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)

    async def _call_logged(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext, started_ns: int
    ) -> None:
        status = 0
        nbytes = 0
        names = self._response_names if self._set_headers else None

        async def send_observed(message: Message) -> None:
            nonlocal status, nbytes
            kind = message["type"]
            if kind == "http.response.body":
                nbytes += len(message.get("body", b""))
            elif kind == _RESPONSE_START:
                status = message["status"]
                if names is not None:
                    _add_ids(message, ctx, names)
            await send(message)

        root_path = scope.get("root_path", "")
        token = _current.set(ctx)
        try:
            await self.app(scope, receive, send_observed)
        except BaseException as exc:
            self._log(scope, ctx, root_path, status or 500, started_ns, nbytes, exc)
            raise
        else:
            self._log(scope, ctx, root_path, status or 500, started_ns, nbytes)
        finally:
            _current.reset(token)

    async def _answer_rejected(
        self, scope: Scope, ctx: RequestContext, send: Send, started_ns: int
    ) -> None:
        settings = self.settings
        body = rejection_body(
            ctx.correlation_id, settings.correlation_header, settings.request_id_header
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if self._set_headers:
            headers.extend(_id_headers(ctx, self._response_names))
        with use(ctx):
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            if self._access_log:
                self._log(scope, ctx, None, 400, started_ns, len(body))

    def _log(  # noqa: PLR0917 (private, called from three places in this class)
        self,
        scope: Scope,
        ctx: RequestContext,
        root_path: str | None,
        status: int,
        started_ns: int,
        nbytes: int,
        error: BaseException | None = None,
    ) -> None:
        duration_ns = perf_counter_ns() - started_ns
        logger = self._logger
        if error is None and not logger.is_enabled_for(self._level):
            return
        log_access(
            logger,
            self._level,
            method=str(scope.get("method", "")),
            path=_route_path(scope, root_path),
            status=status,
            duration_ns=duration_ns,
            nbytes=nbytes,
            client_ip=ctx.ip_address,
            error=error,
        )


def _id_headers(ctx: RequestContext, names: tuple[bytes, bytes, bytes]) -> list[Header]:
    """The response headers carrying ``ctx``'s ids: correlation, ``traceparent``, request."""
    correlation, traceparent, request = names
    span_id = ctx.span_id
    # The traceparent is formatted without format_traceparent's checks: these ids
    # were generated or parsed by faultlens, so they are valid already.
    return [
        (correlation, ctx.correlation_id.encode()),
        (traceparent, f"00-{ctx.trace_id}-{span_id}{_FLAGS[ctx.trace_flags & 1]}".encode()),
        (request, (ctx.request_id or span_id).encode()),
    ]


def _add_ids(message: Message, ctx: RequestContext, names: tuple[bytes, bytes, bytes]) -> None:
    """Add the id headers to a ``http.response.start`` message, dropping the app's copies."""
    # _id_headers inlined: this runs for every response.
    correlation, traceparent, request = names
    span_id = ctx.span_id
    own = [
        (correlation, ctx.correlation_id.encode()),
        (traceparent, f"00-{ctx.trace_id}-{span_id}{_FLAGS[ctx.trace_flags & 1]}".encode()),
        (request, (ctx.request_id or span_id).encode()),
    ]
    existing = message.get("headers")
    if existing:
        for pair in existing:
            # ASGI response header names are lower-case (the spec says must).
            if pair[0] in names:
                # The middleware owns these headers: an app's copy would make them
                # ambiguous, so it is dropped (rare: only then is the list filtered).
                existing = [p for p in existing if p[0] not in names]
                break
        # A new list, never the app's one extended: the app may send the same
        # (cached) response object again.
        own[:0] = existing
    message["headers"] = own


def _append(previous: _HeaderValue, value: bytes) -> _HeaderValue:
    if previous is None:
        return value
    if isinstance(previous, list):
        previous.append(value)
        return previous
    return [previous, value]


def _joined(value: _HeaderValue) -> str | None:
    """Decode header field(s) as Latin-1 (never fails), several joined with ``,``."""
    if value is None:
        return None
    if isinstance(value, list):
        return b",".join(value).decode("latin-1")
    return value.decode("latin-1")


def _route_path(scope: Scope, root_path: str | None) -> str:
    """The route template when the router left one in the scope, else the raw path.

    Starlette and FastAPI put the matched route in ``scope["route"]``; its
    ``path`` is the template (``/items/{item_id}``), which keeps ids and tokens
    out of the log.  Inside a mounted sub-application the mount's matched prefix
    (the growth of ``root_path``) is put in front.  A route that is itself a
    mount (static files) gives the raw path.  Never the query string.
    """
    route = scope.get("route")
    template = getattr(route, "path", None) if route is not None else None
    if isinstance(template, str) and not hasattr(route, "routes"):
        if root_path is not None:
            now = scope.get("root_path", "")
            if isinstance(now, str) and now != root_path and now.startswith(root_path):
                return now[len(root_path) :] + template
        return template
    path = scope.get("path", "")
    return path if isinstance(path, str) else ""
