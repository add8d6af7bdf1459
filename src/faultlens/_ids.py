"""Identifier generation and validation of identifiers that arrive from outside.

Generated ids are random hex from ``os.urandom``: unique across processes and
forks without coordination, and cheap (one syscall per 170 ids, hex-encoded once
per block, so an id is a slice of a string).  Incoming ids are untrusted input:
they are accepted only when they are a safe token, and anything else is
replaced, counted, and never echoed.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Iterator

from faultlens._metrics import counters

MAX_INCOMING_ID_LENGTH = 128

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_UUID_DASHED = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")
# A "safe token": letters, digits and a few separators that survive URLs, headers,
# log lines and shells unchanged.  No spaces, quotes, control or non-ASCII characters.
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


# Random bytes come from os.urandom (the OS CSPRNG), fetched in blocks: one syscall
# per 170 ids instead of one per id.  A block is hex-encoded once when it is read,
# so an id costs two string slices (no per-id bytes.hex() call).  Each block is
# handed out slot by slot through an itertools.count, whose next() is atomic under
# the GIL, so two threads never get the same slot.  A forked child discards the
# block it inherited: otherwise parent and child would hand out the same ids.
_BLOCK_IDS = 170
_ID_BYTES = 24  # a 16-byte trace id and an 8-byte span id
_SLOT = 2 * _ID_BYTES  # hex digits per slot: 32 for the trace id, 16 for the span id
_BLOCK_CHARS = _BLOCK_IDS * _SLOT
# (hex block, cursor) are replaced together so a cursor always indexes its own block.
# The cursor counts in hex digits (0, 48, 96, ...): a slot's offset without a multiply.
_pool: list[tuple[str, Iterator[int]]] = [("", itertools.count(_BLOCK_CHARS, _SLOT))]
_refill_lock = threading.Lock()


def _refill(exhausted: tuple[str, Iterator[int]]) -> None:
    with _refill_lock:
        if _pool[0] is exhausted:  # another thread may have refilled already
            _pool[0] = (os.urandom(_BLOCK_IDS * _ID_BYTES).hex(), itertools.count(0, _SLOT))


def _discard_inherited_block() -> None:
    global _refill_lock
    _refill_lock = threading.Lock()  # the parent's lock may have been held at fork
    _pool[0] = ("", itertools.count(_BLOCK_CHARS, _SLOT))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_discard_inherited_block)


def new_trace_ids() -> tuple[str, str]:
    """Return a fresh ``(trace_id, span_id)``: 32 and 16 lower-case hex digits."""
    while True:
        state = _pool[0]
        i = next(state[1])
        if i < _BLOCK_CHARS:
            block = state[0]
            return block[i : i + 32], block[i + 32 : i + _SLOT]
        _refill(state)


def new_id() -> str:
    """Return a fresh 32-hex-digit id (usable as a correlation id and a W3C trace id)."""
    while True:
        state = _pool[0]
        i = next(state[1])
        if i < _BLOCK_CHARS:
            return state[0][i : i + 32]
        _refill(state)


def new_span_id() -> str:
    """Return a fresh 16-hex-digit W3C span id."""
    while True:
        state = _pool[0]
        i = next(state[1])
        if i < _BLOCK_CHARS:
            return state[0][i + 32 : i + _SLOT]
        _refill(state)


def normalize_id(value: str | bytes | None) -> str | None:
    """Return the canonical form of an incoming id, or ``None`` when it is unsafe.

    Accepted: UUIDs with or without dashes and 32-hex ids (returned as 32 lower-case
    hex digits, so they double as W3C trace ids), ULIDs (returned upper-case, their
    canonical form) and other safe tokens of letters, digits and ``. _ : -`` up to
    128 characters (returned unchanged).  Everything else (empty, over-long,
    whitespace, control or non-ASCII characters, quotes) is rejected.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    n = len(value)
    if n == 32 and _HEX32.fullmatch(value):
        return value.lower()
    if n == 36 and _UUID_DASHED.fullmatch(value):
        return value.replace("-", "").lower()
    if n == 26 and _ULID.fullmatch(value):
        return value.upper()
    if n <= MAX_INCOMING_ID_LENGTH and value.isascii() and _SAFE_TOKEN.fullmatch(value):
        return value
    return None


def accept_id(value: str | bytes | None, *, counter: str = "context.invalid_id") -> str | None:
    """Like :func:`normalize_id`, but count a present-yet-unsafe value under ``counter``."""
    normalized = normalize_id(value)
    if normalized is None and value is not None:
        counters.incr(counter)
    return normalized


def is_hex_trace_id(value: str) -> bool:
    """Return True when ``value`` can be used as a W3C trace id (32 hex, not all zero)."""
    return len(value) == 32 and _HEX32.fullmatch(value) is not None and value != "0" * 32
