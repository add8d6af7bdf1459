"""Structured logging: JSON lines carrying the correlation context, secrets redacted.

Two ways in, one schema out:

* the standard :mod:`logging` module — :class:`JSONFormatter` (or the readable
  :class:`ConsoleFormatter`) on a handler that :func:`configure_logging` adds to
  the root logger, so third-party loggers flow through it too;
* :func:`get_logger` — a native structured logger (``log.info("saved", id=3)``)
  that writes the same JSON to the same stream without building a
  :class:`logging.LogRecord`: the fast path.

Each line has ``timestamp`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``,
``message``, ``module``, ``function``, ``line``, the context's ``correlation_id``,
``request_id``, ``trace_id``, ``span_id``, ``session_id``, ``user_id``,
``tenant_id`` (when set), ``operation`` (the innermost running one),
``duration_ms`` (when given), ``error`` ``{type, message, stack}`` and the
``extra=`` / keyword fields.  Every field name can be renamed.

Logging never breaks the application: unserializable, recursive or huge values,
a bad format string, a failing stream or a bug in the formatter produce a
degraded line or a counted failure (``faultlens.stats()``), never an exception.

Every line costs microseconds (``benchmarks/bench_logging.py``): the handler takes
its lock once, :func:`configure_logging` installs :func:`fast_log_record` in place
of the stdlib's LogRecord constructor, and what repeats from line to line (the
timestamp's millisecond, the context's fields, clean message templates, a call
site's line number) is computed once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import IO, Any, Literal, TypeAlias

import orjson

from faultlens._metrics import counters, report_once
from faultlens.context import RequestContext, _current, current_operation
from faultlens.redaction import Redactor, get_redactor, neutralize_newlines

__all__ = [
    "ConsoleFormatter",
    "ContextFilter",
    "JSONFormatter",
    "LogSettings",
    "StructuredLogger",
    "configure_logging",
    "fast_log_record",
    "get_logger",
    "reset_logging",
]

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
_OptExcInfo: TypeAlias = ExcInfo | tuple[None, None, None]

FIELDS = (
    "timestamp",
    "level",
    "logger",
    "message",
    "module",
    "function",
    "line",
    "service",
    "correlation_id",
    "request_id",
    "trace_id",
    "span_id",
    "session_id",
    "user_id",
    "tenant_id",
    "operation",
    "duration_ms",
    "error",
)
"""The canonical field names of a log line, in output order."""

_CONTEXT_FIELDS = (
    "correlation_id",
    "request_id",
    "trace_id",
    "span_id",
    "session_id",
    "user_id",
    "tenant_id",
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName", "faultlens_context", "faultlens_operation"}
)
_PLAIN_RECORD_KEYS = list(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_PLAIN_RECORD_SIZE = len(_PLAIN_RECORD_KEYS)
_LAST_RECORD_ATTR = _PLAIN_RECORD_KEYS[-1]
_TRUNCATED = "…[truncated {} chars]"


@dataclass(frozen=True, slots=True)
class LogSettings:
    """How log lines are rendered.

    ``rename`` maps canonical field names (see :data:`FIELDS`) to output names,
    e.g. ``{"timestamp": "@timestamp", "message": "msg"}``.  ``static`` fields
    (service, environment, version) are added to every line.  ``redactor=None``
    uses the process-wide one from :mod:`faultlens.redaction`.  Strings longer
    than ``max_value_chars`` are cut with a marker; a line still over
    ``max_line_bytes`` has its largest extra fields cut until it fits.
    """

    rename: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    static: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    redactor: Redactor | None = None
    max_value_chars: int = 8192
    max_line_bytes: int = 65536

    def key(self, name: str) -> str:
        """Return the output name of canonical field ``name``."""
        return self.rename.get(name, name)


# --- timestamps -----------------------------------------------------------------------
# Formatting a timestamp is the single most expensive part of a naive formatter; the
# part up to the second changes once a second, so it is cached.

_ts_cache: tuple[int, str] = (-1, "")
# Lines come many per millisecond under load, so the string of the last millisecond
# is kept with its bounds: the common case is two float comparisons.
_ms_cache: tuple[float, float, str] = (0.0, 0.0, "")
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def rfc3339(created: float) -> str:
    """Return ``created`` (epoch seconds) as RFC 3339 UTC with milliseconds."""
    cached = _ms_cache
    return cached[2] if cached[0] <= created < cached[1] else _format_ms(created)


def _format_ms(created: float) -> str:
    global _ts_cache, _ms_cache
    ms = int(created * 1000)
    sec, millis = divmod(ms, 1000)
    cached_sec, prefix = _ts_cache
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _ts_cache = (sec, prefix)
    text = prefix + _MILLIS[millis]
    _ms_cache = (ms / 1000, (ms + 1) / 1000, text)
    return text


# --- rendering --------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    counters.incr("logs.truncated_values")
    return text[:limit] + _TRUNCATED.format(len(text) - limit)


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    try:
        text = repr(value)
    except Exception:  # a __repr__ that raises must not lose the line
        return f"<unrepresentable {type(value).__name__}>"
    # The redactor passes unknown objects through, so their repr is the first place
    # their contents become text: a secret inside it is redacted here.  Cut before
    # (bounded cost) and after (bounded output).
    return get_redactor().redact_text(text[:8192])[:2048]


# orjson's mode for non-str keys costs about a third of a serialisation; lines almost
# never need it, so it is the retry after a TypeError rather than the default.
_FAST_OPTIONS = orjson.OPT_APPEND_NEWLINE
_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
_dumps = orjson.dumps
_time = time.time
_current_get = _current.get
_operation_get = current_operation.get


def _error_dict(exc_info: ExcInfo, redactor: Redactor, limit: int) -> dict[str, str]:
    etype, exc, tb = exc_info
    try:
        message = str(exc)
    except Exception:
        message = "<str() of the exception failed>"
    try:
        stack = "".join(traceback.format_exception(etype, exc, tb))
    except Exception:
        stack = "<traceback could not be formatted>"
    return {
        "type": etype.__qualname__
        if etype.__module__ == "builtins"
        else f"{etype.__module__}.{etype.__qualname__}",
        "message": _clip(redactor.redact_text(message), limit),
        "stack": _clip(redactor.redact_text(stack), limit * 4),
    }


# Messages are mostly constant templates, so the strings the redactor left unchanged
# are remembered: the common case becomes one set lookup.  Only clean strings are kept
# (the memo holds no secret), it belongs to one redactor (redactors are immutable) and
# it is bounded.
_CLEAN_TEXT_MAX_CHARS = 512
_CLEAN_TEXTS_MAX = 4096
_clean_texts: tuple[Redactor | None, set[str]] = (None, set())


def _redact_message(redactor: Redactor, text: str) -> str:
    global _clean_texts
    owner, clean = _clean_texts
    if owner is not redactor:
        clean = set()
        _clean_texts = (redactor, clean)
    elif text in clean:
        return text
    redacted = redactor.redact_text(text)
    if redacted is text and type(text) is str and len(text) <= _CLEAN_TEXT_MAX_CHARS:
        if len(clean) >= _CLEAN_TEXTS_MAX:
            clean.clear()
        clean.add(text)
    return redacted


# A context is an immutable tuple shared by every line of its request, so its fields
# are gathered once per context object (the last one seen).
_context_memo: tuple[Any, dict[str, Any]] = (None, {})
_NO_FIELDS: dict[str, Any] = {}  # never modified


def _static_fields(static: Mapping[str, Any]) -> Mapping[str, Any]:
    # LogSettings.static is usually a read-only mappingproxy, which unpacks slowly
    # into a dict display; its copy() is the underlying dict's, fast and current.
    if type(static) is dict:
        return static
    if type(static) is MappingProxyType:
        return static.copy()
    return dict(static)


def _context_fields(ctx: Any) -> dict[str, Any]:
    global _context_memo
    fields: dict[str, Any] = {"correlation_id": ctx.correlation_id}
    if ctx.request_id is not None:
        fields["request_id"] = ctx.request_id
    fields["trace_id"] = ctx.trace_id
    fields["span_id"] = ctx.span_id
    if ctx.session_id is not None:
        fields["session_id"] = ctx.session_id
    if ctx.user_id is not None:
        fields["user_id"] = ctx.user_id
    if ctx.tenant_id is not None:
        fields["tenant_id"] = ctx.tenant_id
    if type(ctx) is RequestContext:  # immutable: safe to reuse for the next line
        _context_memo = (ctx, fields)
    return fields


# The rendering functions take positional arguments: keywords cost on every line.
def render(  # noqa: PLR0917
    settings: LogSettings,
    created: float,
    level: str,
    logger: str,
    message: str,
    module: str | None,
    function: str | None,
    line: int | None,
    fields: Mapping[str, Any] | None,
    exc_info: ExcInfo | None = None,
    stack_info: str | None = None,
    context: Any = None,
    operation: Any = None,
) -> bytes:
    """Render one log line as JSON bytes ending with a newline; never raises.

    ``context``/``operation`` default to the current ones; pass them when the
    line is rendered away from the thread that logged (queue handlers).
    """
    try:
        return _render(
            settings,
            created,
            level,
            logger,
            message,
            module,
            function,
            line,
            fields,
            exc_info,
            stack_info,
            context,
            operation,
        )
    except Exception as exc:  # a formatter bug must not lose the line
        return _degraded_line(exc, created, level, logger, message)


def _degraded_line(exc: Exception, created: Any, level: Any, logger: Any, message: Any) -> bytes:
    counters.incr("logs.degraded_lines")
    report_once("logs.render", f"a log line could not be rendered ({type(exc).__name__})")
    try:
        fallback = {
            "timestamp": rfc3339(created),
            "level": level,
            "logger": logger,
            "message": _clip(get_redactor().redact_text(str(message)), 2048),
            "faultlens_error": f"line degraded: {type(exc).__name__}",
        }
        return _escape_line_separators(orjson.dumps(fallback, option=orjson.OPT_APPEND_NEWLINE))
    except Exception:
        return b'{"level":"ERROR","message":"faultlens: unrenderable log line"}\n'


def _render(  # noqa: PLR0917
    settings: LogSettings,
    created: float,
    level: str,
    logger: str,
    message: str,
    module: str | None,
    function: str | None,
    line: int | None,
    fields: Mapping[str, Any] | None,
    exc_info: ExcInfo | None,
    stack_info: str | None,
    context: Any,
    operation: Any,
) -> bytes:
    # The hot path of every line: a few microseconds in all, so locals, memos and
    # no pass over the fields beyond the redactor's own.
    redactor = settings.redactor or get_redactor()
    limit = settings.max_value_chars
    owner, clean = _clean_texts
    if len(message) > limit or owner is not redactor or message not in clean:
        message = _redact_message(redactor, _clip(message, limit))
    stamp = _ms_cache
    timestamp = stamp[2] if stamp[0] <= created < stamp[1] else _format_ms(created)
    extras = redactor.redact_mapping(fields) if fields else None
    error = _error_dict(exc_info, redactor, limit) if exc_info is not None else None
    stack = _clip(redactor.redact_text(stack_info), limit * 4) if stack_info else None
    ctx = context if context is not None else _current_get()
    if ctx is None:
        ctx_fields = _NO_FIELDS
    else:
        memo = _context_memo
        ctx_fields = memo[1] if memo[0] is ctx else _context_fields(ctx)
    static = _static_fields(settings.static) if settings.static else _NO_FIELDS
    op = operation if operation is not None else _operation_get()
    clipped = False
    while True:  # a second round only when an extra value has to be cut (see below)
        # One dict display: unpacking plain dicts into it is the cheapest way to
        # build the line (a mappingproxy or update() calls cost more).
        out: dict[str, Any] = {
            "timestamp": timestamp,
            "level": level,
            "logger": logger,
            "message": message,
            "module": module,
            "function": function,
            "line": line,
            **static,
            **ctx_fields,
        }
        if op is not None:
            out["operation"] = op.name
        if extras:
            out |= extras
        if error is not None:
            out["error"] = error
        if stack is not None:
            out["stack_info"] = stack
        rename = settings.rename
        if rename:
            out = {rename.get(k, k): v for k, v in out.items()}
        try:
            data = _dumps(out, _json_default, _FAST_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            data = _dumps_fallback(out)
        # A string of n characters takes at least n bytes of JSON: only a line longer
        # than the limit can hold an extra value that must be cut.
        if len(data) <= limit or not extras or clipped:
            break
        clipped = True
        extras = _clip_values(extras, limit)
        if extras is None:
            break
    if len(data) > settings.max_line_bytes:
        data = _shrink(out, settings.max_line_bytes)
    if not data.isascii():
        data = _escape_line_separators(data)
    return data


# JSON allows U+0085, U+2028 and U+2029 raw inside strings, but str.splitlines() and
# many log readers end a line there: a value holding one must not split (or forge)
# a line.  In UTF-8 these byte sequences cannot occur inside another character.
_LINE_SEPARATORS = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def _escape_line_separators(data: bytes) -> bytes:
    for raw, escaped in _LINE_SEPARATORS:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def _clip_values(extras: dict[str, Any], limit: int) -> dict[str, Any] | None:
    """Return ``extras`` with over-long strings cut, or None when none is too long."""
    if not any(type(v) is str and len(v) > limit for v in extras.values()):
        return None
    return {
        k: _clip(v, limit) if type(v) is str and len(v) > limit else v for k, v in extras.items()
    }


def _dumps_fallback(out: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(out, default=_json_default, option=_DUMPS_OPTIONS)
    except TypeError:
        # Integers beyond 64 bits, recursion orjson refuses, keys it cannot encode:
        # keep the line, with the offending values as text.
        counters.incr("logs.degraded_lines")
        return orjson.dumps(
            {
                k: v
                if isinstance(v, str | int | float | bool | None) and _small_int(v)
                else get_redactor().redact_text(_stringify(v))
                for k, v in out.items()
            },
            option=_DUMPS_OPTIONS,
        )


def _small_int(value: Any) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**64


def _stringify(value: Any) -> str:
    try:
        return str(value)[:2048]
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _value_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return orjson.dumps(get_redactor().redact_text(_stringify(value)))


def _shrink(out: dict[str, Any], max_bytes: int) -> bytes:
    counters.incr("logs.truncated_lines")
    sized = sorted(((len(_value_json(v)), k) for k, v in out.items()), reverse=True)
    budget = max(256, max_bytes // 8)
    for _size, key in sized:
        text = _value_json(out[key]).decode()
        out[key] = text[:budget] + _TRUNCATED.format(len(text) - budget)
        data = _dumps_fallback(out)
        if len(data) <= max_bytes:
            return data
    # Last resort: cut, but keep the bytes decodable and the line a line.
    cut = _dumps_fallback(out)[: max_bytes - 1]
    return cut.decode("utf-8", "ignore").encode() + b"\n"


# --- stdlib formatters -------------------------------------------------------------------


def _record_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as exc:  # bad %-format arguments: keep the template and say so
        counters.incr("logs.bad_format_args")
        return f"{record.msg!s} [faultlens: format arguments failed: {type(exc).__name__}]"


def _record_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    attrs = record.__dict__
    # LogRecord.__init__ sets the standard attributes first; `extra=` keys are added
    # after them, so only the tail of the (insertion-ordered) dict matters.  A
    # subclass may set attributes of its own first, and a filter may have deleted
    # one: then all keys are looked at.
    size = len(attrs)
    if size == _PLAIN_RECORD_SIZE and next(reversed(attrs)) == _LAST_RECORD_ATTR:
        return None
    keys = list(attrs)
    if (
        size > _PLAIN_RECORD_SIZE
        and type(record) is logging.LogRecord
        and keys[_PLAIN_RECORD_SIZE - 1] == _LAST_RECORD_ATTR
    ):
        keys = keys[_PLAIN_RECORD_SIZE:]
    extras = None
    for key in keys:
        if key not in _RECORD_ATTRS:
            if extras is None:
                extras = {}
            extras[key] = attrs[key]
    return extras


class JSONFormatter(logging.Formatter):
    """A :class:`logging.Formatter` that renders records as faultlens JSON lines.

    Use it on any handler.  The context is read from the thread that formats,
    which for ordinary handlers is the thread that logged; with a
    :class:`logging.handlers.QueueHandler` add :class:`ContextFilter` to the
    queue handler so records carry their context across.
    """

    def __init__(self, settings: LogSettings | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.settings = settings or LogSettings(**kwargs)

    def format_bytes(self, record: logging.LogRecord) -> bytes:
        """Render ``record`` as one JSON line (bytes, newline-terminated); never raises."""
        attrs = record.__dict__
        msg = record.msg
        if type(msg) is str and not record.args and type(record) is logging.LogRecord:
            message = msg  # what getMessage() would return, without the call
        else:
            message = _record_message(record)
        exc_info = record.exc_info
        if exc_info is not None and not (exc_info and exc_info[0]):
            exc_info = None
        try:
            return _render(
                self.settings,
                record.created,
                record.levelname,
                record.name,
                message,
                record.module,
                record.funcName,
                record.lineno,
                _record_fields(record),
                exc_info,
                record.stack_info,
                attrs.get("faultlens_context"),
                attrs.get("faultlens_operation"),
            )
        except Exception as exc:  # a formatter bug (or a record missing attributes)
            return _degraded_line(
                exc,
                attrs.get("created", 0.0),
                attrs.get("levelname", ""),
                attrs.get("name", ""),
                message,
            )

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one JSON line without the trailing newline."""
        return self.format_bytes(record)[:-1].decode()


