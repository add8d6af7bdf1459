"""Django: correlation per request and safe answers for every error.

    # settings.py
    MIDDLEWARE = [
        "faultlens.integrations.django.FaultlensMiddleware",   # first, or near the top
        ...
    ]
    FAULTLENS_MIDDLEWARE = {"trusted_proxies": ["10.0.0.0/8"], "problem_json": False}

    # urls.py (optional: faultlens answers for Django's own 404/500 too)
    handler404 = "faultlens.integrations.django.page_not_found"
    handler500 = "faultlens.integrations.django.server_error"

:class:`FaultlensMiddleware` opens the request's correlation context from its
headers, adds the correlation / ``traceparent`` / request-id headers to the
response and writes one access-log line, like the WSGI and ASGI middlewares; it
works under WSGI and ASGI (sync and async capable).  Its ``process_exception``
captures a view's exception once and answers with :func:`faultlens.handle`'s
safe response (JSON, problem JSON or an escaped HTML page, chosen by
``Accept``).  See ``docs/integrations.md``.

Importing this module without Django installed raises
:class:`~faultlens.errors.MissingExtraError`.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter_ns
from typing import Any, TypeAlias, cast

from faultlens.errors import ConfigurationError, FaultlensError, MissingExtraError

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings as django_settings
    from django.core.exceptions import BadRequest, PermissionDenied
    from django.core.exceptions import (
        ValidationError as DjangoValidationError,
    )
    from django.core.signals import got_request_exception
    from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
    from django.http.multipartparser import MultiPartParserError
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise MissingExtraError("django", "faultlens.integrations.django") from exc

from faultlens.context import RequestContext, _current, context_from_headers
from faultlens.integrations._errors import (
    ErrorSettings,
    RenderedError,
    answer,
    bad_request_error,
    capture_once,
)
from faultlens.integrations._http import (
    MAX_USER_AGENT,
    BoundarySettings,
    log_access,
    rejection_body,
    resolve_client_ip,
)

__all__ = [
    "FaultlensMiddleware",
    "bad_request",
    "page_not_found",
    "permission_denied",
    "server_error",
]

SETTING = "FAULTLENS_MIDDLEWARE"
"""The Django setting holding the middleware's options (a dict)."""

_BOUNDARY_OPTIONS = frozenset(
    {
        "correlation_header",
        "request_id_header",
        "trusted_proxies",
        "reject_invalid_ids",
        "access_log",
        "access_log_level",
        "response_headers",
    }
)
_ERROR_OPTIONS = frozenset({"locale", "debug", "problem_json", "html", "capture_client_errors"})
_FLAGS = ("00", "01")

GetResponse: TypeAlias = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse: TypeAlias = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


def _meta_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _read_options() -> tuple[BoundarySettings, ErrorSettings]:
    """Parse ``settings.FAULTLENS_MIDDLEWARE``; raises ConfigurationError naming a bad key."""
    raw = getattr(django_settings, SETTING, None) or {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"settings.{SETTING} must be a dict of options, not {raw!r}")
    unknown = set(raw) - _BOUNDARY_OPTIONS - _ERROR_OPTIONS
    if unknown:
        known = ", ".join(sorted(_BOUNDARY_OPTIONS | _ERROR_OPTIONS))
        raise ConfigurationError(
            f"settings.{SETTING} has unknown option(s) {', '.join(sorted(unknown))}; "
            f"known options: {known}"
        )
    boundary = BoundarySettings.create(**{k: v for k, v in raw.items() if k in _BOUNDARY_OPTIONS})
    errors = ErrorSettings.create(**{k: v for k, v in raw.items() if k in _ERROR_OPTIONS})
    return boundary, errors


_REQUEST_ATTRIBUTE = "_faultlens_error_settings"


def _error_settings_for(request: HttpRequest) -> ErrorSettings:
    """The settings of the middleware that saw ``request``, else read from settings now."""
    found = getattr(request, _REQUEST_ATTRIBUTE, None)
    if isinstance(found, ErrorSettings):
        return found
    return _read_options()[1]


