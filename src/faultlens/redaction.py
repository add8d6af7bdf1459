"""Redaction: the one engine that removes secrets before anything leaves the process.

Logs call it for every record, and events, the store and the dashboard use the same
rules, so a secret is either redacted everywhere or found in one place and fixed there.

Two kinds of rules apply, both on by default:

By key
    A value stored under a sensitive key (in any ``Mapping``, dataclass instance or
    named tuple, at any depth) is replaced by the marker, whatever its type; only
    ``None``, ``True`` and ``False`` are kept, since they carry no secret and "the
    password was missing" is worth knowing.  Keys are compared by their words,
    case-insensitively and ignoring separators, so ``X-Api-Key``, ``user_password``,
    ``authToken`` and ``creditCard`` all match.  A key-list entry of five characters
    or more matches anywhere in the key (``token`` matches ``refresh_token``); a
    shorter one matches only the key's last word (``pwd`` matches ``db_pwd``, ``auth``
    matches ``X-Auth``, but ``cvc_check`` and ``auth_method`` are kept).  Keys in the
    allow list are never redacted; they are compared word by word, so ``session_id``
    also allows ``sessionId`` and ``Session-ID`` but not ``sessionid`` (Django's
    session cookie, which is a secret).

By value pattern, in every string at any depth, keys included
    The credential after ``Bearer``/``Basic`` (the scheme word is kept; lower-case
    ``basic`` is prose, not a scheme), JWTs (``eyJ...`` and two more base64url
    segments), payment card numbers of 13 to 19 digits with optional single spaces
    or dashes that pass the Luhn check and start like a real card (2 to 6: Visa,
    Mastercard, Amex, Discover and the rest; so epoch-millisecond timestamps and
    zero-filled ids are kept), AWS access key ids (``AKIA``/``ASIA``), the password
    of a URL (``scheme://user:[REDACTED]@host``), and the value of any
    ``key=value``, ``key: value``, ``"key": "value"`` or ``--key=value`` whose key
    is sensitive by the key rules above (so ``aws_secret_access_key=...``, query
    strings, dict reprs, JSON and header dumps are covered, and ``session_id=...``
    is kept).  A quoted value is redacted up to its closing quote, an unquoted one
    up to a blank, ``&``, ``;`` or ``,``, and ``Cookie:``/``Authorization:`` header
    values to the end of the line.  E-mail and IP addresses are redacted only when
    asked (``redact_emails``, ``redact_ips``).

Hostile input never raises and is never dropped silently: a container that contains
itself becomes ``"[RECURSIVE]"``, one nested deeper than ``max_depth`` becomes
``"[DEPTH LIMIT]"``, one that fails while being read (a broken ``Mapping``, a dict
changed by another thread) becomes ``"[UNREDACTABLE]"``, and each of these increments
a ``redaction.*`` counter.  Strings are scanned whole, in linear time.

Clean values are cheap: a string is searched only when a few C-speed substring tests
say a pattern could match, and key decisions are cached per key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

import orjson

from faultlens._metrics import counters
from faultlens.errors import ConfigurationError

__all__ = [
    "DEFAULT_ALLOW_KEYS",
    "DEFAULT_SENSITIVE_KEYS",
    "REDACTED",
    "Redactor",
    "get_redactor",
    "neutralize_newlines",
    "redact",
    "redact_text",
    "set_redactor",
]

REDACTED = "[REDACTED]"

_K = TypeVar("_K")
_V = TypeVar("_V")

DEFAULT_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "api_key",
        "apikey",
        "auth",
        "authorization",
        "card_num",
        "card_number",
        "cookie",
        "credential",
        "credit_card",
        "cvc",
        "cvv",
        "passphrase",
        "passwd",
        "password",
        "private_key",
        "pwd",
        "secret",
        "session",
        "set-cookie",
        "ssn",
        "token",
    }
)

# Correlation fields faultlens logs on purpose, and token *counters* of LLM APIs,
# which the substring rule for "token"/"session" would otherwise hide.
DEFAULT_ALLOW_KEYS: frozenset[str] = frozenset(
    {
        "completion_tokens",
        "correlation_id",
        "max_tokens",
        "prompt_tokens",
        "request_id",
        "session_id",
        "span_id",
        "token_count",
        "token_type",
        "total_tokens",
        "trace_id",
        "user_id",
    }
)

_RECURSIVE = "[RECURSIVE]"
_DEPTH_LIMIT = "[DEPTH LIMIT]"
_UNREDACTABLE = "[UNREDACTABLE]"
_MAX_DEPTH_CEILING = 100  # keeps the walk far from Python's own recursion limit
_SHORT_ENTRY = 4  # key-list entries this short match only the key's last word
_KEY_CACHE_SIZE = 4096
_KEY_CACHE_MAX_KEY = 256  # longer keys are judged every time rather than pinned in memory
_CARD_MIN, _CARD_MAX = 13, 19
# A card is a run of 13+ characters that are ASCII digits or the single space/dash
# separators the card rule accepts.  Translated through this table (those characters
# become "0", every other byte "x"), such a run is one C-speed substring search, so
# ids full of digits (32-hex correlation ids) skip the card regex (~3 µs each).
_CARD_CHARS = bytes(0x30 if 0x30 <= b <= 0x39 or b in (0x20, 0x2D) else 0x78 for b in range(256))
_CARD_WINDOW = b"0" * _CARD_MIN
_SCALARS = frozenset({int, float, bool, complex, type(None)})
# Header lines whose whole value is secret, whatever separators it contains.
_WHOLE_LINE_KEYS = ("cookie", "authorization")

# Words of a key: runs of ASCII capitals not followed by a lower-case letter
# ("HTTP" in "HTTPHeader"), capitalised or lower-case ASCII words, digit runs, and runs
# of other letters.  Separators and punctuation are dropped.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_]+")

# One regex per family of value patterns, each starting with a literal or a small
# character set: sre then jumps from candidate to candidate at C speed.  (A single
# alternation of all of them costs ~150 ns per character, because sre tries every
# branch at every position.)  Whether a candidate really is a secret (a sensitive
# key, a Luhn-valid card, a valid IPv6 address) is decided in Python.
# Matched on the reversed text just before a separator: blanks, an optional closing
# quote (possibly backslash-escaped), then the key.
_KEY_BEFORE = re.compile(r"[ \t]*+(?:[\"']\\?)?([\w.-]++)")
# Greedy password, so that an unescaped "@" inside it still ends at the host's "@".
_URL_PASSWORD = re.compile(r"://[^\s:/?#]*+:([^\s/?#]*)@")
_BEARER = re.compile(
    r"(?:B(?:earer|EARER|asic|ASIC)|bearer)[ \t]++"
    # "Bearer Bearer abc": the credential is the word after the last scheme word.
    r"(?!(?:[Bb]earer|BEARER|Basic|BASIC)[ \t])([A-Za-z0-9._~+/-]++=*+)"
)
# The look-behind comes after the literal, so sre still jumps from "eyJ" to "eyJ"; it
# stops a run like "eyJeyJeyJ..." from being rescanned from every "eyJ" in it.
_JWT = re.compile(r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]*+\.[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+")
_AWS_KEY_ID = re.compile(r"A(?:KIA|SIA)[A-Z0-9]{16}")
# A maximal run of ASCII digits with single space/dash separators.
_CARD_RUN = re.compile(r"[0-9](?:[ -]?[0-9]){12,}+")
_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+")
_LOCAL_PART = re.compile(r"[\w.+-]++")  # matched on the reversed text
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IPV6_TAIL = re.compile(r":[0-9A-Fa-f:.]*+")
_HEX = frozenset("0123456789abcdefABCDEF")
# What may follow a separator before the value proper: a quoted string (its inside is
# the value), or a scheme word that is kept ("Authorization: Bearer <value>").
_VALUE_START = re.compile(
    r'[ \t]*+(?:\\"(?P<eq>(?:[^\\\r\n]|\\[^"\r\n])*+)\\"'
    r'|"(?P<dq>(?:[^"\\\r\n]|\\.)*+)"'
    r"|'(?P<sq>(?:[^'\\\r\n]|\\.)*+)'"
    r"|\\?[\"'](?P<open>[^\r\n]*+)"  # an unterminated quote: the rest of the line
    r"|(?P<scheme>(?i:bearer|basic|token|digest|negotiate|ntlm|apikey|aws4-hmac-sha256)"
    r"[ \t]++)(?=[^\s&;,\"'])|)"
)
# An unquoted value ends at the first of these; a whole-line one at a line break.
_VALUE_END = re.compile(r"[\s&;,\"']")
_LINE_END = re.compile(r"[\r\n]")
_DIGIT_RUN = re.compile(r"[0-9](?:[ -]?[0-9])*+")
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}
_BRACKET_WINDOW = 256  # how far back an opening bracket is looked for
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {
    **{chr(c): f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    "\r": "\\r",
    "\n": "\\n",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


# What _clean_json hands to orjson: only the types orjson encodes natively; everything
# else (subclasses of str, int, dict, list and tuple, dataclasses, sets, bytes,
# arbitrary objects) reaches _refuse, which sends the mapping to the redactor.
_NATIVE_ONLY = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
_dumps = orjson.dumps


class _NotNative(TypeError):
    """Raised by _refuse: a value that orjson does not encode on its own."""


def _refuse(value: object) -> object:
    raise _NotNative


def _words(key: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(key)]


def _flat(key: str) -> str:
    return "".join(_words(key))


def _key_set(value: Collection[str], name: str) -> frozenset[str]:
    if isinstance(value, str):
        raise ConfigurationError(
            f"Redactor({name}=...) takes a collection of key names, not one string: "
            f"write {name}=({value!r},)"
        )
    keys = frozenset(value)
    for key in keys:
        if not isinstance(key, str) or not _words(key):
            raise ConfigurationError(
                f"Redactor({name}=...) contains {key!r}: every entry must be a string "
                "with at least one letter or digit"
            )
    return keys


@dataclass(frozen=True, slots=True)
class _SensitiveKey:
    """A key whose values are redacted; ``name`` is the key as output."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Redactor:
    """Replace secrets in values, mappings and text by ``marker``; thread-safe.

    ``keys`` replaces the sensitive key list (default :data:`DEFAULT_SENSITIVE_KEYS`),
    ``extra_keys`` adds to it, ``allow_keys`` (default :data:`DEFAULT_ALLOW_KEYS`)
    names keys that are never redacted and wins over both; entries are matched as
    the module docstring says (four characters or fewer: the key's last word only).
    ``redact_emails`` and ``redact_ips`` add e-mail and IPv4/IPv6 addresses to the
    value patterns.  Containers nested deeper than ``max_depth`` (1 to 100) are
    replaced by a marker.  ``enabled=False`` makes every method return its input
    unchanged (``redact_mapping`` a shallow copy).

    Invalid configuration raises :class:`~faultlens.errors.ConfigurationError`.
    Instances are immutable and hashable; use ``dataclasses.replace`` to derive one.
    """

    keys: Collection[str] = DEFAULT_SENSITIVE_KEYS
    extra_keys: Collection[str] = frozenset()
    allow_keys: Collection[str] = DEFAULT_ALLOW_KEYS
    redact_emails: bool = False
    redact_ips: bool = False
    marker: str = REDACTED
    max_depth: int = 10
    enabled: bool = True

    _long_keys: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _short_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    _allow: frozenset[str] = field(init=False, repr=False, compare=False)
    # str key -> its output form (scanned like text), wrapped in _SensitiveKey when
    # sensitive.  Only str keys are stored; lookups may pass any key.
    _key_cache: dict[object, str | _SensitiveKey] = field(init=False, repr=False, compare=False)
    # key as found before a separator in text, reversed -> is it sensitive
    _text_key_cache: dict[str, bool] = field(init=False, repr=False, compare=False)
    # redact_emails or redact_ips: the value patterns that are off by default
    _optional_patterns: bool = field(init=False, repr=False, compare=False)
    # str keys that are not sensitive and come out as they went in: a mapping whose
    # keys are all here needs no key work (a C-speed subset test, see _clean_json).
    _clean_keys: set[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = _key_set(self.keys, "keys")
        extra = _key_set(self.extra_keys, "extra_keys")
        allow = _key_set(self.allow_keys, "allow_keys")
        if not isinstance(self.marker, str) or not self.marker:
            raise ConfigurationError(
                "Redactor(marker=...) must be a non-empty string, such as '[REDACTED]'"
            )
        if (
            isinstance(self.max_depth, bool)
            or not isinstance(self.max_depth, int)
            or not 1 <= self.max_depth <= _MAX_DEPTH_CEILING
        ):
            raise ConfigurationError(
                f"Redactor(max_depth={self.max_depth!r}) must be an int from 1 to "
                f"{_MAX_DEPTH_CEILING}"
            )
        flats = {_flat(key) for key in keys | extra}
        longs = sorted((f for f in flats if len(f) > _SHORT_ENTRY), key=len, reverse=True)
        setattr_ = object.__setattr__
        setattr_(self, "keys", keys)
        setattr_(self, "extra_keys", extra)
        setattr_(self, "allow_keys", allow)
        setattr_(
            self,
            "_long_keys",
            re.compile("|".join(map(re.escape, longs))) if longs else None,
        )
        setattr_(self, "_short_keys", frozenset(f for f in flats if len(f) <= _SHORT_ENTRY))
        setattr_(self, "_allow", frozenset("_".join(_words(key)) for key in allow))
        setattr_(self, "_key_cache", {})
        setattr_(self, "_text_key_cache", {})
        setattr_(self, "_clean_keys", set())
        setattr_(self, "_optional_patterns", bool(self.redact_emails or self.redact_ips))

    # -- public API ---------------------------------------------------------------

    def redact(self, value: object) -> object:
        """Return a copy of ``value`` with secrets replaced; the input is never mutated.

        Mappings, dataclass instances and named tuples become dicts with ``str`` keys
        (other keys are converted with ``str()``; keys are scanned like text), lists
        stay lists, tuples stay tuples, sets and frozensets become lists (their items
        may no longer be hashable or distinct once redacted), ``bytes`` become
        redacted text, an enum member its redacted value (what orjson would write).
        Objects of other types are returned as they are: redact
        their ``str()`` with :meth:`redact_text` when you serialise them.
        """
        if not self.enabled:
            return value
        try:
            return self._value(value, 1, None)
        except Exception:  # a hostile object must not break the caller's logging
            counters.incr("redaction.failed")
            return _UNREDACTABLE

    def redact_mapping(self, mapping: Mapping[str, object]) -> dict[str, object]:
        """Return a redacted copy of ``mapping`` as a new dict; the fast common case.

        Same rules as :meth:`redact`.  A disabled redactor returns a shallow copy.
        """
        if not self.enabled:
            return dict(mapping)
        try:
            return self._pairs(mapping.items(), len(mapping), 1, None, mapping)
        except Exception as exc:  # a broken Mapping: say so instead of dropping it
            counters.incr("redaction.failed")
            return {"redaction_failed": f"{_UNREDACTABLE} {type(exc).__name__}"}

    def redact_text(self, text: str) -> str:
        """Return ``text`` with every value pattern redacted (the same object if clean).

        Scans the whole string in linear time, however long.
        """
        if not self.enabled:
            return text
        return self._text(text)

    def is_sensitive_key(self, key: str) -> bool:
        """Return True when values under ``key`` are redacted (see the module rules)."""
        entry = self._key_cache.get(key)
        if entry is None:
            entry = self._key_entry(key)
        return type(entry) is _SensitiveKey

    # -- keys ---------------------------------------------------------------------

    def _key_entry(self, key: str) -> str | _SensitiveKey:
        """Judge and scan ``key``; return its output form, wrapped when sensitive."""
        words = _words(key)
        if not words or "_".join(words) in self._allow:
            sensitive = False
        else:
            long_keys = self._long_keys
            flat = "".join(words)
            sensitive = (long_keys is not None and long_keys.search(flat) is not None) or (
                _last_word(words) in self._short_keys
            )
        name = self._text(key)
        entry = _SensitiveKey(name) if sensitive else name
        _remember(self._key_cache, key, len(key), entry)
        if not sensitive and name == key and type(key) is str and len(key) <= _KEY_CACHE_MAX_KEY:
            clean = self._clean_keys
            if len(clean) >= _KEY_CACHE_SIZE:
                clean.clear()
            clean.add(key)
        return entry

    def _foreign_key(self, key: object) -> str | _SensitiveKey:
        # Output keys are always str, as JSON needs; the str form is judged and scanned.
        if isinstance(key, str):
            text = str.__str__(key)
        elif isinstance(key, bytes | bytearray):
            text = bytes(key).decode("utf-8", "replace")
        else:
            try:
                text = str(key)
            except Exception:
                text = object.__repr__(key)
        return self._key_entry(text)

    # -- structures ---------------------------------------------------------------

    def _pairs(
        self,
        items: Iterable[tuple[object, object]],
        size: int,
        level: int,
        active: set[int] | None,
        owner: object,
    ) -> dict[str, object]:
        """Redact key/value pairs into a new dict; ``size`` is their count, or -1."""
        out: dict[str, object] = {}
        cache = self._key_cache
        text = self._text
        for key, value in items:
            # Only str keys are cached, and no other key equals one (str subclasses
            # equal their text, which is what they are judged by anyway).
            name = cache.get(key)
            if name is None:
                name = self._key_entry(key) if type(key) is str else self._foreign_key(key)
            if isinstance(name, str):
                if type(value) is str:
                    # A short run of letters and digits cannot hold any pattern: each
                    # needs a separator, a dot, a space, an "@" or 13 digits.
                    if len(value) < _CARD_MIN and value.isalnum():
                        out[name] = value
                    else:
                        out[name] = text(value)
                elif (kind := type(value)) is int or kind is float or kind is bool or value is None:
                    out[name] = value
                else:
                    if active is None:
                        active = {id(owner)}
                    out[name] = self._value(value, level + 1, active)
            else:
                # None, True and False carry no secret, and "password: null" helps.
                out[name.name] = (
                    value if value is None or value is True or value is False else self.marker
                )
        if 0 <= size != len(out):
            # Keys that differ but print or redact alike ({1: .., "1": ..}): the last
            # one wins, and the loss is counted.
            counters.incr("redaction.key_collisions", size - len(out))
        return out

    def _value(self, value: object, level: int, active: set[int] | None) -> object:
        if type(value) is str:
            return self._text(value)
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is dict or kind is list or kind is tuple:
            return self._container(value, level, active)
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return self._text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, list | tuple | set | frozenset | Mapping) or hasattr(
            kind, "__dataclass_fields__"
        ):
            return self._container(value, level, active)
        if isinstance(value, Enum):
            # orjson writes an enum as its value, so the value is what gets redacted.
            return self._value(value.value, level + 1, active)
        return value

    def _container(self, value: object, level: int, active: set[int] | None) -> object:
        if level > self.max_depth:
            counters.incr("redaction.depth_limit")
            return _DEPTH_LIMIT
        if active is None:
            active = set()
        ident = id(value)
        if ident in active:
            counters.incr("redaction.recursive")
            return _RECURSIVE
        active.add(ident)
        try:
            if isinstance(value, Mapping):
                return self._pairs(value.items(), len(value), level, active, value)
            if isinstance(value, tuple):
                fields = getattr(type(value), "_fields", None)
                if isinstance(fields, tuple):  # a named tuple: its field names are keys
                    pairs = zip(fields, value, strict=False)
                    return self._pairs(pairs, -1, level, active, value)
                return tuple([self._value(item, level + 1, active) for item in value])
            if isinstance(value, list | set | frozenset):
                return [self._value(item, level + 1, active) for item in value]
            # Only dataclass instances reach here (see _value).
            return self._pairs(_dataclass_items(value), -1, level, active, value)
        except Exception:  # broken container, concurrent mutation, recursion limit
            counters.incr("redaction.failed")
            return _UNREDACTABLE
        finally:
            active.discard(ident)

    # -- text ---------------------------------------------------------------------

    def _text(self, text: str) -> str:
        # Every family needs one of these substrings (a card needs a run of 13 ASCII
        # digits and separators), and `in` runs at C speed: a clean string costs a
        # handful of memchr calls.  (_may_redact_json makes the same tests on JSON: a
        # new family needs its test there too.)
        spans: list[tuple[int, int]] = []
        if "=" in text or ":" in text:
            self._kv_spans(text, spans)
            if "://" in text:
                spans += [m.span(1) for m in _URL_PASSWORD.finditer(text)]
        if "J" in text and "eyJ" in text:
            spans += [m.span() for m in _JWT.finditer(text)]
        if "earer" in text or (
            "B" in text and ("Basic" in text or "BASIC" in text or "BEARER" in text)
        ):
            _bearer_spans(text, spans)
        if "A" in text and ("AKIA" in text or "ASIA" in text):
            _aws_key_id_spans(text, spans)
        if self.redact_emails and "@" in text:
            _email_spans(text, spans)
        if self.redact_ips:
            if "." in text:
                _ipv4_spans(text, spans)
            if ":" in text:
                _ipv6_spans(text, spans)
        if (
            len(text) >= _CARD_MIN
            and text.encode("utf-8", "surrogatepass").translate(_CARD_CHARS).find(_CARD_WINDOW) >= 0
        ):
            for run in _CARD_RUN.finditer(text):
                _card_spans(text, run.start(), run.end(), spans)
        if not spans:
            return text
        return _replace(text, spans, self.marker)

    def _clean_json(self, mapping: dict[str, object]) -> bytes | None:
        """``mapping`` as compact JSON when :meth:`redact_mapping` would change nothing.

        None means "redact it": a key is sensitive, new or changed by redaction, a
        string may hold a pattern, or a value is of a type the redactor converts
        (anything orjson does not encode natively as it stands, such as sets,
        bytes, named tuples, dataclasses and subclasses of builtins, goes the
        long way).  Nested dicts always do: their keys are judged by key.  The
        JSON of what is left equals the JSON of the redacted copy, because the
        redactor returns such values unchanged (a tuple as a tuple).  Logs use it
        to skip a Python loop over every field of every line.
        """
        if not mapping.keys() <= self._clean_keys:
            return None
        return self._clean_values_json(mapping)

    def _is_clean_key(self, key: object) -> bool:
        """True when ``key`` is a str that is not sensitive and that redaction leaves as is."""
        if type(key) is not str:
            return False
        entry = self._key_cache.get(key)
        if entry is None:
            entry = self._key_entry(key)
        return type(entry) is str and entry == key

    def _clean_values_json(self, mapping: dict[str, object]) -> bytes | None:
        """:meth:`_clean_json` for a caller that knows every key passes :meth:`_is_clean_key`."""
        try:
            blob = _dumps(mapping, _refuse, _NATIVE_ONLY)
        except TypeError:  # _refuse, a non-str key, an integer beyond 64 bits
            return None
        # One ":" per key of the mapping; any other (a nested dict's key, a ":" in a
        # string) sends it the long way, as do the other pattern hints.
        if self._may_redact_json(blob, len(mapping)):
            return None
        return blob

    def _may_redact_json(self, blob: bytes, colons: int) -> bool:
        """False when :meth:`_text` would leave every string of ``blob`` as it is.

        ``blob`` is compact JSON as orjson writes it, ``colons`` the number of its
        own ":" (one per key).  The substrings ``_text`` needs before it looks for a
        pattern are looked for in the whole document at once: JSON escapes only
        quotes, backslashes and control characters, none of which is part of them,
        so a string holding one puts it in the document too.  True means "look
        closer": the document may still hold nothing to redact.  Keys are scanned
        like any string; whether one is sensitive is for the caller to judge.
        """
        # The usual answer is False, after every test has run: the attributes
        # (enabled, the opt-in patterns) are read only when they can change it.
        text = blob.decode()
        if (
            "=" in text
            or text.count(":") != colons  # a string holds a separator
            or ("J" in text and "eyJ" in text)
            or "earer" in text
            or ("B" in text and ("Basic" in text or "BASIC" in text or "BEARER" in text))
            or ("A" in text and ("AKIA" in text or "ASIA" in text))
            or blob.translate(_CARD_CHARS).find(_CARD_WINDOW) >= 0
            or (self._optional_patterns and self._may_hold_optional(text))
        ):
            return self.enabled
        return False

    def _may_hold_optional(self, text: str) -> bool:
        """The opt-in part of :meth:`_may_redact_json`: e-mail and IP addresses."""
        return (self.redact_emails and "@" in text) or (self.redact_ips and "." in text)

    def _kv_spans(self, text: str, spans: list[tuple[int, int]]) -> None:
        """Add the values of ``key=value``-like pairs whose key is sensitive."""
        reversed_text = ""
        size = len(text)
        # Separators come left to right, and many may share one long unquoted value
        # ("password=a:token=b:..."): the last bare run and line end found are reused,
        # so no character is scanned twice and hostile text stays linear.
        run_start = run_end = line_start = line_end = -1
        seen = self._text_key_cache
        for at, after, colon in _separators(text):
            if not at:
                continue
            if not reversed_text:
                # Keys are found backwards from their separator, with a regex on the
                # reversed text: one C-speed match per separator.
                reversed_text = text[::-1]
            found = _KEY_BEFORE.match(reversed_text, size - at)
            if found is None:
                continue
            backwards = found[1]
            sensitive = seen.get(backwards)
            if sensitive is None:
                key = backwards[::-1].lstrip(".")
                sensitive = bool(key) and self.is_sensitive_key(key)
                _remember(seen, backwards, len(backwards), sensitive)
            if not sensitive:
                continue
            key = backwards[::-1]
            opening = _VALUE_START.match(text, after)
            if opening is None:  # never: its last alternative matches the empty string
                continue
            kind = opening.lastgroup
            if kind is not None and kind != "scheme":  # quoted: keep the quotes
                spans.append(opening.span(kind))
                continue
            begin = opening.end()
            if colon and any(word in _flat(key) for word in _WHOLE_LINE_KEYS):
                if not line_start <= begin < line_end:
                    line_start, line_end = begin, _end_of(_LINE_END, text, begin)
                end = line_end
            else:
                if not run_start <= begin < run_end:
                    run_start, run_end = begin, _end_of(_VALUE_END, text, begin)
                end = run_end
                if begin < size and "0" <= text[begin] <= "9":
                    # "card_number: 4111 1111 1111 1111": the value runs over spaces.
                    run = _DIGIT_RUN.match(text, begin)
                    if run is not None:
                        end = max(end, run.end())
                elif end > begin and text[end - 1] in _CLOSERS:
                    end = _trim_closers(text, begin, end)
            if begin < end:
                spans.append((begin, end))


