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
of the stdlib's LogRecord constructor and :class:`FaultlensLogger` as the logger
class (which skips the LogRecord altogether when only faultlens's JSON handlers
would see it), what repeats from line to line (the timestamp's millisecond, the
context's fields, clean message templates, a call site's line number) is encoded
to JSON once and spliced in, and fields that need no redaction are proven so at C
speed (:meth:`Redactor._clean_json`) rather than field by field.
"""

from __future__ import annotations

import io
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

from faultlens import redaction as _redaction
from faultlens._metrics import counters, report_once
from faultlens.context import RequestContext, _current, current_operation
from faultlens.redaction import _NATIVE_ONLY, Redactor, _refuse, get_redactor, neutralize_newlines

__all__ = [
    "ConsoleFormatter",
    "ContextFilter",
    "FaultlensLogger",
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
_ms_cache: tuple[float, float, str, bytes] = (0.0, 0.0, "", b"")
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
    _ms_cache = (ms / 1000, (ms + 1) / 1000, text, text.encode())
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
# Each is kept with its JSON string, which the line renderer splices in.
_clean_texts: tuple[Redactor | None, dict[str, bytes]] = (None, {})


def _redact_message(redactor: Redactor, text: str) -> str:
    global _clean_texts
    owner, clean = _clean_texts
    if owner is not redactor:
        clean = {}
        _clean_texts = (redactor, clean)
    elif text in clean:
        return text
    redacted = redactor.redact_text(text)
    if redacted is text and type(text) is str and len(text) <= _CLEAN_TEXT_MAX_CHARS:
        try:
            encoded = _dumps(text)
        except TypeError:  # a lone surrogate: not kept
            return redacted
        if len(clean) >= _CLEAN_TEXTS_MAX:
            clean.clear()
        clean[text] = encoded
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
    if isinstance(ctx, RequestContext):  # immutable: safe to reuse for the next line
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


class _Layout:
    """What the lines rendered with one :class:`LogSettings` share, as JSON bytes.

    Keys (renamed), the parts of a line fixed by its level, logger and call site,
    the static fields, the last context's and
    operation's fields: each is encoded once and spliced into later lines.
    ``usable`` is False for settings whose lines :func:`_render` must build (static
    fields that are not plain, or keys that collide once renamed).
    """

    __slots__ = (
        "calls",
        "context",
        "keys",
        "operation",
        "reserved",
        "safe",
        "settings",
        "start",
        "static",
        "static_json",
        "usable",
    )

    def __init__(self, settings: LogSettings) -> None:
        self.settings = settings
        rename = settings.rename
        self.keys = {name: _dumps(rename.get(name, name)) for name in (*FIELDS, "stack_info")}
        self.start = b"{" + self.keys["timestamp"] + b':"'
        self.calls: dict[tuple[str, str, Any, Any, Any], tuple[bytes, bytes]] = {}
        self.safe: tuple[Redactor | None, set[str]] = (None, set())
        self.context: tuple[Any, bytes] = (None, b"")
        self.operation: tuple[Any, Any, bytes] = (None, None, b"")
        static = settings.static
        self.static = dict(static)
        names = [rename.get(name, name) for name in (*FIELDS, "stack_info", *self.static)]
        self.usable = (
            all(type(key) is str for key in self.static)
            and all(type(name) is str for name in rename.values())
            and self.static.keys().isdisjoint((*FIELDS, "stack_info"))
            and len(set(names)) == len(names)
        )
        # An extra field under one of these names replaces or renames a line field,
        # which only the dict merge of _render does right.
        self.reserved = frozenset(
            (*FIELDS, "stack_info", *rename, *rename.values(), *self.static, *names)
        )
        try:
            self.static_json = (
                b"," + _dumps({rename.get(k, k): v for k, v in self.static.items()})[1:-1]
                if self.static
                else b""
            )
        except TypeError:
            self.usable = False
            self.static_json = b""

    def call(self, level: str, logger: str, module: Any, function: Any, line: Any) -> Any:
        """The parts of a line fixed by its level, logger and call site.

        ``","level":"INFO","logger":"app","message":`` (after the timestamp's
        digits) and ``,"module":"shop","function":"stock","line":46``.
        """
        keys = self.keys
        parts = (
            b"".join(
                (
                    b'",',
                    keys["level"],
                    b":",
                    _dumps(level),
                    b",",
                    keys["logger"],
                    b":",
                    _dumps(logger),
                    b",",
                    keys["message"],
                    b":",
                )
            ),
            b"".join(
                (
                    b",",
                    keys["module"],
                    b":",
                    _dumps(module),
                    b",",
                    keys["function"],
                    b":",
                    _dumps(function),
                    b",",
                    keys["line"],
                    b":",
                    _dumps(line),
                )
            ),
        )
        calls = self.calls
        if len(calls) >= _CALL_SITES_MAX:
            calls.clear()
        calls[level, logger, module, function, line] = parts
        return parts

    def safe_keys(self, redactor: Redactor) -> set[str]:
        """Keys known to be clean for ``redactor`` and not named like a line field."""
        safe = self.safe
        if safe[0] is not redactor:
            safe = self.safe = (redactor, set())
        return safe[1]

    def admit(self, fields: dict[str, Any], redactor: Redactor) -> bool:
        """Add the keys of ``fields`` to the safe keys; False if one cannot be."""
        reserved = self.reserved
        for key in fields:
            if key in reserved or not redactor._is_clean_key(key):
                return False
        safe = self.safe_keys(redactor)
        if len(safe) >= _CALL_SITES_MAX:
            safe.clear()
        safe.update(fields)
        return True

    def context_json(self, ctx: Any) -> bytes:
        """The context's fields, each with a leading comma."""
        rename = self.settings.rename
        fields = _context_fields(ctx)
        encoded = b"," + _dumps({rename.get(k, k): v for k, v in fields.items()})[1:-1]
        if isinstance(ctx, RequestContext):  # immutable: safe to reuse for the next line
            self.context = (ctx, encoded)
        return encoded

    def operation_json(self, op: Any) -> bytes:
        """``,"operation":"name"``."""
        name = op.name
        encoded = b"," + self.keys["operation"] + b":" + _dumps(name)
        self.operation = (op, name, encoded)
        return encoded