def _route(request: HttpRequest) -> str:
    """The URL pattern (``/orders/<int:pk>/``) when resolved, else the raw path."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    if isinstance(route, str) and route:
        return "/" + route.lstrip("^/")
    return str(request.path)


def _to_response(rendered: RenderedError) -> HttpResponse:
    response = HttpResponse(
        rendered.body, status=rendered.status, content_type=rendered.content_type
    )
    for name, value in rendered.headers:
        response[name] = value
    return response


# --- mapping Django's exceptions ------------------------------------------------------------


def _validation_details(exc: DjangoValidationError) -> dict[str, Any]:
    """Field names and error codes of a Django ValidationError, never its messages.

    A message may quote the rejected value (``'%(value)s' is not a valid UUID``),
    so each entry has the shape of :func:`faultlens.handle`'s field errors
    without ``msg``: ``{"loc": ["email"], "field": "email", "type": "invalid"}``.
    """
    errors: list[dict[str, Any]] = []
    if hasattr(exc, "error_dict"):
        for field, field_errors in exc.error_dict.items():
            name = "".join(ch for ch in str(field)[:64] if ch.isprintable())
            for error in field_errors:
                errors.append({"loc": [name], "field": name, "type": _code(error)})
    else:
        for error in exc.error_list:
            errors.append({"loc": [], "field": "", "type": _code(error)})
    return {"errors": errors[:50]}


def _code(error: DjangoValidationError) -> str:
    code = getattr(error, "code", None)
    if isinstance(code, str) and code.isidentifier() and code.isascii() and len(code) <= 64:
        return str(code)
    return "invalid"


def answer_exception(
    request: HttpRequest, exc: BaseException, *, capture: bool = True
) -> HttpResponse:
    """The safe response to ``exc`` for ``request``, capturing it once; never raises.

    :func:`faultlens.handle` classifies Django's exceptions: ``Http404`` and
    ``ObjectDoesNotExist`` answer 404, ``PermissionDenied`` 403,
    ``SuspiciousOperation`` 400 and a ``ValidationError`` 422 (with each
    field's name and error code in ``details.errors``); ``BadRequest`` and
    ``MultiPartParserError`` answer 400 here.  A faultlens error answers by its
    classification, anything else 500.
    """
    options: dict[str, Any] = {}
    if isinstance(exc, BadRequest | MultiPartParserError):
        options["answer_as"] = bad_request_error()
    elif isinstance(exc, DjangoValidationError):
        options["details"] = _validation_details(exc)
    meta = request.META
    rendered = answer(
        exc,
        _error_settings_for(request),
        accept=meta.get("HTTP_ACCEPT"),
        accept_language=meta.get("HTTP_ACCEPT_LANGUAGE"),
        capture_fields={
            "integration": "django",
            "method": request.method,
            "route": _route(request),
        },
        capture=capture,
        **options,
    )
    return _to_response(rendered)


def _capture_uncaught(sender: object, request: HttpRequest | None = None, **_: Any) -> None:
    """``got_request_exception`` receiver: capture what Django answers itself (once).

    Django sends the signal while it handles the exception, so ``sys.exc_info()``
    holds it, under WSGI and under ASGI alike: there Django converts the
    exception in a worker thread (``sync_to_async``), which re-raises it and
    runs with a copy of the request's contextvars, so the event carries the
    request's correlation.  An exception the middleware's ``process_exception``
    or a faultlens error view captured already is not recorded again.
    """
    exc = sys.exc_info()[1]
    if isinstance(exc, Exception):
        fields: dict[str, Any] = {"integration": "django"}
        if request is not None:
            fields["method"] = request.method
            fields["route"] = _route(request)
        capture_once(exc, fields)


# --- the middleware ------------------------------------------------------------------------


class FaultlensMiddleware:
    """Open a faultlens context per Django request; answer a view's exception safely.

    Sync and async capable: Django calls it in the mode of the stack around it.
    Options come from ``settings.FAULTLENS_MIDDLEWARE`` (a dict): the HTTP
    middleware options (``correlation_header``, ``request_id_header``,
    ``trusted_proxies``, ``reject_invalid_ids``, ``access_log``,
    ``access_log_level``, ``response_headers``) and the error options
    (``locale``, ``debug``, ``problem_json``, ``html``,
    ``capture_client_errors``); an unknown key raises
    :class:`~faultlens.errors.ConfigurationError` when Django loads it.

    The context is current while the rest of the stack and the view run
    (a streamed body is sent after it ends).  Exceptions Django turns into
    responses itself (an inner middleware's, a URL that matches nothing) keep
    Django's answer, get the headers, and are captured once through Django's
    ``got_request_exception`` signal, under WSGI and ASGI.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse | AsyncGetResponse) -> None:
        self.get_response = get_response
        self.settings, self.errors = _read_options()
        settings = self.settings
        self._correlation_key = _meta_key(settings.correlation_header)
        self._request_key = _meta_key(settings.request_id_header)
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)
        got_request_exception.connect(
            _capture_uncaught, weak=False, dispatch_uid="faultlens.integrations.django"
        )

    def _context_for(self, request: HttpRequest) -> tuple[RequestContext, bool]:
        # Django's error views (handler404...) answer with this middleware's options.
        setattr(request, _REQUEST_ATTRIBUTE, self.errors)
        meta = request.META
        ip: str | None = meta.get("REMOTE_ADDR") or None
        trusted = self.settings.trusted_proxies
        if trusted:
            ip = resolve_client_ip(
                ip, trusted, meta.get("HTTP_FORWARDED"), meta.get("HTTP_X_FORWARDED_FOR")
            )
        user_agent = meta.get("HTTP_USER_AGENT")
        if isinstance(user_agent, str) and len(user_agent) > MAX_USER_AGENT:
            user_agent = user_agent[:MAX_USER_AGENT]
        return context_from_headers(
            correlation_id=meta.get(self._correlation_key),
            request_id=meta.get(self._request_key),
            traceparent=meta.get("HTTP_TRACEPARENT"),
            tracestate=meta.get("HTTP_TRACESTATE"),
            ip_address=ip,
            user_agent=user_agent,
        )

    def __call__(self, request: HttpRequest) -> Any:
        """Run one request inside its own context (a coroutine in async mode)."""
        if self._is_async:
            return self.__acall__(request)
        started_ns = perf_counter_ns()
        ctx, rejected = self._context_for(request)
        if rejected and self.settings.reject_invalid_ids:
            return self._rejected(request, ctx, started_ns)
        token = _current.set(ctx)
        try:
            response = cast("GetResponse", self.get_response)(request)
            self._finish(request, response, ctx, started_ns)
        finally:
            _current.reset(token)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        """The async twin of :meth:`__call__`."""
        started_ns = perf_counter_ns()
        ctx, rejected = self._context_for(request)
        if rejected and self.settings.reject_invalid_ids:
            return self._rejected(request, ctx, started_ns)
        token = _current.set(ctx)
        try:
            response = await cast("AsyncGetResponse", self.get_response)(request)
            self._finish(request, response, ctx, started_ns)
        finally:
            _current.reset(token)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        """Capture a view's exception once and answer it safely (JSON or HTML)."""
        return answer_exception(request, exception)

    def _add_headers(self, response: HttpResponseBase, ctx: RequestContext) -> None:
        if not self.settings.response_headers:
            return
        settings = self.settings
        # The middleware owns these headers: it replaces an application's copy.
        response[settings.correlation_header] = ctx.correlation_id
        response["traceparent"] = f"00-{ctx.trace_id}-{ctx.span_id}-{_FLAGS[ctx.trace_flags & 1]}"
        response[settings.request_id_header] = ctx.request_id or ctx.span_id

    def _finish(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        ctx: RequestContext,
        started_ns: int,
    ) -> None:
        self._add_headers(response, ctx)
        settings = self.settings
        if not settings.access_log or not settings.logger.is_enabled_for(settings.access_log_level):
            return
        if getattr(response, "streaming", False):
            length = response.get("Content-Length")
            nbytes = int(length) if length and length.isdigit() else 0
        else:
            nbytes = len(cast("HttpResponse", response).content)
        log_access(
            settings.logger,
            settings.access_log_level,
            method=request.method or "",
            path=_route(request),
            status=response.status_code,
            duration_ns=perf_counter_ns() - started_ns,
            nbytes=nbytes,
            client_ip=ctx.ip_address,
        )

    def _rejected(self, request: HttpRequest, ctx: RequestContext, started_ns: int) -> HttpResponse:
        settings = self.settings
        body = rejection_body(
            ctx.correlation_id, settings.correlation_header, settings.request_id_header
        )
        response = HttpResponse(body, status=400, content_type="application/json")
        token = _current.set(ctx)
        try:
            self._finish(request, response, ctx, started_ns)
        finally:
            _current.reset(token)
        return response


# --- Django's error views ------------------------------------------------------------------
# For urls.py (handler400 = "faultlens.integrations.django.bad_request", ...): Django calls
# them for errors it answers itself, e.g. a URL that matches no pattern.


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400``: faultlens's safe 400 answer."""
    if exception is None:
        return answer_exception(request, BadRequest(), capture=False)
    return answer_exception(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler403``: faultlens's safe 403 answer."""
    if exception is None:
        return answer_exception(request, PermissionDenied(), capture=False)
    return answer_exception(request, exception)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: faultlens's safe 404 answer (the exception's text is never shown)."""
    if exception is None:
        return answer_exception(request, Http404(), capture=False)
    return answer_exception(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: faultlens's safe 500 answer for the exception being handled."""
    exc = sys.exc_info()[1]
    if exc is None:
        return answer_exception(request, FaultlensError("server error"), capture=False)
    return answer_exception(request, exc)
