"""Grouping: which error events are the same issue.

:func:`fingerprint` turns an ``error`` event into a :class:`Grouping`: a stable
hash of the event's *grouping components*, the algorithm version that made it,
a title and a culprit for the issue.  Events with equal fingerprints are one
issue.  ``docs/grouping.md`` describes the rules; in short (version 1):

1. A custom fingerprint (``capture(exc, fingerprint=[...])``) wins.  Its parts
   are the components, and a part ``{{ default }}`` expands to the components
   the rules below would give.
2. Otherwise, for the captured exception and every link of its chain
   (``__cause__`` / ``__context__``), from the root cause to the captured one:
   the exception type (``module.qualname``) and its *in-app* frames as
   ``module.function`` (never line numbers, so editing a file does not split
   issues; consecutive repeats, i.e. recursion, count once).  An exception with
   frames but none of them in-app contributes all of its frames instead.
   ExceptionGroup members contribute their types, sorted and deduplicated.
3. When the captured exception has no frames at all (created, never raised),
   its type and its *normalised* message (:func:`normalize_message`: numbers,
   ids, addresses, quoted values... replaced by placeholders) are the components.

Events of any other kind are not grouped: :func:`fingerprint` returns ``None``
for them.  Payloads read back from a store or a spool are untrusted: a
malformed one still gets a grouping (by whatever it holds), never an exception.

Algorithms are versioned: ``GROUPING_ALGORITHMS`` maps every version ever
shipped to its function, so a store can compute an event's fingerprint under the
version an existing issue was created with (``fingerprint(event, version=1)``)
and keep matching it after the default changes.  The version is not hashed in:
a new version that yields the same components yields the same fingerprint.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from faultlens.events import ERROR, Event
from faultlens.redaction import get_redactor

__all__ = [
    "DEFAULT_PLACEHOLDER",
    "GROUPING_ALGORITHMS",
    "GROUPING_VERSION",
    "Grouping",
    "event_title",
    "fingerprint",
    "fingerprint_json",
    "grouping_components",
    "normalize_message",
    "recent_fingerprint",
    "remember_fingerprint",
    "stack_grouping_json",
]

GROUPING_VERSION: Final = 1
"""The version :func:`fingerprint` uses unless told otherwise."""

DEFAULT_PLACEHOLDER: Final = "{{ default }}"
"""The custom-fingerprint part that expands to the default components."""

_DEFAULT_PART = re.compile(r"\{\{\s*default\s*\}\}")
_TITLE_MAX: Final = 200
_CULPRIT_MAX: Final = 200
_MESSAGE_MAX: Final = 1024  # normalised message: enough to tell messages apart
_NORMALIZE_INPUT_MAX: Final = 4096  # bounds the regex work on hostile messages
_MAX_LINKS: Final = 16
_MAX_FRAMES: Final = 200
_MAX_CUSTOM_PARTS: Final = 32
_MAX_PART_CHARS: Final = 256


@dataclass(frozen=True, slots=True)
class Grouping:
    """How one error event is grouped into an issue.

    ``fingerprint`` is 40 hex characters (SHA-1 of the components); equal
    fingerprints mean one issue.  ``version`` is the algorithm that made it.
    ``title`` is the issue's headline (``"KeyError: 'user'"``: the short type
    name and the first line of the redacted message, whitespace collapsed,
    capped at 200 characters).  ``culprit`` names where it happened
    (``"myapp.orders in create_order"``), or is ``None`` without frames.
    """

    fingerprint: str
    version: int
    title: str
    culprit: str | None


# --- message normalisation --------------------------------------------------------------

# Applied in order; each turns a family of variable values into a placeholder.
# Earlier rules take whole tokens that later ones would only partly match (a UUID
# holds hex and numbers, an e-mail or URL holds a path, a timestamp holds numbers).
_QUOTED = re.compile(r"""(?<!\w)(?:'[^'\n]{0,512}'|"[^"\n]{0,512}"|`[^`\n]{0,512}`)(?!\w)""")
_TIMESTAMP = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
    r"(?:\s?Z|\s?[+-]\d{2}:?\d{2}|\s?UTC)?)?(?!\d)"
    r"|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?!\d)",
    re.IGNORECASE,
)
_UUID = re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.I)
_EMAIL = re.compile(r"[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]{1,15}://[^\s'\"<>]+", re.IGNORECASE)
_PATH = re.compile(
    r"(?<![\w/.~])(?:~|\.{1,2})?(?:/[\w.@%+-]+){2,}/?"  # POSIX, two segments or more
    r"|\b[A-Za-z]:\\[^\s'\"<>|]*"  # Windows
)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.]*\w)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.IGNORECASE)
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b", re.I)
# A number standing alone or attached by "_"/"-" (item_42, worker-3), with an
# optional unit of up to two letters kept as written (10ms, 3s, 50%).
_NUMBER = re.compile(r"(?<![A-Za-z\d.])[-+]?(\d+(?:\.\d+)*)([A-Za-zµ%]{0,2})(?![A-Za-z\d])")
_SPACES = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")
_ASCII_DIGITS: Final = b"0123456789"