def _separators(text: str) -> Iterator[tuple[int, int, bool]]:
    """Where each separator ("=", "=>" or ":") starts and ends, left to right; is it ":"?

    Found with str.find, at memchr speed (a regex scan costs ~8 ns per character).
    A ">" taken by "=>" is never a separator itself, so every "=" and ":" starts one.
    """
    find = text.find
    next_eq = find("=")
    next_colon = find(":")
    while next_eq >= 0 or next_colon >= 0:
        if next_colon < 0 or 0 <= next_eq < next_colon:
            at = next_eq
            next_eq = find("=", at + 1)
            yield at, at + 2 if text.startswith(">", at + 1) else at + 1, False
        else:
            at = next_colon
            next_colon = find(":", at + 1)
            yield at, at + 1, True


def _remember(cache: dict[_K, _V], key: _K, length: int, value: _V) -> None:
    """Cache ``value`` under ``key`` (of ``length`` characters) when short enough."""
    if length <= _KEY_CACHE_MAX_KEY:
        if len(cache) >= _KEY_CACHE_SIZE:
            # Crude but bounded: hostile or unbounded key sets cannot grow memory,
            # and the keys that really repeat are back in the cache at once.
            cache.clear()
        cache[key] = value


def _end_of(pattern: re.Pattern[str], text: str, start: int) -> int:
    found = pattern.search(text, start)
    return len(text) if found is None else found.start()


