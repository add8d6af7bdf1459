"""``capture(exc)``: turn an exception into an ``error`` event on the event bus.

The event carries what a person debugging needs and nothing that must not leave
the process: the classification, the exception's type and redacted message, its
chain (``__cause__`` / ``__context__``) and ExceptionGroup members, stack frames
without local variables, the sanitized request context, the running operation
and the correlation's journey, its last log lines (breadcrumbs), the process's
vital signs and the caller's extra fields, all passed through the redaction
engine.  ``docs/capture.md`` describes the payload key by key.

Rules a caller relies on:

* it never raises; a failure inside is counted (``errors.capture_failures``)
  and reported once on stderr, and a degraded event is still published;
* an exception is captured once: capturing the same object again returns the
  first event id and publishes nothing (framework integrations rely on it);
* with nobody subscribed to ``error`` events it builds nothing and returns
  ``None``;
* the event is built on the caller's thread from the traceback's frame objects
  (no source lines, no ``traceback`` formatting, no ``linecache``): about a
  tenth of a millisecond for a 10-frame stack with breadcrumbs, a tenth of what
  ``sentry_sdk.capture_exception`` takes (``benchmarks/bench_capture.py``).
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import sysconfig
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from faultlens import events as _events
from faultlens._ids import new_id
from faultlens._metrics import counters, report_once
from faultlens.context import RequestContext, _current, current_operation
from faultlens.errors._base import ConfigurationError
from faultlens.errors._breadcrumbs import install_breadcrumbs, recent_breadcrumbs
from faultlens.redaction import Redactor, get_redactor

__all__ = [
    "CaptureSettings",
    "capture",
    "captured_context",
    "captured_event_id",
    "get_capture_settings",
    "record_exception",
    "set_capture_settings",
]

_MARK: Final = "__faultlens_event__"
# Where an integration or a scope may leave the context an exception escaped from,
# for hooks that run after every scope has exited (sys.excepthook, threads).
CONTEXT_STAMP: Final = "__faultlens_context__"
_TRUNCATED: Final = "…[truncated {} chars]"
_MAX_NOTES: Final = 10
_MAX_FINGERPRINT_PARTS: Final = 16
_MAX_FINGERPRINT_CHARS: Final = 256
_MAX_LOCALS: Final = 30
_MAX_LOCAL_CHARS: Final = 256
_MAX_FIELD_DEPTH: Final = 8
_CACHE_MAX: Final = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureSettings:
    """How error events are built; pass one as ``faultlens.configure(capture=...)``.

    ``breadcrumbs`` log lines are kept per correlation (0 turns breadcrumbs
    off) for up to ``breadcrumb_correlations`` correlations, the least recently
    logging one evicted first.  A frame is *in app* unless its module is
    faultlens's or it lives in the standard library or ``site-packages``;
    ``in_app_include`` / ``in_app_exclude`` are module name prefixes that force
    it (``"myapp"`` matches ``myapp`` and ``myapp.views``; include wins).
    ``capture_locals=True`` adds the redacted ``repr`` of local variables of
    in-app frames (off by default: locals are where secrets live).  The other
    limits bound the event: frames per exception (the outermost and innermost
    halves are kept), links of a cause/context chain, exception nodes in all
    (chains and groups together), nesting of ExceptionGroups, and characters of
    a message.  Invalid values raise :class:`~faultlens.errors.ConfigurationError`.
    """

    breadcrumbs: int = 20
    breadcrumb_correlations: int = 512
    in_app_include: Iterable[str] = ()
    in_app_exclude: Iterable[str] = ()
    capture_locals: bool = False
    max_frames: int = 100
    max_chain: int = 10
    max_exceptions: int = 50
    max_group_depth: int = 5
    max_message_chars: int = 8192

    def __post_init__(self) -> None:
        for name in ("in_app_include", "in_app_exclude"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ConfigurationError(
                    f"CaptureSettings({name}=...) takes a collection of module prefixes, "
                    f"not one string: write {name}=({value!r},)"
                )
            prefixes = tuple(value)
            if not all(isinstance(p, str) and p.strip(".") for p in prefixes):
                raise ConfigurationError(
                    f"CaptureSettings({name}=...) must contain module names such as 'myapp'"
                )
            object.__setattr__(self, name, tuple(p.strip(".") for p in prefixes))
        minimums = {
            "breadcrumbs": 0,
            "breadcrumb_correlations": 1,
            "max_frames": 2,
            "max_chain": 0,
            "max_exceptions": 1,
            "max_group_depth": 0,
            "max_message_chars": 64,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigurationError(
                    f"CaptureSettings({name}={value!r}) must be an int >= {minimum}"
                )


_settings = CaptureSettings()
install_breadcrumbs(_settings.breadcrumbs, _settings.breadcrumb_correlations)


def set_capture_settings(settings: CaptureSettings) -> None:
    """Apply ``settings`` process-wide (``faultlens.configure`` calls this)."""
    global _settings
    _settings = settings
    _in_app_cache.clear()
    install_breadcrumbs(settings.breadcrumbs, settings.breadcrumb_correlations)


def get_capture_settings() -> CaptureSettings:
    """Return the settings error events are built with."""
    return _settings


# --- capture once ----------------------------------------------------------------------

# Exceptions that refuse a new attribute are remembered here instead: by weak
# reference when their type allows one, else strongly in a small bounded table (the
# oldest forgotten first), so the memory held stays bounded.
_weak_marks: dict[int, tuple[weakref.ref[BaseException], tuple[Any, ...]]] = {}
_strong_marks: dict[int, tuple[BaseException, tuple[Any, ...]]] = {}
_STRONG_MARKS_MAX: Final = 64
_marks_lock = threading.Lock()


def _marked(exc: BaseException) -> tuple[Any, ...] | None:
    """Return the mark ``(id, event_id, context)`` of a captured exception, or None."""
    try:
        mark = getattr(exc, _MARK, None)
    except Exception:  # a hostile __getattr__
        mark = None
    if type(mark) is tuple and mark[0] == id(exc):  # a copy carries its original's mark
        return mark
    if _weak_marks or _strong_marks:
        weak = _weak_marks.get(id(exc))
        if weak is not None and weak[0]() is exc:
            return weak[1]
        strong = _strong_marks.get(id(exc))
        if strong is not None and strong[0] is exc:
            return strong[1]
    return None


def _forget_weak(key: int) -> Callable[[weakref.ref[BaseException]], None]:
    def forget(ref: weakref.ref[BaseException]) -> None:
        entry = _weak_marks.get(key)
        if entry is not None and entry[0] is ref:
            del _weak_marks[key]

    return forget


def _mark(exc: BaseException, mark: tuple[Any, ...]) -> None:
    try:
        setattr(exc, _MARK, mark)
        if getattr(exc, _MARK, None) is mark:
            return
    except Exception:  # __slots__ without a dict, a __setattr__ that refuses
        pass
    key = id(exc)
    with _marks_lock:
        try:
            _weak_marks[key] = (weakref.ref(exc, _forget_weak(key)), mark)
            return
        except TypeError:  # the type takes no weak references
            pass
        while len(_strong_marks) >= _STRONG_MARKS_MAX:
            del _strong_marks[next(iter(_strong_marks))]
        _strong_marks[key] = (exc, mark)


def captured_event_id(exc: BaseException) -> str | None:
    """The id of the event ``exc`` was captured as, or None if it was not captured."""
    mark = _marked(exc)
    return None if mark is None else mark[1]


def captured_context(exc: BaseException) -> RequestContext | None:
    """The context ``exc`` was captured in, or the one stamped on it, or None.

    Hooks that run after the exception left every scope (``sys.excepthook``,
    ``threading.excepthook``) use it to log with the right correlation id.
    """
    mark = _marked(exc)
    if mark is not None and mark[2] is not None:
        ctx: RequestContext = mark[2]
        return ctx
    try:
        stamped = getattr(exc, CONTEXT_STAMP, None)
    except Exception:
        return None
    return stamped if isinstance(stamped, RequestContext) else None


# --- the public entry point -------------------------------------------------------------

_bus = _events.get_bus()
_ctx_get = _current.get
_op_get = current_operation.get


def capture(
    exc: BaseException,
    /,
    *,
    fingerprint: str | Sequence[str] | None = None,
    **fields: Any,
) -> str | None:
    """Record ``exc`` as an ``error`` event tied to the current context; never raises.

    Returns the event id, or ``None`` when nobody subscribes to ``error`` events
    (nothing is built or recorded then; the exception is not marked, so a later
    capture with a subscriber records it).  Capturing the same exception object
    again returns the first id and publishes nothing.  ``fields`` (redacted,
    made JSON-safe) are added under ``fields``; ``fingerprint`` (a string or a
    sequence of strings) is passed to the store, which groups events by it
    instead of by type and stack.  Use it from ``except`` blocks::

        except PaymentDeclined as exc:
            faultlens.capture(exc, order_id=order.id)
            raise
    """
    try:
        return record_exception(exc, fields=fields, fingerprint=fingerprint)
    except Exception as failure:  # record_exception degrades itself; this is the last net
        _count_failure(failure)
        return None


def _count_failure(failure: BaseException) -> None:
    counters.incr("errors.capture_failures")
    report_once(
        "errors.capture",
        f"capturing an error failed inside faultlens ({type(failure).__name__}); further "
        "failures are counted in faultlens.stats()['errors.capture_failures']",
    )


def record_exception(
    exc: BaseException,
    *,
    fields: Mapping[str, Any] | None = None,
    fingerprint: str | Sequence[str] | None = None,
    mechanism: str = "capture",
    handled: bool = True,
    context: RequestContext | None = None,
    operation: Any = None,
    ambient: bool = True,
) -> str | None:
    """:func:`capture` for hooks: say how the exception arrived and in which context.

    ``mechanism`` names the path (``capture``, ``sys.excepthook``,
    ``threading.excepthook``, ``asyncio``); ``handled=False`` marks an exception
    nothing caught.  ``context`` / ``operation`` replace the current ones
    (a hook reporting for another task or thread); ``ambient=False`` ignores
    the current ones (the exception is known to come from outside any
    correlation).  Same return value and guarantees as :func:`capture`.
    """
    anything: object = exc  # callers without type checking pass anything
    if not isinstance(anything, BaseException):
        counters.incr("errors.capture_failures")
        report_once(
            "errors.capture.type",
            f"faultlens.capture() needs an exception instance, not {type(anything).__name__}; "
            "such calls are counted in faultlens.stats()['errors.capture_failures']",
        )
        return None
    mark = _marked(exc)
    if mark is not None:
        event_id: str = mark[1]
        return event_id
    if not _bus.active or not _bus.has_subscribers(_events.ERROR):
        return None
    ctx = context if context is not None or not ambient else _ctx_get()
    if ctx is None:
        ctx = captured_context(exc)
    run = operation
    if run is None and context is None and ambient:
        run = _op_get()
    event_id = new_id()
    # Marked before building: a subscriber or a failure while building that captures
    # the same exception again gets this id instead of recursing.
    _mark(exc, (id(exc), event_id, ctx))
    try:
        payload = _payload(
            exc,
            ctx,
            run,
            fields=fields,
            fingerprint=fingerprint,
            mechanism=mechanism,
            handled=handled,
        )
        name = payload["type"]
    except Exception as failure:
        _count_failure(failure)
        name = _safe_type_name(exc)
        payload = {
            "type": name,
            "message": "<not captured: faultlens failed while building this event>",
            "mechanism": {"type": mechanism, "handled": handled},
            "capture_error": type(failure).__name__,
        }
    if ctx is None:
        event = _events.Event(_events.ERROR, name, payload, id=event_id)
    else:
        event = _events.Event(
            _events.ERROR,
            name,
            payload,
            ctx.correlation_id,
            ctx.trace_id,
            ctx.span_id,
            ctx.tenant_id,
            ctx.user_id,
            id=event_id,
        )
    _bus.publish(event)
    return event_id


# --- building the payload -----------------------------------------------------------------


def _payload(
    exc: BaseException,
    ctx: RequestContext | None,
    run: Any,
    *,
    fields: Mapping[str, Any] | None,
    fingerprint: str | Sequence[str] | None,
    mechanism: str,
    handled: bool,
) -> dict[str, Any]:
    settings = _settings
    redactor = get_redactor()
    walk = _Walk(settings, redactor, exc)
    payload = _node(exc, walk, 0, chain=True)
    payload["mechanism"] = {"type": mechanism, "handled": handled}
    payload["classification"] = _classification(exc)
    payload["context"] = _sanitized(ctx)
    payload["operation"] = _operation(run, redactor)
    payload["journey"] = _journey(ctx, run, redactor)
    cid = None if ctx is None else ctx.correlation_id
    payload["breadcrumbs"] = recent_breadcrumbs(cid, redactor)
    payload["system"] = system_info()
    payload["fields"] = _json_safe(redactor.redact_mapping(fields), 0) if fields else {}
    if fingerprint is not None:
        payload["fingerprint"] = _fingerprint(fingerprint, redactor)
    return payload


class _Walk:
    """State of one payload build: limits, the redactor, exceptions already seen."""

    __slots__ = ("nodes", "redactor", "seen", "settings")

    def __init__(self, settings: CaptureSettings, redactor: Redactor, top: BaseException) -> None:
        self.settings = settings
        self.redactor = redactor
        self.nodes = settings.max_exceptions
        self.seen = {id(top)}


def _node(exc: BaseException, walk: _Walk, group_depth: int, *, chain: bool) -> dict[str, Any]:
    """One exception: type, message, frames, notes; its group members; its chain."""
    walk.nodes -= 1
    settings = walk.settings
    node: dict[str, Any] = {
        "type": _safe_type_name(exc),
        "message": _message(exc, walk.redactor, settings.max_message_chars),
    }
    frames, omitted = _frames(exc.__traceback__, walk)
    node["frames"] = frames
    if omitted:
        node["frames_omitted"] = omitted
    notes = _notes(exc, walk.redactor, settings.max_message_chars)
    if notes:
        node["notes"] = notes
    if isinstance(exc, BaseExceptionGroup):
        _group(exc, node, walk, group_depth)
    if chain:
        _chain(exc, node, walk, group_depth)
    return node


def _group(
    exc: BaseExceptionGroup[Any], node: dict[str, Any], walk: _Walk, group_depth: int
) -> None:
    members = exc.exceptions
    out: list[dict[str, Any]] = []
    if group_depth < walk.settings.max_group_depth:
        for member in members:
            if walk.nodes <= 0:
                break
            if id(member) in walk.seen:
                out.append({"type": _safe_type_name(member), "repeated": True})
                continue
            walk.seen.add(id(member))
            out.append(_node(member, walk, group_depth + 1, chain=True))
    node["group"] = out
    if len(out) < len(members):
        node["group_omitted"] = len(members) - len(out)


def _chain(exc: BaseException, node: dict[str, Any], walk: _Walk, group_depth: int) -> None:
    """Follow ``__cause__`` / ``__context__`` from ``exc``, most recent link first."""
    links: list[dict[str, Any]] = []
    current = exc
    while True:
        cause = current.__cause__
        if cause is not None:
            relation, following = "cause", cause
        else:
            context = current.__context__
            if context is None or current.__suppress_context__:
                break
            relation, following = "context", context
        if id(following) in walk.seen:  # a cycle, or a member already shown
            links.append(
                {"relation": relation, "type": _safe_type_name(following), "repeated": True}
            )
            break
        if len(links) >= walk.settings.max_chain or walk.nodes <= 0:
            node["chain_truncated"] = True
            break
        walk.seen.add(id(following))
        link = {"relation": relation}
        link.update(_node(following, walk, group_depth, chain=False))
        links.append(link)
        current = following
    if links:
        node["chain"] = links


def _safe_type_name(exc: object) -> str:
    cls = type(exc)
    try:
        qualname = cls.__qualname__
        module = cls.__module__
    except Exception:
        return "<unknown type>"
    if module == "builtins" or not isinstance(module, str):
        return str(qualname)
    return f"{module}.{qualname}"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + _TRUNCATED.format(len(text) - limit)


def _message(exc: BaseException, redactor: Redactor, limit: int) -> str:
    try:
        text = str(exc)
    except Exception as failure:  # a __str__ that raises must not lose the event
        return f"<str() of the exception raised {type(failure).__name__}>"
    # Redacting scans the whole text: a hostile multi-megabyte message is cut to a
    # bound first, far enough beyond what is kept that no kept secret is split.
    if len(text) > limit * 8:
        text = text[: limit * 8]
    return _clip(redactor.redact_text(text), limit)


def _notes(exc: BaseException, redactor: Redactor, limit: int) -> list[str]:
    try:
        notes = getattr(exc, "__notes__", None)
        if not isinstance(notes, list | tuple) or not notes:
            return []
        return [
            _clip(redactor.redact_text(note if isinstance(note, str) else _safe_repr(note)), limit)
            for note in notes[:_MAX_NOTES]
        ]
    except Exception:
        return ["<notes could not be read>"]


# --- frames -----------------------------------------------------------------------------


def _frames(tb: TracebackType | None, walk: _Walk) -> tuple[list[dict[str, Any]], int]:
    """Frames of a traceback, outermost first, and how many were left out."""
    tbs: list[TracebackType] = []
    while tb is not None:
        tbs.append(tb)
        tb = tb.tb_next
    limit = walk.settings.max_frames
    omitted = 0
    if len(tbs) > limit:
        omitted = len(tbs) - limit
        half = limit // 2
        tbs = tbs[:half] + tbs[-(limit - half) :]
    with_locals = walk.settings.capture_locals
    frames: list[dict[str, Any]] = []
    for tb in tbs:
        frame = tb.tb_frame
        code = frame.f_code
        site = _site(code.co_filename, frame.f_globals.get("__name__"), walk.redactor)
        entry: dict[str, Any] = {
            "filename": site[0],
            "module": site[1],
            "function": code.co_qualname,
            "lineno": tb.tb_lineno,
            "in_app": site[2],
        }
        if with_locals and site[2]:
            entry["locals"] = _locals(frame.f_locals, walk.redactor)
        frames.append(entry)
    return frames, omitted


# (filename, module) -> (redacted filename, redacted module, in_app); a program has
# few distinct code locations, so this is computed once per location.
_in_app_cache: dict[tuple[str, Any], tuple[str, str | None, bool]] = {}


_in_app_redactor: Redactor | None = None  # the redactor the cached names were redacted with


def _site(filename: str, module: Any, redactor: Redactor) -> tuple[str, str | None, bool]:
    global _in_app_redactor
    if redactor is not _in_app_redactor:
        _in_app_cache.clear()
        _in_app_redactor = redactor
    key = (filename, module)
    site = _in_app_cache.get(key)
    if site is None:
        name = module if isinstance(module, str) else None
        site = (
            redactor.redact_text(filename),
            redactor.redact_text(name) if name is not None else None,
            _in_app(filename, name, _settings),
        )
        if len(_in_app_cache) >= _CACHE_MAX:
            _in_app_cache.clear()
        _in_app_cache[key] = site
    return site


def _matches(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _library_paths() -> tuple[str, ...]:
    paths: set[str] = set()
    try:
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            path = sysconfig.get_paths().get(key)
            if path:
                paths.add(os.path.realpath(path))
        import site

        paths.update(os.path.realpath(p) for p in site.getsitepackages())
        user = site.getusersitepackages()
        if user:
            paths.add(os.path.realpath(user))
    except Exception:  # an unusual installation: the path markers below still apply
        counters.incr("errors.capture_failures")
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # faultlens
    return tuple(sorted(p.rstrip(os.sep) + os.sep for p in paths))


_library_prefixes: tuple[str, ...] | None = None
_LIBRARY_MARKERS: Final = (
    f"{os.sep}site-packages{os.sep}",
    f"{os.sep}dist-packages{os.sep}",
)


def _in_app(filename: str, module: str | None, settings: CaptureSettings) -> bool:
    """Is this code the application's own (not stdlib, site-packages or faultlens)?"""
    global _library_prefixes
    if module is not None:
        if _matches(module, settings.in_app_include):
            return True
        if _matches(module, settings.in_app_exclude) or _matches(module, ("faultlens",)):
            return False
    if filename.startswith("<"):  # <frozen importlib._bootstrap> is the stdlib's
        return not filename.startswith("<frozen ")
    if _library_prefixes is None:
        _library_prefixes = _library_paths()
    if any(marker in filename for marker in _LIBRARY_MARKERS):
        return False
    path = os.path.realpath(filename) if os.path.isabs(filename) else filename
    return not path.startswith(_library_prefixes)


