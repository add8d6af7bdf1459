"""WSGI middleware: a correlation context for every HTTP request (Flask, any WSGI app).

    from faultlens.integrations.wsgi import FaultlensMiddleware

    app.wsgi_app = FaultlensMiddleware(app.wsgi_app)            # Flask
    application = FaultlensMiddleware(application)               # any WSGI app

Pure WSGI (PEP 3333): bodies are never buffered, the context is current while
the server iterates a streaming body (and restored between chunks and after),
the application's iterable is always closed, ``start_response`` with
``exc_info`` is passed through, and every exception the application raises is
re-raised unchanged.  See ``docs/middleware.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter_ns
from typing import TYPE_CHECKING

from faultlens.context import RequestContext, _current, context_from_headers, use
from faultlens.integrations._http import (
    MAX_USER_AGENT,
    BoundarySettings,
    ProxyEntry,
    TrustedProxies,
    log_access,
    rejection_body,
    resolve_client_ip,
)

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["FaultlensMiddleware"]

_Write = Callable[[bytes], object]
_FLAGS = ("00", "01")


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class FaultlensMiddleware:
    """Open a faultlens context per HTTP request and answer with its ids.

    The WSGI twin of :class:`faultlens.integrations.asgi.FaultlensMiddleware`,
    with the same keyword options and behaviour: validated ids (unsafe ones
    replaced, counted, never echoed), W3C trace context, the client address
    behind ``trusted_proxies``, the correlation / ``traceparent`` / request-id
    response headers, one access-log line on ``faultlens.access`` (with the
    Flask route template when there is one), and ``reject_invalid_ids=True``
    for a 400 without calling the application.

    The context is current while the application runs and each time the server
    pulls a chunk of a streaming body (or closes it), and restored in between
    and afterwards.  The access line is written when the body is exhausted or
    closed, so ``bytes`` and ``duration_ms`` cover the whole response.
    """

    __slots__ = (
        "_access_log",
        "_correlation_key",
        "_level",
        "_logger",
        "_lower_names",
        "_reject",
        "_request_key",
        "_response_names",
        "_set_headers",
        "_trusted",
        "app",
        "settings",
    )

    def __init__(
        self,
        app: WSGIApplication,
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
        self._correlation_key = _environ_key(settings.correlation_header)
        self._request_key = _environ_key(settings.request_id_header)
        self._response_names = (
            settings.correlation_header,
            "traceparent",
            settings.request_id_header,
        )
        self._lower_names = frozenset(name.lower() for name in self._response_names)
        self._trusted = settings.trusted_proxies
        self._reject = settings.reject_invalid_ids
        self._access_log = settings.access_log
        self._set_headers = settings.response_headers
        self._level = settings.access_log_level
        self._logger = settings.logger

    def _response_headers(self, ctx: RequestContext) -> list[tuple[str, str]]:
        correlation, traceparent, request = self._response_names
        # ctx.traceparent without format_traceparent's validation: these ids were
        # generated or parsed by context_from_headers, so they are valid already.
        return [
            (correlation, ctx.correlation_id),
            (traceparent, f"00-{ctx.trace_id}-{ctx.span_id}-{_FLAGS[ctx.trace_flags & 1]}"),
            (request, ctx.request_id or ctx.span_id),
        ]

    def _start_response_for(
        self, ctx: RequestContext, start_response: StartResponse
    ) -> StartResponse:
        """The ``start_response`` the application gets: the server's, plus the headers."""
        if not self._set_headers:
            return start_response
        own = self._response_headers(ctx)
        names = self._lower_names

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
        ) -> _Write:
            merged = _merge(headers, own, names)
            if exc_info is None:
                return start_response(status, merged)
            # The server re-raises exc_info itself when the headers were already sent.
            return start_response(status, merged, exc_info)

        return start_with_headers

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Run one WSGI request inside its own context."""
        started_ns = perf_counter_ns() if self._access_log or self._reject else 0
        get = environ.get
        ip: str | None = get("REMOTE_ADDR") or None
        if self._trusted:
            ip = resolve_client_ip(
                ip, self._trusted, get("HTTP_FORWARDED"), get("HTTP_X_FORWARDED_FOR")
            )
        user_agent = get("HTTP_USER_AGENT")
        if user_agent is not None and len(user_agent) > MAX_USER_AGENT:
            user_agent = user_agent[:MAX_USER_AGENT]
        # WSGI servers join repeated fields with ","; a repeated traceparent then
        # fails to parse and restarts the trace, as W3C asks.
        ctx, rejected = context_from_headers(
            correlation_id=get(self._correlation_key),
            request_id=get(self._request_key),
            traceparent=get("HTTP_TRACEPARENT"),
            tracestate=get("HTTP_TRACESTATE"),
            ip_address=ip,
            user_agent=user_agent,
        )
        if rejected and self._reject:
            return self._answer_rejected(environ, start_response, ctx, started_ns)
        if self._access_log:
            return self._call_logged(environ, start_response, ctx, started_ns)
        start = self._start_response_for(ctx, start_response)
        # contextvar set/reset rather than faultlens.context.use: same effect (both in
        # this call, so in the same Context), cheaper on every request.
        token = _current.set(ctx)
        try:
            result = self.app(environ, start)
        finally:
            _current.reset(token)
        if type(result) is list:
            # A complete body: nothing left to run in the context, nothing to close.
            return result
        return _ContextBody(result, ctx)

    def _call_logged(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        ctx: RequestContext,
        started_ns: int,
    ) -> Iterable[bytes]:
        exchange = _Exchange(self, environ, ctx, start_response, started_ns)
        token = _current.set(ctx)
        try:
            result = self.app(environ, exchange.start_response)
            if type(result) is list:
                exchange.nbytes += sum(map(len, result))
                exchange.finish(None)
                return result
        except BaseException as exc:
            exchange.finish(exc)
            raise
        finally:
            _current.reset(token)
        exchange.result = result
        return exchange

    def _answer_rejected(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        ctx: RequestContext,
        started_ns: int,
    ) -> list[bytes]:
        settings = self.settings
        body = rejection_body(
            ctx.correlation_id, settings.correlation_header, settings.request_id_header
        )
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if self._set_headers:
            headers.extend(self._response_headers(ctx))
        with use(ctx):
            start_response("400 Bad Request", headers)
            if self._access_log and self._logger.is_enabled_for(self._level):
                log_access(
                    self._logger,
                    self._level,
                    method=str(environ.get("REQUEST_METHOD", "")),
                    path=_raw_path(environ),
                    status=400,
                    duration_ns=perf_counter_ns() - started_ns,
                    nbytes=len(body),
                    client_ip=ctx.ip_address,
                )
        return [body]


class _ContextBody:
    """The application's body iterable, run chunk by chunk inside the request's context."""

    __slots__ = ("ctx", "iterator", "result")

    def __init__(self, result: Iterable[bytes] | None, ctx: RequestContext) -> None:
        self.result = result
        self.ctx = ctx
        self.iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self.iterator is None:
            token = _current.set(self.ctx)
            try:
                self.iterator = iter(self.result or ())
            finally:
                _current.reset(token)
        return self

    def __next__(self) -> bytes:
        iterator = self.iterator
        if iterator is None:
            self.__iter__()
            iterator = self.iterator
            assert iterator is not None
        # Set and reset around each chunk: the server may pull chunks from different
        # threads, and between chunks its own code must not see this request's context.
        token = _current.set(self.ctx)
        try:
            return next(iterator)
        finally:
            _current.reset(token)

    def close(self) -> None:
        """Close the application's iterable (PEP 3333) inside the context."""
        close = getattr(self.result, "close", None)
        if close is not None:
            token = _current.set(self.ctx)
            try:
                close()
            finally:
                _current.reset(token)