def _trim_closers(text: str, begin: int, end: int) -> int:
    """Leave unbalanced closing brackets to the text around a value: "(token=abc)"."""
    window = text[max(begin, end - _BRACKET_WINDOW) : end]
    surplus = {
        closer: window.count(closer) - window.count(opener) for closer, opener in _CLOSERS.items()
    }
    while end > begin and surplus.get(text[end - 1], 0) > 0:
        surplus[text[end - 1]] -= 1
        end -= 1
    return end


def _replace(text: str, spans: list[tuple[int, int]], marker: str) -> str:
    """Replace the union of ``spans`` by ``marker``; overlapping spans share one marker."""
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts: list[str] = []
    copied = 0
    for start, end in merged:
        if start >= end or text[start:end] == marker:
            continue  # nothing there, or redacted already: stay idempotent
        parts.append(text[copied:start])
        parts.append(marker)
        copied = end
    if not parts:
        return text
    parts.append(text[copied:])
    return "".join(parts)


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _bearer_spans(text: str, spans: list[tuple[int, int]]) -> None:
    for found in _BEARER.finditer(text):
        start = found.start()
        if start and (_is_word_char(text[start - 1]) or text[start - 1] == "-"):
            continue  # "xBearer" is not the scheme
        spans.append(found.span(1))


