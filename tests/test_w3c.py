"""W3C Trace Context Level 1: traceparent and tracestate parsing and formatting.

Vectors come from the Recommendation's grammar and from the cases of the W3C
conformance suite (w3c/trace-context test/test.py), restated as unit checks.
"""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultlens._w3c import (
    MAX_TRACESTATE_MEMBERS,
    TRACESTATE_TRUNCATION_LIMIT,
    TraceParent,
    format_traceparent,
    format_tracestate,
    parse_traceparent,
    parse_tracestate,
    traceparent_ids,
)
from faultlens.errors import ConfigurationError

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"
# The conformance suite's ids.
SUITE_TRACE_ID = "12345678901234567890123456789012"
SUITE_SPAN_ID = "1234567890123456"
SUITE = f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01"
FUTURE = f"cc-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01"


def _untyped(value: object) -> Any:
    """Return ``value`` typed as Any, to feed the parsers what their signature forbids."""
    return value


# --- traceparent: valid -----------------------------------------------------------


def test_traceparent_valid_sampled() -> None:
    """The Recommendation's sampled example parses into its four fields."""
    assert parse_traceparent(VALID) == TraceParent(0, TRACE_ID, SPAN_ID, 1)
    parsed = parse_traceparent(VALID)
    assert parsed is not None
    assert parsed.sampled


def test_traceparent_valid_not_sampled() -> None:
    """Flags 00 parse as not sampled."""
    parsed = parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-00")
    assert parsed == TraceParent(0, TRACE_ID, SPAN_ID, 0)
    assert parsed is not None
    assert not parsed.sampled


@pytest.mark.parametrize(
    ("flags", "value", "sampled"),
    [("09", 9, True), ("08", 8, False), ("ff", 255, True), ("fe", 254, False)],
)
def test_traceparent_flags_kept_whole_sampled_masked(flags: str, value: int, sampled: bool) -> None:
    """Unknown flag bits are kept as parsed; sampled reads bit 0 only."""
    parsed = parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-{flags}")
    assert parsed is not None
    assert parsed.flags == value
    assert parsed.sampled is sampled


def test_traceparent_suite_value() -> None:
    """The conformance suite's traceparent keeps its trace id."""
    parsed = parse_traceparent(SUITE)
    assert parsed is not None
    assert parsed.trace_id == SUITE_TRACE_ID
    assert parsed.parent_id == SUITE_SPAN_ID


def test_traceparent_fast_path_builds_an_ordinary_instance() -> None:
    """A parsed TraceParent equals, hashes and prints like one built by its constructor."""
    parsed = parse_traceparent(VALID)
    built = TraceParent(0, TRACE_ID, SPAN_ID, 1)
    assert parsed == built
    assert hash(parsed) == hash(built)
    assert repr(parsed) == repr(built)
    # The fast path skips __init__; a __post_init__ added later would be skipped too.
    assert not hasattr(TraceParent, "__post_init__")


def test_traceparent_is_frozen() -> None:
    """A TraceParent cannot be modified after parsing."""
    parsed = parse_traceparent(VALID)
    assert parsed is not None
    with pytest.raises(AttributeError):
        parsed.trace_id = SUITE_TRACE_ID  # type: ignore[misc]


