"""Make an event safe to store: redacted, valid text, bounded, JSON.

The store is the last place a secret can be stopped before it is written down,
so every payload goes through the process-wide redactor again (defence in
depth: events built by ``faultlens.capture`` are already redacted, others may
not be).  Hostile values are neutralised, never rejected: NUL characters
(PostgreSQL's ``jsonb`` and ``text`` refuse them) and lone surrogates become
U+FFFD, strings longer than :data:`MAX_STRING_CHARS` and payloads larger than
:data:`MAX_PAYLOAD_BYTES` are cut with a visible marker, nesting deeper than
:data:`MAX_DEPTH` becomes ``"[DEPTH LIMIT]"``, a container holding itself
``"[RECURSIVE]"``, integers JSON cannot carry and objects JSON does not know
become text.  Each of these increments a ``store.*`` counter.

Cleaning is the costly part of a write, so it is memoised: short strings and
whole sub-structures (a traceback's frames, a classification) recur from event
to event, and their cleaned form is looked up by their JSON encoding, which
``orjson`` computes at C speed.  The caches belong to one redactor and are
dropped when another one is installed.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import math
from collections.abc import Mapping
from typing import Any, Final

import orjson

from faultlens._clock import get_clock
from faultlens._metrics import counters
from faultlens.events import Event
from faultlens.redaction import Redactor, get_redactor

__all__ = [
    "MAX_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_STRING_CHARS",
    "Cleaned",
    "clean_event",
    "clean_text",
]

MAX_STRING_CHARS: Final = 32_768
MAX_PAYLOAD_BYTES: Final = 1_048_576
MAX_DEPTH: Final = 32
MAX_ID_CHARS: Final = 256
MAX_KIND_CHARS: Final = 64
MAX_NAME_CHARS: Final = 1024

_TRUNCATED: Final = "…[truncated {} chars]"
_DEPTH_LIMIT: Final = "[DEPTH LIMIT]"
_RECURSIVE: Final = "[RECURSIVE]"
_REPLACEMENT: Final = "\ufffd"
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1  # orjson writes unsigned 64-bit integers too
_CACHE_STRING_CHARS: Final = 256
_CACHE_STRINGS: Final = 16_384
_CACHE_SUBTREE_BYTES: Final = 16_384
_CACHE_SUBTREES: Final = 2048
_ONCE_MAX: Final = 65_536
_SHRUNK_STRING_CHARS: Final = 1024
_SHRUNK_ITEMS: Final = 100
_REPR_CHARS: Final = 2048
# Types orjson would serialise in its own way; routed through the walk instead so
# that the cached form of a value does not depend on which spelling came first.
_PASSTHROUGH: Final = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _refuse(value: object) -> object:
    raise TypeError


def valid_text(text: str) -> str:
    """``text`` without NUL characters and lone surrogates (both become U+FFFD)."""
    changed = False
    if "\x00" in text:
        text = text.replace("\x00", _REPLACEMENT)
        changed = True
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Through UTF-16, a pair of surrogates becomes the character it encodes
            # and a lone one becomes U+FFFD.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            changed = True
    if changed:
        counters.incr("store.invalid_text_replaced")
    return text


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a marker saying how many were cut."""
    if len(text) <= limit:
        return text
    counters.incr("store.values_truncated")
    return text[:limit] + _TRUNCATED.format(len(text) - limit)


def clean_text(value: object, limit: int, *, redact: bool = True) -> str:
    """Any value as stored text: redacted, valid, at most ``limit`` characters (+ marker)."""
    text = value if type(value) is str else _as_text(value)
    if len(text) > limit * 4:  # redaction scans all of it: bound the work first
        text = text[: limit * 4]
    if redact:
        text = get_redactor().redact_text(text)
    return clip(valid_text(text), limit)


def clean_id(value: object) -> str | None:
    """An identifier column: valid text of at most 256 characters, or None."""
    if value is None:
        return None
    text = value if type(value) is str else _as_text(value)
    if len(text) > MAX_ID_CHARS:
        counters.incr("store.values_truncated")
        text = text[:MAX_ID_CHARS]
    return valid_text(text)


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    try:
        text = str(value)
    except Exception:
        text = object.__repr__(value)
    return text if type(text) is str else str.__str__(text)


