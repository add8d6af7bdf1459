"""FastAPI and Starlette: correlation per request and safe answers for every error.

    from faultlens.integrations.fastapi import install

    app = FastAPI()
    install(app)                                   # or install(app, problem_json=True)

:func:`install` adds :class:`~faultlens.integrations.asgi.FaultlensMiddleware`
(unless the application has it already), an :class:`ErrorResponseMiddleware`
just inside it, and exception handlers for ``HTTPException`` and FastAPI's
``RequestValidationError``.  Every error is captured once
(:func:`faultlens.capture`) and answered with :func:`faultlens.handle`'s safe
response: JSON for API clients (``application/problem+json`` when asked for or
configured), a small escaped HTML page for browsers, both quoting the
correlation id that the ``X-Correlation-ID`` response header carries.
See ``docs/integrations.md``.

Importing this module without Starlette installed raises
:class:`~faultlens.errors.MissingExtraError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faultlens.errors import ConfigurationError, MissingExtraError

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import HTTPConnection
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise MissingExtraError("fastapi", "faultlens.integrations.fastapi") from exc

from faultlens.integrations._errors import (
    ErrorSettings,
    RenderedError,
    answer,
    capture_once,
    check_middleware_options,
)
from faultlens.integrations.asgi import (
    ASGIApp,
    FaultlensMiddleware,
    Message,
    Receive,
    Scope,
    Send,
    _route_path,
)

__all__ = ["ErrorResponseMiddleware", "install"]


def _validation_error_types() -> tuple[type[Exception], ...]:
    """FastAPI's ``RequestValidationError`` when FastAPI is installed (plain Starlette has none)."""
    try:
        from fastapi.exceptions import RequestValidationError
    except ImportError:
        return ()
    return (RequestValidationError,)


_VALIDATION_ERRORS = _validation_error_types()


def _capture_fields(scope: Scope) -> dict[str, Any]:
    return {
        "integration": "fastapi",
        "method": str(scope.get("method", "")),
        "route": _route_path(scope, None),
    }


def _answer(
    exc: Exception,
    settings: ErrorSettings,
    scope: Scope,
    accept: str | None,
    accept_language: str | None,
) -> RenderedError | None:
    """The answer to ``exc``; ``None`` for an ``HTTPException`` that carries no error.

    An ``HTTPException`` keeps its status and headers; a ``RequestValidationError``
    answers 422 (handle() turns its errors() into ``details.errors``: location,
    field, type, never the input); anything else is answered as handle() says.
    """
    status: int | None = None
    extra_headers: Iterable[tuple[str, str]] = ()
    if isinstance(exc, HTTPException):
        if exc.status_code < 400:  # 204, 304, a redirect: not an error, no body
            return None
        status = exc.status_code
        extra_headers = (exc.headers or {}).items()
    elif _VALIDATION_ERRORS and isinstance(exc, _VALIDATION_ERRORS):
        status = 422
    return answer(
        exc,
        settings,
        accept=accept,
        accept_language=accept_language,
        status=status,
        extra_headers=extra_headers,
        capture_fields=_capture_fields(scope),
    )


def _to_response(rendered: RenderedError) -> Response:
    return Response(
        content=rendered.body,
        status_code=rendered.status,
        headers=dict(rendered.header_list()),
    )


def _first_header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class ErrorResponseMiddleware:
    """Answer an exception escaping the application with faultlens's safe response.

    Pure ASGI; place it just inside :class:`~faultlens.integrations.asgi.FaultlensMiddleware`
    (:func:`install` does), so the answer is built in the request's context and
    gets the correlation headers.  An exception raised before the response
    started is captured once and answered (500 for a bug, the exception's own
    status for an ``HTTPException``), then re-raised, as Starlette's
    ``ServerErrorMiddleware`` does, so the server logs it; an ``HTTPException``
    is answered and not re-raised.  One raised after the response started is
    captured and re-raised: the server closes the connection.  Non-HTTP scopes
    pass through.
    """

    __slots__ = ("app", "settings")

    def __init__(
        self,
        app: ASGIApp,
        *,
        locale: str | None = None,
        debug: bool = False,
        problem_json: bool = False,
        html: bool = True,
        capture_client_errors: bool = True,
    ) -> None:
        self.app = app
        self.settings = ErrorSettings.create(
            locale=locale,
            debug=debug,
            problem_json=problem_json,
            html=html,
            capture_client_errors=capture_client_errors,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application; answer what it raises before responding."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:
                capture_once(exc, _capture_fields(scope))
                raise
            await self._answer(exc, scope, send)
            if isinstance(exc, HTTPException):
                return  # a deliberate answer, not a crash
            raise

    async def _answer(self, exc: Exception, scope: Scope, send: Send) -> None:
        rendered = _answer(
            exc,
            self.settings,
            scope,
            _first_header(scope, b"accept"),
            _first_header(scope, b"accept-language"),
        )
        if rendered is None:  # an HTTPException without an error status: no body
            assert isinstance(exc, HTTPException)
            rendered = RenderedError(
                exc.status_code,
                "text/plain; charset=utf-8",
                b"",
                tuple((exc.headers or {}).items()),
            )
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1", "replace"))
            for name, value in rendered.header_list()
        ]
        await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
        await send({"type": "http.response.body", "body": rendered.body})


