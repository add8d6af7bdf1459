"""The framework-free half of the error-answering integrations (FastAPI, Flask, Django, Streamlit).

Every framework integration answers an exception in the same three steps:

1. **capture** it once (:func:`faultlens.capture`; capturing the same exception
   object again publishes nothing, so a handler and an outer middleware that
   both see it record it once);
2. **handle** it (:func:`faultlens.handle`): status, user-safe localised
   message, correlation id;
3. **render** the answer in the format the client asked for: JSON
   (``application/json``, or ``application/problem+json`` when requested or
   configured) or, for a browser that prefers ``text/html``, a small HTML page
   in which every value is escaped.

Nothing from the exception's own text reaches the response: the message comes
from faultlens's catalog, the details are the ones :func:`faultlens.handle`
declares safe (field errors carry locations, names and reason codes, never the
input).  :func:`answer` never raises: when handling or rendering itself fails
it answers a fixed 500 body and counts ``integrations.answer_failures``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import orjson

from faultlens._metrics import counters
from faultlens.context import correlation_id as current_correlation_id
from faultlens.errors import ConfigurationError

if TYPE_CHECKING:
    from faultlens.errors import ErrorResponse

__all__ = [
    "ErrorSettings",
    "Format",
    "RenderedError",
    "answer",
    "bad_request_error",
    "capture_once",
    "check_middleware_options",
    "choose_format",
    "choose_locale",
    "fallback",
    "fallback_message",
    "page_text",
    "render",
    "safe_response",
]

Format: TypeAlias = Literal["json", "problem", "html"]

JSON_TYPE: Final = "application/json"
PROBLEM_TYPE: Final = "application/problem+json"
HTML_TYPE: Final = "text/html; charset=utf-8"

_MAX_ACCEPT = 1024  # longest Accept value parsed; the rest is ignored
_MAX_RANGES = 32  # most media ranges looked at

# Headers the renderer owns; a copy among ErrorResponse.headers() or a framework
# exception's headers is dropped.
_OWN_HEADERS = frozenset({"content-type", "content-length"})

# Labels of the HTML page (the messages themselves come from faultlens's catalog).
_PAGE_TEXT: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "error": "Error",
        "reference": "Reference",
        "quote": "If you contact support, quote this reference.",
        "retry": "You can try again in a moment.",
        "details": "Details",
        "try_again": "Try again",
    },
    "pt-BR": {
        "error": "Erro",
        "reference": "Referência",
        "quote": "Se entrar em contato com o suporte, informe esta referência.",
        "retry": "Você pode tentar novamente em instantes.",
        "details": "Detalhes",
        "try_again": "Tentar novamente",
    },
}
_DEFAULT_LOCALE = "en"

_FALLBACK_MESSAGES: Final[Mapping[str, str]] = {
    "en": "Something went wrong on our side. Please try again later.",
    "pt-BR": "Algo deu errado do nosso lado. Tente novamente mais tarde.",
}


# --- settings ---------------------------------------------------------------------------


def _check_locale(locale: object) -> str:
    """The catalog locale for a configured ``locale``; ConfigurationError if it has none."""
    from faultlens.errors import locales, negotiate_locale

    if isinstance(locale, str) and locale.strip():
        chosen = negotiate_locale(locale)
        language = locale.strip().replace("_", "-").split("-", 1)[0].lower()
        # negotiate_locale answers "en" for anything it does not have: accept that
        # only when English was asked for.
        if chosen.split("-", 1)[0].lower() == language:
            return chosen
    raise ConfigurationError(
        f"locale must be one of {', '.join(locales())} (or None to negotiate it from "
        f"Accept-Language), not {locale!r}"
    )


@dataclass(frozen=True, slots=True)
class ErrorSettings:
    """How an integration answers errors; checked once, at installation.

    ``locale`` fixes the language (else it is negotiated from ``Accept-Language``);
    ``debug`` asks :func:`faultlens.handle` for developer details (honoured only
    in a development environment); ``problem_json`` answers JSON clients with
    RFC 9457 ``application/problem+json``; ``html=False`` answers browsers with
    JSON too; ``capture_client_errors=False`` records only the errors answered
    with a 5xx status.
    """

    locale: str | None = None
    debug: bool = False
    problem_json: bool = False
    html: bool = True
    capture_client_errors: bool = True

    @classmethod
    def create(
        cls,
        *,
        locale: str | None = None,
        debug: bool = False,
        problem_json: bool = False,
        html: bool = True,
        capture_client_errors: bool = True,
    ) -> ErrorSettings:
        """Check the options and return the settings; raises ConfigurationError."""
        return cls(
            locale=None if locale is None else _check_locale(locale),
            debug=bool(debug),
            problem_json=bool(problem_json),
            html=bool(html),
            capture_client_errors=bool(capture_client_errors),
        )


# --- negotiation --------------------------------------------------------------------------


def _parse_weighted(header: str) -> list[tuple[str, float]]:
    """Split an ``Accept`` header into ``(media range, q)`` pairs; garbage is skipped."""
    out: list[tuple[str, float]] = []
    for part in header[:_MAX_ACCEPT].split(",")[:_MAX_RANGES]:
        value, _, params = part.partition(";")
        value = value.strip().lower()
        if not value:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(raw.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # also rejects nan
                    q = 0.0
        out.append((value, q))
    return out


def _quality(ranges: Sequence[tuple[str, float]], media_type: str) -> float:
    """The q of ``media_type`` under the most specific matching range (0 if none)."""
    main = media_type.split("/", 1)[0]
    best_specificity = -1
    best_q = 0.0
    for value, q in ranges:
        if value == media_type:
            specificity = 2
        elif value == f"{main}/*":
            specificity = 1
        elif value == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, best_q = specificity, q
    return best_q


def choose_format(accept: str | None, settings: ErrorSettings) -> Format:
    """Pick the error body's format from ``Accept``.

    HTML only when the client prefers ``text/html`` (or XHTML) strictly over
    JSON, as browsers do; no header, ``*/*`` or a tie gives JSON.  Problem JSON
    when configured, or when the client lists ``application/problem+json``
    explicitly with at least the weight of ``application/json``.
    """
    if not accept:
        return "problem" if settings.problem_json else "json"
    ranges = _parse_weighted(accept)
    json_q = _quality(ranges, JSON_TYPE)
    problem_explicit = next((q for value, q in ranges if value == PROBLEM_TYPE), 0.0)
    if settings.html:
        html_q = max(_quality(ranges, "text/html"), _quality(ranges, "application/xhtml+xml"))
        if html_q > max(json_q, _quality(ranges, PROBLEM_TYPE)):
            return "html"
    if settings.problem_json or (problem_explicit > 0.0 and problem_explicit >= json_q):
        return "problem"
    return "json"


def choose_locale(accept_language: str | None, settings: ErrorSettings) -> str:
    """The fixed locale, else the best catalog locale for ``Accept-Language``, else ``en``."""
    if settings.locale is not None:
        return settings.locale
    from faultlens.errors import negotiate_locale

    return negotiate_locale(accept_language)


# --- building the safe response -------------------------------------------------------------


def bad_request_error() -> BaseException:
    """A faultlens error standing for a 400 a framework raised without a classification."""
    from faultlens.errors import FaultlensError

    return FaultlensError("bad request", category="validation", code="bad_request", status=400)


def safe_response(
    exc: BaseException,
    *,
    locale: str | None,
    debug: bool,
    status: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> ErrorResponse:
    """:func:`faultlens.handle` of ``exc``, with ``status`` and ``details`` forced if given.

    ``locale`` is a tag or an ``Accept-Language`` value (handle negotiates it).
    """
    from faultlens import errors

    response = errors.handle(exc, locale=locale, debug=debug)
    changes: dict[str, Any] = {}
    if status is not None and response.status != status:
        changes["status"] = status
    if details is not None:
        changes["details"] = details
    if changes:
        response = replace(response, **changes)
    return response


# --- rendering -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderedError:
    """An error answer ready for any framework: status, headers, body bytes."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    correlation_id: str | None = None

    def header_list(self) -> list[tuple[str, str]]:
        """All headers, ``Content-Type`` and ``Content-Length`` first."""
        return [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            *self.headers,
        ]


def _merge_headers(*sources: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Headers from several sources, later ones winning, minus the renderer's own."""
    merged: dict[str, tuple[str, str]] = {}
    for source in sources:
        for name, value in source:
            lowered = name.lower()
            if lowered in _OWN_HEADERS or "\r" in value or "\n" in value:
                continue
            merged[lowered] = (name, value)
    return tuple(merged.values())


def render(
    response: ErrorResponse,
    fmt: Format,
    locale: str,
    *,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> RenderedError:
    """Render ``response`` as JSON, problem JSON or an HTML page."""
    if fmt == "html":
        body = html_page(response, locale).encode()
        content_type = HTML_TYPE
        security: tuple[tuple[str, str], ...] = (
            # The page needs no script, frame or remote resource: forbid them all.
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
            ("X-Content-Type-Options", "nosniff"),
        )
    else:
        data = response.to_problem() if fmt == "problem" else response.to_dict()
        body = orjson.dumps(data, default=str)
        content_type = PROBLEM_TYPE if fmt == "problem" else JSON_TYPE
        security = (("X-Content-Type-Options", "nosniff"),)
    headers = _merge_headers(
        response.headers().items(),
        extra_headers,
        security,
        (("Cache-Control", "no-store"), ("Vary", "Accept, Accept-Language")),
    )
    return RenderedError(
        status=response.status,
        content_type=content_type,
        body=body,
        headers=headers,
        correlation_id=response.correlation_id,
    )


_PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{status} · {error}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1f2328}}
main{{max-width:36rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:8px;
box-shadow:0 1px 3px rgba(0,0,0,.12)}}
h1{{font-size:1.25rem;margin:0 0 1rem}}
.status{{color:#6e7781;font-size:.875rem;margin:0 0 .5rem}}
code{{background:#f0f1f3;padding:.1rem .35rem;border-radius:4px;user-select:all}}
pre{{background:#f0f1f3;padding:.75rem;overflow:auto;font-size:.8rem}}
</style>
</head>
<body>
<main>
<p class="status">{status} · {error}</p>
<h1>{message}</h1>
{retry}{reference}{details}</main>
</body>
</html>
"""


def html_page(response: ErrorResponse, locale: str) -> str:
    """The HTML error page: the safe message and the correlation id, every value escaped."""
    text = _PAGE_TEXT.get(locale) or _PAGE_TEXT[_DEFAULT_LOCALE]
    esc = html.escape
    retry = f"<p>{esc(text['retry'])}</p>\n" if response.retry_possible else ""
    reference = ""
    cid = response.correlation_id
    if cid:
        reference = f"<p>{esc(text['reference'])}: <code>{esc(cid)}</code></p>\n"
        if cid not in response.message:  # the catalog's 5xx messages already ask for it
            reference += f"<p>{esc(text['quote'])}</p>\n"
    details = ""
    for shown in (response.details, response.debug):
        if shown:  # debug is set only in a development environment
            dumped = orjson.dumps(dict(shown), default=str, option=orjson.OPT_INDENT_2)
            details += (
                f"<details><summary>{esc(text['details'])}</summary>"
                f"<pre>{esc(dumped.decode())}</pre></details>\n"
            )
    return _PAGE.format(
        lang=esc(locale),
        status=int(response.status),
        error=esc(text["error"]),
        message=esc(response.message),
        retry=retry,
        reference=reference,
        details=details,
    )


def page_text(locale: str) -> Mapping[str, str]:
    """The labels of error pages and widgets (``reference``, ``try_again``…) in ``locale``."""
    return _PAGE_TEXT.get(locale) or _PAGE_TEXT[_DEFAULT_LOCALE]


def fallback_message(locale: str) -> str:
    """The fixed message used when handling the error itself failed."""
    return _FALLBACK_MESSAGES.get(locale) or _FALLBACK_MESSAGES[_DEFAULT_LOCALE]


def fallback(fmt: Format, locale: str) -> RenderedError:
    """The fixed 500 answer used when handling or rendering the error itself failed."""
    cid = current_correlation_id()
    message = _FALLBACK_MESSAGES.get(locale) or _FALLBACK_MESSAGES[_DEFAULT_LOCALE]
    if fmt == "html":
        text = _PAGE_TEXT.get(locale) or _PAGE_TEXT[_DEFAULT_LOCALE]
        reference = f"<p>{html.escape(text['reference'])}: <code>{cid}</code></p>" if cid else ""
        body = (
            f'<!doctype html><html lang="{html.escape(locale)}"><meta charset="utf-8">'
            f"<title>500</title><h1>{html.escape(message)}</h1>{reference}</html>"
        ).encode()
        return RenderedError(500, HTML_TYPE, body, correlation_id=cid)
    body = orjson.dumps(
        {
            "code": "internal_error",
            "message": message,
            "correlation_id": cid,
            "retry_possible": True,
        }
    )
    return RenderedError(500, JSON_TYPE, body, correlation_id=cid)


# --- the whole answer ----------------------------------------------------------------------


def capture_once(exc: BaseException, fields: Mapping[str, Any]) -> str | None:
    """:func:`faultlens.capture` ``exc`` (once per exception object); never raises."""
    import faultlens

    if not isinstance(exc, Exception):
        return None
    try:
        return faultlens.capture(exc, **fields)
    except Exception:  # capture() is documented never to raise; the boundary makes sure
        counters.incr("integrations.capture_failures")
        return None


def answer(
    exc: BaseException,
    settings: ErrorSettings,
    *,
    accept: str | None,
    accept_language: str | None,
    status: int | None = None,
    details: Mapping[str, Any] | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    capture_fields: Mapping[str, Any] | None = None,
    capture: bool = True,
    answer_as: BaseException | None = None,
) -> RenderedError:
    """Capture ``exc`` once, handle it and render the answer; never raises.

    Call it with the request's context current, so the answer and the error
    event carry its correlation id.  ``status`` and ``details`` override what
    :func:`faultlens.handle` says; ``answer_as`` is handled instead of ``exc``
    (a framework exception faultlens does not classify) while ``exc`` is the
    one captured; ``capture=False`` answers without recording (an answer that
    stands for no real exception).
    """
    fmt: Format = "json"
    response: ErrorResponse | None
    try:
        fmt = choose_format(accept, settings)
        response = safe_response(
            answer_as if answer_as is not None else exc,
            locale=settings.locale or accept_language,
            debug=settings.debug,
            status=status,
            details=details,
        )
    except Exception:
        counters.incr("integrations.answer_failures")
        response = None
    answered = response.status if response is not None else 500
    if capture and (settings.capture_client_errors or answered >= 500):
        capture_once(exc, capture_fields or {})
    if response is None:
        return fallback(fmt, _fallback_locale(settings, accept_language))
    try:
        return render(response, fmt, response.locale, extra_headers=extra_headers)
    except Exception:
        counters.incr("integrations.answer_failures")
        return fallback(fmt, response.locale)


def _fallback_locale(settings: ErrorSettings, accept_language: str | None) -> str:
    try:
        return choose_locale(accept_language, settings)
    except Exception:
        return _DEFAULT_LOCALE


def check_middleware_options(options: Mapping[str, Any]) -> None:
    """Check the HTTP middleware's keyword options now; raises ConfigurationError."""
    from faultlens.integrations._http import BoundarySettings

    try:
        BoundarySettings.create(**options)
    except TypeError as exc:
        raise ConfigurationError(
            f"unknown middleware option(s) {', '.join(sorted(options))}: the options are "
            "correlation_header, request_id_header, trusted_proxies, reject_invalid_ids, "
            "access_log, access_log_level and response_headers"
        ) from exc