class _Cleaner:
    """The memoised walk for one redactor (see the module docstring)."""

    __slots__ = ("keys", "marker", "once", "redactor", "strings", "subtrees")

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.marker = redactor.marker
        self.strings: dict[str, str] = {}
        self.keys: dict[str, tuple[str, bool]] = {}
        self.subtrees: dict[bytes, Any] = {}
        # Hashes of values seen once: only a value seen again is cached, so that the
        # many one-off values (ids, messages, contexts) never evict the recurring ones.
        self.once: set[int] = set()

    def _admit(self, value: str | bytes) -> bool:
        digest = hash(value)
        if digest in self.once:
            return True
        if len(self.once) >= _ONCE_MAX:
            self.once.clear()
        self.once.add(digest)
        return False

    # -- strings and keys -------------------------------------------------------------

    def text(self, value: str) -> str:
        if len(value) <= _CACHE_STRING_CHARS:
            out = self.strings.get(value)
            if out is None:
                out = valid_text(self.redactor.redact_text(value))
                if self._admit(value):
                    if len(self.strings) >= _CACHE_STRINGS:
                        self.strings.clear()
                    self.strings[value] = out
            return out
        if len(value) > MAX_STRING_CHARS * 4:
            value = value[: MAX_STRING_CHARS * 4]
        return clip(valid_text(self.redactor.redact_text(value)), MAX_STRING_CHARS)

    def key(self, key: object) -> tuple[str, bool]:
        if type(key) is str:
            entry = self.keys.get(key)
            if entry is not None:
                return entry
        text = key if type(key) is str else _as_text(key)
        entry = (
            clip(valid_text(self.redactor.redact_text(text)), MAX_NAME_CHARS),
            self.redactor.enabled and self.redactor.is_sensitive_key(text),
        )
        if type(key) is str and len(key) <= _CACHE_STRING_CHARS:
            if len(self.keys) >= _CACHE_STRINGS:
                self.keys.clear()
            self.keys[key] = entry
        return entry

    # -- structures -------------------------------------------------------------------

    def top(self, payload: Mapping[Any, Any]) -> dict[str, Any]:
        """The payload mapping: its big values are looked up whole in the cache."""
        out: dict[str, Any] = {}
        size = 0
        for key, value in payload.items():
            size += 1
            name, sensitive = self.key(key)
            if sensitive:
                out[name] = (
                    value if value is None or value is True or value is False else (self.marker)
                )
                continue
            kind = type(value)
            if kind is dict or kind is list:
                out[name] = self.subtree(value)
            else:
                out[name] = self.value(value, 1, None)
        if size != len(out):
            counters.incr("store.key_collisions", size - len(out))
        return out

    def subtree(self, value: Any) -> Any:
        try:
            blob = orjson.dumps(value, default=_refuse, option=_PASSTHROUGH)
        except (TypeError, orjson.JSONEncodeError):  # surrogates, big ints, other types
            return self.value(value, 1, None)
        if len(blob) > _CACHE_SUBTREE_BYTES:
            return self.value(value, 1, None)
        cached = self.subtrees.get(blob)
        if cached is None:
            cached = self.value(value, 1, None)
            if self._admit(blob):
                if len(self.subtrees) >= _CACHE_SUBTREES:
                    self.subtrees.clear()
                self.subtrees[blob] = cached
        return cached

    def value(self, value: Any, depth: int, active: set[int] | None) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is int:
            return value if _INT_MIN <= value <= _INT_MAX else self.text(str(value))
        if kind is float or kind is bool or value is None:
            return value
        if kind is dict or kind is list or kind is tuple:
            return self.container(value, depth, active)
        return self.other(value, depth, active)

    def container(self, value: Any, depth: int, active: set[int] | None) -> Any:
        if depth > MAX_DEPTH:
            counters.incr("store.depth_limited")
            return _DEPTH_LIMIT
        if active is None:
            active = set()
        ident = id(value)
        if ident in active:
            counters.incr("store.recursive_values")
            return _RECURSIVE
        active.add(ident)
        try:
            kind = type(value)
            if kind is dict or (
                kind is not list and kind is not tuple and isinstance(value, Mapping)
            ):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    name, sensitive = self.key(key)
                    if sensitive:
                        out[name] = (
                            item if item is None or item is True or item is False else self.marker
                        )
                    else:
                        out[name] = self.value(item, depth + 1, active)
                if len(out) != len(value):
                    counters.incr("store.key_collisions", len(value) - len(out))
                return out
            return [self.value(item, depth + 1, active) for item in value]
        except Exception:  # a broken container, a dict changed by another thread
            counters.incr("store.unserializable_values")
            return "[UNREADABLE]"
        finally:
            active.discard(ident)

    def other(self, value: Any, depth: int, active: set[int] | None) -> Any:
        """Values of less common types: subclasses, bytes, enums, dataclasses, objects."""
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, enum.Enum):
            return self.value(value.value, depth, active)
        if isinstance(value, str):
            return self.text(str.__str__(value))
        if isinstance(value, int):
            return self.value(int(value), depth, active)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return self.text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            if isinstance(value, tuple) and hasattr(type(value), "_fields"):
                value = self.redactor.redact(value)  # a named tuple: fields are keys
                return self.value(value, depth, active)
            if isinstance(value, set | frozenset):
                value = list(value)
            return self.container(value, depth, active)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.value(self.redactor.redact(value), depth, active)
        if isinstance(value, _dt.datetime | _dt.date | _dt.time):
            return value.isoformat()
        counters.incr("store.unserializable_values")
        try:
            text = repr(value)
        except Exception:
            text = f"<unrepresentable {type(value).__qualname__}>"
        if type(text) is not str:
            text = _as_text(text)
        return self.text(clip(text, _REPR_CHARS))