# --- traceparent: invalid -----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(VALID.upper(), id="all-upper-case"),
        pytest.param(f"00-{TRACE_ID.upper()}-{SPAN_ID}-01", id="upper-trace-id"),
        pytest.param(f"00-{TRACE_ID}-{SPAN_ID.upper()}-01", id="upper-parent-id"),
        pytest.param(f"00-{TRACE_ID}-{SPAN_ID}-0A", id="upper-flags"),
        pytest.param(f"CC-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="upper-version"),
        pytest.param(f"ff-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="version-ff"),
        pytest.param(f"ff-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01-future", id="version-ff-extra"),
        pytest.param(f".0-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="version-illegal-1"),
        pytest.param(f"0.-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="version-illegal-2"),
        pytest.param(f"000-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="version-too-long-3"),
        pytest.param(f"0000-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="version-too-long-4"),
        pytest.param(f"0-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="version-too-short"),
        pytest.param(f"00-{'0' * 32}-{SUITE_SPAN_ID}-01", id="trace-id-all-zero"),
        pytest.param(f"00-.{SUITE_TRACE_ID[1:]}-{SUITE_SPAN_ID}-01", id="trace-id-illegal-1"),
        pytest.param(f"00-{SUITE_TRACE_ID[:-1]}.-{SUITE_SPAN_ID}-01", id="trace-id-illegal-2"),
        pytest.param(f"00-{SUITE_TRACE_ID}3-{SUITE_SPAN_ID}-01", id="trace-id-too-long"),
        pytest.param(f"00-{SUITE_TRACE_ID[:-1]}-{SUITE_SPAN_ID}-01", id="trace-id-too-short"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{'0' * 16}-01", id="parent-id-all-zero"),
        pytest.param(f"00-{SUITE_TRACE_ID}-.{SUITE_SPAN_ID[1:]}-01", id="parent-id-illegal-1"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID[:-1]}.-01", id="parent-id-illegal-2"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}7-01", id="parent-id-too-long"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID[:-1]}-01", id="parent-id-too-short"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-.0", id="flags-illegal-1"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-0.", id="flags-illegal-2"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-001", id="flags-too-long"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-1", id="flags-too-short"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-0g", id="flags-not-hex"),
        pytest.param(f"00-{'g' * 32}-{SUITE_SPAN_ID}-01", id="trace-id-not-hex"),
        pytest.param(f"00_{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="wrong-delimiter"),
        pytest.param(f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}", id="flags-missing"),
        pytest.param(f"{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="version-missing"),
        pytest.param(f"{SUITE}.", id="version-00-trailing-dot"),
        pytest.param(f"{SUITE}-what-the-future-will-be-like", id="version-00-extra-fields"),
        pytest.param(f"{SUITE}-", id="version-00-trailing-dash"),
        pytest.param(f"00 -{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01", id="inner-space"),
        pytest.param("", id="empty"),
        pytest.param(" \t ", id="whitespace-only"),
    ],
)
def test_traceparent_invalid(value: str) -> None:
    """Values the grammar or the conformance suite rejects restart the trace."""
    assert parse_traceparent(value) is None


def test_traceparent_absent() -> None:
    """No header and an empty list of fields are both absent."""
    assert parse_traceparent(None) is None
    assert parse_traceparent([]) is None


@pytest.mark.parametrize(
    "value",
    [
        # Arabic-Indic and full-width digits: Unicode digits, but not HEXDIGLC.
        "00-" + "\u0661" * 32 + f"-{SUITE_SPAN_ID}-01",
        f"00-{SUITE_TRACE_ID}-" + "\uff11" * 16 + "-01",
        f"\u00a0{SUITE}",
        f"cc-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01-caf\u00e9",
    ],
)
def test_traceparent_non_ascii_text_is_invalid(value: str) -> None:
    """Non-ASCII characters anywhere, even in a future version's ignored tail, are invalid."""
    assert parse_traceparent(value) is None


# --- traceparent: future versions ---------------------------------------------------


def test_traceparent_future_version_exact_length() -> None:
    """A future version of exactly 55 characters is parsed as version 00 would be."""
    assert parse_traceparent(FUTURE) == TraceParent(0xCC, SUITE_TRACE_ID, SUITE_SPAN_ID, 1)


def test_traceparent_future_version_with_extra_fields() -> None:
    """A future version may carry further dash-separated fields, which are ignored."""
    parsed = parse_traceparent(f"{FUTURE}-what-the-future-will-be-like")
    assert parsed == TraceParent(0xCC, SUITE_TRACE_ID, SUITE_SPAN_ID, 1)


def test_traceparent_future_version_trailing_dash() -> None:
    """A dash right after the flags is enough for a future version (an empty extra field)."""
    assert parse_traceparent(f"{FUTURE}-") == TraceParent(0xCC, SUITE_TRACE_ID, SUITE_SPAN_ID, 1)


@pytest.mark.parametrize("tail", [".what-the-future-will-be-like", "1", "1-x", ",", " x"])
def test_traceparent_future_version_followed_by_non_dash(tail: str) -> None:
    """A future version whose flags are followed by anything but a dash is invalid."""
    assert parse_traceparent(FUTURE + tail) is None


@pytest.mark.parametrize("version", ["01", "7f", "cc", "fe"])
def test_traceparent_future_version_numbers(version: str) -> None:
    """Every version but 00 and ff is a future version; its number is kept."""
    parsed = parse_traceparent(f"{version}-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-00-x")
    assert parsed is not None
    assert parsed.version == int(version, 16)


def test_traceparent_future_version_fields_still_checked() -> None:
    """A future version still needs valid, non-zero lower-case ids and flags."""
    assert parse_traceparent(f"cc-{'0' * 32}-{SUITE_SPAN_ID}-01-x") is None
    assert parse_traceparent(f"cc-{SUITE_TRACE_ID}-{'0' * 16}-01-x") is None
    assert parse_traceparent(f"cc-{TRACE_ID.upper()}-{SPAN_ID}-01-x") is None
    assert parse_traceparent(f"cc-{TRACE_ID}-{SPAN_ID}-0A-x") is None
    assert parse_traceparent(f"cc-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-0-x") is None
    assert parse_traceparent(f"cc-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-0") is None


# --- traceparent: whitespace, several fields, bytes ------------------------------------


@pytest.mark.parametrize(
    "value", [f" {SUITE}", f"\t{SUITE}", f"{SUITE} ", f"{SUITE}\t", f"\t {SUITE} \t"]
)
def test_traceparent_ows_stripped(value: str) -> None:
    """Spaces and tabs around the value are optional whitespace (suite: ows_handling)."""
    parsed = parse_traceparent(value)
    assert parsed is not None
    assert parsed.trace_id == SUITE_TRACE_ID


@pytest.mark.parametrize("value", [f"\n{SUITE}", f"{SUITE}\r\n", f"{SUITE}\x00", f"\v{SUITE}"])
def test_traceparent_other_whitespace_is_invalid(value: str) -> None:
    """Only spaces and tabs are optional whitespace; newlines and others make it invalid."""
    assert parse_traceparent(value) is None


def test_traceparent_future_version_ows_stripped() -> None:
    """Optional whitespace is stripped around a future version too."""
    parsed = parse_traceparent(f" \t{FUTURE}-x \t")
    assert parsed == TraceParent(0xCC, SUITE_TRACE_ID, SUITE_SPAN_ID, 1)


def test_traceparent_duplicated_header_is_invalid() -> None:
    """Two traceparent fields restart the trace (suite: traceparent_duplicated)."""
    first = f"00-{SUITE_TRACE_ID[:-1]}1-{SUITE_SPAN_ID}-01"
    assert parse_traceparent([first, SUITE]) is None
    assert parse_traceparent([SUITE, SUITE]) is None
    assert parse_traceparent((SUITE.encode(), SUITE.encode())) is None


def test_traceparent_comma_joined_header_is_invalid() -> None:
    """Two values joined by a comma into one field are not a traceparent."""
    assert parse_traceparent(f"{SUITE},{SUITE}") is None
    assert parse_traceparent(f"{SUITE}, {SUITE}") is None
    assert parse_traceparent(f"{FUTURE},{FUTURE}") is None


def test_traceparent_single_field_sequence() -> None:
    """A sequence holding one field parses like that field alone."""
    expected = TraceParent(0, SUITE_TRACE_ID, SUITE_SPAN_ID, 1)
    assert parse_traceparent([SUITE]) == expected
    assert parse_traceparent((SUITE.encode(),)) == expected
    assert parse_traceparent([f" {SUITE} "]) == expected


def test_traceparent_bytes() -> None:
    """bytes are decoded as ASCII."""
    assert parse_traceparent(SUITE.encode()) == TraceParent(0, SUITE_TRACE_ID, SUITE_SPAN_ID, 1)
    assert parse_traceparent(f"\t{FUTURE}-x ".encode()) is not None


@pytest.mark.parametrize(
    "value",
    [
        b"\xff" + SUITE.encode()[1:],
        SUITE.encode() + b"\x80",
        f"cc-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01-caf\u00e9".encode(),
        [f"{SUITE}\u00e9".encode()],
    ],
)
def test_traceparent_non_ascii_bytes_are_invalid(value: bytes | list[bytes]) -> None:
    """bytes that are not ASCII are invalid, not decoded some other way."""
    assert parse_traceparent(value) is None


@pytest.mark.parametrize(
    "value", [42, 4.2, object(), [1], [None], [[SUITE]], {SUITE: 1}, bytearray(b"00")]
)
def test_traceparent_never_raises_on_wrong_types(value: object) -> None:
    """Input of a type the signature does not allow is invalid, not an exception."""
    assert parse_traceparent(_untyped(value)) is None


# --- traceparent: the middleware's fast path --------------------------------------------


def _expected_ids(value: object) -> tuple[str, str, int] | None:
    parsed = parse_traceparent(_untyped(value))
    return None if parsed is None else (parsed.trace_id, parsed.parent_id, parsed.flags)


@st.composite
def _near_traceparents(draw: st.DrawFn) -> bytes:
    """55-byte values that are valid or one byte away from it, with tricky fields."""
    version = draw(st.sampled_from(["00", "01", "cc", "fe", "ff", "0F", "0g"]))
    trace_id = draw(st.sampled_from([TRACE_ID, "0" * 32, TRACE_ID.upper()]))
    parent_id = draw(st.sampled_from([SPAN_ID, "0" * 16, SPAN_ID.upper()]))
    flags = draw(st.sampled_from(["00", "01", "03", "ff", "F1", "0x"]))
    value = bytearray(f"{version}-{trace_id}-{parent_id}-{flags}".encode())
    if draw(st.booleans()):
        value[draw(st.integers(0, 54))] = draw(st.integers(0, 255))
    return bytes(value)


@given(st.one_of(_near_traceparents(), st.binary(min_size=55, max_size=55), st.binary()))
def test_traceparent_ids_agree_with_parse_traceparent(value: bytes) -> None:
    """traceparent_ids gives parse_traceparent's ids and flags (or None) for any bytes."""
    assert traceparent_ids(value) == _expected_ids(value)


@pytest.mark.parametrize(
    "value",
    [
        VALID.encode(),
        SUITE,
        FUTURE.encode(),
        f"{FUTURE}-x".encode(),
        f" {SUITE}".encode(),
        [SUITE.encode()],
        [SUITE.encode(), SUITE.encode()],
        f"ff-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-01".encode(),
        f"00-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-ff".encode(),
        b"\xff" + SUITE.encode()[1:],
        None,
    ],
)
def test_traceparent_ids_known_values(value: object) -> None:
    """traceparent_ids agrees with parse_traceparent on the cases the W3C suite names."""
    assert traceparent_ids(_untyped(value)) == _expected_ids(value)


def test_traceparent_ids_keeps_the_whole_flags_byte() -> None:
    """The flags come back whole, unknown bits included, as TraceParent.flags has them."""
    assert traceparent_ids(f"00-{TRACE_ID}-{SPAN_ID}-03".encode()) == (TRACE_ID, SPAN_ID, 3)


# --- traceparent: formatting ----------------------------------------------------------


def test_format_traceparent() -> None:
    """Formatting emits version 00 and the sampled flag."""
    assert format_traceparent(TRACE_ID, SPAN_ID) == VALID
    assert format_traceparent(TRACE_ID, SPAN_ID, 1) == VALID
    assert format_traceparent(TRACE_ID, SPAN_ID, 0) == f"00-{TRACE_ID}-{SPAN_ID}-00"


@pytest.mark.parametrize(("flags", "sent"), [(0xFF, "01"), (0x09, "01"), (0x08, "00"), (2, "00")])
def test_format_traceparent_zeroes_unknown_flags(flags: int, sent: str) -> None:
    """Only the sampled bit is sent: Level 1 makes a vendor zero the flags it does not know."""
    assert format_traceparent(TRACE_ID, SPAN_ID, flags).endswith(f"-{sent}")


def test_format_traceparent_downgrades_future_version() -> None:
    """A future-version parent is answered with version 00, its trace id and sampled bit kept."""
    parent = parse_traceparent(f"cc-{SUITE_TRACE_ID}-{SUITE_SPAN_ID}-09-extra")
    assert parent is not None
    assert format_traceparent(parent.trace_id, SPAN_ID, parent.flags) == (
        f"00-{SUITE_TRACE_ID}-{SPAN_ID}-01"
    )


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [
        (TRACE_ID.upper(), SPAN_ID),
        (TRACE_ID, SPAN_ID.upper()),
        (TRACE_ID[:-1], SPAN_ID),
        (TRACE_ID + "0", SPAN_ID),
        (TRACE_ID, SPAN_ID[:-1]),
        (TRACE_ID, SPAN_ID + "0"),
        ("0" * 32, SPAN_ID),
        (TRACE_ID, "0" * 16),
        ("g" * 32, SPAN_ID),
        (TRACE_ID, f"{SPAN_ID[:-1]}\n"),
        ("", ""),
    ],
)
def test_format_traceparent_rejects_invalid_ids(trace_id: str, span_id: str) -> None:
    """An id no receiver would accept raises ConfigurationError (also a ValueError)."""
    with pytest.raises(ConfigurationError, match="id"):
        format_traceparent(trace_id, span_id)
    with pytest.raises(ValueError):  # noqa: PT011 - the ValueError side of the same error
        format_traceparent(trace_id, span_id)


def test_traceparent_round_trip() -> None:
    """parse(format(...)) gives back the ids and the sampled bit."""
    for flags in (0, 1):
        parsed = parse_traceparent(format_traceparent(TRACE_ID, SPAN_ID, flags))
        assert parsed == TraceParent(0, TRACE_ID, SPAN_ID, flags)
        assert format_traceparent(parsed.trace_id, parsed.parent_id, parsed.flags) == (
            f"00-{TRACE_ID}-{SPAN_ID}-0{flags}"
        )


# --- tracestate: valid -------------------------------------------------------------------


def test_tracestate_valid() -> None:
    """The Recommendation's example parses into ordered members."""
    assert parse_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE") == (
        ("rojo", "00f067aa0ba902b7"),
        ("congo", "t61rcWkgMzE"),
    )


def test_tracestate_all_allowed_characters() -> None:
    """Every character the grammar allows is accepted (suite: all_allowed_characters)."""
    key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
    tenant_key = key + "@a-z0-9_-*/"
    value = "".join(chr(c) for c in (*range(0x20, 0x2C), *range(0x2D, 0x3D), *range(0x3E, 0x7F)))
    # The value starts with a space: leading spaces belong to the value.
    assert value.startswith(" ")
    assert parse_tracestate(f"{key}={value}") == ((key, value),)
    assert parse_tracestate(f"{tenant_key}={value}") == ((tenant_key, value),)


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "z" * 256,
        "foo_bar-baz*qux/1",
        "t@v",
        "1tenant@system",
        "0@a",
        "t" * 241 + "@" + "v" * 14,
        "tenant/*_-@sys0_-*/",
    ],
)
def test_tracestate_valid_keys(key: str) -> None:
    """Simple keys and multi-tenant keys at their length limits are accepted."""
    assert parse_tracestate(f"{key}=1") == ((key, "1"),)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("foo ", id="space-before-equals"),
        pytest.param("FOO", id="upper-case"),
        pytest.param("fOo", id="mixed-case"),
        pytest.param("foo.bar", id="dot"),
        pytest.param("z" * 257, id="too-long"),
        pytest.param("1abc", id="simple-key-leading-digit"),
        pytest.param("_abc", id="leading-underscore"),
        pytest.param("foo@", id="empty-system-id"),
        pytest.param("@foo", id="empty-tenant-id"),
        pytest.param("foo@@bar", id="double-at"),
        pytest.param("foo@bar@baz", id="two-ats"),
        pytest.param("t" * 242 + "@v", id="tenant-id-too-long"),
        pytest.param("t@" + "v" * 15, id="system-id-too-long"),
        pytest.param("t@1v", id="system-id-leading-digit"),
        pytest.param("_t@v", id="tenant-id-leading-underscore"),
        pytest.param("", id="empty"),
        pytest.param("f\u00f6o", id="non-ascii"),
    ],
)
def test_tracestate_invalid_keys(key: str) -> None:
    """A key outside the grammar discards the whole tracestate."""
    assert parse_tracestate(f"{key}=1,bar=2") == ()
    assert parse_tracestate(f"bar=2,{key}=1") == ()