def _connection_handler(
    settings: ErrorSettings,
) -> Callable[[HTTPConnection, Exception], Awaitable[Response]]:
    """The exception handler :func:`install` registers (runs inside the request's context)."""

    async def handle_exception(conn: HTTPConnection, exc: Exception) -> Response:
        headers = conn.headers
        rendered = _answer(
            exc, settings, conn.scope, headers.get("accept"), headers.get("accept-language")
        )
        if rendered is None:
            assert isinstance(exc, HTTPException)
            return Response(status_code=exc.status_code, headers=exc.headers)
        return _to_response(rendered)

    return handle_exception


def install(
    app: Starlette,
    *,
    locale: str | None = None,
    debug: bool = False,
    problem_json: bool = False,
    html: bool = True,
    capture_client_errors: bool = True,
    **middleware_options: Any,
) -> None:
    """Give a FastAPI or Starlette application faultlens's context and safe error answers.

    Adds :class:`~faultlens.integrations.asgi.FaultlensMiddleware` (built with
    ``middleware_options``: ``trusted_proxies``, ``access_log``…) unless the
    application already has it, :class:`ErrorResponseMiddleware` just inside it,
    and exception handlers for ``HTTPException`` (its status kept, the message
    from faultlens's catalog, never its ``detail``) and FastAPI's
    ``RequestValidationError`` (422, ``details.errors`` with each field's
    location, name and reason code, never the input).

    ``locale`` fixes the answer's language (default: negotiated from
    ``Accept-Language``); ``debug`` asks :func:`faultlens.handle` for developer
    details; ``problem_json`` answers JSON clients with ``application/problem+json``;
    ``html=False`` answers browsers with JSON too; ``capture_client_errors=False``
    records only errors answered with a 5xx.  Call it once, before the
    application serves; raises :class:`~faultlens.errors.ConfigurationError`
    for bad options, a second call, or ``middleware_options`` for a middleware
    the application already has.
    """
    if getattr(app, "middleware_stack", None) is not None:
        raise ConfigurationError(
            "install() must be called before the application serves its first request"
        )
    error_options: dict[str, Any] = {
        "locale": locale,
        "debug": debug,
        "problem_json": problem_json,
        "html": html,
        "capture_client_errors": capture_client_errors,
    }
    settings = ErrorSettings.create(**error_options)
    stack: list[Middleware] = app.user_middleware
    classes: list[object] = [entry.cls for entry in stack]
    if ErrorResponseMiddleware in classes:
        raise ConfigurationError("faultlens is already installed on this application")
    position = classes.index(FaultlensMiddleware) if FaultlensMiddleware in classes else None
    if position is None:
        check_middleware_options(middleware_options)  # fail now, not at the first request
        stack.insert(0, Middleware(FaultlensMiddleware, **middleware_options))
        position = 0
    elif middleware_options:
        raise ConfigurationError(
            "the application already has FaultlensMiddleware: pass "
            f"{', '.join(sorted(middleware_options))} where it is added, not to install()"
        )
    stack.insert(position + 1, Middleware(ErrorResponseMiddleware, **error_options))
    handler = _connection_handler(settings)
    app.add_exception_handler(HTTPException, handler)
    for error_type in _VALIDATION_ERRORS:
        app.add_exception_handler(error_type, handler)