def _aws_key_id_spans(text: str, spans: list[tuple[int, int]]) -> None:
    size = len(text)
    for found in _AWS_KEY_ID.finditer(text):
        start, end = found.span()
        if (start and text[start - 1].isalnum()) or (end < size and text[end].isalnum()):
            continue
        spans.append((start, end))


def _email_spans(text: str, spans: list[tuple[int, int]]) -> None:
    reversed_text = text[::-1]
    size = len(text)
    for domain in _EMAIL_DOMAIN.finditer(text):
        at = domain.start()
        local = _LOCAL_PART.match(reversed_text, size - at) if at else None
        if local is not None:
            spans.append((at - (local.end() - local.start()), domain.end()))


def _ipv4_spans(text: str, spans: list[tuple[int, int]]) -> None:
    size = len(text)
    for found in _IPV4.finditer(text):
        start, end = found.span()
        if start and text[start - 1] in "0123456789.":
            continue
        if end < size and (
            text[end] in "0123456789"
            or (text[end] == "." and end + 1 < size and text[end + 1] in "0123456789")
        ):
            continue
        if all(int(octet) <= 255 for octet in found.group().split(".")):
            spans.append((start, end))


def _ipv6_spans(text: str, spans: list[tuple[int, int]]) -> None:
    size = len(text)
    for tail in _IPV6_TAIL.finditer(text):
        colon, end = tail.span()
        start = colon
        while start > 0 and colon - start < 4 and text[start - 1] in _HEX:
            start -= 1
        if end < size and _is_word_char(text[end]):
            continue
        while end > colon and text[end - 1] == ".":
            end -= 1  # the full stop ending a sentence
        if start and _is_word_char(text[start - 1]):
            # "host:fe80::1" may still hold an address after the label's colon;
            # "Foo::Bar" (a scope operator) does not.
            if start != colon or text.startswith("::", colon):
                continue
            start = colon + 1
        candidate = text[start:end]
        if len(candidate) > 45 or candidate.count(":") < 2 or candidate.strip(":.") == "":
            continue  # "::" alone is far more often punctuation than an address
        if not _is_ipv6(candidate) and not (
            candidate.startswith(":")
            and not candidate.startswith("::")
            and _is_ipv6(candidate := candidate[1:])
        ):
            continue
        spans.append((end - len(candidate), end))