@pytest.mark.parametrize(
    "value",
    [
        " leading spaces are kept",
        "a b",
        "~",
        "!",
        "x" * 256,
        "base64+/0::",
    ],
)
def test_tracestate_valid_values(value: str) -> None:
    """Values of printable ASCII without ',' and '=' are kept verbatim."""
    assert parse_tracestate(f"foo={value}") == (("foo", value),)


@pytest.mark.parametrize(
    "member",
    [
        pytest.param("foo=bar=baz", id="equals-in-value"),
        pytest.param("foo=", id="empty-value"),
        pytest.param("foo= ", id="space-only-value"),
        pytest.param("foo=" + "x" * 257, id="value-too-long"),
        pytest.param("foo=a\tb", id="tab-inside"),
        pytest.param("foo=a\x7fb", id="del"),
        pytest.param("foo=a\x00b", id="nul"),
        pytest.param("foo=a\nb", id="newline"),
        pytest.param("foo=caf\u00e9", id="non-ascii"),
        pytest.param("foo", id="no-equals"),
        pytest.param("=1", id="no-key"),
    ],
)
def test_tracestate_invalid_values(member: str) -> None:
    """A value outside the grammar discards the whole tracestate (suite: illegal characters)."""
    assert parse_tracestate(f"{member},bar=2") == ()
    assert parse_tracestate(f"bar=2,{member}") == ()