def _ipv6(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        ipaddress.IPv6Address(text)
    except ValueError:  # "a:b:c" in prose, or a time already replaced: not an address
        return text
    return "<ip>"


def _number(match: re.Match[str]) -> str:
    placeholder = "<float>" if "." in match.group(1) else "<int>"
    return placeholder + match.group(2)


def normalize_message(text: object) -> str:
    """Return ``text`` with its variable parts replaced by placeholders.

    Quoted values become ``<quoted>``, timestamps ``<timestamp>``, UUIDs
    ``<uuid>``, e-mail addresses ``<email>``, URLs ``<url>``, file paths
    ``<path>``, IP addresses (with a port) ``<ip>``, hex ids (``0x7f3a``, or seven
    or more hex digits mixing digits and letters) ``<hex>``, and numbers ``<int>``
    / ``<float>`` (a unit written right after them, ``10ms``, is kept).  Runs of
    whitespace become one space.  Messages that differ only in such values
    normalise to the same text.  Never raises: anything that is not a ``str`` is
    treated as empty, and input beyond 4096 characters is ignored.
    """
    if not isinstance(text, str):
        return ""
    text = str.__str__(text)[:_NORMALIZE_INPUT_MAX]
    # Each rule runs only when the characters it cannot match without are there (a
    # few C-speed substring tests instead of ten regex scans).  No placeholder holds
    # a digit, a quote or any of those characters, so a test made on the text as it
    # is at that step is exact.
    if "'" in text or '"' in text or "`" in text:
        text = _QUOTED.sub("<quoted>", text)
    digits = _has_digit(text)
    if digits and ("-" in text or ":" in text):
        text = _TIMESTAMP.sub("<timestamp>", text)
    if len(text) >= 32:  # a UUID's 32 hex digits
        text = _UUID.sub("<uuid>", text)
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    if "://" in text:
        text = _URL.sub("<url>", text)
    if "/" in text or ":\\" in text:
        text = _PATH.sub("<path>", text)
    if digits and "." in text:
        text = _IPV4.sub("<ip>", text)
    if ":" in text:
        text = _IPV6.sub(_ipv6, text)
    if digits:  # a hex id holds a digit ("0x" too), and so does a number
        text = _HEX.sub("<hex>", text)
        text = _NUMBER.sub(_number, text)
    # The same as _SPACES.sub(" ", text).strip(): \s, split() and strip() agree on
    # what whitespace is (str.isspace).
    return " ".join(text.split())[:_MESSAGE_MAX]


def _has_digit(text: str) -> bool:
    """Whether ``text`` holds a decimal digit (``\\d``: any script's)."""
    if text.isascii():
        raw = text.encode()
        return len(raw.translate(None, _ASCII_DIGITS)) != len(raw)
    return _DIGIT.search(text) is not None


# --- reading an untrusted payload ----------------------------------------------------------


# Payloads are dicts and lists nearly always: the exact type checks come first, the
# ABC checks (``isinstance(x, Mapping)`` costs ~0.5 µs) only for other types.


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _str(value: Any, limit: int = _MAX_PART_CHARS) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _list(value: Any) -> Sequence[Any]:
    if type(value) is list or isinstance(value, list | tuple):
        return value
    return ()


def _frames(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        f
        for f in _list(node.get("frames"))[:_MAX_FRAMES]
        if type(f) is dict or isinstance(f, Mapping)
    ]


def _frame_name(frame: Mapping[str, Any]) -> str:
    """``module.function``; the file's base name stands in for a missing module."""
    module = _str(frame.get("module"))
    if not module:
        filename = _str(frame.get("filename"), 4096) or "?"
        module = filename.replace("\\", "/").rsplit("/", 1)[-1][:_MAX_PART_CHARS]
    function = _str(frame.get("function")) or "?"
    return f"{module}.{function}"


def _stack(frames: list[Mapping[str, Any]]) -> list[str]:
    """In-app frames (all frames when none is), outermost first, recursion collapsed.

    As ``frame:module.function`` components.  A frame whose module and function are
    non-empty ``str`` (nearly all) is named here, at once; others by _frame_name.
    """
    chosen = [f for f in frames if f.get("in_app") is True] or frames
    out: list[str] = []
    last = last_module = last_function = None
    for frame in chosen:
        module = frame.get("module")
        function = frame.get("function")
        if type(module) is str and module and type(function) is str and function:
            if module == last_module and function == last_function:
                continue  # recursion: the same name as the frame before
            last_module, last_function = module, function
            name = f"frame:{module[:_MAX_PART_CHARS]}.{function[:_MAX_PART_CHARS]}"
        else:
            last_module = last_function = None
            name = "frame:" + _frame_name(frame)
        if name != last:
            out.append(name)
            last = name
    return out


def _type(node: Mapping[str, Any]) -> str:
    return _str(node.get("type")) or "<unknown type>"


def _exception_components(
    node: Mapping[str, Any], frames: list[Mapping[str, Any]] | None = None
) -> list[str]:
    parts = [f"type:{_type(node)}"]
    parts.extend(_stack(_frames(node) if frames is None else frames))
    members = [m for m in _list(node.get("group")) if _is_mapping(m)]
    if members:
        parts.extend(f"member:{t}" for t in sorted({_type(m) for m in members}))
    return parts


def _default_v1(payload: Mapping[str, Any]) -> list[str]:
    frames = _frames(payload)
    if not frames:
        message = payload.get("message")
        return [f"type:{_type(payload)}", f"message:{normalize_message(message)}"]
    links = [link for link in _list(payload.get("chain")) if _is_mapping(link)]
    parts: list[str] = []
    # The chain is stored most recent link first; components run from the root
    # cause to the captured exception, the order a traceback prints them.
    for link in reversed(links[:_MAX_LINKS]):
        parts.extend(_exception_components(link))
    parts.extend(_exception_components(payload, frames))
    return parts


GROUPING_ALGORITHMS: Mapping[int, Callable[[Mapping[str, Any]], list[str]]] = {
    1: _default_v1,
}
"""Every grouping version ever shipped: version -> default-components function."""


def _custom(payload: Mapping[str, Any]) -> list[str] | None:
    value = payload.get("fingerprint")
    if isinstance(value, str):
        value = [value]
    parts = [p[:_MAX_PART_CHARS] for p in _list(value)[:_MAX_CUSTOM_PARTS] if isinstance(p, str)]
    return parts or None


def grouping_components(event: Event, *, version: int = GROUPING_VERSION) -> tuple[str, ...]:
    """The strings an event's fingerprint hashes (for "why were these grouped?").

    Raises ``ValueError`` for an unknown ``version`` (a caller bug, not bad data).
    """
    algorithm = GROUPING_ALGORITHMS.get(version)
    if algorithm is None:
        raise ValueError(
            f"unknown grouping version {version!r}; known: {sorted(GROUPING_ALGORITHMS)}"
        )
    payload = event.payload if _is_mapping(event.payload) else {}
    return _components(payload, algorithm)


def _components(
    payload: Mapping[str, Any], algorithm: Callable[[Mapping[str, Any]], list[str]]
) -> tuple[str, ...]:
    custom = _custom(payload)
    if custom is None:
        return tuple(algorithm(payload))
    parts: list[str] = []
    for part in custom:
        if _is_default(part):
            parts.extend(algorithm(payload))
        else:
            parts.append(f"custom:{part}")
    return tuple(parts)


def _is_default(part: str) -> bool:
    return _DEFAULT_PART.fullmatch(part.strip()) is not None


def _hash(components: Sequence[str]) -> str:
    # Each part length-prefixed, so ("ab", "c") and ("a", "bc") differ; hashed in one
    # update (the same digest as one update per prefix and per part).
    blob = bytearray()
    for part in components:
        data = part.encode("utf-8", "surrogatepass")
        blob += len(data).to_bytes(4, "big")
        blob += data
    return hashlib.sha1(blob, usedforsecurity=False).hexdigest()


def _one_line(text: str) -> str:
    return " ".join(text.split())  # = _SPACES.sub(" ", text).strip(), faster


def _title(payload: Mapping[str, Any], name: str) -> str:
    full = _str(payload.get("type"), 1024) or _one_line(name)[:1024] or "Error"
    short = full.rsplit(".", 1)[-1] or full
    message = payload.get("message")
    first = ""
    if isinstance(message, str):
        first = _one_line(message[: _TITLE_MAX * 4].split("\n", 1)[0])
    title = f"{short}: {first}" if first else short
    title = get_redactor().redact_text(title)
    return title if len(title) <= _TITLE_MAX else title[: _TITLE_MAX - 1] + "…"


def _culprit(payload: Mapping[str, Any]) -> str | None:
    """The innermost in-app frame of the captured exception, else of its root cause."""
    own = _frames(payload)
    for frame in reversed(own):
        if frame.get("in_app") is True:
            return _site(frame)
    links = [link for link in _list(payload.get("chain")) if _is_mapping(link)]
    if links:
        for frame in reversed(_frames(links[-1])):
            if frame.get("in_app") is True:
                return _site(frame)
    return _site(own[-1]) if own else None


def _site(frame: Mapping[str, Any]) -> str:
    module = _str(frame.get("module")) or _str(frame.get("filename"), 4096) or "?"
    function = _str(frame.get("function")) or "?"
    return f"{module} in {function}"[:_CULPRIT_MAX]


# --- fingerprints the store just computed -----------------------------------------------------

# Event id -> the fingerprint the store grouped it under, for the error events written
# lately: the recorder hands each batch to its observers (the pattern monitor) right
# after writing it, and the monitor needs the same fingerprint, which costs tens of
# microseconds to compute again.  Two generations of at most _RECENT_MAX ids each: a
# lookup is two dict probes, forgetting is dropping the older dict (no per-entry
# eviction).  Dict operations are atomic under the GIL; a lost update is only a miss.
_RECENT_MAX: Final = 8192
_recent: dict[str, str] = {}
_recent_older: dict[str, str] = {}


def remember_fingerprint(event_id: str, value: str) -> None:
    """Remember the fingerprint the store gave the error event ``event_id`` (bounded)."""
    global _recent, _recent_older
    recent = _recent
    if len(recent) >= _RECENT_MAX:
        _recent_older, _recent = recent, {}
        recent = _recent
    recent[event_id] = value


def recent_fingerprint(event_id: str) -> str | None:
    """The fingerprint the store gave ``event_id`` lately (see above), or None."""
    found = _recent.get(event_id)
    return found if found is not None else _recent_older.get(event_id)


def fingerprint(event: Event, *, version: int = GROUPING_VERSION) -> Grouping | None:
    """Group an ``error`` event; ``None`` for events of any other kind.

    Never raises on a malformed payload (it is grouped by what it holds); raises
    ``ValueError`` only for an unknown ``version``.  Costs tens of microseconds:
    call it off the hot path (the store does, while writing).
    """
    if event.kind != ERROR:
        return None
    components = grouping_components(event, version=version)
    payload = event.payload if _is_mapping(event.payload) else {}
    return Grouping(
        fingerprint=_hash(components),
        version=version,
        title=_title(payload, event.name if isinstance(event.name, str) else ""),
        culprit=_culprit(payload),
    )


# --- the store's path: memoised per stack ------------------------------------------------------

# What the stack part of version 1 reads (the message only when there are no frames, or
# a custom fingerprint's "{{ default }}" part then), as JSON -> (the fingerprint, or
# None when the message takes part; the culprit).  Only values seen twice are kept, so
# one-off stacks never evict the recurring ones.
_MEMO_MAX: Final = 2048
_MEMO_KEY_BYTES: Final = 16_384
_ONCE_MAX: Final = 65_536
_memo: dict[bytes, tuple[str | None, str | None]] = {}
# The same, by the identity of the parts read, for payloads that never change.
_by_identity: dict[tuple[int, ...], tuple[tuple[Any, ...], tuple[str | None, str | None]]] = {}
_seen_once: set[int] = set()
# Types orjson would encode its own way (dataclasses, datetimes, subclasses) are
# refused, so that a key never stands for two different values.
_KEY_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _refuse(value: object) -> object:
    raise TypeError


def fingerprint_json(event: Event, *, version: int = GROUPING_VERSION) -> Grouping | None:
    """:func:`fingerprint` for an event whose payload holds JSON types only; the same result.

    For the store, whose cleaned payloads hold nothing but dicts, lists, str, int,
    float, bool and None.  Events of one code path share a stack, so the part of the
    grouping made from it (the fingerprint, unless the message takes part, and the
    culprit) is memoised by the JSON of what it reads: a lookup per event instead of a
    walk over every frame (:func:`stack_grouping_json`).  The title shows the event's
    own message and is made every time.  Other payloads may hold values that encode
    alike but group differently (an ``Enum`` member and its value): they must go
    through :func:`fingerprint`.
    """
    if event.kind != ERROR:
        return None
    digest, culprit = stack_grouping_json(event, version=version)
    return Grouping(fingerprint=digest, version=version, title=event_title(event), culprit=culprit)


def stack_grouping_json(
    event: Event, *, version: int = GROUPING_VERSION, frozen: bool = False
) -> tuple[str, str | None]:
    """The fingerprint and the culprit of :func:`fingerprint_json`, without the title.

    The store groups a batch's events with these and makes a title only for the
    event that gives its issue one (the newest).  ``frozen=True`` promises that the
    payload's lists and dicts are never changed (the store's cleaned payloads, whose
    recurring parts are shared from event to event): they are then remembered by
    identity too, which spares encoding them.  Raises ``ValueError`` for an unknown
    ``version``, as :func:`fingerprint` does.
    """
    payload = event.payload
    algorithm = GROUPING_ALGORITHMS.get(version)
    if algorithm is not _default_v1 or type(payload) is not dict:
        return _hash(grouping_components(event, version=version)), _culprit(
            payload if _is_mapping(payload) else {}
        )
    parts = (
        payload.get("type"),
        payload.get("frames"),
        payload.get("chain"),
        payload.get("group"),
        payload.get("fingerprint"),
    )
    entry = None
    if frozen:
        identity = tuple(map(id, parts))
        known = _by_identity.get(identity)
        if known is not None:
            entry = known[1]
    if entry is None:
        try:
            key = orjson.dumps(parts, default=_refuse, option=_KEY_OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            return _hash(grouping_components(event, version=version)), _culprit(payload)
        entry = _memo.get(key)
        if entry is None:
            entry = _stack_grouping(payload)
            if len(key) <= _MEMO_KEY_BYTES and _seen_before(key):
                if len(_memo) >= _MEMO_MAX:
                    _memo.clear()
                _memo[key] = entry
        if frozen:
            if len(_by_identity) >= _MEMO_MAX:
                _by_identity.clear()
            # The entry holds the parts: while it lives, no other object has their ids.
            _by_identity[identity] = (parts, entry)
    digest, culprit = entry
    if digest is None:  # no frames: the message takes part
        digest = _hash(_components(payload, algorithm))
    return digest, culprit


def event_title(event: Event) -> str:
    """The title :func:`fingerprint` gives ``event``."""
    payload = event.payload if _is_mapping(event.payload) else {}
    return _title(payload, event.name if isinstance(event.name, str) else "")


def _stack_grouping(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """The fingerprint (None when version 1 reads the message) and the culprit."""
    if not _frames(payload):
        custom = _custom(payload)
        if custom is None or any(_is_default(part) for part in custom):
            return None, _culprit(payload)
    return _hash(_components(payload, _default_v1)), _culprit(payload)


def _seen_before(key: bytes) -> bool:
    digest = hash(key)
    if digest in _seen_once:
        return True
    if len(_seen_once) >= _ONCE_MAX:
        _seen_once.clear()
    _seen_once.add(digest)
    return False