class ContextFilter(logging.Filter):
    """Stamp records with the current context, for handlers that format elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.faultlens_context = _current.get()
        record.faultlens_operation = current_operation.get()
        return True


_COLORS = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}


class ConsoleFormatter(logging.Formatter):
    """A readable one-line format for development, with the same context and redaction.

    ``12:30:01.123 INFO  app.orders [4bf92f35] order saved  order_id=7 operation=checkout``.
    CR, LF and other control characters in messages and values are shown escaped,
    so a hostile value cannot forge a second log line.
    """

    def __init__(self, settings: LogSettings | None = None, *, colors: bool | None = None) -> None:
        super().__init__()
        self.settings = settings or LogSettings()
        self.colors = colors

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one readable line (plus an indented traceback)."""
        try:
            exc_info = record.exc_info if record.exc_info and record.exc_info[0] else None
            data = orjson.loads(
                render(
                    self.settings,
                    record.created,
                    record.levelname,
                    record.name,
                    _record_message(record),
                    record.module,
                    record.funcName,
                    record.lineno,
                    _record_fields(record),
                    exc_info,
                    record.stack_info,
                    getattr(record, "faultlens_context", None),
                    getattr(record, "faultlens_operation", None),
                )
            )
            return self.format_data(data)
        except Exception:
            counters.incr("logs.degraded_lines")
            return neutralize_newlines(f"{record.levelname} {record.name} {record.msg!s}")

    def format_data(self, data: dict[str, Any]) -> str:
        """Render an already-built (and redacted) line dict readably."""
        k = self.settings.key
        ts = str(data.pop(k("timestamp"), ""))[11:23]
        level = str(data.pop(k("level"), ""))
        logger_name = str(data.pop(k("logger"), ""))
        message = neutralize_newlines(str(data.pop(k("message"), "")))
        cid = data.pop(k("correlation_id"), None)
        error = data.pop(k("error"), None)
        for noise in ("module", "function", "line", "trace_id", "span_id"):
            data.pop(k(noise), None)
        parts = [ts, f"{level:<8}"[:8], logger_name]
        if cid:
            parts.append(f"[{str(cid)[:8]}]")
        parts.append(message)
        if data:
            parts.append(
                " ".join(
                    f"{neutralize_newlines(str(key))}={neutralize_newlines(_console_value(v))}"
                    for key, v in data.items()
                )
            )
        text = " ".join(parts)
        use_colors = self.colors
        if use_colors:
            color = _COLORS.get(level, "")
            text = f"{color}{text}\x1b[0m"
        if isinstance(error, dict):
            stack = str(error.get("stack") or f"{error.get('type')}: {error.get('message')}")
            # The stack keeps its line breaks; only the first line can carry the
            # exception's (attacker-influenced) message, so each line is escaped.
            text += "\n" + "\n".join(
                "    " + neutralize_newlines(line) for line in stack.rstrip("\n").split("\n")
            )
        return text