def test_tracestate_empty_value_discards_all() -> None:
    """'foo=,bar=3' loses both members, as the suite expects."""
    assert parse_tracestate("foo=,bar=3") == ()


@pytest.mark.parametrize("value", ["foo=1 ", "foo=1\t", " foo=1", "\tfoo=1", "\t foo=1 \t"])
def test_tracestate_ows_around_member(value: str) -> None:
    """Spaces and tabs around a member are not part of it; a value cannot end in a space."""
    assert parse_tracestate(value) == (("foo", "1"),)


@pytest.mark.parametrize(
    "value", ["foo=1 \t , \t bar=2, \t baz=3", "foo=1\t \t,\t \tbar=2,\t \tbaz=3"]
)
def test_tracestate_ows_around_commas(value: str) -> None:
    """Optional whitespace around commas is ignored (suite: tracestate_ows_handling)."""
    assert parse_tracestate(value) == (("foo", "1"), ("bar", "2"), ("baz", "3"))


def test_tracestate_leading_space_in_value_kept() -> None:
    """Spaces after '=' belong to the value; only those around the member are stripped."""
    assert parse_tracestate("foo=  1  ,bar=2") == (("foo", "  1"), ("bar", "2"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        (",", ()),
        (" , ,\t,", ()),
        ("foo=1,,bar=2", (("foo", "1"), ("bar", "2"))),
        (",foo=1,", (("foo", "1"),)),
        (" , foo=1 ,\t, ", (("foo", "1"),)),
    ],
)
def test_tracestate_empty_members_skipped(
    value: str, expected: tuple[tuple[str, str], ...]
) -> None:
    """Empty and whitespace-only members are allowed and skipped."""
    assert parse_tracestate(value) == expected