def _locals(values: Mapping[str, Any], redactor: Redactor) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for name, value in list(values.items())[:_MAX_LOCALS]:
            key = str(name)
            if redactor.enabled and redactor.is_sensitive_key(key):
                out[key] = redactor.marker
            else:
                out[key] = redactor.redact_text(_clip(_safe_repr(value), _MAX_LOCAL_CHARS))
    except Exception:
        out["<locals>"] = "<could not be read>"
    return out


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a __repr__ that raises
        return f"<unrepresentable {_safe_type_name(value)}>"
    return text if type(text) is str else str(text)


# --- the rest of the event ------------------------------------------------------------------

_classify: Callable[[BaseException], Any] | None = None


def _classification(exc: BaseException) -> dict[str, Any] | None:
    global _classify
    classify = _classify
    if classify is None:
        import faultlens.errors

        found = getattr(faultlens.errors, "classify", None)
        if found is None:  # classification not available in this build
            return None
        classify = _classify = found
    try:
        result = _json_safe(classify(exc).to_dict(), 0)
    except Exception:  # a broken rule must not lose the event
        counters.incr("errors.classify_failures")
        return None
    return result if isinstance(result, dict) else None


def _sanitized(ctx: RequestContext | None) -> dict[str, Any] | None:
    if ctx is None:
        return None
    try:
        data = _json_safe(ctx.sanitized(), 0)
    except Exception:
        counters.incr("errors.capture_failures")
        return {"correlation_id": ctx.correlation_id}
    return data if isinstance(data, dict) else None