def _last_word(words: list[str]) -> str:
    # "cvv2" is still a cvv: trailing digit words do not count.
    for word in reversed(words):
        if not word.isdigit():
            return word
    return ""


def _dataclass_items(value: object) -> Iterable[tuple[object, object]]:
    missing = object()
    # The caller checked that ``value`` is a dataclass instance; mypy cannot tell.
    for item in dataclasses.fields(value):  # type: ignore[arg-type]
        attr = getattr(value, item.name, missing)
        if attr is not missing:  # a slot never assigned
            yield item.name, attr


def _card_spans(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    """Add the parts of the digit run ``text[start:end]`` that are card numbers.

    A card is a whole number of the run's groups (digits between separators),
    13-19 digits long, starting with 2-6 and passing Luhn; the longest one from
    each group start wins.  Luhn sums come from prefix sums, so a hostile run of
    millions of groups costs a few operations per group.
    """
    digits: list[int] = []
    where: list[int] = []
    group_starts = [0]
    for index in range(start, end):
        char = text[index]
        if char in " -":  # the regex allows one separator character at a time
            group_starts.append(len(digits))
        else:
            digits.append(ord(char) - 48)
            where.append(index)
    # even[i] sums digits[:i] with odd indices doubled; odd[i] with even ones doubled.
    even = [0]
    odd = [0]
    for index, digit in enumerate(digits):
        doubled = _DOUBLED[digit]
        if index & 1:
            even.append(even[-1] + doubled)
            odd.append(odd[-1] + digit)
        else:
            even.append(even[-1] + digit)
            odd.append(odd[-1] + doubled)
    group_ends = [*group_starts[1:], len(digits)]
    count = len(group_starts)
    first = 0
    while first < count:
        begin = group_starts[first]
        best = -1
        if 2 <= digits[begin] <= 6:
            last = first
            while last < count and group_ends[last] - begin <= _CARD_MAX:
                stop = group_ends[last]
                if stop - begin >= _CARD_MIN:
                    # Luhn doubles every second digit counted from the right end.
                    sums = even if (stop - 1) % 2 == 0 else odd
                    if (sums[stop] - sums[begin]) % 10 == 0:
                        best = last
                last += 1
        if best >= 0:
            spans.append((where[begin], where[group_ends[best] - 1] + 1))
            first = best + 1
        else:
            first += 1


def _is_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def neutralize_newlines(text: str) -> str:
    """Return ``text`` with line breaks and control characters as visible escapes.

    CR, LF and the other C0 controls except tab, DEL, the C1 controls (NEL among
    them) and U+2028/U+2029 become ``\\r``, ``\\n``, ``\\x1b``, ``\\u2028``..., so
    a value cannot start a forged line or drive the terminal in console logs.
    Backslashes are left alone: the escapes can be mistaken for literal text, but
    no line can be forged.
    """
    if text.isprintable():
        return text
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]


_redactor = Redactor()


def get_redactor() -> Redactor:
    """Return the process-wide redactor (``Redactor()`` until :func:`set_redactor`)."""
    return _redactor


def set_redactor(redactor: Redactor) -> None:
    """Make ``redactor`` the process-wide one, used by logs, events and the server."""
    global _redactor
    _redactor = redactor


def redact(value: object) -> object:
    """Redact ``value`` with the process-wide redactor (see :meth:`Redactor.redact`)."""
    return _redactor.redact(value)


def redact_text(text: str) -> str:
    """Redact ``text`` with the process-wide redactor (see :meth:`Redactor.redact_text`)."""
    return _redactor.redact_text(text)