def _members(first: int, last: int) -> str:
    """Return 'barNN=NN' members numbered first..last, joined by commas."""
    return ",".join(f"bar{i:02d}={i:02d}" for i in range(first, last + 1))


def test_tracestate_32_members_accepted() -> None:
    """32 members across several fields are accepted (suite: member_count_limit)."""
    fields = [_members(1, 10), _members(11, 20), _members(21, 30), _members(31, 32)]
    parsed = parse_tracestate(fields)
    assert len(parsed) == MAX_TRACESTATE_MEMBERS
    assert parsed[0] == ("bar01", "01")
    assert parsed[-1] == ("bar32", "32")


def test_tracestate_33_members_discarded() -> None:
    """33 members discard the whole tracestate (suite: member_count_limit)."""
    fields = [_members(1, 10), _members(11, 20), _members(21, 30), _members(31, 33)]
    assert parse_tracestate(fields) == ()
    assert parse_tracestate(_members(1, 33)) == ()


def test_tracestate_empty_members_do_not_count() -> None:
    """Empty members do not count toward the 32-member limit."""
    assert len(parse_tracestate(",".join([_members(1, 32), "", " ", "\t"]))) == 32
    assert len(parse_tracestate(_members(1, 32).replace(",", ",,"))) == 32


@pytest.mark.parametrize(
    "value",
    [
        "foo=1,foo=1",
        "foo=1,foo=2",
        ["foo=1", "foo=1"],
        ["foo=1", "foo=2"],
        "foo=1,bar=2,foo=3",
        "t@v=1,t@v=2",
    ],
)
def test_tracestate_duplicate_keys_discarded(value: str | list[str]) -> None:
    """A repeated key discards the whole tracestate (suite: duplicated_keys)."""
    assert parse_tracestate(value) == ()


def test_tracestate_similar_keys_are_not_duplicates() -> None:
    """A simple key and a multi-tenant key sharing a prefix are distinct."""
    assert parse_tracestate("foo=1,foo@bar=2,bar@foo=3") == (
        ("foo", "1"),
        ("foo@bar", "2"),
        ("bar@foo", "3"),
    )


def test_tracestate_several_header_fields() -> None:
    """Several fields are combined in order (suite: multiple_headers_different_keys)."""
    parsed = parse_tracestate(["foo=1,bar=2", "rojo=1,congo=2", "baz=3"])
    assert parsed == (("foo", "1"), ("bar", "2"), ("rojo", "1"), ("congo", "2"), ("baz", "3"))


