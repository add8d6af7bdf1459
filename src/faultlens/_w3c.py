"""W3C Trace Context Level 1: parse and format ``traceparent`` and ``tracestate``.

Follows the Recommendation (https://www.w3.org/TR/trace-context-1/) and the rules
its conformance suite checks.  Incoming headers are untrusted: the parsers never
raise and answer "absent" (``None`` / ``()``) for anything invalid, which tells
the caller to restart the trace (traceparent) or to drop the vendor state
(tracestate).  The formatters are fed by our own code, so they raise
:class:`~faultlens.errors.ConfigurationError` rather than emit a header that
every receiver would discard.

Decisions where the Recommendation leaves room:

* A ``traceparent`` that arrives as more than one header field is invalid, even
  when the fields agree (the suite's duplicated-header case restarts the trace).
* Header values must be US-ASCII; a non-ASCII character anywhere (also in the
  ignored tail of a future version) makes the value invalid.
* The 32-member limit of ``tracestate`` counts key/value members; empty and
  whitespace-only members (allowed, and produced by joining several fields) do not
  count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from faultlens.errors import ConfigurationError

__all__ = [
    "MAX_TRACESTATE_MEMBERS",
    "TRACESTATE_TRUNCATION_LIMIT",
    "TraceParent",
    "format_traceparent",
    "format_tracestate",
    "parse_traceparent",
    "parse_tracestate",
    "traceparent_ids",
]

MAX_TRACESTATE_MEMBERS = 32
"""Most key/value members a ``tracestate`` may hold; a longer one is discarded whole."""

TRACESTATE_TRUNCATION_LIMIT = 512
"""Length of the combined ``tracestate`` header above which :func:`format_tracestate` truncates."""

# Members longer than this are the first to go when truncating (spec: "Entries
# larger than 128 characters long SHOULD be removed first").
_LARGE_MEMBER = 128

_OWS = " \t"
_VERSION_00_LENGTH = 55

# Prefix match only: the four fields of every version.  What follows them (nothing
# for version 00; end of string or "-" for a future version) is checked in code,
# which is cheaper than a second pattern.  [0-9a-f] also rejects upper-case hex
# and the non-ASCII digits that str.isdigit()-style checks would let through.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
# A dict lookup is several times cheaper than int(text, 16) on the hot path.
_HEX_BYTE = {f"{i:02x}": i for i in range(256)}
# The shape of every valid 55-byte traceparent, as the _SHAPE table maps it: each
# lower-case hex digit becomes "h", "-" stays, any other byte becomes "!".  One
# bytes.translate and one comparison check the whole value, without decoding it
# first or running the regular expression (the fast path of every request).
_SHAPE = bytes(
    ord("h") if chr(b) in "0123456789abcdef" else b if b == ord("-") else ord("!")
    for b in range(256)
)
_SHAPE_55 = b"hh-" + b"h" * 32 + b"-" + b"h" * 16 + b"-hh"

_KEY_CHAR = r"[a-z0-9_\-*/]"
_KEY = (
    # simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
    rf"[a-z]{_KEY_CHAR}{{0,255}}"
    # multi-tenant-key = tenant-id "@" system-id
    # tenant-id = ( lcalpha / DIGIT ) 0*240( ... ); system-id = lcalpha 0*13( ... )
    rf"|[a-z0-9]{_KEY_CHAR}{{0,240}}@[a-z]{_KEY_CHAR}{{0,13}}"
)
# value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = printable ASCII but "," "="
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rf"({_KEY})=({_VALUE})")
_KEY_ONLY = re.compile(_KEY)
_VALUE_ONLY = re.compile(_VALUE)


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid ``traceparent`` as received.

    ``version`` is kept as parsed (a future version such as ``0xcc`` stays here),
    but :func:`format_traceparent` always answers with version ``00``, which is
    how the Recommendation asks a Level 1 vendor to forward a higher version.
    ``flags`` is the whole trace-flags byte; only :attr:`sampled` has a meaning.
    """

    version: int
    """The version byte: 0 for ``00``, never 0xff."""
    trace_id: str
    """32 lower-case hex digits, never all zero."""
    parent_id: str
    """16 lower-case hex digits, never all zero: the caller's span id."""
    flags: int
    """The trace-flags byte, unknown bits included (they are never sent on)."""

    @property
    def sampled(self) -> bool:
        """Whether the caller may have recorded this trace (bit 0 of ``flags``)."""
        return bool(self.flags & 1)


