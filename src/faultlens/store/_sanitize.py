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
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from faultlens._clock import get_clock
from faultlens._metrics import counters
from faultlens.events import Event, _restore_event
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
_CACHE_SHAPES: Final = 1024
_CACHE_PLANS: Final = 256
_CACHE_ROWS: Final = 2048
_CACHE_ROW_BYTES: Final = 32_768
_PLAN_KEYS: Final = 64
_DEMOTE_AFTER: Final = 3  # times in a row a row value did not recur: a one-off
_RETRY_EVERY: Final = 8192  # payloads after which the one-offs are judged again
_GRACE: Final = 128  # rows cleaned one by one before a new plan judges its values
_RETRY_GRACE: Final = 32  # the same when the one-offs are judged again
_UNCACHED: Final = object()  # stands for a value no cache holds
_RECENT: Final = 128  # distinct values per generation a value recurs among
_ROW_TYPES: Final = frozenset({str, int, float, bool, type(None), dict, list})
_ONCE_MAX: Final = 65_536
_SHRUNK_STRING_CHARS: Final = 1024
_SHRUNK_ITEMS: Final = 100
_REPR_CHARS: Final = 2048
# Every value pattern of the redactor needs a separator, a dot, a space, an "@" or
# 13 characters (a card's digits; an AWS key id has 20): a shorter run of letters and
# digits is clean as it is (and valid text: no NUL, no surrogate is alphanumeric).
_SAFE_WORD_CHARS: Final = 13
_PLAIN_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
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
    if (
        type(value) is str
        and len(value) <= MAX_ID_CHARS
        and value.isascii()
        and "\x00" not in value
    ):
        return value  # the common case, valid as it is
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


class _Plan:
    """How payloads of one layout (their keys, in order) are cleaned; see _Cleaner.plan.

    A value *recurs* when it is one of the last distinct values (a hundred or two)
    seen under its key: an error's type, stack or classification do, its message
    and request context do not (even when they are cached, being seen again among
    thousands of others, as the messages of a replayed batch).
    Recurring values make the row, which then recurs as a whole.  No value is
    judged before the plan has cleaned a few hundred payloads (while the caches
    fill, even the stack of every code path is new).
    """

    __slots__ = (
        "collisions",
        "grace",
        "misses",
        "names",
        "recent",
        "sensitive",
        "split",
        "ticks",
    )

    def __init__(
        self,
        names: tuple[str, ...],
        sensitive: tuple[int, ...],
        stable: tuple[int, ...],
        collisions: int,
    ) -> None:
        self.names = names  # the keys as stored
        self.sensitive = sensitive  # positions under a sensitive key
        self.collisions = collisions  # keys stored alike (the last one wins)
        self.misses = [0] * len(names)  # per row value: times in a row it did not recur
        self.ticks = 0  # payloads cleaned with one-offs
        self.grace = _GRACE  # rows cleaned one by one before any value is judged
        # Per position, what stands for the distinct values seen last (see top_value),
        # in two generations.
        self.recent: list[tuple[set[Hashable], set[Hashable]]] = [(set(), set()) for _ in names]
        self.split = _split(names, stable, (), sensitive, collisions)

    def recurs(self, index: int, key: Hashable) -> bool:
        """Record the value at ``index`` (``key`` stands for it); did it recur?"""
        if key is _UNCACHED:
            return False
        current, previous = self.recent[index]
        if key in current:
            return True
        current.add(key)
        if len(current) >= _RECENT:
            self.recent[index] = (set(), current)
        return key in previous

    def regroup(self, *, retry: bool = False) -> None:
        """Move the row values that stopped recurring to the one-offs.

        ``retry``: move every one-off back to the row, to be judged again (a value
        that was a one-off while the caches filled may well recur now).
        """
        stable, volatile, _, _, _ = self.split
        if retry:
            for index in volatile:
                self.misses[index] = 0
            stable, volatile = tuple(sorted((*stable, *volatile))), ()
            self.grace = _RETRY_GRACE
        keep = tuple(i for i in stable if self.misses[i] < _DEMOTE_AFTER)
        self.split = _split(
            self.names,
            keep,
            tuple(sorted((*volatile, *(i for i in stable if i not in keep)))),
            self.sensitive,
            self.collisions,
        )


