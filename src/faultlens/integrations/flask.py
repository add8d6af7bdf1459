"""Flask: correlation per request and safe answers for every error.

    from faultlens.integrations.flask import install

    app = Flask(__name__)
    install(app)                                   # or install(app, problem_json=True)

:func:`install` wraps ``app.wsgi_app`` in
:class:`~faultlens.integrations.wsgi.FaultlensMiddleware` (unless it is there
already) and registers error handlers for ``Exception`` and Werkzeug's
``HTTPException``.  Every error is captured once (:func:`faultlens.capture`) and
answered with :func:`faultlens.handle`'s safe response: JSON for API clients
(``application/problem+json`` when asked for or configured), a small escaped
HTML page for browsers, both quoting the correlation id that the
``X-Correlation-ID`` response header carries.  See ``docs/integrations.md``.

Importing this module without Flask installed raises
:class:`~faultlens.errors.MissingExtraError`.
"""

from __future__ import annotations

from typing import Any

from faultlens.errors import ConfigurationError, MissingExtraError

try:
    from flask import Flask, Response, request
    from werkzeug.exceptions import HTTPException, InternalServerError
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise MissingExtraError("flask", "faultlens.integrations.flask") from exc

from faultlens.integrations._errors import (
    ErrorSettings,
    RenderedError,
    answer,
    check_middleware_options,
    fallback,
)
from faultlens.integrations.wsgi import FaultlensMiddleware

__all__ = ["install"]

_EXTENSION = "faultlens"


def _has_middleware(wsgi_app: object) -> bool:
    """Whether ``wsgi_app`` is, or wraps, a FaultlensMiddleware (``.app`` chains)."""
    for _ in range(16):
        if isinstance(wsgi_app, FaultlensMiddleware):
            return True
        wsgi_app = getattr(wsgi_app, "app", None)
        if wsgi_app is None:
            return False
    return False


def _capture_fields() -> dict[str, Any]:
    rule = request.url_rule
    return {
        "integration": "flask",
        "method": request.method,
        "route": rule.rule if rule is not None else request.path,
    }


def _to_response(rendered: RenderedError) -> Response:
    return Response(
        rendered.body,
        status=rendered.status,
        headers=rendered.header_list(),
    )


class _ErrorHandlers:
    """The two handlers :func:`install` registers, sharing one :class:`ErrorSettings`."""

    __slots__ = ("settings",)

    def __init__(self, settings: ErrorSettings) -> None:
        self.settings = settings

    def _answer(self, exc: BaseException, **options: Any) -> Response:
        headers = request.headers
        return _to_response(
            answer(
                exc,
                self.settings,
                accept=headers.get("Accept"),
                accept_language=headers.get("Accept-Language"),
                capture_fields=_capture_fields(),
                **options,
            )
        )

    def unexpected(self, exc: Exception) -> Response:
        """Answer an exception no other handler took: a bug, 500 unless classified."""
        try:
            return self._answer(exc)
        except Exception:  # outside any request context, or Flask itself failing
            return _to_response(fallback("json", "en"))

    def http_error(self, exc: HTTPException) -> Response | HTTPException:
        """Answer a Werkzeug ``HTTPException``: its status, the catalog's message."""
        original = getattr(exc, "original_exception", None)
        if isinstance(exc, InternalServerError) and isinstance(original, Exception):
            # Flask.handle_exception wraps an unhandled error (e.g. from an
            # after_request function) in an InternalServerError: answer the bug itself.
            return self.unexpected(original)
        status = exc.code
        if status is None or status < 400:
            return exc  # a redirect or a ready-made response: not an error
        try:
            extra = [
                (name, value)
                for name, value in exc.get_headers()
                if name.lower() not in ("content-type", "content-length")
            ]
            return self._answer(exc, status=status, extra_headers=extra)
        except Exception:
            return _to_response(fallback("json", "en"))


def install(
    app: Flask,
    *,
    locale: str | None = None,
    debug: bool = False,
    problem_json: bool = False,
    html: bool = True,
    capture_client_errors: bool = True,
    **middleware_options: Any,
) -> None:
    """Give a Flask application faultlens's context and safe error answers.

    Wraps ``app.wsgi_app`` in :class:`~faultlens.integrations.wsgi.FaultlensMiddleware`
    (built with ``middleware_options``: ``trusted_proxies``, ``access_log``…)
    unless it is wrapped already, and registers error handlers for
    ``Exception`` (captured once, answered 500 unless faultlens classifies it
    otherwise) and Werkzeug's ``HTTPException`` (its status kept, the message
    from faultlens's catalog, never its description).  Handlers the application
    registers for more specific exception classes still win.

    ``locale`` fixes the answer's language (default: negotiated from
    ``Accept-Language``); ``debug`` asks :func:`faultlens.handle` for developer
    details; ``problem_json`` answers JSON clients with ``application/problem+json``;
    ``html=False`` answers browsers with JSON too; ``capture_client_errors=False``
    records only errors answered with a 5xx.  Raises
    :class:`~faultlens.errors.ConfigurationError` for bad options, a second
    call, or ``middleware_options`` for a middleware the application already has.
    """
    if _EXTENSION in app.extensions:
        raise ConfigurationError("faultlens is already installed on this application")
    settings = ErrorSettings.create(
        locale=locale,
        debug=debug,
        problem_json=problem_json,
        html=html,
        capture_client_errors=capture_client_errors,
    )
    if not _has_middleware(app.wsgi_app):
        check_middleware_options(middleware_options)
        app.wsgi_app = FaultlensMiddleware(app.wsgi_app, **middleware_options)  # type: ignore[method-assign]
    elif middleware_options:
        raise ConfigurationError(
            "app.wsgi_app already has FaultlensMiddleware: pass "
            f"{', '.join(sorted(middleware_options))} where it is added, not to install()"
        )
    handlers = _ErrorHandlers(settings)
    app.register_error_handler(HTTPException, handlers.http_error)
    app.register_error_handler(Exception, handlers.unexpected)
    app.extensions[_EXTENSION] = settings
