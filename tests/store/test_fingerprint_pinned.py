"""Fingerprints pinned on a varied set of events: grouping must never change silently.

A fingerprint is stored with every issue; an event computed differently by a faster
implementation would open a duplicate issue.  These values were computed by the
implementation of version 1 before it was optimised; they must never change (a
change of the rules is a new grouping version).  The store's memoised path must
agree with :func:`fingerprint` on the same cleaned events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from faultlens.events import Event
from faultlens.store._fingerprint import (
    event_title,
    fingerprint,
    fingerprint_json,
    grouping_components,
    stack_grouping_json,
)
from faultlens.store._sanitize import clean_event


def _f(module: Any, function: Any, in_app: Any = True, **extra: Any) -> dict[str, Any]:
    frame = {"filename": f"/srv/{module}.py", "module": module, "function": function}
    frame["lineno"] = 7
    frame["in_app"] = in_app
    frame.update(extra)
    return frame


def corpus() -> list[tuple[str, Event]]:
    """Varied error events, malformed ones included (for pinned fingerprints)."""
    stack = [_f("app.views", "show"), _f("app.repo", "load"), _f("lib.db", "query", False)]
    deep = [_f("app.a", "rec")] * 5 + [_f("app.b", "leaf"), _f("app.a", "rec")]
    cases: dict[str, dict[str, Any] | Any] = {
        "plain": {"type": "KeyError", "message": "'user'", "frames": stack},
        "recursion": {"type": "app.Err", "message": "x", "frames": deep},
        "no in-app": {
            "type": "ValueError",
            "frames": [_f("lib.a", "f", False), _f("lib.b", "g", 0)],
        },
        "in_app truthy": {"type": "ValueError", "frames": [_f("app.a", "f", 1), _f("app.b", "g")]},
        "no module": {
            "type": "E",
            "frames": [
                {"filename": "C:\\srv\\app\\win.py", "function": "run", "in_app": True},
                {"filename": "/srv/app/posix.py", "module": "", "function": None, "in_app": True},
                {"module": None, "in_app": True},
                {"filename": 5, "module": 6, "function": 7, "in_app": True},
            ],
        },
        "long names": {
            "type": "T" * 300,
            "message": "m" * 900,
            "frames": [_f("m" * 300, "f" * 300), _f("x" * 10, "y")],
        },
        "odd frames": {
            "type": "E",
            "frames": [
                "not a frame",
                None,
                3,
                _f("app.z", "z"),
                [1, 2],
                MappingProxyType(_f("app.m", "p")),
            ],
        },
        "tuple frames": {"type": "E", "frames": (_f("app.t", "t"), _f("app.u", "u"))},
        "many frames": {"type": "E", "frames": [_f(f"app.m{i % 7}", f"f{i}") for i in range(260)]},
        "chain": {
            "type": "app.Outer",
            "message": "outer",
            "frames": [_f("app.api", "handle")],
            "chain": [
                {"type": "app.Middle", "frames": [_f("app.svc", "call"), _f("lib.x", "y", False)]},
                {"type": "OSError", "frames": [_f("lib.net", "send", False)], "relation": "cause"},
                "junk",
                {"type": None},
            ],
        },
        "long chain": {
            "type": "E",
            "frames": [_f("app.top", "t")],
            "chain": [{"type": f"E{i}", "frames": [_f(f"app.c{i}", "c")]} for i in range(20)],
        },
        "group": {
            "type": "ExceptionGroup",
            "frames": [_f("app.g", "gather")],
            "group": [{"type": "ValueError"}, {"type": "KeyError"}, {"type": "ValueError"}, 3, {}],
        },
        "chain with group": {
            "type": "E",
            "frames": [_f("app.g", "g")],
            "chain": [
                {
                    "type": "EG",
                    "frames": [_f("app.h", "h")],
                    "group": [{"type": "B"}, {"type": "A"}],
                }
            ],
        },
        "no frames message": {
            "type": "TimeoutError",
            "message": "timed out after 30s talking to 10.0.0.5:5432 "
            "at 2024-05-01T10:00:00Z for 'bob'",
        },
        "no frames uuid path": {
            "type": "E",
            "message": "user 123e4567-e89b-12d3-a456-426614174000 at /var/lib/x/y bob@example.com "
            "https://x.io/a?b=1 0x7f3a 4e4c436 fe80::1 item_42 1.5ms 50%",
        },
        "no frames unicode": {"type": "E", "message": "значение ٣ \ud800 \x00 таймаут 12"},
        "no frames empty": {"type": "E", "frames": []},
        "no frames non-str message": {"type": "E", "message": 42, "frames": None},
        "no type": {"message": "m", "frames": [_f("app.a", "a")]},
        "type not str": {"type": 3, "message": "m"},
        "custom": {"type": "E", "frames": stack, "fingerprint": ["checkout", "stripe"]},
        "custom str": {"type": "E", "frames": stack, "fingerprint": "one-part"},
        "custom default": {"type": "E", "frames": stack, "fingerprint": ["{{ default }}", "x"]},
        "custom default spaced": {"type": "E", "frames": stack, "fingerprint": [" {{default}} "]},
        "custom default no frames": {
            "type": "E",
            "message": "id 17",
            "fingerprint": ["{{ default }}"],
        },
        "custom only no frames": {"type": "E", "message": "id 17", "fingerprint": ["a", 3, None]},
        "custom empty": {"type": "E", "frames": stack, "fingerprint": []},
        "custom junk": {"type": "E", "frames": stack, "fingerprint": [1, 2]},
        "custom long": {"type": "E", "frames": stack, "fingerprint": ["p" * 400] * 40},
        "frames not list": {"type": "E", "frames": {"a": 1}, "message": "m 5"},
        "surrogate names": {"type": "E\ud800", "frames": [_f("app.\udcff", "f\ud83d")]},
        "empty payload": {},
        "not a mapping": ["a", "list"],
        "title lines": {
            "type": "pkg.mod.Error",
            "message": "first   line\nsecond",
            "frames": stack,
        },
        "title secret": {"type": "E", "message": "password=hunter2 token sk_live_abcdefghijklmnop"},
        "title empty type": {"type": "", "message": "", "frames": stack},
    }
    out = []
    for name, payload in cases.items():
        out.append((name, Event("error", "Name", payload, "c", None, None, None, None, 1.0)))
    mapping: Mapping[str, Any] = MappingProxyType({"type": "M", "frames": stack})
    out.append(
        ("mapping payload", Event("error", "Name", mapping, "c", None, None, None, None, 1.0))
    )
    return out


PINNED = {
    "plain": "739dded79efc6f454e01620895f37c023f239f11",
    "recursion": "10910320347f91a12390fa8815d5d4c635cd6858",
    "no in-app": "b2df739996bd8f55dd75f983b94084ae98067dec",
    "in_app truthy": "f86a00ab7141bd0c86d0c57870beb536ce5e5195",
    "no module": "5048357854b6ee544f896454b18b04e8064c42bb",
    "long names": "4bda3b25beceb90be7b20bd3e97dd3de5804ebe0",
    "odd frames": "4fc9d49bde3a405430df97c026c51b643188e95b",
    "tuple frames": "32df9f0fe88775b06283f92fd1d349615be4eef6",
    "many frames": "5845aa4c700d6c2cfdaeec40600782122a4957e2",
    "chain": "de887c28ab422bc9bc3844cfc9662f5fb81ab74d",
    "long chain": "9cf5ea5759c204621e1e40c8cf238a577cb53322",
    "group": "46e5fc6ec0190b10f3f9856a2b39eb8c63f5a8b8",
    "chain with group": "4b04a77141298e1ff3d60c6b350564389a92a999",
    "no frames message": "8ef678f3a9f659ae8c28e425370b12c5e49cdbf1",
    "no frames uuid path": "697d91a2d5124f57fd63d22a62f982fdf1671c56",
    "no frames unicode": "fc7b3139f4f8f75ec7201920747d4e2e3301cfce",
    "no frames empty": "8e2e1e5be5354c4ae0025db603389198c9f480db",
    "no frames non-str message": "8e2e1e5be5354c4ae0025db603389198c9f480db",
    "no type": "04f8b31e0b83ab0db6447db9b3b9c1a59dfe5807",
    "type not str": "d9ba693afaf87bf35476d2756eeab22e8e213a68",
    "custom": "391873f66c99f2e1683ce0be87e4a2ec116a06c1",
    "custom str": "5e3a63b3da2da425ae6b700056639fa8ed705aa5",
    "custom default": "0ef4d1adb7681a31a346002863cb6e4713f95827",
    "custom default spaced": "3e78146bdf22b34e6366bd2839dcfab352dce407",
    "custom default no frames": "c0a231cc113708b67cadf4717ffb53e80b84c10b",
    "custom only no frames": "ffa7fb587a2db9ebe61e5904e72a8fd5967544f8",
    "custom empty": "3e78146bdf22b34e6366bd2839dcfab352dce407",
    "custom junk": "3e78146bdf22b34e6366bd2839dcfab352dce407",
    "custom long": "470e7103d69f93a2297d04d9a38649900c3fb92f",
    "frames not list": "93da3f2966ec3e8e21b3bbfd0115d38b7f42d441",
    "surrogate names": "3fe8fe195899d939c37c18d07050b58248588cd0",
    "empty payload": "7aa5103b2962b2f21da094dda902d42dee590ce8",
    "not a mapping": "7aa5103b2962b2f21da094dda902d42dee590ce8",
    "title lines": "aabb9eefc29d89a67bf33ba4b85e35cc58b7bfc2",
    "title secret": "be00974b4a30847861f9efe63867f96fa4c3c61d",
    "title empty type": "8ddfba58d490d98c5533fef06d6839688d267ea1",
    "mapping payload": "279218fe9410997cec239f07f13fb8d625bd4b8a",
}
# SHA-1 of repr((case, title, culprit)) for every case, in order.
TITLES_AND_CULPRITS = "136abe681d5200a8523fca80c83048d223a7c823"


def test_fingerprints_are_pinned() -> None:
    got = {}
    for name, event in corpus():
        grouping = fingerprint(event)
        assert grouping is not None
        got[name] = grouping.fingerprint
    assert got == PINNED


def test_titles_and_culprits_are_pinned() -> None:
    digest = hashlib.sha1()
    for name, event in corpus():
        grouping = fingerprint(event)
        assert grouping is not None
        assert grouping.title == event_title(event)
        text = repr((name, grouping.title, grouping.culprit))
        digest.update(text.encode("utf-8", "surrogatepass"))
    assert digest.hexdigest() == TITLES_AND_CULPRITS


def test_components_hash_to_the_fingerprint() -> None:
    for _, event in corpus():
        grouping = fingerprint(event)
        assert grouping is not None
        components = grouping_components(event)
        digest = hashlib.sha1()
        for part in components:
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(4, "big") + data)
        assert digest.hexdigest() == grouping.fingerprint


@pytest.mark.parametrize("frozen", [False, True])
def test_the_stores_memoised_path_agrees_on_cleaned_events(frozen: bool) -> None:
    cleaned = [(name, clean_event(event).event) for name, event in corpus()]
    for _ in range(3):  # the first pass fills the memo, the later ones read it
        for name, event in cleaned:
            expected = fingerprint(event)
            assert expected is not None, name
            digest, culprit = stack_grouping_json(event, frozen=frozen)
            assert (digest, culprit) == (expected.fingerprint, expected.culprit), name
            assert fingerprint_json(event) == expected, name