_Split = tuple[
    tuple[int, ...],  # positions of the recurring values, cleaned as one row
    tuple[int, ...],  # positions of the one-off values, cleaned one by one
    Callable[[Sequence[Any]], tuple[Any, ...]],  # pick(values) -> the row's values
    Callable[[Sequence[Any], Sequence[Any]], dict[str, Any]],  # build(row, tail) -> payload
    # encode(row JSON, tail, the one-off values' JSON) -> JSON
    Callable[[Sequence[bytes], Sequence[Any], Sequence[bytes]], bytes] | None,
]


def _split(
    names: tuple[str, ...],
    stable: tuple[int, ...],
    volatile: tuple[int, ...],
    sensitive: tuple[int, ...],
    collisions: int,
) -> _Split:
    """The functions that take a payload apart and put it together again.

    Written out as Python source for this layout (from positions only: the keys
    are passed in), they cost a few bytecodes per key where ``dict(zip(...))`` and
    a generic encoding of the payload cost ten times as much.  ``tail`` holds the
    one-off values, then those under sensitive keys; ``pieces`` the JSON of the
    one-off values.
    """
    source: dict[int, tuple[str, str]] = {}
    for at, index in enumerate(stable):
        source[index] = f"row[{at}]", f"ready[{at}]"
    for at, index in enumerate(volatile):
        source[index] = f"tail[{at}]", f"pieces[{at}]"
    for at, index in enumerate(sensitive, len(volatile)):
        source[index] = f"tail[{at}]", f"dumps(tail[{at}])"
    count = len(names)
    picked = "".join(f"values[{index}], " for index in stable)
    built = ", ".join(f"K[{i}]: {source[i][0]}" for i in range(count))
    encoded = "".join(f"P[{i}], {source[i][1]}, " for i in range(count))
    code = (
        "def make(K, P, dumps, join):\n"
        f"    def pick(values):\n        return ({picked})\n"
        f"    def build(row, tail):\n        return {{{built}}}\n"
        f"    def encode(ready, tail, pieces):\n        return join(({encoded}P[{count}],))\n"
        "    return pick, build, encode\n"
    )
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the source is made of indexes only, never of keys
    # The JSON between the values: '{"type":', ',"message":', ... '}'.
    between = (
        *((b"," if i else b"{") + orjson.dumps(name) + b":" for i, name in enumerate(names)),
        b"}",
    )
    pick, build, encode = namespace["make"](names, between, orjson.dumps, b"".join)
    # Keys stored alike make one JSON key of the dict: leave those to orjson.
    return stable, volatile, pick, build, None if collisions else encode


def _finite(values: tuple[Any, ...]) -> bool:
    return all(math.isfinite(value) for value in values if type(value) is float)


