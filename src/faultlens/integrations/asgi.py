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

from faultlens import context as _context
from faultlens._ids import is_hex_trace_id, new_span_id, new_trace_ids
from faultlens._w3c import (
    _HEX_BYTE,
    _SHAPE,
    _SHAPE_55,
    _VERSION_00_LENGTH,
    _ZERO_SPAN_ID,
    _ZERO_TRACE_ID,
    parse_tracestate,
    traceparent_ids,
)
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
        "_hot",
        "_lean",
        "_level",
        "_logger",
        "_reject",
        "_response_names",
        "_response_set",
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
        self._response_set = frozenset(self._response_names)
        # None rather than an empty TrustedProxies: its __bool__ is a Python call.
        self._trusted = settings.trusted_proxies if settings.trusted_proxies else None
        self._reject = settings.reject_invalid_ids
        self._access_log = settings.access_log
        self._set_headers = settings.response_headers
        # Neither the access line nor rejection: the lean path, decided once here.
        self._lean = not (settings.access_log or settings.reject_invalid_ids)
        # What every request reads, in one attribute (one lookup, then local names).
        self._hot = (
            self._lean,
            wanted,
            self._trusted,
            self._response_names if self._set_headers else None,
            self._response_set,
        )
        self._level = settings.access_log_level
        self._logger = settings.logger

    async def __call__(  # noqa: PLR0915 (the hot path: one frame)
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Run one ASGI connection: ``http`` with a context, anything else untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lean, wanted, trusted, response_names, names = self._hot
        started_ns = 0 if lean else perf_counter_ns()
        # The request's context, from its headers and peer in one pass over them: what
        # faultlens.context.context_from_headers does, specialised for ASGI's raw bytes
        # headers (ids go through accept_header_id: same answers, no decoding first) and
        # built positionally, inline here so a request costs one frame.
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
        if trusted is not None:
            ip = resolve_client_ip(ip, trusted, _joined(forwarded), _joined(x_forwarded_for))
        agent: str | None = None
        if user_agent is not None:
            if len(user_agent) > MAX_USER_AGENT:
                user_agent = user_agent[:MAX_USER_AGENT]
            agent = user_agent.decode("latin-1")
        # What faultlens.context._build does, for a request: an active OpenTelemetry
        # span wins, else a valid traceparent is continued, else a trace starts here.
        # An invalid traceparent restarts the trace, and its tracestate goes too.
        parent: tuple[str, str, int] | None = None
        if type(traceparent) is bytes and len(traceparent) == _VERSION_00_LENGTH:
            # traceparent_ids's path for one 55-byte field, inlined (a test compares it
            # with parse_traceparent): one translate checks the shape.
            if traceparent.translate(_SHAPE) == _SHAPE_55:
                version, parent_trace, parent_span, parent_flags = traceparent.decode().split("-")
                if (
                    version != "ff"
                    and parent_trace != _ZERO_TRACE_ID
                    and parent_span != _ZERO_SPAN_ID
                ):
                    parent = parent_trace, parent_span, _HEX_BYTE[parent_flags]
        elif traceparent is not None:
            parent = traceparent_ids(traceparent)
        state: tuple[tuple[str, str], ...] = ()
        if parent is not None and tracestate is not None:
            state = parse_tracestate(tracestate)
        parent_id = None
        # The OpenTelemetry probe first (a C call when OpenTelemetry is installed, None
        # when it is not): the span lookup only runs when it has a context.
        probe = _context._otel_probe
        otel = _otel_span_ids() if probe is not None and probe() else None
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
        # The response's id headers, encoded once: the correlation and request ids are
        # usually the trace and span ids, so they are slices of the traceparent bytes.
        # No format_traceparent checks: these ids were generated or parsed by faultlens.
        own: tuple[Header, Header, Header] | None = None
        if response_names is not None:
            correlation_name, traceparent_name, request_name = response_names
            value = f"00-{trace_id}-{span_id}{_FLAGS[flags]}".encode()
            own = (
                (correlation_name, value[3:35] if cid is None else cid.encode()),
                (traceparent_name, value),
                (request_name, value[36:52] if rid is None else rid.encode()),
            )
        if not lean:
            if rejected and self._reject:
                await self._answer_rejected(scope, ctx, send, started_ns, own)
                return
            if self._access_log:
                await self._call_logged(scope, receive, send, ctx, started_ns, own)
                return
        # The lean path (no access log), inlined: one coroutine frame less per request.
        if own is not None:
            server_send = send

            # A plain function returning the server's awaitable: the application
            # awaits that directly, so no coroutine is created per message here.
            def send_with_ids(message: Message) -> Awaitable[None]:
                if message["type"] == _RESPONSE_START:
                    # _with_ids inlined: this runs for every response.
                    headers = list(message.get("headers") or ())
                    for pair in headers:
                        if pair[0] in names:
                            headers = [p for p in headers if p[0] not in names]
                            break
                    headers += own
                    message["headers"] = headers
                return server_send(message)

            send = send_with_ids
        # contextvar set/reset rather than faultlens.context.use: same effect (the
        # reset runs in this coroutine, so in the same Context), 0.3 µs cheaper.
        token = _current.set(ctx)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)

    async def _call_logged(  # noqa: PLR0917 (private, one caller)
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        started_ns: int,
        own: tuple[Header, ...] | None,
    ) -> None:
        status = 0
        nbytes = 0
        names = self._response_set

        async def send_observed(message: Message) -> None:
            nonlocal status, nbytes
            kind = message["type"]
            if kind == "http.response.body":
                nbytes += len(message.get("body", b""))
            elif kind == _RESPONSE_START:
                status = message["status"]
                if own is not None:
                    _with_ids(message, own, names)
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
        self,
        scope: Scope,
        ctx: RequestContext,
        send: Send,
        started_ns: int,
        own: tuple[Header, ...] | None,
    ) -> None:
        settings = self.settings
        body = rejection_body(
            ctx.correlation_id, settings.correlation_header, settings.request_id_header
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if own is not None:
            headers.extend(own)
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


def _with_ids(message: Message, own: tuple[Header, ...], names: frozenset[bytes]) -> None:
    """Add the id headers to a ``http.response.start`` message, dropping the app's copies."""
    # A new list, never the app's one extended: the app may send the same (cached)
    # response object again.
    headers = list(message.get("headers") or ())
    for pair in headers:
        # ASGI response header names are lower-case (the spec says must).
        if pair[0] in names:
            # The middleware owns these headers: an app's copy would make them
            # ambiguous, so it is dropped (rare: only then is the list filtered).
            headers = [p for p in headers if p[0] not in names]
            break
    headers += own
    message["headers"] = headers


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