_cleaner: _Cleaner | None = None


def _current_cleaner() -> _Cleaner:
    global _cleaner
    redactor = get_redactor()
    cleaner = _cleaner
    if cleaner is None or cleaner.redactor is not redactor:
        cleaner = _cleaner = _Cleaner(redactor)
    return cleaner


def clean_payload(payload: object) -> tuple[dict[str, Any], str]:
    """A payload as a redacted, JSON-safe dict and its JSON text (bounded in size)."""
    cleaner = _current_cleaner()
    try:
        if isinstance(payload, Mapping):
            out = cleaner.top(payload)
        else:  # not a mapping at all: keep it, under a key
            out = {"value": cleaner.value(payload, 1, None)}
    except Exception as exc:  # a Mapping whose items() raises
        counters.incr("store.unserializable_values")
        out = {"unreadable_payload": type(exc).__name__}
    blob = orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS)
    if len(blob) > MAX_PAYLOAD_BYTES:
        out, blob = _shrink(out, len(blob))
    return out, blob.decode()


def _shrink(payload: dict[str, Any], size: int) -> tuple[dict[str, Any], bytes]:
    """Cut an oversized payload down: shorter strings and lists, then a summary."""
    counters.incr("store.payloads_truncated")
    smaller = _shrunk(payload)
    assert isinstance(smaller, dict)
    smaller["_truncated"] = {"original_bytes": size}
    blob = orjson.dumps(smaller)
    if len(blob) <= MAX_PAYLOAD_BYTES:
        return smaller, blob
    summary: dict[str, Any] = {"_truncated": {"original_bytes": size}}
    for key, value in list(payload.items())[:_SHRUNK_ITEMS]:
        if isinstance(value, str):
            summary[key] = clip(value, _SHRUNK_STRING_CHARS)
        elif value is None or isinstance(value, bool | int | float):
            summary[key] = value
    return summary, orjson.dumps(summary)


def _shrunk(value: Any) -> Any:
    if isinstance(value, str):
        return clip(value, _SHRUNK_STRING_CHARS)
    if isinstance(value, dict):
        items = list(value.items())
        out = {key: _shrunk(item) for key, item in items[:_SHRUNK_ITEMS]}
        if len(items) > _SHRUNK_ITEMS:
            out["_omitted_keys"] = len(items) - _SHRUNK_ITEMS
        return out
    if isinstance(value, list):
        out_list = [_shrunk(item) for item in value[:_SHRUNK_ITEMS]]
        if len(value) > _SHRUNK_ITEMS:
            out_list.append(f"…[{len(value) - _SHRUNK_ITEMS} more items truncated]")
        return out_list
    return value


class Cleaned:
    """One event ready to be written: its column values and its cleaned form."""

    __slots__ = (
        "category",
        "event",
        "layer",
        "payload_json",
        "session_id",
        "severity",
    )

    def __init__(self, event: Event, payload_json: str) -> None:
        self.event = event
        self.payload_json = payload_json
        payload = event.payload
        classification = payload.get("classification")
        if not isinstance(classification, Mapping):
            classification = payload
        self.category = _short(classification.get("category"))
        self.layer = _short(classification.get("layer")) or _short(payload.get("layer"))
        self.severity = _short(classification.get("severity"))
        context = payload.get("context")
        self.session_id = (
            _short(context.get("session_id"), MAX_ID_CHARS)
            if isinstance(context, Mapping)
            else None
        )


def _short(value: object, limit: int = MAX_KIND_CHARS) -> str | None:
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def _name(value: object) -> str:
    if type(value) is str and len(value) <= _CACHE_STRING_CHARS:
        return _current_cleaner().text(value)
    return clean_text(value, MAX_NAME_CHARS)


def clean_event(event: Event) -> Cleaned:
    """``event`` with every field and the payload made safe to store."""
    payload, payload_json = clean_payload(event.payload)
    timestamp = event.timestamp
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        timestamp = math.nan
    if not math.isfinite(timestamp):
        counters.incr("store.invalid_timestamps")
        timestamp = get_clock().time()
    kind = clean_id(event.kind) or "unknown"
    tenant = clean_id(event.tenant_id)
    cleaned = Event(
        kind[:MAX_KIND_CHARS],
        _name(event.name),
        payload,
        clean_id(event.correlation_id),
        clean_id(event.trace_id),
        clean_id(event.span_id),
        tenant or None,  # an empty tenant is no tenant
        clean_id(event.user_id),
        float(timestamp),
        clean_id(event.id) or "",
    )
    return Cleaned(cleaned, payload_json)