# The last layout used, and all of them by id(settings) (each holds its settings, so
# the id is not reused while it is cached).
_layout: _Layout | None = None
_layouts: dict[int, _Layout] = {}
_LAYOUTS_MAX = 64


def _layout_for(settings: LogSettings) -> _Layout:
    global _layout
    layout = _layouts.get(id(settings))
    static = settings.static
    if layout is None or layout.settings is not settings or (static and static != layout.static):
        layout = _Layout(settings)
        if len(_layouts) >= _LAYOUTS_MAX:
            _layouts.clear()
        _layouts[id(settings)] = layout
    _layout = layout
    return layout


def _render_line(  # noqa: PLR0917
    settings: LogSettings,
    created: float,
    level: str,
    logger: str,
    message: str,
    module: str | None,
    function: str | None,
    line: int | None,
    fields: dict[str, Any] | None,
    ctx: Any,
) -> bytes:
    """:func:`_render` for a line without error or stack: the same bytes, sooner.

    ``ctx`` is the current context (the caller has it at hand already).

    The line is spliced together from JSON fragments (see :class:`_Layout`).  Once
    their keys are known to be clean, the fields go to the redactor's C-speed check
    (:meth:`Redactor._clean_values_json`) as they are: when they need no redaction,
    their JSON is spliced in, instead of being copied, merged and encoded field by
    field.  Whatever this does not cover (a field to redact, a field named like a
    line field, an over-long value or line, unusual settings) goes to
    :func:`_render`.  Never raises.
    """
    try:
        layout = _layout
        static = settings.static
        if (
            layout is None
            or layout.settings is not settings
            or (static and static != layout.static)  # a dict changed in place since
        ):
            layout = _layout_for(settings)
        if not layout.usable:
            raise _LongWay
        redactor = settings.redactor or _redaction._redactor
        limit = settings.max_value_chars
        owner, clean = _clean_texts
        encoded = clean.get(message) if owner is redactor else None
        if encoded is None or len(message) > limit:
            text = _redact_message(redactor, _clip(message, limit))
            encoded = _dumps(text)
        if fields:
            safe = layout.safe
            if not (safe[0] is redactor and fields.keys() <= safe[1]) and not layout.admit(
                fields, redactor
            ):
                raise _LongWay
            # Redactor._clean_values_json, without its call: a TypeError from _refuse
            # (a value the redactor converts) or orjson sends the line the long way.
            blob = _dumps(fields, _refuse, _NATIVE_ONLY)
            if len(blob) > limit or redactor._may_redact_json(blob, len(fields)):
                raise _LongWay
        else:
            blob = None
        stamp = _ms_cache
        if not stamp[0] <= created < stamp[1]:
            _format_ms(created)
            stamp = _ms_cache
        head, site = layout.calls.get((level, logger, module, function, line)) or layout.call(
            level, logger, module, function, line
        )
        if ctx is None:
            context = b""
        else:
            memo = layout.context
            context = memo[1] if memo[0] is ctx else layout.context_json(ctx)
        op = _operation_get()
        if op is None:
            operation = b""
        else:
            seen = layout.operation
            operation = (
                seen[2] if seen[0] is op and seen[1] is op.name else layout.operation_json(op)
            )
        if blob is None:
            parts: tuple[bytes, ...] = (
                layout.start,
                stamp[3],
                head,
                encoded,
                site,
                layout.static_json,
                context,
                operation,
                b"}\n",
            )
        else:  # the fields' own JSON, its "{" replaced by the line's ","
            parts = (
                layout.start,
                stamp[3],
                head,
                encoded,
                site,
                layout.static_json,
                context,
                operation,
                b",",
                blob[1:],
                b"\n",
            )
        data = b"".join(parts)
        if len(data) > settings.max_line_bytes:
            raise _LongWay
        return data if data.isascii() else _escape_line_separators(data)
    except Exception:  # _LongWay, or anything unexpected: the general renderer decides
        return render(
            settings,
            created,
            level,
            logger,
            message,
            module,
            function,
            line,
            fields,
            None,
            None,
            ctx,
        )