class _Exchange(_ContextBody):
    """One logged request: the body iterable plus status, bytes and the access line."""

    __slots__ = (
        "done",
        "environ",
        "middleware",
        "nbytes",
        "route",
        "server_start_response",
        "started_ns",
        "status",
    )

    def __init__(
        self,
        middleware: FaultlensMiddleware,
        environ: WSGIEnvironment,
        ctx: RequestContext,
        server_start_response: StartResponse,
        started_ns: int,
    ) -> None:
        super().__init__(None, ctx)
        self.middleware = middleware
        self.environ = environ
        self.server_start_response = middleware._start_response_for(ctx, server_start_response)
        self.started_ns = started_ns
        self.status = 0
        self.nbytes = 0
        self.route: str | None = None
        self.done = False

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
        /,
    ) -> _Write:
        """The ``start_response`` the application sees: adds the headers, notes the status."""
        if exc_info is None:
            write = self.server_start_response(status, headers)
        else:
            write = self.server_start_response(status, headers, exc_info)
        try:
            self.status = int(status[:3])
        except (TypeError, ValueError):
            self.status = 0
        # Flask drops its request object from the environ before the body is sent,
        # so the route template is read now, while it is still there.
        request = self.environ.get("werkzeug.request")
        if request is not None:
            rule = getattr(getattr(request, "url_rule", None), "rule", None)
            if isinstance(rule, str):
                self.route = rule

        def counting_write(data: bytes) -> object:
            # PEP 3333's legacy imperative write(): still part of the body.
            self.nbytes += len(data)
            return write(data)

        return counting_write

    def __next__(self) -> bytes:
        iterator = self.iterator
        if iterator is None:
            self.__iter__()
            iterator = self.iterator
            assert iterator is not None
        token = _current.set(self.ctx)
        try:
            chunk = next(iterator)
        except StopIteration:
            self.finish(None)
            raise
        except BaseException as exc:
            self.finish(exc)
            raise
        finally:
            _current.reset(token)
        self.nbytes += len(chunk)
        return chunk

    def close(self) -> None:
        """Close the application's iterable (PEP 3333) inside the context, then log."""
        token = _current.set(self.ctx)
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self.finish(exc)
            raise
        else:
            self.finish(None)
        finally:
            _current.reset(token)

    def finish(self, error: BaseException | None) -> None:
        """Write the access line once (the caller holds the context)."""
        if self.done:
            return
        self.done = True
        middleware = self.middleware
        logger = middleware._logger
        if error is None and not logger.is_enabled_for(middleware._level):
            return
        environ = self.environ
        log_access(
            logger,
            middleware._level,
            method=str(environ.get("REQUEST_METHOD", "")),
            path=_route_path(environ, self.route),
            status=self.status or 500,
            duration_ns=perf_counter_ns() - self.started_ns,
            nbytes=self.nbytes,
            client_ip=self.ctx.ip_address,
            error=error,
        )


def _merge(
    headers: list[tuple[str, str]],
    own: list[tuple[str, str]],
    names: frozenset[str],
) -> list[tuple[str, str]]:
    """The app's headers then ours, in a new list; an app's copy of ours is dropped."""
    for name, _ in headers:
        if name.lower() in names:
            # The middleware owns these headers: an app's copy would make them ambiguous.
            return [pair for pair in headers if pair[0].lower() not in names] + own
    return headers + own


def _wsgi_text(value: object) -> str:
    """Undo PEP 3333's Latin-1 decoding of a path (it was UTF-8 bytes on the wire)."""
    text = value if isinstance(value, str) else ""
    try:
        return text.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text


def _raw_path(environ: WSGIEnvironment) -> str:
    return _wsgi_text(environ.get("SCRIPT_NAME", "")) + _wsgi_text(environ.get("PATH_INFO", ""))


def _route_path(environ: WSGIEnvironment, route: str | None) -> str:
    """The Flask/Werkzeug route template when known, else the raw path; never the query."""
    if route is not None:
        return _wsgi_text(environ.get("SCRIPT_NAME", "")) + route
    return _raw_path(environ)