@pytest.mark.parametrize("fields", [["foo=1", ""], ["", "foo=1"], ["", "foo=1", " "]])
def test_tracestate_empty_header_fields(fields: list[str]) -> None:
    """Empty fields next to a valid one are harmless (suite: tracestate_empty_header)."""
    assert parse_tracestate(fields) == (("foo", "1"),)


def test_tracestate_fields_are_joined_not_concatenated() -> None:
    """Fields are separated by a comma, so a member cannot span two fields."""
    assert parse_tracestate(["foo=1", "bar=2"]) == (("foo", "1"), ("bar", "2"))
    assert parse_tracestate(["foo", "=1"]) == ()


def test_tracestate_key_length_limits_across_fields() -> None:
    """The suite's key-length cases: the over-long key discards 'foo' from another field."""
    assert parse_tracestate(["foo=1", "z" * 256 + "=1"]) == (("foo", "1"), ("z" * 256, "1"))
    assert parse_tracestate(["foo=1", "z" * 257 + "=1"]) == ()
    assert len(parse_tracestate(["foo=1", "t" * 241 + "@" + "v" * 14 + "=1"])) == 2
    assert parse_tracestate(["foo=1", "t" * 242 + "@v=1"]) == ()
    assert parse_tracestate(["foo=1", "t@" + "v" * 15 + "=1"]) == ()


def test_tracestate_bytes() -> None:
    """bytes fields are decoded as ASCII; non-ASCII bytes discard the tracestate."""
    assert parse_tracestate(b"foo=1,bar=2") == (("foo", "1"), ("bar", "2"))
    assert parse_tracestate([b"foo=1", "bar=2"]) == (("foo", "1"), ("bar", "2"))
    assert parse_tracestate(b"foo=caf\xc3\xa9") == ()
    assert parse_tracestate([b"foo=1", b"bar=\xff"]) == ()


def test_tracestate_absent() -> None:
    """No header, no fields, and an empty header all give no members."""
    assert parse_tracestate(None) == ()
    assert parse_tracestate([]) == ()
    assert parse_tracestate("") == ()
    assert parse_tracestate(b"") == ()


def test_tracestate_one_bad_member_discards_all() -> None:
    """The tracestate is valid or discarded as a whole, never partly kept."""
    assert parse_tracestate("foo=1,BAR=2,baz=3") == ()
    assert parse_tracestate(["foo=1", "bar=2", "baz=3,Qux=4"]) == ()


@pytest.mark.parametrize("value", [42, object(), [1], [None], ["foo=1", 2], {"foo": "1"}])
def test_tracestate_never_raises_on_wrong_types(value: object) -> None:
    """Input of a type the signature does not allow gives no members, not an exception."""
    assert parse_tracestate(_untyped(value)) == ()


# --- tracestate: formatting and truncation -------------------------------------------------


def test_format_tracestate_joins_with_commas() -> None:
    """Members are joined with ',' in the order given."""
    assert format_tracestate([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]) == (
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    )
    assert format_tracestate([]) == ""
    assert format_tracestate((("foo", " 1"),)) == "foo= 1"


def test_format_tracestate_keeps_at_most_32_members() -> None:
    """Members beyond the 32nd are dropped from the right."""
    members = [(f"k{i:02d}", "v") for i in range(40)]
    header = format_tracestate(members)
    assert parse_tracestate(header) == tuple(members[:MAX_TRACESTATE_MEMBERS])


def _member(key: str, length: int) -> tuple[str, str]:
    """Return a member whose 'key=value' text is exactly ``length`` characters."""
    return (key, "v" * (length - len(key) - 1))


def test_format_tracestate_exactly_512_not_truncated() -> None:
    """A header of exactly 512 characters is kept whole."""
    # 4 members of 127 characters plus 3 commas = 511; one more character fits.
    members = [_member("a", 127), _member("b", 127), _member("c", 127), _member("d", 128)]
    header = format_tracestate(members)
    assert len(header) == TRACESTATE_TRUNCATION_LIMIT
    assert parse_tracestate(header) == tuple(members)


def test_format_tracestate_drops_large_member_first() -> None:
    """Over 512 characters, a member longer than 128 goes before any smaller one."""
    small = [_member(f"s{i}", 100) for i in range(4)]
    large = _member("large", 129)
    members = [small[0], large, *small[1:]]
    assert len(",".join(f"{k}={v}" for k, v in members)) > TRACESTATE_TRUNCATION_LIMIT
    assert parse_tracestate(format_tracestate(members)) == tuple(small)


def test_format_tracestate_drops_large_members_rightmost_first() -> None:
    """Large members go rightmost first, and only as many as needed to fit."""
    left_large = _member("left", 200)
    right_large = _member("right", 200)
    small = _member("small", 100)
    members = [left_large, small, right_large, _member("tail", 20)]
    # 200+100+200+20+3 = 523 > 512; dropping the right large member is enough.
    assert parse_tracestate(format_tracestate(members)) == (
        left_large,
        small,
        _member("tail", 20),
    )