def _console_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=_json_default).decode()


# --- handler and configuration ------------------------------------------------------------

_RECORD_FILTER_RETURNS_RECORD = sys.version_info >= (3, 12)


class FaultlensHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stream handler :func:`configure_logging` installs.

    Writes each line and flushes it (a log shipper reading a pipe sees it at
    once); a failing stream is counted (``logs.write_errors``) and reported once
    on stderr, never raised.  With :class:`JSONFormatter` the line is rendered
    before the handler's lock is taken, and the lock is held once, for the write
    and the flush.
    """

    faultlens_installed = True

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter ``record`` and emit it; the stdlib contract, with less overhead."""
        if self.filters:
            rv: Any = self.filter(record)
            if not rv:
                return rv
            if isinstance(rv, logging.LogRecord):  # 3.12+: a filter may replace it
                record = rv
        else:
            rv = record if _RECORD_FILTER_RETURNS_RECORD else True
        self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` as one line and flush; failures go to :meth:`handleError`."""
        try:
            formatter = self.formatter
            ctx = record.__dict__.get("faultlens_context") or _current_get()
            lines = _line_counts
            if type(formatter) is JSONFormatter:
                text = formatter.format_bytes(record).decode()
                with self.lock:  # type: ignore[union-attr]
                    stream = self.stream
                    stream.write(text)
                    stream.flush()
                    lines[0] += 1
                    if ctx is None:
                        lines[1] += 1
            else:  # another formatter: format under the lock, as the stdlib does
                with self.lock:  # type: ignore[union-attr]
                    text = self.format(record)
                    stream = self.stream
                    stream.write(text + self.terminator)
                    stream.flush()
                    lines[0] += 1
                    if ctx is None:
                        lines[1] += 1
            crumbs = _breadcrumbs
            if crumbs is not None:
                crumbs.add(ctx, text)
        except RecursionError:  # the stdlib's rule: never swallow a recursion error
            raise
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        counters.incr("logs.write_errors")
        exc = sys.exc_info()[1]
        report_once(
            "logs.write",
            f"writing a log line failed ({type(exc).__name__}); further failures are "
            "counted in faultlens.stats()['logs.write_errors']",
        )

    def write_line(self, data: bytes) -> None:
        """Write an already-rendered line (the native logger's path); never raises."""
        try:
            text = data.decode()
            with self.lock:  # type: ignore[union-attr]
                stream = self.stream
                stream.write(text)
                stream.flush()
        except Exception:
            self.handleError(None)  # type: ignore[arg-type]


# --- a faster LogRecord factory ------------------------------------------------------------
# logging.LogRecord.__init__ costs ~2.3 µs, a quarter of it in os.path.basename and
# splitext, then os.getpid() (a system call), getLevelName() and attribute stores.
# The factory below builds the same record (same class, same attributes in the same
# order, same values) in ~40% of the time: file name and module are cached per path,
# the pid per process (dropped after a fork), level names are read from logging's own
# table.  Thread and process names are read on every record, as the stdlib does,
# since they can be renamed while the process runs.

_LogRecord = logging.LogRecord
_new_record = object.__new__
_get_level_name = logging.getLevelName
_level_name = getattr(logging, "_levelToName", {}).get  # addLevelName updates it in place
_start_time = getattr(logging, "_startTime", 0)
_get_ident = threading.get_ident
_current_thread = threading.current_thread
_sys_modules = sys.modules
_HAS_GETPID = hasattr(os, "getpid")
_NS_TIMES = sys.version_info >= (3, 13)  # LogRecord's clock is time_ns() from 3.13 on
_TASK_NAMES = sys.version_info >= (3, 12)  # records gained taskName in 3.12
_time_ns = time.time_ns
_PATH_CACHE_MAX = 1024
_path_parts: dict[str, tuple[str, str]] = {}
_pid: int | None = None


def _forget_pid() -> None:
    global _pid
    _pid = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pid)


def _split_path(pathname: Any) -> tuple[Any, str]:
    try:
        filename = os.path.basename(pathname)
        module = os.path.splitext(filename)[0]
    except (TypeError, ValueError, AttributeError):
        return pathname, "Unknown module"
    if type(pathname) is str:
        if len(_path_parts) >= _PATH_CACHE_MAX:
            _path_parts.clear()
        _path_parts[pathname] = (filename, module)
    return filename, module


def _process_id() -> int:
    global _pid
    _pid = os.getpid()
    return _pid


def fast_log_record(  # noqa: PLR0915, PLR0917 (LogRecord's signature and body)
    name: str,
    level: int,
    pathname: str,
    lineno: int,
    msg: Any,
    args: Any,
    exc_info: Any,
    func: str | None = None,
    sinfo: str | None = None,
    **kwargs: Any,
) -> logging.LogRecord:
    """Build a :class:`logging.LogRecord` like its constructor does, in ~40% of the time.

    The result is a plain ``LogRecord`` whose ``__dict__`` has the same keys, in
    the same order, with the same values, so every formatter (``%(threadName)s``,
    ``%(processName)s``, ``%(module)s``...) and pickling work unchanged.
    :func:`configure_logging` installs it with :func:`logging.setLogRecordFactory`
    only when the stdlib's own factory is in place; :func:`reset_logging` puts the
    stdlib's back.
    """
    if _NS_TIMES:
        ns = _time_ns()
        created = ns / 1e9
        msecs = (ns % 1_000_000_000) // 1_000_000 + 0.0
        if msecs == 999.0 and int(created) != ns // 1_000_000_000:
            msecs = 0.0
        relative = (ns - _start_time) / 1e6
    else:
        created = _time()
        msecs = int((created - int(created)) * 1000) + 0.0
        relative = (created - _start_time) * 1000
    rv = _new_record(_LogRecord)
    rv.name = name
    rv.msg = msg
    if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]
    rv.args = args
    rv.levelname = _level_name(level) or _get_level_name(level)
    rv.levelno = level
    rv.pathname = pathname
    try:
        filename, module = _path_parts[pathname]
    except (KeyError, TypeError):
        filename, module = _split_path(pathname)
    rv.filename = filename
    rv.module = module
    rv.exc_info = exc_info
    rv.exc_text = None
    rv.stack_info = sinfo
    rv.lineno = lineno
    rv.funcName = func  # type: ignore[assignment]  # the stdlib stores None too
    rv.created = created
    rv.msecs = msecs
    rv.relativeCreated = relative
    if logging.logThreads:
        rv.thread = _get_ident()
        rv.threadName = _current_thread().name
    else:
        rv.thread = None
        rv.threadName = None
    if not logging.logMultiprocessing:
        rv.processName = None
    else:
        process_name = "MainProcess"
        mp = _sys_modules.get("multiprocessing")
        if mp is not None:
            try:
                process_name = mp.current_process().name
            except Exception:  # multiprocessing still being imported (see the stdlib)
                process_name = "MainProcess"
        rv.processName = process_name
    if logging.logProcesses and _HAS_GETPID:
        pid = _pid
        rv.process = pid if pid is not None else _process_id()
    else:
        rv.process = None
    if _TASK_NAMES:
        task_name = None
        if getattr(logging, "logAsyncioTasks", False):
            asyncio = _sys_modules.get("asyncio")
            if asyncio:
                try:
                    task_name = asyncio.current_task().get_name()
                except Exception:  # no running loop, or not inside a task
                    task_name = None
        rv.taskName = task_name
    return rv


_TIME_ATTRS = ("created", "msecs", "relativeCreated")
_factory_checked: bool | None = None


def _factory_matches_stdlib() -> bool:
    """Return True when :func:`fast_log_record` builds what this Python's LogRecord builds."""
    global _factory_checked
    if _factory_checked is None:
        try:
            args = ("faultlens.check", logging.INFO, __file__, 1, "m %s", ("x",), None, "f", None)
            ours = fast_log_record(*args).__dict__
            theirs = logging.LogRecord(*args).__dict__
            _factory_checked = list(ours) == list(theirs) and all(
                ours[key] == value for key, value in theirs.items() if key not in _TIME_ATTRS
            )
        except Exception:
            _factory_checked = False
    return _factory_checked


_sink: FaultlensHandler | None = None
_sink_settings = LogSettings()
# faultlens.errors keeps each correlation's last lines as breadcrumbs for its error
# events: it installs its buffer here (None: off).  Written lines are handed over with
# one call, after the write.
_breadcrumbs: Any = None
# Correlation coverage (read by faultlens.analysis): [lines written, lines written
# without a correlation context], since the process started.  Incremented under the
# handler's lock, which every writer to the stream takes anyway: no lock of their own.
_line_counts: list[int] = [0, 0]


def configure_logging(
    level: int | str = "INFO",
    *,
    fmt: Literal["json", "console"] = "json",
    stream: IO[str] | None = None,
    settings: LogSettings | None = None,
    logger: logging.Logger | None = None,
    capture_warnings: bool = True,
) -> logging.Handler:
    """Send logging (stdlib and native) through faultlens's formatter and return the handler.

    Adds one handler to ``logger`` (the root logger by default) and sets its
    level; the handler faultlens installed before is replaced, every other
    handler is left alone.  ``stream`` defaults to ``sys.stdout`` (the stream a
    log shipper reads).  Native loggers from :func:`get_logger` then write to
    the same stream directly.  Call again to change settings; :func:`reset_logging`
    undoes it.

    When the LogRecord factory is still the stdlib's, it is replaced by
    :func:`fast_log_record`, which builds identical records in ~40% of the time;
    a factory someone else installed is left alone.
    """
    global _sink, _sink_settings
    target = logger or logging.getLogger()
    settings = settings or LogSettings()
    handler = FaultlensHandler(stream if stream is not None else sys.stdout)
    if fmt == "json":
        handler.setFormatter(JSONFormatter(settings))
    elif fmt == "console":
        handler.setFormatter(ConsoleFormatter(settings, colors=_isatty(handler.stream)))
    else:
        raise ValueError(f"fmt must be 'json' or 'console', not {fmt!r}")
    for old in list(target.handlers):
        if getattr(old, "faultlens_installed", False):
            target.removeHandler(old)
    target.addHandler(handler)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    if capture_warnings:
        logging.captureWarnings(True)
    if logging.getLogRecordFactory() is logging.LogRecord and _factory_matches_stdlib():
        logging.setLogRecordFactory(fast_log_record)
    _sink = handler if fmt == "json" else None
    _sink_settings = settings
    return handler


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def reset_logging(logger: logging.Logger | None = None) -> None:
    """Remove the handler :func:`configure_logging` installed (tests use this).

    Also puts the stdlib's LogRecord factory back if faultlens's is installed.
    """
    global _sink
    target = logger or logging.getLogger()
    for old in list(target.handlers):
        if getattr(old, "faultlens_installed", False):
            target.removeHandler(old)
    if logging.getLogRecordFactory() is fast_log_record:
        logging.setLogRecordFactory(logging.LogRecord)
    _sink = None


# --- the native structured logger ---------------------------------------------------------

_LEVEL_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_getframe = sys._getframe
# Finding a frame's line number decodes the code's line table (a few hundred ns for
# a short function, more in a long one); the same call site always has the same
# one, so module, function and line are remembered per (code object, instruction).
_CALL_SITES_MAX = 4096
_call_sites: dict[tuple[int, int], tuple[Any, Any, str, str, int | None]] = {}


def _level_cache(logger: logging.Logger) -> Any:
    # Logger.isEnabledFor caches its answer per level in `_cache`, a dict that
    # setLevel()/disable() clear in place; besides it, isEnabledFor only checks
    # `disabled`.  So a cached False settles a below-level call, and a cached True
    # plus `not disabled` an enabled one, without calling isEnabledFor.
    cache = getattr(logger, "_cache", None)
    return cache.get if type(cache) is dict else {}.get


class StructuredLogger:
    """A logger taking keyword fields: ``log.info("order saved", order_id=7)``.

    Levels follow the stdlib logger of the same name (set them as usual).  After
    :func:`configure_logging` with ``fmt="json"`` lines are rendered and written
    directly to faultlens's stream, skipping the LogRecord machinery; otherwise
    they go through the stdlib logger, so nothing is lost before logging is
    configured and the user's own handlers receive them.  :meth:`bind` returns a
    logger that adds fields to every line.  Never raises.
    """

    __slots__ = ("_bound", "_cached", "_std", "name")

    def __init__(self, name: str, bound: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self._std = logging.getLogger(name)
        self._cached = _level_cache(self._std)
        self._bound: Mapping[str, Any] | None = bound or None

    def bind(self, **fields: Any) -> StructuredLogger:
        """Return a logger that adds ``fields`` to every line it writes."""
        merged = dict(self._bound or {})
        merged.update(fields)
        return StructuredLogger(self.name, merged)

    def is_enabled_for(self, level: int) -> bool:
        """Return True when a line at ``level`` would be written."""
        return self._std.isEnabledFor(level)

    # Each level method checks the level inline (see _level_cache): a call below the
    # level costs a dict lookup, as cheap as the stdlib's own check.

    def debug(self, message: str, /, **fields: Any) -> None:
        """Log ``message`` with ``fields`` at DEBUG."""
        enabled = self._cached(10)
        if enabled is None:
            enabled = self._std.isEnabledFor(10)
        if enabled and not self._std.disabled:
            self._write(10, "DEBUG", message, fields, None)

    def info(self, message: str, /, **fields: Any) -> None:
        """Log ``message`` with ``fields`` at INFO."""
        enabled = self._cached(20)
        if enabled is None:
            enabled = self._std.isEnabledFor(20)
        if enabled and not self._std.disabled:
            self._write(20, "INFO", message, fields, None)

    def warning(self, message: str, /, **fields: Any) -> None:
        """Log ``message`` with ``fields`` at WARNING."""
        enabled = self._cached(30)
        if enabled is None:
            enabled = self._std.isEnabledFor(30)
        if enabled and not self._std.disabled:
            self._write(30, "WARNING", message, fields, None)

    def error(self, message: str, /, *, exc_info: Any = None, **fields: Any) -> None:
        """Log ``message`` at ERROR; ``exc_info=True`` or an exception adds ``error``."""
        if self._std.isEnabledFor(40):
            self._write(40, "ERROR", message, fields, _exc_tuple(exc_info))

    def exception(self, message: str, /, **fields: Any) -> None:
        """Log ``message`` at ERROR with the exception being handled."""
        if self._std.isEnabledFor(40):
            self._write(40, "ERROR", message, fields, _exc_tuple(True))

    def critical(self, message: str, /, *, exc_info: Any = None, **fields: Any) -> None:
        """Log ``message`` with ``fields`` at CRITICAL."""
        if self._std.isEnabledFor(50):
            self._write(50, "CRITICAL", message, fields, _exc_tuple(exc_info))

    def log(self, level: int, message: str, /, *, exc_info: Any = None, **fields: Any) -> None:
        """Log ``message`` with ``fields`` at the numeric ``level``."""
        if self._std.isEnabledFor(level):
            levelname = _LEVEL_NAMES.get(level) or logging.getLevelName(level)
            self._write(level, levelname, message, fields, _exc_tuple(exc_info))

    def _write(
        self,
        level: int,
        levelname: str,
        message: str,
        fields: dict[str, Any],
        exc_info: ExcInfo | None,
        *,
        depth: int = 2,
    ) -> None:
        if self._bound:
            fields = {**self._bound, **fields}
        sink = _sink
        if sink is None:
            self._via_stdlib(level, message, fields, exc_info, depth + 1)
            return
        try:
            frame = _getframe(depth)
            code = frame.f_code
            site = _call_sites.get((id(code), frame.f_lasti))
            if site is None or site[0] is not frame.f_globals:
                site = _call_site(frame, code)
            module: str | None = site[2]
            function: str | None = site[3]
            line: int | None = site[4]
        except Exception:  # no such frame, or globals with an odd __name__
            module, function, line = None, None, None
        if type(message) is not str:
            message = _stringify(message)
        created = _time()
        try:
            data = _render(
                _sink_settings,
                created,
                levelname,
                self.name,
                message,
                module,
                function,
                line,
                fields,
                exc_info,
                None,
                None,
                None,
            )
        except Exception as exc:  # a formatter bug must not lose the line
            data = _degraded_line(exc, created, levelname, self.name, message)
        ctx = _current_get()
        try:
            text = data.decode()
            with sink.lock:  # type: ignore[union-attr]
                stream = sink.stream
                stream.write(text)
                stream.flush()
                lines = _line_counts
                lines[0] += 1
                if ctx is None:
                    lines[1] += 1
        except Exception:
            sink.handleError(None)  # type: ignore[arg-type]
            return
        crumbs = _breadcrumbs
        if crumbs is not None:
            crumbs.add(ctx, text)

    def _via_stdlib(
        self,
        level: int,
        message: str,
        fields: dict[str, Any],
        exc_info: ExcInfo | None,
        depth: int,
    ) -> None:
        extra = {(f"field_{k}" if k in _RECORD_ATTRS else k): v for k, v in fields.items()}
        try:
            self._std.log(level, message, exc_info=exc_info, extra=extra, stacklevel=depth + 1)
        except Exception:
            counters.incr("logs.write_errors")


def _call_site(frame: Any, code: Any) -> tuple[Any, Any, str, str, int | None]:
    """Return ``(globals, code, module, function, line)`` of ``frame``, remembered."""
    module = str(frame.f_globals.get("__name__", "?")).rpartition(".")[2]
    site = (frame.f_globals, code, module, code.co_name, frame.f_lineno)
    if len(_call_sites) >= _CALL_SITES_MAX:
        _call_sites.clear()
    # The entry holds the code object, so its id() cannot be reused while cached.
    _call_sites[id(code), frame.f_lasti] = site
    return site


def _exc_tuple(exc_info: Any) -> ExcInfo | None:
    if not exc_info:
        return None
    if isinstance(exc_info, BaseException):
        return (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple):
        return exc_info if exc_info[0] is not None else None
    current = sys.exc_info()
    return current if current[0] is not None else None


_loggers: dict[str, StructuredLogger] = {}


def get_logger(name: str = "app") -> StructuredLogger:
    """Return the native structured logger called ``name`` (cached)."""
    logger = _loggers.get(name)
    if logger is None:
        logger = _loggers.setdefault(name, StructuredLogger(name))
    return logger