class _Cleaner:
    """The memoised walk for one redactor (see the module docstring).

    The loops over mappings are written out by hand: they run for every key of
    every payload, and a method call per value would cost more than the work.
    """

    __slots__ = (
        "keys",
        "marker",
        "once",
        "plans",
        "redactor",
        "rows",
        "shapes",
        "strings",
        "subtrees",
    )

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.marker = redactor.marker
        self.strings: dict[str, str] = {}
        self.keys: dict[str, tuple[str, bool]] = {}
        self.subtrees: dict[bytes, Any] = {}
        # The keys of a flat dict (in order) -> are they all kept as they are.
        self.shapes: dict[tuple[str, ...], bool] = {}
        # A payload's keys, in order -> its plan; a row's JSON -> the row cleaned.
        self.plans: dict[tuple[Any, ...], _Plan] = {}
        self.rows: dict[bytes, tuple[Any, ...]] = {}
        # Hashes of values seen once: only a value seen again is cached, so that the
        # many one-off values (ids, messages, contexts) never evict the recurring ones.
        self.once: set[int] = set()

    def _admit(self, value: Hashable) -> bool:
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
            if len(value) < _SAFE_WORD_CHARS and value.isalnum():
                return value  # no pattern fits in a short run of letters and digits
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

    def top(self, payload: Mapping[Any, Any]) -> tuple[dict[str, Any], bytes | None]:
        """The payload mapping cleaned, and its JSON when made already (see planned)."""
        if type(payload) is dict:
            # A private copy: its keys and values are read in two steps below, which
            # another thread changing the payload meanwhile must not tear apart.
            snapshot = dict(payload)
            layout = tuple(snapshot)
            try:
                plan = self.plans.get(layout)
                known = plan is not None or self._admit(layout)
            except Exception:  # a key whose hash or equality fails: the walk copes
                plan = None
                known = False
            if plan is not None:
                return self.planned(snapshot, plan)
            out = self.walk(snapshot)
            if known:  # a layout seen twice gets a plan
                self.plan(layout)
            return out, None
        return self.walk(payload), None

    def walk(self, payload: Mapping[Any, Any]) -> dict[str, Any]:
        """The payload mapping, key by key."""
        out: dict[str, Any] = {}
        size = 0
        keys = self.keys
        for key, value in payload.items():
            size += 1
            entry = keys.get(key) if type(key) is str else None
            if entry is None:
                entry = self.key(key)
            name, sensitive = entry
            if sensitive:
                out[name] = (
                    value if value is None or value is True or value is False else (self.marker)
                )
            else:
                out[name] = self.top_value(value)[0]
        if size != len(out):
            counters.incr("store.key_collisions", size - len(out))
        return out

    def top_value(self, value: Any) -> tuple[Any, Hashable, bool]:
        """A payload's value (under a key that is not sensitive) cleaned.

        With what stands for it (equal for equal values, as far as a cache tells
        them apart) and whether it was cached.
        """
        kind = type(value)
        if kind is str:
            if len(value) < _SAFE_WORD_CHARS and value.isalnum():
                return value, value, True
            text = self.strings.get(value)
            if text is not None:
                return text, value, True
            return self.text(value), value, False
        if kind is dict or kind is list:
            if not value:
                return ({} if kind is dict else []), kind, True
            return self.subtree(value)
        if (
            kind is float
            or value is None
            or kind is bool
            or (kind is int and _INT_MIN <= value <= _INT_MAX)
        ):
            return value, value, True
        return self.value(value, 1, None), _UNCACHED, False

    # -- payload layouts --------------------------------------------------------------
    #
    # Payloads of one producer share their keys, and most of their values recur from
    # event to event (an error's type, stack, classification) while a few never do
    # (its message, its request context).  A layout's plan cleans the recurring
    # values as one row, looked up whole by its JSON, and the others one by one
    # (together, from their JSON, when that shows nothing to change: plain_tail);
    # which values recur is learnt from the caches' hits and misses as events pass.

    def plan(self, layout: tuple[Any, ...]) -> None:
        """Make the plan of a payload layout seen twice."""
        if not layout or len(layout) > _PLAN_KEYS or not all(type(key) is str for key in layout):
            return
        entries = [self.key(key) for key in layout]
        names = tuple(name for name, _ in entries)
        sensitive = tuple(i for i, (_, hidden) in enumerate(entries) if hidden)
        stable = tuple(i for i, (_, hidden) in enumerate(entries) if not hidden)
        if len(self.plans) >= _CACHE_PLANS:
            self.plans.clear()
        self.plans[layout] = _Plan(names, sensitive, stable, len(names) - len(set(names)))

    def planned(self, payload: dict[str, Any], plan: _Plan) -> tuple[dict[str, Any], bytes | None]:
        """The payload cleaned, and its JSON when made from the row's ready-made JSON."""
        values = list(payload.values())
        stable, volatile, pick, build, encode = plan.split  # one read: it may be replaced
        row: tuple[Any, ...] = ()
        ready: tuple[bytes, ...] | None = ()
        if stable:
            picked = pick(values)
            entry = None
            blob = None
            kinds = set(map(type, picked))
            # Not a UUID encoded like its text, nor a NaN or an infinity like None.
            if kinds <= _ROW_TYPES and (float not in kinds or _finite(picked)):
                try:
                    blob = orjson.dumps(picked, default=_refuse, option=_PASSTHROUGH)
                except (TypeError, orjson.JSONEncodeError):
                    pass
                else:
                    if len(blob) <= _CACHE_ROW_BYTES:
                        entry = self.rows.get(blob)
                    else:
                        blob = None
            if entry is None:
                row = self.row(plan, stable, picked)
                ready = None
                if blob is not None and self._admit(blob):
                    ready = tuple(orjson.dumps(value) for value in row)
                    if len(self.rows) >= _CACHE_ROWS:
                        self.rows.clear()
                    self.rows[blob] = (row, ready)
            else:
                row, ready = entry
        pieces: Sequence[bytes] | None = None
        if volatile:
            tail, pieces = self.plain_tail([values[index] for index in volatile])
        else:
            tail = []
        if volatile:
            plan.ticks += 1
            if plan.ticks % _RETRY_EVERY == 0:  # do the one-offs recur by now?
                plan.regroup(retry=True)
        for index in plan.sensitive:
            value = values[index]
            tail.append(value if value is None or value is True or value is False else self.marker)
        if plan.collisions:
            counters.incr("store.key_collisions", plan.collisions)
        out = build(row, tail)
        if ready is None or encode is None:
            return out, None
        try:
            if pieces is None:
                pieces = [orjson.dumps(value) for value in tail[: len(volatile)]]
            return out, encode(ready, tail, pieces)
        except TypeError:  # never expected: cleaned values encode
            return out, None

    def plain_tail(self, values: list[Any]) -> tuple[list[Any], Sequence[bytes] | None]:
        """A payload's one-off values cleaned, and their JSON when made on the way.

        They are new with every payload (a message, a request context), so no cache
        holds them: nearly always text and flat dicts of plain scalars that cleaning
        leaves as they are, which is judged for all of them at once from their JSON,
        at C speed (the test :meth:`flat` makes).  Any other value, or a hint of
        something to redact or replace, and each goes through :meth:`top_value`.
        """
        pieces = []
        colons = 0
        shapes = self.shapes
        try:
            for at, value in enumerate(values):
                kind = type(value)
                if kind is dict:
                    # Judged and encoded as a private copy (another thread may change
                    # the payload's dict meanwhile); encoded first, as subtree does:
                    # orjson refuses a key that is not a str before any is judged.
                    value = values[at] = dict(value)
                    pieces.append(orjson.dumps(value, default=_refuse, option=_PASSTHROUGH))
                    shape = tuple(value)
                    clean = shapes.get(shape)
                    if clean is None:
                        clean = self._clean_keys(shape)
                    if not clean or not set(map(type, value.values())) <= _PLAIN_SCALARS:
                        break
                    colons += len(shape)
                elif kind in _PLAIN_SCALARS:
                    # Raises on a lone surrogate, an integer beyond 64 bits.
                    pieces.append(orjson.dumps(value, default=_refuse, option=_PASSTHROUGH))
                else:
                    break
            else:
                blob = b",".join(pieces)
                if (
                    len(blob) <= _CACHE_SUBTREE_BYTES  # no string to cut (see subtree)
                    and blob.find(b"\\u0000") < 0  # NUL
                    and not self.redactor._may_redact_json(blob, colons)
                ):
                    return values, pieces
        except (TypeError, orjson.JSONEncodeError):
            pass
        return [self.top_value(value)[0] for value in values], None

    def row(self, plan: _Plan, stable: tuple[int, ...], picked: tuple[Any, ...]) -> tuple[Any, ...]:
        """The recurring values of a payload cleaned one by one; learn which missed."""
        row = []
        misses = plan.misses
        demote = False
        for index, value in zip(stable, picked, strict=True):
            cleaned, key, _ = self.top_value(value)
            row.append(cleaned)
            if plan.recurs(index, key):
                misses[index] = 0
            else:
                misses[index] += 1
                demote = demote or misses[index] >= _DEMOTE_AFTER
        plan.grace -= 1
        if demote and plan.grace <= 0:
            plan.regroup()
        return tuple(row)

    def subtree(self, value: Any) -> tuple[Any, Hashable, bool]:
        """A dict or list cleaned, the hash of its JSON, and was it cached."""
        try:
            blob = orjson.dumps(value, default=_refuse, option=_PASSTHROUGH)
        except (TypeError, orjson.JSONEncodeError):  # surrogates, big ints, other types
            return self.value(value, 1, None), _UNCACHED, False
        if len(blob) > _CACHE_SUBTREE_BYTES:
            return self.value(value, 1, None), _UNCACHED, False
        cached = self.subtrees.get(blob)
        if cached is not None:
            return cached, hash(blob), True  # the lookup computed it: a field read
        cached = self.flat(value, blob)
        if cached is None:
            cached = self.value(value, 1, None)
        if self._admit(blob):
            if len(self.subtrees) >= _CACHE_SUBTREES:
                self.subtrees.clear()
            self.subtrees[blob] = cached
        return cached, hash(blob), False

    def flat(self, value: Any, blob: bytes) -> Any:
        """A copy of a dict or list of plain scalars that cleaning would leave as it is.

        The one-off values of every event (its context, its process figures) are
        such dicts: judged from their JSON (``blob``) at C speed rather than value by
        value, they cost a few substring tests.  None when a value may change, or
        is of another type.
        """
        if type(value) is dict:
            if blob.count(b"{") != 1 or b"[" in blob:
                return None  # nested (or a bracket inside a string: look closer)
            # orjson encodes str keys only, and with the test below, the text of each
            # is unchanged by cleaning; left: is one sensitive or cut too long.
            shape = tuple(value)
            clean = self.shapes.get(shape)
            if clean is None:
                clean = self._clean_keys(shape)
            if not clean or not self._plain(value.values(), blob, len(shape)):
                return None
            return dict(value)
        if blob.count(b"[") != 1 or b"{" in blob or not self._plain(value, blob, 0):
            return None
        return list(value)

    def _plain(self, items: Iterable[Any], blob: bytes, colons: int) -> bool:
        return (
            set(map(type, items)) <= _PLAIN_SCALARS  # not an Enum or a UUID encoded alike
            and blob.find(b"\\u0000") < 0  # NUL (a lone surrogate does not encode)
            and not self.redactor._may_redact_json(blob, colons)
        )

    def _clean_keys(self, shape: tuple[str, ...]) -> bool:
        clean = True
        for key in shape:
            name, sensitive = self.key(key)
            if sensitive or name != key:
                clean = False
                break
        if len(self.shapes) >= _CACHE_SHAPES:
            self.shapes.clear()
        self.shapes[shape] = clean
        return clean

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
                return self._mapping(value, depth, active)
            return [self._item(item, depth, active) for item in value]
        except Exception:  # a broken container, a dict changed by another thread
            counters.incr("store.unserializable_values")
            return "[UNREADABLE]"
        finally:
            active.discard(ident)

    def _mapping(self, value: Mapping[Any, Any], depth: int, active: set[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        keys = self.keys
        strings = self.strings
        for key, item in value.items():
            entry = keys.get(key) if type(key) is str else None
            if entry is None:
                entry = self.key(key)
            name, sensitive = entry
            if sensitive:
                out[name] = item if item is None or item is True or item is False else self.marker
                continue
            kind = type(item)
            if kind is str:
                if len(item) < _SAFE_WORD_CHARS and item.isalnum():
                    out[name] = item
                else:
                    text = strings.get(item)
                    out[name] = self.text(item) if text is None else text
            elif (
                kind is float
                or item is None
                or kind is bool
                or (kind is int and _INT_MIN <= item <= _INT_MAX)
            ):
                out[name] = item
            else:
                out[name] = self.value(item, depth + 1, active)
        if len(out) != len(value):
            counters.incr("store.key_collisions", len(value) - len(out))
        return out

    def _item(self, item: Any, depth: int, active: set[int]) -> Any:
        kind = type(item)
        if kind is str:
            if len(item) < _SAFE_WORD_CHARS and item.isalnum():
                return item
            text = self.strings.get(item)
            return self.text(item) if text is None else text
        if kind is dict:
            return self.container(item, depth + 1, active)
        return self.value(item, depth + 1, active)

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
                # A named tuple: its fields are keys (a disabled redactor returns it as
                # it is, so the mapping is built here, or this would recurse forever).
                redacted = self.redactor.redact(value)
                if redacted is value:
                    redacted = dict(zip(type(value)._fields, value, strict=False))  # type: ignore[attr-defined]
                return self.value(redacted, depth, active)
            if isinstance(value, set | frozenset):
                value = list(value)
            return self.container(value, depth, active)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            redacted = self.redactor.redact(value)
            if redacted is value:  # a disabled redactor: the fields as a mapping
                redacted = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
            return self.value(redacted, depth, active)
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
    return _clean_payload(_current_cleaner(), payload)


def _clean_payload(cleaner: _Cleaner, payload: object) -> tuple[dict[str, Any], str]:
    blob: bytes | None = None
    try:
        if type(payload) is dict or isinstance(payload, Mapping):
            out, blob = cleaner.top(payload)
        else:  # not a mapping at all: keep it, under a key
            out = {"value": cleaner.value(payload, 1, None)}
    except Exception as exc:  # a Mapping whose items() raises
        counters.incr("store.unserializable_values")
        out = {"unreadable_payload": type(exc).__name__}
    if blob is None:
        try:
            # Every key of the cleaned form is a str: orjson's non-str key support,
            # which doubles the cost of the encoding, is never needed.
            blob = orjson.dumps(out)
        except TypeError:  # never expected: encode whatever it is rather than fail
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
        # A cleaned payload holds plain JSON types (a mapping in it is a dict), and a
        # classification recurring from event to event is one shared dict: what it
        # says is read once.
        payload = event.payload
        classification = payload.get("classification")
        if type(classification) is dict:
            known = _classified.get(id(classification))
            if known is not None and known[0] is classification:
                self.category, layer, self.severity = known[1]
            else:
                self.category, layer, self.severity = said = _classification(classification)
                if len(_classified) >= _CLASSIFIED_MAX:
                    _classified.clear()
                # The entry keeps the dict alive: no other object gets its id meanwhile.
                _classified[id(classification)] = (classification, said)
        else:
            self.category, layer, self.severity = _classification(payload)
        if layer is None:
            layer = payload.get("layer")
            layer = layer[:MAX_KIND_CHARS] if type(layer) is str and layer else None
        self.layer = layer
        context = payload.get("context")
        session = context.get("session_id") if type(context) is dict else None
        self.session_id = session[:MAX_ID_CHARS] if type(session) is str and session else None


_CLASSIFIED_MAX: Final = 512
# id(cleaned classification) -> (it, (category, layer, severity)).
_classified: dict[int, tuple[dict[str, Any], tuple[str | None, str | None, str | None]]] = {}


def _classification(
    mapping: Mapping[str, Any],
) -> tuple[str | None, str | None, str | None]:
    return (
        _short(mapping.get("category")),
        _short(mapping.get("layer")),
        _short(mapping.get("severity")),
    )


def _short(value: object, limit: int = MAX_KIND_CHARS) -> str | None:
    if type(value) is str and value:
        return value[:limit]
    return None


_ID_TYPES: Final = frozenset({str, type(None)})


def clean_event(event: Event) -> Cleaned:
    """``event`` with every field and the payload made safe to store."""
    cleaner = _current_cleaner()
    payload, payload_json = _clean_payload(cleaner, event.payload)
    timestamp = event.timestamp
    if type(timestamp) is not float or not math.isfinite(timestamp):
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            timestamp = math.nan
        if not math.isfinite(timestamp):
            counters.incr("store.invalid_timestamps")
            timestamp = get_clock().time()
    name = event.name
    if type(name) is str and len(name) <= _CACHE_STRING_CHARS:
        name = cleaner.text(name)
    else:
        name = clean_text(name, MAX_NAME_CHARS)
    ids: tuple[Any, ...] = (
        event.kind,
        event.correlation_id,
        event.trace_id,
        event.span_id,
        event.tenant_id,
        event.user_id,
        event.id,
    )
    # Nearly always every id is None or ASCII text, 256 characters at most in all,
    # without NUL: one test for the seven instead of clean_id() for each.
    if set(map(type, ids)) <= _ID_TYPES:
        joined = "\x01".join(filter(None, ids))
        if len(joined) > MAX_ID_CHARS or not joined.isascii() or "\x00" in joined:
            ids = tuple(map(clean_id, ids))
    else:
        ids = tuple(map(clean_id, ids))
    kind, correlation_id, trace_id, span_id, tenant_id, user_id, event_id = ids
    cleaned = _restore_event(
        (kind or "unknown")[:MAX_KIND_CHARS],
        name,
        payload,
        correlation_id,
        trace_id,
        span_id,
        tenant_id or None,  # an empty tenant is no tenant
        user_id,
        float(timestamp),
        event_id or "",
    )
    return Cleaned(cleaned, payload_json)