def test_format_tracestate_exactly_128_is_not_large() -> None:
    """A member of exactly 128 characters is not 'larger than 128'."""
    members = [_member("a", 129), _member("b", 128), _member("c", 128), _member("d", 128)]
    # 129+128*3+3 = 516 > 512: the 129-character member is dropped, the rest kept.
    assert parse_tracestate(format_tracestate(members)) == tuple(members[1:])


def test_format_tracestate_then_drops_from_the_right() -> None:
    """With no large member left, members are dropped from the right until it fits."""
    members = [_member(f"k{i}", 100) for i in range(6)]
    # 6*100+5 = 605; five members take 504.
    header = format_tracestate(members)
    assert len(header) <= TRACESTATE_TRUNCATION_LIMIT
    assert parse_tracestate(header) == tuple(members[:5])


def test_format_tracestate_large_then_right() -> None:
    """When dropping every large member is not enough, small ones go from the right."""
    members = [
        ("b" * 100, "v" * 199),  # 300 characters: the value alone may not exceed 256
        *(_member(f"k{i}", 120) for i in range(5)),
        _member("big2", 200),
    ]
    header = format_tracestate(members)
    assert len(header) <= TRACESTATE_TRUNCATION_LIMIT
    # Both large members go (300+600+200+6 is too long without either), then k4.
    assert parse_tracestate(header) == tuple(members[1:5])


def test_format_tracestate_single_member_over_limit() -> None:
    """A single member longer than 512 characters cannot be sent at all."""
    member = ("k" * 256, "v" * 256)
    assert format_tracestate([member]) == ""
    assert format_tracestate([("a", "1"), member]) == "a=1"


