"""Grouping error events into issues: fingerprint(), its components, title and culprit."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import faultlens
from faultlens.events import Event
from faultlens.store._fingerprint import (
    GROUPING_ALGORITHMS,
    GROUPING_VERSION,
    Grouping,
    fingerprint,
    grouping_components,
    normalize_message,
)
from faultlens.testing import capture_events


def _frame(module: str, function: str, *, in_app: bool = True, lineno: int = 1) -> dict[str, Any]:
    return {
        "filename": f"/srv/{module.replace('.', '/')}.py",
        "module": module,
        "function": function,
        "lineno": lineno,
        "in_app": in_app,
    }


def _error(**payload: Any) -> Event:
    payload.setdefault("type", "KeyError")
    payload.setdefault("message", "'user'")
    payload.setdefault("frames", [_frame("app.views", "show"), _frame("app.repo", "load")])
    return Event("error", str(payload["type"]), payload)


def _fp(event: Event) -> str:
    grouping = fingerprint(event)
    assert grouping is not None
    return grouping.fingerprint


# --- the default algorithm --------------------------------------------------------------------


def test_grouping_is_a_hex_hash_with_version_title_and_culprit() -> None:
    """fingerprint() returns 40 hex characters, the version, a title and the culprit."""
    grouping = fingerprint(_error())
    assert isinstance(grouping, Grouping)
    assert re.fullmatch(r"[0-9a-f]{40}", grouping.fingerprint)
    assert grouping.version == GROUPING_VERSION == max(GROUPING_ALGORITHMS)
    assert grouping.title == "KeyError: 'user'"
    assert grouping.culprit == "app.repo in load"


def test_line_numbers_and_messages_do_not_split_a_stack_group() -> None:
    """Same type and in-app functions group together whatever the lines and message say."""
    a = _error(message="'user'", frames=[_frame("app.views", "show", lineno=10)])
    b = _error(message="'account'", frames=[_frame("app.views", "show", lineno=99)])
    assert _fp(a) == _fp(b)


def test_type_and_functions_split_groups() -> None:
    """Another exception type, or another in-app function, is another issue."""
    base = _fp(_error())
    assert _fp(_error(type="ValueError")) != base
    assert _fp(_error(frames=[_frame("app.views", "show"), _frame("app.repo", "save")])) != base
    assert _fp(_error(frames=[_frame("app.other", "show"), _frame("app.repo", "load")])) != base


def test_only_in_app_frames_count_when_there_are_any() -> None:
    """Library frames around the application's are ignored."""
    plain = _error(frames=[_frame("app.views", "show")])
    wrapped = _error(
        frames=[
            _frame("django.core.handlers", "inner", in_app=False),
            _frame("app.views", "show"),
            _frame("json.decoder", "decode", in_app=False),
        ]
    )
    assert _fp(plain) == _fp(wrapped)


def test_without_in_app_frames_all_frames_count() -> None:
    """A stack entirely in libraries is grouped by all of its frames."""
    a = _error(frames=[_frame("json.decoder", "decode", in_app=False)])
    b = _error(frames=[_frame("json.decoder", "raw_decode", in_app=False)])
    assert _fp(a) != _fp(b)
    assert grouping_components(a) == ("type:KeyError", "frame:json.decoder.decode")


def test_recursion_depth_does_not_split_a_group() -> None:
    """Consecutive repeats of one frame (recursion) count once."""
    shallow = _error(frames=[_frame("app.tree", "walk")] * 3)
    deep = _error(frames=[_frame("app.tree", "walk")] * 50)
    assert _fp(shallow) == _fp(deep)


def test_the_chain_takes_part_root_cause_first() -> None:
    """Every link of the cause/context chain adds its type and in-app frames."""
    cause = {
        "relation": "cause",
        "type": "KeyError",
        "message": "x",
        "frames": [_frame("app.repo", "load")],
    }
    event = _error(type="app.errors.NotFound", frames=[_frame("app.views", "show")], chain=[cause])
    assert grouping_components(event) == (
        "type:KeyError",
        "frame:app.repo.load",
        "type:app.errors.NotFound",
        "frame:app.views.show",
    )
    other_cause = {**cause, "type": "IndexError"}
    assert _fp(
        _error(
            type="app.errors.NotFound", frames=[_frame("app.views", "show")], chain=[other_cause]
        )
    ) != _fp(event)
    repeated = {"relation": "context", "type": "KeyError", "repeated": True}
    assert fingerprint(_error(chain=[repeated])) is not None


def test_exception_group_members_take_part_as_types() -> None:
    """An ExceptionGroup is grouped with the sorted set of its members' types."""
    members = [{"type": "ValueError"}, {"type": "KeyError"}, {"type": "ValueError"}]
    event = _error(type="ExceptionGroup", group=members)
    assert grouping_components(event)[-2:] == ("member:KeyError", "member:ValueError")
    assert _fp(event) == _fp(_error(type="ExceptionGroup", group=list(reversed(members))))


