"""A payload cleaned through its layout's plan equals the same payload cleaned key by key.

The plan cleans the one-off values of a payload (its message, its context) from
their JSON when that shows nothing to redact or replace; these tests hold it to
the result of the plain walk, for one-off values of every kind.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from typing import Any

import orjson
import pytest

from faultlens.redaction import Redactor, set_redactor
from faultlens.store._sanitize import MAX_STRING_CHARS, _clean_payload, _Cleaner


class _Colour(enum.Enum):
    RED = "red"


class _Text(str):
    pass


@dataclasses.dataclass
class _Point:
    x: int
    token: str


_ONE_OFFS: list[Any] = [
    "order 123 failed",
    "ok",
    "",
    "password=hunter2",
    "Authorization: Bearer abcdefghijklmnopqrstuvwxyz",
    "card 4111 1111 1111 1111 declined",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "mail alice@example.com from 10.1.2.3",
    "nul \x00 inside",
    "lone \ud800 surrogate",
    "pair \U0001f600 fine",
    "back\\u0000slash",
    "x" * 300,
    "y" * (MAX_STRING_CHARS + 10),
    "z" * 20_000,
    float("nan"),
    float("inf"),
    2**70,
    -(2**63),
    2**64 - 1,
    True,
    None,
    1.5,
    {},
    [],
    {"session_id": "s-1", "user": "u", "attempt": 2, "ratio": 0.5, "ok": True, "none": None},
    {"password": "hunter2", "user": "u"},
    {"api_key": None},
    {"note": "secret=abc"},
    {"note": "nul \x00"},
    {"note": "lone \udfff"},
    {"nested": {"token": "t"}},
    {"items": [1, "password=x"]},
    {1: "int key"},
    {"ratio": float("nan")},
    {"big": 2**70},
    {"text": _Text("sub")},
    {"colour": _Colour.RED},
    {"id": uuid.UUID(int=7)},
    {"k" * 2000: 1},
    {"long": "w" * 20_000},
    {"when": datetime.datetime(2024, 1, 2, 3, 4, 5)},
    _Colour.RED,
    _Text("a str subclass"),
    b"bytes password=x",
    uuid.UUID(int=9),
    _Point(1, "t"),
    ("a", "tuple"),
]


def _payload(message: Any, context: Any) -> dict[str, Any]:
    return {
        "type": "ValueError",
        "message": message,
        "frames": [{"filename": "app.py", "function": "run", "lineno": 3}],
        "classification": {"category": "bug", "severity": "high"},
        "context": context,
        "fields": {"shape": 1},
    }


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


@pytest.mark.parametrize(
    "redactor",
    [Redactor(), Redactor(redact_emails=True, redact_ips=True), Redactor(enabled=False)],
    ids=["default", "optional-patterns", "disabled"],
)
def test_planned_payloads_equal_the_walk(redactor: Redactor) -> None:
    """Every one-off value, alone or in pairs, comes out as the key-by-key walk makes it."""
    set_redactor(redactor)
    planned = _Cleaner(redactor)
    layout = tuple(_payload(None, None))
    planned.plan(layout)
    plan = planned.plans[layout]
    for index in (1, 4):  # message and context: one-offs
        plan.misses[index] = 99
    plan.grace = 0
    plan.regroup()
    assert plan.split[1] == (1, 4)
    plain = ["order 7 failed", {"request_id": "r-1", "attempt": 2}]
    assert planned.plain_tail(list(plain))[1] is not None  # made from their JSON
    pairs = [(value, {"request_id": "r-1"}) for value in _ONE_OFFS]
    pairs += [("order 7 failed", value) for value in _ONE_OFFS]
    pairs += [(value, value) for value in _ONE_OFFS]
    for message, context in pairs:
        payload = _payload(message, context)
        expected, expected_text = _clean_payload(_Cleaner(redactor), payload)  # walked
        out, text = _clean_payload(planned, payload)
        assert _json(out) == _json(expected), (message, context)
        assert text == expected_text


def test_one_off_secrets_never_pass_a_plan() -> None:
    """Secrets and invalid text in a planned payload's message and context are neutralised."""
    set_redactor(Redactor())
    cleaner = _Cleaner(Redactor())
    for _ in range(3):
        _clean_payload(cleaner, _payload("warm up", {"request_id": "r"}))
    assert cleaner.plans
    out, text = _clean_payload(
        cleaner,
        _payload(
            "token=abc123 \x00 \ud800", {"password": "hunter2", "note": "Bearer abcdefghijkl"}
        ),
    )
    for secret in ("abc123", "hunter2", "abcdefghijkl", "\x00", "\\u0000", "\ud800"):
        assert secret not in text
    assert out["context"]["password"] == "[REDACTED]"


def test_a_one_off_context_is_a_copy() -> None:
    """The cleaned context is not the caller's dict: changing one leaves the other."""
    set_redactor(Redactor())
    cleaner = _Cleaner(Redactor())
    context = {"request_id": "r"}
    for _ in range(3):
        out, _ = _clean_payload(cleaner, _payload("m", context))
    assert out["context"] == context
    assert out["context"] is not context


class _HostileKey:
    """A key that hashes once, when put in a dict, and never again."""

    def __init__(self) -> None:
        self.hashed = False

    def __hash__(self) -> int:
        if self.hashed:
            raise RuntimeError("no second hash")
        self.hashed = True
        return 1

    def __str__(self) -> str:
        return "hostile"


def test_a_hostile_key_in_a_one_off_context_is_stored_as_text() -> None:
    """A context key that is not a str is never hashed again: it becomes its text."""
    set_redactor(Redactor())
    cleaner = _Cleaner(Redactor())
    for _ in range(3):
        _clean_payload(cleaner, _payload("m", {"request_id": "r"}))
    out, _ = _clean_payload(cleaner, _payload("m", {_HostileKey(): 1}))
    assert out["context"] == {"hostile": 1}


def test_a_disabled_redactor_still_stores_dataclasses_and_named_tuples() -> None:
    """With redaction off, dataclass and named-tuple values become mappings, not a recursion."""
    from collections import namedtuple

    @dataclasses.dataclass
    class Order:
        id: int
        note: str

    Point = namedtuple("Point", "x y")
    cleaner = _Cleaner(Redactor(enabled=False))
    out, text = _clean_payload(cleaner, {"order": Order(7, "n"), "point": Point(1, 2)})
    assert out == {"order": {"id": 7, "note": "n"}, "point": {"x": 1, "y": 2}}
    assert orjson.loads(text) == out