class _LongWay(Exception):
    """Raised inside :func:`_render_line` for a line that :func:`_render` must render."""


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
            context = attrs.get("faultlens_context")
            operation = attrs.get("faultlens_operation")
            if exc_info is None and not record.stack_info and operation is None:
                return _render_line(
                    self.settings,
                    record.created,
                    record.levelname,
                    record.name,
                    message,
                    record.module,
                    record.funcName,
                    record.lineno,
                    _record_fields(record),
                    context if context is not None else _current_get(),
                )
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
                context,
                operation,
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


def _write_failed() -> None:
    """Count the exception being handled as a failed write, and say so once."""
    counters.incr("logs.write_errors")
    exc = sys.exc_info()[1]
    report_once(
        "logs.write",
        f"writing a log line failed ({type(exc).__name__}); further failures are "
        "counted in faultlens.stats()['logs.write_errors']",
    )


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
        _write_failed()

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

    def _write_counted(self, data: bytes, ctx: Any) -> None:
        """Write a line rendered in context ``ctx`` as :meth:`emit` does (counted, kept)."""
        try:
            text = data.decode()
            with self.lock:  # type: ignore[union-attr]
                stream = self.stream
                stream.write(text)
                stream.flush()
                lines = _line_counts
                lines[0] += 1
                if ctx is None:
                    lines[1] += 1
        except RecursionError:  # the stdlib's rule: never swallow a recursion error
            raise
        except Exception:
            self.handleError(None)  # type: ignore[arg-type]
            return
        crumbs = _breadcrumbs
        if crumbs is not None:
            crumbs.add(ctx, text)