def test_without_a_stack_the_normalised_message_groups() -> None:
    """An exception never raised is grouped by its type and normalised message."""
    a = _error(type="app.Timeout", message="order 1234 timed out after 30s", frames=[])
    b = _error(type="app.Timeout", message="order 98 timed out after 12s", frames=[])
    c = _error(type="app.Timeout", message="payment 98 timed out after 12s", frames=[])
    assert _fp(a) == _fp(b) != _fp(c)
    assert grouping_components(a) == (
        "type:app.Timeout",
        "message:order <int> timed out after <int>s",
    )


def test_a_custom_fingerprint_overrides_the_default() -> None:
    """capture(fingerprint=[...]) groups by those parts, whatever the stack."""
    a = _error(fingerprint=["payments", "declined"])
    b = _error(type="ValueError", frames=[], fingerprint=["payments", "declined"])
    assert _fp(a) == _fp(b) != _fp(_error(fingerprint=["payments", "expired"]))
    assert _fp(_error(fingerprint="payments")) == _fp(_error(fingerprint=["payments"]))
    assert grouping_components(a) == ("custom:payments", "custom:declined")


def test_default_placeholder_expands_to_the_default_components() -> None:
    """{{ default }} in a custom fingerprint stands for what the default rules give."""
    event = _error(fingerprint=["tenant-a", "{{ default }}"])
    assert grouping_components(event) == ("custom:tenant-a", *grouping_components(_error()))
    assert _fp(event) != _fp(_error(fingerprint=["tenant-b", "{{default}}"]))
    assert _fp(event) == _fp(_error(message="other", fingerprint=["tenant-a", "{{default}}"]))
    assert _fp(event) != _fp(_error(type="ValueError", fingerprint=["tenant-a", "{{ default }}"]))


def test_non_error_events_are_not_grouped() -> None:
    """fingerprint() returns None for operation, recovery and other kinds."""
    for kind in ("operation", "recovery", "alert", "job", "audit", "custom"):
        assert fingerprint(Event(kind, "x", {"type": "KeyError"})) is None


def test_an_unknown_version_is_a_caller_error() -> None:
    """Asking for a grouping version that never existed raises ValueError naming the known ones."""
    with pytest.raises(ValueError, match=r"known: \[1\]"):
        fingerprint(_error(), version=99)


def test_versions_do_not_enter_the_hash() -> None:
    """A later version that yields the same components yields the same fingerprint."""
    event = _error()
    again = fingerprint(event, version=1)
    assert again is not None
    assert again.fingerprint == _fp(event)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(["type", "message", "frames", "chain", "group", "fingerprint", "module"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=6), st.text(max_size=10))
def test_malformed_payloads_never_raise(payload: dict[str, Any], name: str) -> None:
    """A payload read back from a store or spool is untrusted: it still gets a grouping."""
    grouping = fingerprint(Event("error", name, payload))
    assert grouping is not None
    assert len(grouping.title) <= 200


# --- title and culprit --------------------------------------------------------------------------


def test_title_is_short_type_and_first_line_redacted_and_capped() -> None:
    """The title drops the module, keeps the first line, redacts secrets and is capped."""
    event = _error(type="app.errors.LoginFailed", message="bad login password=hunter2\nsecond line")
    grouping = fingerprint(event)
    assert grouping is not None
    assert grouping.title == "LoginFailed: bad login password=[REDACTED]"
    long = fingerprint(_error(message="x" * 1000))
    assert long is not None
    assert len(long.title) == 200
    assert long.title.endswith("…")
    bare = fingerprint(_error(message=""))
    assert bare is not None
    assert bare.title == "KeyError"


def test_culprit_is_the_innermost_in_app_frame() -> None:
    """The culprit names the last in-app frame, else the root cause's, else the last frame."""
    frames = [
        _frame("app.views", "show"),
        _frame("app.repo", "load"),
        _frame("json", "loads", in_app=False),
    ]
    assert fingerprint(_error(frames=frames)).culprit == "app.repo in load"  # type: ignore[union-attr]
    library = [_frame("json", "loads", in_app=False)]
    cause = {"type": "KeyError", "frames": [_frame("app.repo", "load")]}
    assert fingerprint(_error(frames=library, chain=[cause])).culprit == "app.repo in load"  # type: ignore[union-attr]
    assert fingerprint(_error(frames=library)).culprit == "json in loads"  # type: ignore[union-attr]
    assert fingerprint(_error(frames=[])).culprit is None  # type: ignore[union-attr]


# --- with real captured events --------------------------------------------------------------


def _load(user: str) -> None:
    raise KeyError(user)


def _show(user: str) -> None:
    _load(user)


def _captured(call: Callable[[], None]) -> Event:
    with capture_events("error") as captured:
        try:
            call()
        except Exception as exc:
            faultlens.capture(exc)
    return captured[0]


