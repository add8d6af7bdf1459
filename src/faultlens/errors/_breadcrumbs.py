"""Breadcrumbs: the last log lines of each correlation, attached to its error events.

The log handler that :func:`faultlens.logs.configure_logging` installs and the
native :func:`faultlens.get_logger` path hand every line they write (already
rendered and redacted) to :data:`faultlens.logs._breadcrumbs`, which is the
:class:`BreadcrumbBuffer` below while breadcrumbs are on.  The buffer keeps a
small ring of lines per correlation id, and a bounded number of correlations,
evicting the least recently logging one.  Lines logged outside any correlation
share one ring of their own.

Writing costs one method call per line: the ring of the correlation that logged
last is remembered, so consecutive lines of one request touch no dict.  Lines
are kept as the JSON text that was written and only parsed when an error event
needs them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any, Final

import orjson

from faultlens import logs as _logs
from faultlens._metrics import counters, report_once
from faultlens.logs import LogSettings
from faultlens.redaction import Redactor

__all__ = ["BreadcrumbBuffer", "install_breadcrumbs", "recent_breadcrumbs"]

MAX_LINE_CHARS: Final = 2048
"""Longer lines are kept cut to this length (their breadcrumb then has ``line`` only)."""

_NOBODY: Final = object()  # the memo's initial key, equal to no correlation id

# Fields of a log line that the error event already carries in its own context.
_CONTEXT_KEYS: Final = (
    "correlation_id",
    "request_id",
    "trace_id",
    "span_id",
    "session_id",
    "user_id",
    "tenant_id",
)


class BreadcrumbBuffer:
    """Rings of the last ``per_correlation`` log lines of up to ``max_correlations`` ids.

    Thread-safe.  :meth:`add` never raises (a failure is counted in
    ``errors.breadcrumb_failures``).  Memory is bounded by
    ``per_correlation * (max_correlations + 1) * MAX_LINE_CHARS`` characters.
    """

    __slots__ = ("_last", "_lock", "_rings", "max_correlations", "per_correlation")

    def __init__(self, per_correlation: int = 20, max_correlations: int = 512) -> None:
        self.per_correlation = per_correlation
        self.max_correlations = max_correlations
        self._rings: OrderedDict[str | None, deque[str]] = OrderedDict()
        self._lock = threading.Lock()
        # (context, its correlation's ring) of the last line: one tuple, swapped
        # atomically.  A context is immutable, so its correlation id cannot change.
        self._last: tuple[Any, deque[str] | None] = (_NOBODY, None)

    def add(self, context: Any, line: str) -> None:
        """Append ``line`` (one rendered log line) to the ring of ``context``'s correlation."""
        # The common case, a request logging its next line: the same context object
        # as the last line's, so its ring is at hand.
        last = self._last
        if last[0] is context and len(line) <= MAX_LINE_CHARS:
            last[1].append(line)  # type: ignore[union-attr]  # never None with a context
        else:
            self._add(context, line)

    def _add(self, context: Any, line: str) -> None:
        try:
            cid = None if context is None else context.correlation_id
            ring = self._ring(cid, context)
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS]
            ring.append(line)
        except Exception as exc:  # a breadcrumb must never cost the application its log line
            counters.incr("errors.breadcrumb_failures")
            report_once("errors.breadcrumbs", f"recording a breadcrumb failed ({exc!r})")

    def _ring(self, cid: str | None, context: Any) -> deque[str]:
        with self._lock:
            rings = self._rings
            ring = rings.get(cid)
            if ring is None:
                ring = deque(maxlen=self.per_correlation)
                rings[cid] = ring
                # The uncorrelated ring (key None) is not counted and never evicted.
                while len(rings) - (None in rings) > self.max_correlations:
                    oldest = next(iter(rings))
                    if oldest is None:
                        rings.move_to_end(None)
                    else:
                        del rings[oldest]
            else:
                rings.move_to_end(cid)
            self._last = (context, ring)
            return ring

    def lines(self, correlation_id: str | None) -> list[str]:
        """The kept lines of ``correlation_id`` (``None``: uncorrelated lines), oldest first."""
        ring = self._rings.get(correlation_id)
        return list(ring) if ring is not None else []

    def correlations(self) -> int:
        """How many correlations currently have a ring (the uncorrelated one included)."""
        return len(self._rings)

    def clear(self) -> None:
        """Forget every line."""
        with self._lock:
            self._rings.clear()
            self._last = (_NOBODY, None)


_buffer: BreadcrumbBuffer | None = None


def install_breadcrumbs(per_correlation: int, max_correlations: int) -> None:
    """Keep the last ``per_correlation`` lines of each correlation (0 turns breadcrumbs off).

    A new buffer replaces the previous one (its lines are forgotten) only when
    the sizes change.
    """
    global _buffer
    if per_correlation <= 0:
        _buffer = None
    elif (
        _buffer is None
        or _buffer.per_correlation != per_correlation
        or _buffer.max_correlations != max_correlations
    ):
        _buffer = BreadcrumbBuffer(per_correlation, max_correlations)
    _logs._breadcrumbs = _buffer


def get_buffer() -> BreadcrumbBuffer | None:
    """Return the installed buffer (``None`` while breadcrumbs are off)."""
    return _buffer


def recent_breadcrumbs(correlation_id: str | None, redactor: Redactor) -> list[dict[str, Any]]:
    """The breadcrumbs of ``correlation_id`` as JSON-safe dicts, oldest first.

    Each is the log line as written, without the context fields the error event
    carries itself and with ``error`` reduced to its type and message; a line
    that was cut (or is not JSON, from the console format) becomes ``{"line": text}``.
    The lines were redacted when they were rendered; when the log settings used
    another redactor than ``redactor`` (one with redaction turned off, say),
    they are redacted again with ``redactor``.
    """
    buffer = _buffer
    if buffer is None:
        return []
    lines = buffer.lines(correlation_id)
    if not lines:
        return []
    settings = _logs._sink_settings
    crumbs = _parse(lines, settings)
    if settings.redactor is not None and settings.redactor is not redactor:
        redacted = redactor.redact(crumbs)
        return redacted if isinstance(redacted, list) else []
    return crumbs


_dropped: tuple[LogSettings | None, tuple[str, ...]] = (None, ())


def _parse(lines: list[str], settings: LogSettings) -> list[dict[str, Any]]:
    global _dropped
    owner, drop = _dropped
    if owner is not settings:  # the output names of the fields to drop, per settings
        names = [settings.key(name) for name in _CONTEXT_KEYS]
        names.extend(settings.key(name) for name in settings.static)
        drop = tuple(names)
        _dropped = (settings, drop)
    error_key = settings.key("error")
    crumbs: list[dict[str, Any]] = []
    for line in lines:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            crumbs.append({"line": line.rstrip("\n")})
            continue
        if not isinstance(data, dict):
            crumbs.append({"line": line.rstrip("\n")})
            continue
        for key in drop:
            data.pop(key, None)
        error = data.get(error_key)
        if isinstance(error, dict):
            data[error_key] = {k: v for k, v in error.items() if k != "stack"}
        crumbs.append(data)
    return crumbs
