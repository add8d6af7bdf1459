"""Hostile payloads are stored safely: bounded, valid, redacted, never refused."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from faultlens._metrics import counters
from faultlens.events import Event
from faultlens.redaction import Redactor, set_redactor
from faultlens.store import Store
from faultlens.store._sanitize import MAX_PAYLOAD_BYTES, MAX_STRING_CHARS

from ._helpers import T0, error


def _roundtrip(store: Store, event: Event) -> Event:
    assert store.write_events([event]) == 1
    (stored,) = store.timeline(event.correlation_id or "")
    return stored.event


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_huge_message_is_cut_with_a_marker(store: Store) -> None:
    """A 5 MB message is stored cut to the limit, saying how much was cut."""
    event = error(correlation_id="c", message="x" * 5_000_000)
    stored = _roundtrip(store, event)
    message = stored.payload["message"]
    assert message.startswith("x" * 1000)
    assert len(message) < MAX_STRING_CHARS + 100
    assert "truncated" in message
    assert counters.get("store.values_truncated") >= 1
    (issue,) = store.issues()
    assert len(issue.title) <= 1100


def test_nul_bytes_and_lone_surrogates_become_replacement_characters(store: Store) -> None:
    """PostgreSQL refuses NUL and invalid UTF-8: both are replaced, everywhere."""
    hostile = "a\x00b\ud800c\udfff"
    event = Event(
        "error",
        f"Name{hostile}",
        {"type": "E", "message": hostile, hostile: [hostile, {"k": hostile}], "ok": "é😀"},
        correlation_id=f"cid{hostile}",
        user_id=f"user{hostile}",
        tenant_id=f"t{hostile}",
    )
    assert store.write_events([event]) == 1
    (stored,) = store.timeline("cida\ufffdb\ufffdc\ufffd")
    for text in _strings(stored.event.payload):
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogates left
    assert stored.event.payload["message"] == "a\ufffdb\ufffdc\ufffd"
    assert stored.event.payload["ok"] == "é😀"
    assert stored.event.name == "Namea\ufffdb\ufffdc\ufffd"
    assert stored.event.user_id == "usera\ufffdb\ufffdc\ufffd"
    assert counters.get("store.invalid_text_replaced") >= 1


def test_surrogate_pairs_are_joined_not_lost(store: Store) -> None:
    """A character written as two surrogate code points is stored as that character."""
    stored = _roundtrip(store, error(correlation_id="c", message="smile \ud83d\ude00"))
    assert stored.payload["message"] == "smile 😀"


def test_deep_nesting_is_cut(store: Store) -> None:
    """Nesting far beyond the limit ends in a depth marker instead of a crash."""
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["next"] = {}
        node = node["next"]
    stored = _roundtrip(store, error(correlation_id="c", nested=deep, items=[[[[[[[1]]]]]]]))
    depth = 0
    value = stored.payload["nested"]
    while isinstance(value, dict):
        value = value["next"]
        depth += 1
    assert value == "[DEPTH LIMIT]"
    assert depth < 40
    assert stored.payload["items"] == [[[[[[[1]]]]]]]


def test_self_containing_values_are_marked(store: Store) -> None:
    """A dict or list that contains itself is stored with a recursion marker."""
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    items: list[Any] = [1]
    items.append(items)
    stored = _roundtrip(store, error(correlation_id="c", loop=loop, items=items))
    assert stored.payload["loop"] == {"name": "loop", "self": "[RECURSIVE]"}
    assert stored.payload["items"] == [1, "[RECURSIVE]"]


def test_values_json_cannot_hold_become_text(store: Store) -> None:
    """Objects, bytes, sets, huge ints, NaN and non-string keys are stored as JSON."""

    class Thing:
        def __repr__(self) -> str:
            return "<Thing token=abc123>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    payload = {
        "type": "E",
        "thing": Thing(),
        "broken": Broken(),
        "raw": b"\xff\xfeok",
        "tags": {"b"},
        "big": 10**40,
        "nan": math.nan,
        "inf": math.inf,
        1: "int key",
        ("a", 1): "tuple key",
    }
    event = Event("error", "E", payload, correlation_id="c")
    stored = _roundtrip(store, event).payload
    assert stored["thing"] == "<Thing token=[REDACTED]>"
    assert stored["broken"].startswith("<unrepresentable")
    assert stored["raw"] == "\ufffd\ufffdok"
    assert stored["tags"] == ["b"]
    assert stored["big"] == str(10**40)
    assert stored["nan"] is None
    assert stored["inf"] is None
    assert stored["1"] == "int key"
    assert stored["('a', 1)"] == "tuple key"


def test_oversized_payload_is_shrunk_with_a_marker(store: Store) -> None:
    """A payload over the size limit keeps its shape, cut down, and says so."""
    many = [f"item-{i}-" + "y" * 200 for i in range(20_000)]
    stored = _roundtrip(store, error(correlation_id="c", many=many)).payload
    assert len(orjson.dumps(stored)) <= MAX_PAYLOAD_BYTES
    assert stored["_truncated"]["original_bytes"] > MAX_PAYLOAD_BYTES
    assert stored["type"] == "app.PaymentError"
    assert stored["many"][0].startswith("item-0-")
    assert "more items truncated" in stored["many"][-1]
    assert counters.get("store.payloads_truncated") == 1


def test_payload_of_wide_huge_structure_falls_back_to_a_summary(store: Store) -> None:
    """Even many huge keys cannot exceed the limit: the payload becomes a summary."""
    wide = {f"key{i}": {f"k{j}": "z" * 900 for j in range(100)} for i in range(100)}
    event = Event("error", "E", {"type": "E", "message": "m", **wide}, correlation_id="c")
    stored = _roundtrip(store, event).payload
    assert len(orjson.dumps(stored)) <= MAX_PAYLOAD_BYTES
    assert stored["type"] == "E"
    assert stored["message"] == "m"
    assert stored["_truncated"]["original_bytes"] > MAX_PAYLOAD_BYTES


def test_secrets_are_redacted_on_write(store: Store) -> None:
    """Defence in depth: secrets in a payload that nobody redacted are not stored."""
    event = Event(
        "operation",
        "call Bearer abc.def.ghi",
        {
            "password": "hunter2",
            "headers": {"Authorization": "Bearer s3cr3t-token", "Accept": "json"},
            "url": "postgresql://app:pa55word@db/prod",
            "note": "card 4111 1111 1111 1111 used",
            "missing_token": None,
            "items": [{"api_key": "k-123"}],
        },
        correlation_id="c",
    )
    stored = _roundtrip(store, event)
    text = orjson.dumps(stored.payload).decode() + stored.name
    for secret in ("hunter2", "s3cr3t-token", "pa55word", "4111 1111", "k-123", "abc.def.ghi"):
        assert secret not in text
    assert stored.payload["password"] == "[REDACTED]"
    assert stored.payload["missing_token"] is None
    assert stored.payload["headers"]["Accept"] == "json"


def test_the_installed_redactor_is_used(store: Store) -> None:
    """A redactor set later (extra keys) applies to the next writes."""
    store.write_events([error(correlation_id="a", order_ref="R-1")])
    set_redactor(Redactor(extra_keys={"order_ref"}))
    store.write_events([error(correlation_id="b", order_ref="R-2")])
    assert store.timeline("a")[0].event.payload["order_ref"] == "R-1"
    assert store.timeline("b")[0].event.payload["order_ref"] == "[REDACTED]"


@pytest.mark.parametrize("timestamp", [math.nan, math.inf, -math.inf])
def test_invalid_timestamps_are_replaced_by_now(store: Store, timestamp: float) -> None:
    """A timestamp that is not a finite number is stored as the time of writing."""
    stored = _roundtrip(store, error(correlation_id="c", timestamp=timestamp))
    assert math.isfinite(stored.timestamp)
    assert counters.get("store.invalid_timestamps") == 1


def test_a_mapping_that_fails_is_recorded_as_such(store: Store) -> None:
    """A payload whose items() raises is stored as a note, not lost with the batch."""

    class Hostile(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("no")

    event = Event("error", "E", Hostile(a=1), correlation_id="c", timestamp=T0)
    stored = _roundtrip(store, event)
    assert stored.payload == {"unreadable_payload": "RuntimeError"}


def test_long_identifiers_are_cut(store: Store) -> None:
    """Ids longer than 256 characters are cut (they are never echoed whole)."""
    event = Event("job", "j", correlation_id="c" * 10_000, user_id="u" * 1000)
    assert store.write_events([event]) == 1
    (stored,) = store.timeline("c" * 256)
    assert stored.event.user_id == "u" * 256