def test_captured_exceptions_from_one_code_path_group_together() -> None:
    """Two real captures through the same functions, with different data, are one issue."""
    a = _captured(lambda: _show("alice"))
    b = _captured(lambda: _show("bob"))
    c = _captured(lambda: _load("carol"))
    assert _fp(a) == _fp(b) != _fp(c)
    grouping = fingerprint(a)
    assert grouping is not None
    assert grouping.title == "KeyError: 'alice'"
    assert grouping.culprit is not None
    assert grouping.culprit.endswith(" in _load")


def test_captured_custom_fingerprint_reaches_grouping() -> None:
    """capture(exc, fingerprint=[...]) is honoured by fingerprint()."""
    with capture_events("error") as captured:
        faultlens.capture(ValueError("order 1"), fingerprint=["checkout", "{{ default }}"])
        faultlens.capture(ValueError("order 2"), fingerprint=["checkout", "{{ default }}"])
    assert _fp(captured[0]) == _fp(captured[1])
    assert grouping_components(captured[0])[0] == "custom:checkout"


# --- the message normaliser ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("order 1234 failed", "order <int> failed"),
        ("took 10ms, then 3.5s", "took <int>ms, then <float>s"),
        ("item_42 on worker-3", "item_<int> on worker-<int>"),
        ("at 2024-01-02T03:04:05.123Z", "at <timestamp>"),
        ("at 2024-01-02 03:04:05+02:00 and 12:30:00", "at <timestamp> and <timestamp>"),
        ("id 123e4567-e89b-12d3-a456-426614174000", "id <uuid>"),
        ("object at 0x7f3a9b10 sha 4e4c436", "object at <hex> sha <hex>"),
        ("no user bob.smith+x@example.co.uk", "no user <email>"),
        ("connect 10.0.0.12:5432 refused", "connect <ip> refused"),
        ("connect fe80::1ff:fe23:4567:890a refused", "connect <ip> refused"),
        ("GET https://api.example.com/v1/users?id=3 failed", "GET <url> failed"),
        ("missing /var/lib/app-3/data.json", "missing <path>"),
        (r"missing C:\Users\bob\data.json", "missing <path>"),
        ("KeyError 'user_17' and \"name\"", "KeyError <quoted> and <quoted>"),
        ("can't open the user's file", "can't open the user's file"),
        ("  many\n\twhite   spaces ", "many white spaces"),
        ("version v2 of deadbeef", "version v2 of deadbeef"),
    ],
)
def test_normalize_message_examples(message: str, expected: str) -> None:
    """Each family of variable values becomes its placeholder; prose is kept."""
    assert normalize_message(message) == expected


def test_normalize_message_accepts_anything() -> None:
    """Not a string: the empty string; huge input: bounded."""
    assert normalize_message(None) == ""
    assert normalize_message(b"bytes") == ""
    assert len(normalize_message("word " * 10_000)) <= 1024


_word = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)
_values: dict[str, st.SearchStrategy[str]] = {
    "int": st.integers(-(10**12), 10**12).map(str),
    "float": st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.3f}"),
    "uuid": st.uuids().map(str),
    "hex": st.integers(1, 2**64).map(hex),
    "email": st.tuples(
        st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8), _word
    ).map(lambda t: f"{t[0]}@{t[1]}.com"),
    "ip": st.ip_addresses(v=4).map(str),
    "quoted": st.text(alphabet=string.ascii_letters + string.digits + " _-", max_size=12).map(
        lambda s: f"'{s}'"
    ),
    "path": st.lists(_word, min_size=2, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    "timestamp": st.datetimes().map(lambda d: d.isoformat()),
}


@st.composite
def _template(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    words = draw(st.lists(_word, min_size=1, max_size=6))
    slots = draw(st.lists(st.sampled_from(sorted(_values)), min_size=1, max_size=4))
    parts: list[str] = []
    for i, word in enumerate(words):
        parts.append(word)
        if i < len(slots):
            parts.append("{" + slots[i] + "}")
    return parts, slots[: len(words)]


def _fill(parts: list[str], draw: st.DrawFn) -> str:
    out = []
    for part in parts:
        if part.startswith("{"):
            out.append(draw(_values[part[1:-1]]))
        else:
            out.append(part)
    return " ".join(out)


@settings(max_examples=300, deadline=None)
@given(st.data(), _template())
def test_normalize_message_is_stable_when_values_change(
    data: st.DataObject, template: tuple[list[str], list[str]]
) -> None:
    """The same message with other numbers, ids, addresses or quoted values normalises the same."""
    parts, _ = template
    first = _fill(parts, data.draw)
    second = _fill(parts, data.draw)
    assert normalize_message(first) == normalize_message(second), (first, second)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_normalize_message_never_raises_and_is_idempotent(text: str) -> None:
    """Any text normalises without error, and normalising again changes nothing."""
    once = normalize_message(text)
    assert normalize_message(once) == once