def _operation(run: Any, redactor: Redactor) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "name": redactor.redact_text(str(run.name)),
        "layer": str(run.layer),
        "id": run.id,
        "path": [redactor.redact_text(str(name)) for name in run.path()],
    }


def _journey(ctx: RequestContext | None, run: Any, redactor: Redactor) -> list[dict[str, Any]]:
    """The correlation's finished operations, then the running ones, outermost first."""
    steps: list[dict[str, Any]] = []
    if ctx is not None and ctx.journey_steps:
        for step in list(ctx.journey_steps):
            duration = step.duration_ms
            steps.append(
                {
                    "name": redactor.redact_text(str(step.name)),
                    "layer": str(step.layer),
                    "outcome": step.outcome,
                    "duration_ms": None if duration is None else round(duration, 3),
                }
            )
    running: list[dict[str, Any]] = []
    while run is not None:
        running.append(
            {
                "name": redactor.redact_text(str(run.name)),
                "layer": str(run.layer),
                "outcome": "running",
                "duration_ms": None,
            }
        )
        run = run.parent
    steps.extend(reversed(running))
    return steps


def _fingerprint(value: str | Sequence[str], redactor: Redactor) -> list[str]:
    parts: list[Any]
    try:
        parts = [value] if isinstance(value, str) else list(value)
    except TypeError:  # not a sequence: one part
        parts = [value]
    out = []
    for part in parts[:_MAX_FINGERPRINT_PARTS]:
        text = part if isinstance(part, str) else _safe_repr(part)
        out.append(_clip(redactor.redact_text(text), _MAX_FINGERPRINT_CHARS))
    return out