@pytest.mark.parametrize(
    "member",
    [
        ("FOO", "1"),
        ("foo bar", "1"),
        ("", "1"),
        ("z" * 257, "1"),
        ("foo", ""),
        ("foo", "a,b"),
        ("foo", "a=b"),
        ("foo", "1 "),
        ("foo", "a\tb"),
        ("foo", "caf\u00e9"),
        ("foo", "x" * 257),
    ],
)
def test_format_tracestate_rejects_invalid_members(member: tuple[str, str]) -> None:
    """A member that receivers would reject raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="tracestate"):
        format_tracestate([("ok", "1"), member])


def test_format_tracestate_rejects_duplicate_keys() -> None:
    """A repeated key raises ConfigurationError: receivers would discard the whole header."""
    with pytest.raises(ConfigurationError, match="twice"):
        format_tracestate([("foo", "1"), ("bar", "2"), ("foo", "3")])


def test_tracestate_round_trip() -> None:
    """parse(format(members)) gives back the members, and format(parse(h)) a clean header."""
    members = (("congo", "ucfJifl5GOE"), ("rojo", "00f067aa0ba902b7"), ("t@v", " x y"))
    assert parse_tracestate(format_tracestate(members)) == members
    header = " congo=ucfJifl5GOE , ,rojo=00f067aa0ba902b7\t"
    assert format_tracestate(parse_tracestate(header)) == "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7"


# --- properties ----------------------------------------------------------------------------

_HEX_ID_32 = st.binary(min_size=16, max_size=16).filter(any).map(bytes.hex)
_HEX_ID_16 = st.binary(min_size=8, max_size=8).filter(any).map(bytes.hex)
# Near-misses of a traceparent, so the generated inputs reach every check, not only the first.
_TRACEPARENT_LIKE = st.from_regex(
    re.compile(
        r"[ \t]{0,2}[0-9a-fA-F]{1,3}-[0-9a-fA-F.]{31,33}-[0-9a-fA-F]{15,17}"
        r"-[0-9a-fA-F]{1,3}([-.,][ -~]{0,8})?[ \t]{0,2}"
    ),
    fullmatch=True,
)
# Values assembled from well-formed parts, about half of them valid, so properties
# about accepted values are exercised (the near-misses above are almost never valid).
_TRACEPARENT_ASSEMBLED = st.builds(
    "{}{}-{}-{}-{}{}{}".format,
    st.sampled_from(["", " ", "\t", " \t"]),
    st.sampled_from(["00", "00", "00", "01", "cc", "fe", "ff", "0A"]),
    st.one_of(_HEX_ID_32, st.just("0" * 32)),
    st.one_of(_HEX_ID_16, st.just("0" * 16)),
    st.one_of(st.sampled_from(["00", "01"]), st.integers(0, 255).map("{:02x}".format)),
    st.one_of(st.just(""), st.text(max_size=8).map("-{}".format), st.text(max_size=8)),
    st.sampled_from(["", " ", "\t", " \t"]),
)
_HEADER_TEXT = st.one_of(
    st.text(),
    _TRACEPARENT_LIKE,
    _TRACEPARENT_ASSEMBLED,
    st.text(alphabet=" \t-0123456789abcdef"),
)


@given(st.one_of(_HEADER_TEXT, st.binary(), st.lists(st.one_of(_HEADER_TEXT, st.binary()))))
def test_parse_traceparent_never_raises(value: str | bytes | list[str | bytes]) -> None:
    """parse_traceparent answers a TraceParent or None for any text, bytes or list of them."""
    parsed = parse_traceparent(value)
    if parsed is not None:
        assert len(parsed.trace_id) == 32
        assert len(parsed.parent_id) == 16
        assert 0 <= parsed.version < 0xFF
        assert 0 <= parsed.flags <= 0xFF


@given(st.one_of(st.text(), st.binary(), st.lists(st.one_of(st.text(), st.binary()))))
def test_parse_tracestate_never_raises(value: str | bytes | list[str | bytes]) -> None:
    """parse_tracestate answers a tuple of members for any text, bytes or list of them."""
    parsed = parse_tracestate(value)
    assert isinstance(parsed, tuple)
    assert len(parsed) <= MAX_TRACESTATE_MEMBERS


# Accepted version-00 values with flags 0 or 1, the case the round trip is about.
_TRACEPARENT_00 = st.builds(
    "{}00-{}-{}-{}{}".format,
    st.sampled_from(["", " ", "\t", " \t"]),
    _HEX_ID_32,
    _HEX_ID_16,
    st.sampled_from(["00", "01"]),
    st.sampled_from(["", " ", "\t", " \t"]),
)


@given(st.one_of(_TRACEPARENT_00, _TRACEPARENT_ASSEMBLED, _TRACEPARENT_LIKE))
def test_accepted_traceparent_round_trips(value: str) -> None:
    """Whatever is accepted as version 00 with flags 0 or 1 is formatted back unchanged."""
    parsed = parse_traceparent(value)
    if parsed is not None and parsed.version == 0 and parsed.flags in (0, 1):
        assert format_traceparent(parsed.trace_id, parsed.parent_id, parsed.flags) == (
            value.strip(" \t")
        )


@given(_HEX_ID_32, _HEX_ID_16, st.integers(min_value=0, max_value=255))
def test_formatted_traceparent_parses(trace_id: str, span_id: str, flags: int) -> None:
    """Every formatted traceparent parses back to its ids and sampled bit."""
    header = format_traceparent(trace_id, span_id, flags)
    assert parse_traceparent(header) == TraceParent(0, trace_id, span_id, flags & 1)
    assert format_traceparent(trace_id, span_id, flags & 1) == header


# Keys and values: the strings of the regular expressions noted beside them, built
# from character strategies (st.from_regex draws them several times slower: the
# truncation test took 12 s here, 70 s on a loaded machine, and failed Hypothesis's
# too_slow health check).
_LOWER = string.ascii_lowercase
_KEY_CHARS = _LOWER + string.digits + "_-*/"
_VALUE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=")
_VALUE_LAST = _VALUE_CHARS.replace(" ", "")


def _joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


def _key_chars(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=_KEY_CHARS, min_size=min_size, max_size=max_size)


def _value_chars(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=_VALUE_CHARS, min_size=min_size, max_size=max_size)


# [a-z][a-z0-9_\-*/]{0,40}
_SIMPLE_KEY = _joined(st.sampled_from(_LOWER), _key_chars(0, 40))
# [a-z0-9][a-z0-9_\-*/]{0,20}@[a-z][a-z0-9_\-*/]{0,13}
_TENANT_KEY = _joined(
    st.sampled_from(_LOWER + string.digits),
    _key_chars(0, 20),
    st.just("@"),
    st.sampled_from(_LOWER),
    _key_chars(0, 13),
)
# [a-z][a-z0-9_\-*/]{200,255}
_LONG_KEY = _joined(st.sampled_from(_LOWER), _key_chars(200, 255))
# [\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,40}[\x21-\x2b\x2d-\x3c\x3e-\x7e]
_VALUE = _joined(_value_chars(0, 40), st.sampled_from(_VALUE_LAST))
# [\x20-\x2b\x2d-\x3c\x3e-\x7e]{150,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]
_LONG_VALUE = _joined(_value_chars(150, 255), st.sampled_from(_VALUE_LAST))
_MEMBER = st.tuples(st.one_of(_SIMPLE_KEY, _TENANT_KEY), _VALUE)
_ANY_MEMBER = st.one_of(_MEMBER, st.tuples(st.one_of(_SIMPLE_KEY, _LONG_KEY), _LONG_VALUE))


def _joined_length(members: list[tuple[str, str]]) -> int:
    """Return the length of the members joined into a header, without truncation."""
    return len(",".join(f"{key}={value}" for key, value in members))


@given(st.lists(_MEMBER, max_size=MAX_TRACESTATE_MEMBERS, unique_by=lambda member: member[0]))
def test_tracestate_round_trips_under_limits(members: list[tuple[str, str]]) -> None:
    """parse(format(x)) == x for valid members within 32 members and 512 characters."""
    if _joined_length(members) <= TRACESTATE_TRUNCATION_LIMIT:
        assert parse_tracestate(format_tracestate(members)) == tuple(members)


# Long keys and values from regexes are slow to draw on a loaded machine.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ANY_MEMBER, max_size=40, unique_by=lambda member: member[0]))
def test_tracestate_truncation_keeps_an_ordered_subset(members: list[tuple[str, str]]) -> None:
    """Truncation keeps a valid header within 512 characters holding members in their order."""
    header = format_tracestate(members)
    assert len(header) <= TRACESTATE_TRUNCATION_LIMIT
    kept = parse_tracestate(header)
    remaining = iter(members[:MAX_TRACESTATE_MEMBERS])
    assert all(member in remaining for member in kept)
    if len(members) <= MAX_TRACESTATE_MEMBERS and _joined_length(members) <= 512:
        assert kept == tuple(members)