# --- a faster Logger -----------------------------------------------------------------------
# Through `logging`, a line costs Logger._log: findCaller (three frames, each through
# os.path.normcase), the LogRecord, Logger.handle, callHandlers, Handler.handle.  When
# the only handlers a record would reach are faultlens's own JSON handlers (no
# filters, this exact formatter), nobody but faultlens ever sees the record: the
# logger below then renders the line from the call's arguments as JSONFormatter
# would from the record, and writes it.  Otherwise it builds the record as the stdlib
# does (the same record, found with a cheaper findCaller) and hands it on.

_Logger = logging.Logger
_logging_module: Any = logging  # read at call time: _srcfile and the record factory can change
_is_internal_frame = getattr(logging, "_is_internal_frame", None)
# id(code) + instruction offset (see _call_sites) -> (code, pathname, lineno, function,
# module, skipped by findCaller): everything logging wants to know about a call site.
_record_sites: dict[int, tuple[Any, str, int, str, str, bool]] = {}


def _skipped(frame: Any) -> bool:
    """Return True when the stdlib's findCaller skips ``frame`` (a logging frame)."""
    if _is_internal_frame is not None:
        return bool(_is_internal_frame(frame))
    return bool(os.path.normcase(frame.f_code.co_filename) == getattr(logging, "_srcfile", None))


def _module_of(pathname: Any) -> str:
    """A record's ``module`` for ``pathname``, as :func:`fast_log_record` finds it."""
    try:
        return _path_parts[pathname][1]
    except (KeyError, TypeError):
        return _split_path(pathname)[1]


def _record_site(frame: Any, code: Any) -> tuple[Any, str, int, str, str, bool]:
    pathname = code.co_filename
    site = (code, pathname, frame.f_lineno, code.co_name, _module_of(pathname), _skipped(frame))
    if len(_record_sites) >= _CALL_SITES_MAX:
        _record_sites.clear()
    # The entry holds the code object, so its id() cannot be reused while cached.
    _record_sites[id(code) + frame.f_lasti] = site
    return site


def _find_caller(first: Any, stack_info: bool, stacklevel: int) -> tuple[str, int, str, str | None]:
    """:meth:`logging.Logger.findCaller`, from the first frame outside the logger."""
    frame = first
    if not _skipped(frame):
        stacklevel -= 1
    while stacklevel > 0:
        next_frame = frame.f_back
        if next_frame is None:
            break
        frame = next_frame
        if not _skipped(frame):
            stacklevel -= 1
    code = frame.f_code
    sinfo = None
    if stack_info:
        with io.StringIO() as sio:
            sio.write("Stack (most recent call last):\n")
            traceback.print_stack(frame, file=sio)
            sinfo = sio.getvalue()
            if sinfo[-1] == "\n":
                sinfo = sinfo[:-1]
    return code.co_filename, frame.f_lineno, code.co_name, sinfo


def _format_message(msg: Any, args: Any) -> str:
    """What ``LogRecord.getMessage()`` returns for ``msg`` and ``args`` (see format_bytes)."""
    if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]  # as LogRecord.__init__ does
    try:
        text = str(msg)
        return text % args if args else text
    except Exception as exc:
        counters.incr("logs.bad_format_args")
        return f"{msg!s} [faultlens: format arguments failed: {type(exc).__name__}]"