_JSON_SCALARS: Final = (bool, int, float, type(None))


def _json_safe(value: Any, depth: int) -> Any:
    """A redacted value as plain JSON types; other objects become their redacted repr."""
    if type(value) is str:
        return value
    if isinstance(value, _JSON_SCALARS):
        if isinstance(value, int) and not isinstance(value, bool) and type(value) is not int:
            return int(value)  # an IntEnum, for instance
        if isinstance(value, float) and type(value) is not float:
            return float(value)
        return value
    if isinstance(value, str):  # a StrEnum or another str subclass
        return str.__str__(value)
    if depth >= _MAX_FIELD_DEPTH:
        return "[DEPTH LIMIT]"
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value]
    return get_redactor().redact_text(_clip(_safe_repr(value), 2048))


# --- system ------------------------------------------------------------------------------

_static_system: dict[str, Any] | None = None
_LINUX: Final = sys.platform.startswith("linux")
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE") if _LINUX else 4096
_psutil_process: Any = None  # False once psutil was found missing


def _forget_process() -> None:
    global _static_system, _psutil_process, _rss_read_at
    _static_system = None
    _psutil_process = None
    _rss_read_at = float("-inf")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_process)


def system_info() -> dict[str, Any]:
    """Python, platform, host and process figures (memory, CPU time, threads)."""
    global _static_system
    static = _static_system
    if static is None:
        static = _static_system = {
            "python": platform.python_version(),
            "implementation": sys.implementation.name,
            "platform": platform.platform(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }
        try:
            from faultlens._config import get_config

            config = get_config()
            if config is not None and config.service:
                static["service"] = config.service
            if config is not None and config.environment:
                static["environment"] = config.environment
        except Exception:
            counters.incr("errors.capture_failures")
    info = dict(static)
    info["threads"] = threading.active_count()
    _process_figures(info)
    return info


_RSS_MAX_AGE_S = 1.0
_rss_read_at = float("-inf")
_rss_bytes = 0


def _process_figures(info: dict[str, Any]) -> None:
    global _psutil_process
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        info["cpu_user_s"] = round(usage.ru_utime, 6)
        info["cpu_system_s"] = round(usage.ru_stime, 6)
        # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
        info["max_rss_bytes"] = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    except ImportError:  # Windows
        times = os.times()
        info["cpu_user_s"] = round(times.user, 6)
        info["cpu_system_s"] = round(times.system, 6)
    if _LINUX:  # what psutil would read, without psutil
        global _rss_read_at, _rss_bytes
        now = time.monotonic()
        if now - _rss_read_at < _RSS_MAX_AGE_S:
            # Reading /proc is a system call that releases the GIL; under a burst of
            # errors a reading up to a second old is as useful and far cheaper.
            info["rss_bytes"] = _rss_bytes
            return
        try:
            with open("/proc/self/statm", "rb") as statm:
                _rss_bytes = int(statm.read().split()[1]) * _PAGE_SIZE
            _rss_read_at = now
            info["rss_bytes"] = _rss_bytes
            return
        except Exception:  # no /proc (a sandbox): try psutil
            pass
    process = _psutil_process
    if process is None:
        try:
            import psutil

            process = _psutil_process = psutil.Process()
        except Exception:  # not installed (it is optional), or no access
            process = _psutil_process = False
    if process is not False:
        try:
            info["rss_bytes"] = int(process.memory_info().rss)
        except Exception:
            counters.incr("errors.capture_failures")