# The slot descriptors of TraceParent's fields, for parse_traceparent's fast path.
_new_object = object.__new__
_set_version: Callable[[TraceParent, int], None] = TraceParent.__dict__["version"].__set__
_set_trace_id: Callable[[TraceParent, str], None] = TraceParent.__dict__["trace_id"].__set__
_set_parent_id: Callable[[TraceParent, str], None] = TraceParent.__dict__["parent_id"].__set__
_set_flags: Callable[[TraceParent, int], None] = TraceParent.__dict__["flags"].__set__


def _one_field(value: object) -> str | None:
    """Return the single header field in ``value`` as text, or ``None`` if there is not one."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return _decode(value)
    if isinstance(value, Sequence) and len(value) == 1:
        (field,) = value
        if isinstance(field, str):
            return field
        if isinstance(field, bytes):
            return _decode(field)
    return None


def _all_fields(value: object) -> str | None:
    """Return every header field in ``value`` joined by ``","``, or ``None`` if one is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return _decode(value)
    if not isinstance(value, Sequence):
        return None
    fields: list[str] = []
    for field in value:
        decoded = _decode(field) if isinstance(field, bytes) else field
        if not isinstance(decoded, str):
            return None
        fields.append(decoded)
    return ",".join(fields)


def _decode(raw: bytes) -> str | None:
    """Decode a header field as US-ASCII, or ``None`` when it is not."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def parse_traceparent(value: str | bytes | Sequence[str | bytes] | None) -> TraceParent | None:
    """Parse a ``traceparent`` header; ``None`` when it is absent or invalid.

    ``value`` is one header field (``str``, or ``bytes`` decoded as ASCII) or the
    sequence of every field received under that name.  ``None`` means the caller
    must start a new trace (and ignore ``tracestate``).  Never raises.

    Invalid: more than one field; anything but lower-case hex; version ``ff``; an
    all-zero trace-id or parent-id; version ``00`` that is not exactly 55
    characters.  A future version is read as far as the four known fields, which
    must be followed by the end of the value or by ``-``.  Spaces and tabs around
    the value are ignored.
    """
    if type(value) is not str:
        value = _one_field(value)
        if value is None:
            return None
    # A valid version-00 value is exactly 55 characters, so only a value of
    # another length can have surrounding whitespace worth stripping.
    length = len(value)
    if length != _VERSION_00_LENGTH:
        value = value.strip(_OWS)
        length = len(value)
        if length < _VERSION_00_LENGTH:
            return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if length != _VERSION_00_LENGTH and (
        version == "00" or value[_VERSION_00_LENGTH] != "-" or not value.isascii()
    ):
        return None
    if version == "ff" or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_SPAN_ID:
        return None
    # Same result as TraceParent(...), at half the cost: the frozen dataclass
    # __init__ routes every field through object.__setattr__, and this runs on
    # every incoming request.  Safe because TraceParent has no __post_init__.
    parsed = _new_object(TraceParent)
    _set_version(parsed, _HEX_BYTE[version])
    _set_trace_id(parsed, trace_id)
    _set_parent_id(parsed, parent_id)
    _set_flags(parsed, _HEX_BYTE[flags])
    return parsed


def traceparent_ids(
    value: str | bytes | Sequence[str | bytes] | None,
) -> tuple[str, str, int] | None:
    """Return ``(trace_id, parent_id, flags)`` of a valid ``traceparent``, else ``None``.

    The same verdict as :func:`parse_traceparent` (a test compares them on any
    bytes), without building a :class:`TraceParent`: the request path of the ASGI
    middleware.  The usual value, one 55-byte field as ASGI servers hand it over,
    is checked with one ``bytes.translate`` and one comparison; anything else
    goes through :func:`parse_traceparent`.
    """
    if type(value) is bytes and len(value) == _VERSION_00_LENGTH:
        if value.translate(_SHAPE) != _SHAPE_55:
            return None
        version, trace_id, parent_id, flags = value.decode("ascii").split("-")
        if version == "ff" or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_SPAN_ID:
            return None
        return trace_id, parent_id, _HEX_BYTE[flags]
    parsed = parse_traceparent(value)
    if parsed is None:
        return None
    return parsed.trace_id, parsed.parent_id, parsed.flags


def format_traceparent(trace_id: str, span_id: str, flags: int = 1) -> str:
    """Return the version-00 ``traceparent`` value for an outgoing request.

    ``span_id`` is the span making the request (the receiver's parent-id).  Only
    the sampled bit of ``flags`` is sent: the Recommendation makes a vendor zero
    the flags it does not know.  Raises :class:`~faultlens.errors.ConfigurationError`
    when an id is not lower-case hex of the right length or is all zeros, since
    every receiver would discard such a header.
    """
    if _TRACE_ID.fullmatch(trace_id) is None or trace_id == _ZERO_TRACE_ID:
        raise ConfigurationError(
            f"trace id {trace_id!r} is not 32 lower-case hex digits (not all zero): "
            "pass one from faultlens' id generator or a parsed TraceParent"
        )
    if _SPAN_ID.fullmatch(span_id) is None or span_id == _ZERO_SPAN_ID:
        raise ConfigurationError(
            f"span id {span_id!r} is not 16 lower-case hex digits (not all zero): "
            "pass one from faultlens' id generator"
        )
    return f"00-{trace_id}-{span_id}-{'01' if flags & 1 else '00'}"


def parse_tracestate(
    value: str | bytes | Sequence[str | bytes] | None,
) -> tuple[tuple[str, str], ...]:
    """Parse a ``tracestate`` header into ``(key, value)`` members, left to right.

    ``value`` is one header field (``str``, or ``bytes`` decoded as ASCII) or the
    sequence of every field received under that name, combined in order as if
    joined by ``","``.  Empty and whitespace-only members are skipped; spaces and
    tabs around members are ignored, while leading spaces inside a value are kept.

    Returns ``()`` when the header is absent, empty, or invalid as a whole: any
    member that breaks the key or value grammar, a repeated key, more than
    :data:`MAX_TRACESTATE_MEMBERS` members, or non-ASCII bytes.  Never raises.
    Only parse it when :func:`parse_traceparent` accepted the ``traceparent``.
    """
    text = _all_fields(value)
    if not text:
        return ()
    members: dict[str, str] = {}
    for raw in text.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        match = _MEMBER.fullmatch(member)
        if match is None:
            return ()
        key, item = match.groups()
        if key in members or len(members) == MAX_TRACESTATE_MEMBERS:
            return ()
        members[key] = item
    return tuple(members.items())


def format_tracestate(members: Sequence[tuple[str, str]]) -> str:
    """Return the ``tracestate`` value for ``members``, truncated to fit the limits.

    Members are joined with ``","`` in the order given (put a modified or new
    entry first, as the Recommendation asks).  At most
    :data:`MAX_TRACESTATE_MEMBERS` are kept, dropping from the right.  If the
    result would exceed :data:`TRACESTATE_TRUNCATION_LIMIT` characters, members
    longer than 128 characters are dropped first, rightmost first, then further
    members from the right, until it fits.  An empty result (``""``) should not
    be sent.

    Raises :class:`~faultlens.errors.ConfigurationError` for a key or value the
    grammar forbids or a repeated key, since receivers would discard the whole
    header.
    """
    seen: set[str] = set()
    entries: list[str] = []
    for key, item in members:
        if _KEY_ONLY.fullmatch(key) is None:
            raise ConfigurationError(
                f"tracestate key {key!r} is invalid: use lower-case letters, digits and "
                "'_-*/', starting with a letter (or 'tenant@system'), up to 256 characters"
            )
        if _VALUE_ONLY.fullmatch(item) is None:
            raise ConfigurationError(
                f"tracestate value {item!r} for key {key!r} is invalid: use 1 to 256 "
                "printable ASCII characters other than ',' and '=', not ending in a space"
            )
        if key in seen:
            raise ConfigurationError(
                f"tracestate key {key!r} appears twice: keep only its most recent value"
            )
        seen.add(key)
        entries.append(f"{key}={item}")
    del entries[MAX_TRACESTATE_MEMBERS:]
    # Total length of the header: the entries plus one comma between each pair.
    length = sum(map(len, entries)) + len(entries) - 1
    if length > TRACESTATE_TRUNCATION_LIMIT:
        for index in range(len(entries) - 1, -1, -1):
            if len(entries[index]) > _LARGE_MEMBER:
                length -= len(entries.pop(index)) + 1
                if length <= TRACESTATE_TRUNCATION_LIMIT:
                    break
        while length > TRACESTATE_TRUNCATION_LIMIT:
            length -= len(entries.pop()) + 1
    return ",".join(entries)