class FaultlensLogger(logging.Logger):
    """The :class:`logging.Logger` that :func:`configure_logging` installs.

    It behaves as the stdlib's: the same levels, filters, handlers and records
    (the same attributes, with the same values).  Two things are cheaper: the
    caller's file, line and function are remembered per call site instead of
    being searched for on every call, and when the only handlers a line would
    reach are faultlens's JSON handlers, the line is rendered straight from the
    call, without a :class:`logging.LogRecord` nobody would see.
    """

    def debug(
        self,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at DEBUG, as :meth:`logging.Logger.debug` does."""
        if self.isEnabledFor(10):
            self._dispatch(10, msg, args, exc_info, extra, stack_info, stacklevel)

    def info(
        self,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at INFO, as :meth:`logging.Logger.info` does."""
        if self.isEnabledFor(20):
            self._dispatch(20, msg, args, exc_info, extra, stack_info, stacklevel)

    def warning(
        self,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at WARNING, as :meth:`logging.Logger.warning` does."""
        if self.isEnabledFor(30):
            self._dispatch(30, msg, args, exc_info, extra, stack_info, stacklevel)

    def error(
        self,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at ERROR, as :meth:`logging.Logger.error` does."""
        if self.isEnabledFor(40):
            self._dispatch(40, msg, args, exc_info, extra, stack_info, stacklevel)

    def exception(
        self,
        msg: object,
        *args: object,
        exc_info: Any = True,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at ERROR with the exception being handled."""
        if self.isEnabledFor(40):
            self._dispatch(40, msg, args, exc_info, extra, stack_info, stacklevel)

    def critical(
        self,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at CRITICAL, as :meth:`logging.Logger.critical` does."""
        if self.isEnabledFor(50):
            self._dispatch(50, msg, args, exc_info, extra, stack_info, stacklevel)

    fatal = critical

    def log(
        self,
        level: object,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Log ``msg % args`` at the numeric ``level``, as :meth:`logging.Logger.log` does."""
        if not isinstance(level, int):
            if logging.raiseExceptions:
                raise TypeError("level must be an integer")
            return
        if self.isEnabledFor(level):
            self._dispatch(level, msg, args, exc_info, extra, stack_info, stacklevel)

    def _log(  # noqa: PLR0917 (the stdlib's signature)
        self,
        level: int,
        msg: object,
        args: Any,
        exc_info: Any = None,
        extra: Mapping[str, object] | None = None,
        stack_info: bool = False,
        stacklevel: int = 1,
    ) -> None:
        self._dispatch(level, msg, args, exc_info, extra, stack_info, stacklevel)

    def _dispatch(  # noqa: PLR0917 (Logger._log, findCaller and callHandlers, inlined)
        self,
        level: int,
        msg: object,
        args: Any,
        exc_info: Any,
        extra: Mapping[str, object] | None,
        stack_info: bool,
        stacklevel: int,
    ) -> None:
        # Called by a method of this class, so the frame above that is the caller.
        if stacklevel < 1:  # findCaller then names its own frame: leave that to it
            _Logger._log(self, level, msg, args, exc_info, extra, stack_info, stacklevel)
            return
        module = None
        sinfo = None
        if _logging_module._srcfile:
            frame = _getframe(2)
            code = frame.f_code
            site = _record_sites.get(id(code) + frame.f_lasti)
            if site is None or site[0] is not code:
                site = _record_site(frame, code)
            if site[5] or stacklevel != 1 or stack_info:
                pathname, lineno, func, sinfo = _find_caller(frame, stack_info, stacklevel)
            else:
                _, pathname, lineno, func, module, _ = site
        else:
            pathname, lineno, func = "(unknown file)", 0, "(unknown function)"
        if exc_info:
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif not isinstance(exc_info, tuple):
                exc_info = sys.exc_info()
        targets = None
        if (
            not self.filters
            and not self.disabled
            and type(self) is FaultlensLogger
            and (extra is None or (type(extra) is dict and extra.keys().isdisjoint(_RECORD_ATTRS)))
            and _logging_module._logRecordFactory in _PLAIN_FACTORIES
        ):
            targets = _json_targets(self, level)
        if targets is None:
            record = self.makeRecord(
                self.name, level, pathname, lineno, msg, args, exc_info, func, extra, sinfo
            )
            self.handle(record)
            return
        # Nobody but faultlens's JSON handlers would see the record: render the line
        # as JSONFormatter.format_bytes would render the record.
        try:
            message = msg if type(msg) is str and not args else _format_message(msg, args)
            if module is None:
                module = _module_of(pathname)
            levelname = _level_name(level) or _get_level_name(level)
            created = _time()
            ctx = _current_get()
            fields = extra or None
            if exc_info is not None and not (exc_info and exc_info[0]):
                exc_info = None
            for handler in targets:
                settings = handler.formatter.settings  # type: ignore[union-attr]
                if exc_info is None and sinfo is None:
                    data = _render_line(
                        settings,
                        created,
                        levelname,
                        self.name,
                        message,
                        module,
                        func,
                        lineno,
                        fields,  # type: ignore[arg-type]
                        ctx,
                    )
                else:
                    data = render(
                        settings,
                        created,
                        levelname,
                        self.name,
                        message,
                        module,
                        func,
                        lineno,
                        fields,
                        exc_info,
                        sinfo,
                        ctx,
                    )
                handler._write_counted(data, ctx)
        except RecursionError:
            raise
        except Exception:  # a message whose str() fails twice: as emit() would report it
            _write_failed()


def _json_targets(logger: logging.Logger, level: int) -> list[FaultlensHandler] | None:
    """The handlers ``callHandlers`` would call, when all are faultlens JSON handlers.

    None when another handler (or a filter on one) would see the record, or when
    no handler would (the stdlib then calls ``logging.lastResort``).
    """
    targets: list[FaultlensHandler] | None = None
    found = False
    current: logging.Logger | None = logger
    while current:
        for handler in current.handlers:
            found = True
            if level >= handler.level:
                if (
                    type(handler) is not FaultlensHandler
                    or handler.filters
                    or type(handler.formatter) is not JSONFormatter
                ):
                    return None
                if targets is None:
                    targets = [handler]
                else:
                    targets.append(handler)
        if not current.propagate:
            break
        current = current.parent
    if not found:
        return None
    return targets if targets is not None else []


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


# Record factories that build a plain LogRecord and nothing else: with one of them,
# a record that no handler outside faultlens would see need not be built at all.
_PLAIN_FACTORIES = (logging.LogRecord, fast_log_record)
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


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(1)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _log_samples(logger: logging.Logger) -> None:
    # Each call shape findCaller and makeRecord treat differently, on one line each,
    # so that both loggers log them from the same places.
    logger.info("m %s", "x", extra={"k": 1})
    logger.warning("m", stacklevel=2)
    logger.error("m", stack_info=True)
    logging.LoggerAdapter(logger, {}).info("m")
    logger.log(25, "m %(a)s", {"a": 1})
    try:
        raise ValueError("check")
    except ValueError:
        logger.exception("m")


def _sample_records(logger: logging.Logger) -> list[dict[str, Any]]:
    records: list[logging.LogRecord] = []
    logger.addHandler(_ListHandler(records))
    logger.setLevel(1)
    logger.propagate = False
    _log_samples(logger)
    return [
        {
            key: (value[0] if key == "exc_info" and value else value)
            for key, value in record.__dict__.items()
            if key not in _TIME_ATTRS
        }
        for record in records
    ]


# Logger methods FaultlensLogger replaces or relies on: all must still be logging's own.
_LOGGER_METHODS = (
    "debug",
    "info",
    "warning",
    "error",
    "exception",
    "critical",
    "log",
    "_log",
    "findCaller",
    "makeRecord",
    "handle",
    "callHandlers",
    "isEnabledFor",
)
_logger_checked: bool | None = None


def _logger_matches_stdlib() -> bool:
    """Return True when FaultlensLogger builds the records this Python's Logger builds."""
    global _logger_checked
    if _logger_checked is None:
        try:
            source = logging.addLevelName.__code__.co_filename
            unpatched = all(
                getattr(logging.Logger, name).__code__.co_filename == source
                for name in _LOGGER_METHODS
            )
            ours, theirs = (
                _sample_records(cls("faultlens.check")) for cls in (FaultlensLogger, _Logger)
            )
            _logger_checked = unpatched and len(ours) == 6 and ours == theirs
        except Exception:
            _logger_checked = False
    return _logger_checked


def _install_logger_class() -> None:
    """Make FaultlensLogger the class of plain loggers, present and future."""
    manager = logging.Logger.manager
    if (
        logging.getLoggerClass() is not _Logger
        or manager.loggerClass not in (None, _Logger)
        or not _logger_matches_stdlib()
    ):
        return  # another logger class is someone's choice: leave it
    with _logging_lock:
        logging.setLoggerClass(FaultlensLogger)
        for logger in list(manager.loggerDict.values()):
            if type(logger) is _Logger:
                logger.__class__ = FaultlensLogger


def _uninstall_logger_class() -> None:
    """Undo :func:`_install_logger_class`: every FaultlensLogger becomes a Logger again."""
    with _logging_lock:
        if logging.getLoggerClass() is FaultlensLogger:
            logging.setLoggerClass(_Logger)
        for logger in list(logging.Logger.manager.loggerDict.values()):
            if type(logger) is FaultlensLogger:
                logger.__class__ = _Logger  # type: ignore[assignment]


_logging_lock: Any = getattr(logging, "_lock", None) or threading.RLock()
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
    logger_class: bool = True,
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
    a factory someone else installed is left alone.  Likewise, when the logger
    class is still :class:`logging.Logger`, ``logger_class=True`` makes
    :class:`FaultlensLogger` the class of every plain logger, existing and
    future: the same records, and a line to faultlens's JSON handler alone without
    a record at all.
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
    if logger_class:
        _install_logger_class()
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

    Also puts the stdlib's LogRecord factory and logger class back if faultlens's
    are installed (loggers that were made :class:`FaultlensLogger` become plain
    :class:`logging.Logger` again).
    """
    global _sink
    target = logger or logging.getLogger()
    for old in list(target.handlers):
        if getattr(old, "faultlens_installed", False):
            target.removeHandler(old)
    if logging.getLogRecordFactory() is fast_log_record:
        logging.setLogRecordFactory(logging.LogRecord)
    _uninstall_logger_class()
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
# The key is id(code) + f_lasti: the instruction's offset is smaller than the code
# object (its bytecode is stored inside it), so the key is an address inside that
# object, which no other live object shares; entries hold their code object alive,
# and are checked against it anyway.  An int hashes faster than a tuple.
_CALL_SITES_MAX = 4096
_call_sites: dict[int, tuple[Any, Any, str | None, str | None, int | None]] = {}


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
            site = _call_sites.get(id(code) + frame.f_lasti) or _call_site(frame, code)
            # The key names one instruction of one live code object (see _call_sites);
            # the same code run with other globals (exec) may be another module.
            known_globals, _, module, function, line = site
            if known_globals is not frame.f_globals:
                _, _, module, function, line = _call_site(frame, code)
        except Exception:  # no such frame, or globals with an odd __name__
            module, function, line = None, None, None
        if type(message) is not str:
            message = _stringify(message)
        created = _time()
        ctx = _current_get()
        if exc_info is None:
            data = _render_line(
                _sink_settings,
                created,
                levelname,
                self.name,
                message,
                module,
                function,
                line,
                fields,
                ctx,
            )
        else:
            data = render(
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
                ctx,
            )
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


def _call_site(frame: Any, code: Any) -> tuple[Any, Any, str | None, str | None, int | None]:
    """Return ``(globals, code, module, function, line)`` of ``frame``, remembered."""
    module = str(frame.f_globals.get("__name__", "?")).rpartition(".")[2]
    site = (frame.f_globals, code, module, code.co_name, frame.f_lineno)
    if len(_call_sites) >= _CALL_SITES_MAX:
        _call_sites.clear()
    # The entry holds the code object, so its id() cannot be reused while cached.
    _call_sites[id(code) + frame.f_lasti] = site
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
