"""The framework-free parts of the HTTP middlewares: proxies, addresses, settings, bodies."""

from __future__ import annotations

import ipaddress
import logging

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultlens._ids import normalize_id
from faultlens._metrics import counters
from faultlens.context import set_header_names
from faultlens.errors import ConfigurationError
from faultlens.integrations._http import (
    BoundarySettings,
    TrustedProxies,
    accept_header_id,
    parse_forwarded_for,
    parse_ip,
    rejection_body,
    resolve_client_ip,
)

TRUSTED = TrustedProxies(["10.0.0.0/8", "192.0.2.1", "2001:db8:ffff::/48"])


def test_trusted_proxies_addresses_and_networks() -> None:
    """Addresses and CIDR networks are both trusted; others are not."""
    assert ipaddress.ip_address("10.1.2.3") in TRUSTED
    assert ipaddress.ip_address("192.0.2.1") in TRUSTED
    assert ipaddress.ip_address("2001:db8:ffff::5") in TRUSTED
    assert ipaddress.ip_address("192.0.2.2") not in TRUSTED
    assert ipaddress.ip_address("8.8.8.8") not in TRUSTED
    assert None not in TRUSTED
    assert "10.0.0.1" not in TRUSTED  # membership is of parsed addresses only


def test_trusted_proxies_ipv4_mapped_ipv6_peer() -> None:
    """A dual-stack peer ::ffff:10.0.0.1 is trusted by its IPv4 address."""
    assert ipaddress.ip_address("::ffff:10.0.0.1") in TRUSTED


def test_trusted_proxies_accept_ipaddress_objects_and_single_host_networks() -> None:
    """ipaddress objects and /32 networks are accepted."""
    proxies = TrustedProxies(
        [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_network("172.16.0.0/12"), "1.2.3.4/32"]
    )
    assert ipaddress.ip_address("172.20.0.1") in proxies
    assert ipaddress.ip_address("1.2.3.4") in proxies
    assert ipaddress.ip_address("10.0.0.1") in proxies
    assert bool(proxies)
    assert not TrustedProxies()
    assert "172.16.0.0/12" in repr(proxies)


@pytest.mark.parametrize("entry", ["10.0.0.300", "not-an-ip", "10.0.0.0/33", "", "::g"])
def test_bad_trusted_proxy_entry_names_it(entry: str) -> None:
    """A bad entry raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="trusted_proxies entry") as info:
        TrustedProxies([entry])
    assert repr(entry) in str(info.value)


def test_trusted_proxy_entry_of_wrong_type() -> None:
    """A non-string, non-ipaddress entry raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        TrustedProxies([10])  # type: ignore[list-item]


def test_single_string_is_one_entry() -> None:
    """A lone string is one entry, not a sequence of characters."""
    assert ipaddress.ip_address("10.9.9.9") in TrustedProxies("10.0.0.0/8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:8080", "1.2.3.4"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("1.2.3.4:", None),
        ("1.2.3.4:http", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("[2001:db8::1]:٣", None),
        ("1.2.3.4" + " " * 200, "1.2.3.4"),
        ("9" * 200, None),
    ],
)
def test_parse_ip(text: str, expected: str | None) -> None:
    """Addresses with or without port and brackets parse; anything else is None."""
    parsed = parse_ip(text)
    assert (str(parsed) if parsed is not None else None) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", ["192.0.2.60"]),
        ('for="[2001:db8:cafe::17]:4711"', ["[2001:db8:cafe::17]:4711"]),
        ("For=192.0.2.43, for=198.51.100.17", ["192.0.2.43", "198.51.100.17"]),
        ('for=192.0.2.43,, for="198.51.100.17";by="x,y;z"', ["192.0.2.43", "198.51.100.17"]),
        ('for="_gazonk"', ["_gazonk"]),
        ("proto=https", None),
        ("for=1.2.3.4, proto=https", None),
        ("garbage", None),
        ("", None),
        ('for="unterminated', ['"unterminated']),
    ],
)
def test_parse_forwarded_for(header: str, expected: list[str] | None) -> None:
    """RFC 7239 elements give their for= values; malformed headers give None."""
    assert parse_forwarded_for(header) == expected


@pytest.mark.parametrize(
    ("peer", "forwarded", "xff", "expected"),
    [
        # Untrusted peer: forwarding headers are ignored.
        ("203.0.113.9", None, "1.1.1.1", "203.0.113.9"),
        ("203.0.113.9", "for=1.1.1.1", None, "203.0.113.9"),
        # Trusted peer: walk from the right, skipping trusted hops.
        ("10.0.0.1", None, "203.0.113.7", "203.0.113.7"),
        ("10.0.0.1", None, "198.51.100.1, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        ("10.0.0.1", None, "  203.0.113.7 ,10.0.0.2 ", "203.0.113.7"),
        # Every hop trusted: the left-most one.
        ("10.0.0.1", None, "10.0.0.3, 10.0.0.2", "10.0.0.3"),
        # Garbage on the way: the peer.
        ("10.0.0.1", None, "203.0.113.7, garbage", "10.0.0.1"),
        ("10.0.0.1", None, "", "10.0.0.1"),
        ("10.0.0.1", None, ",,,", "10.0.0.1"),
        ("10.0.0.1", None, None, "10.0.0.1"),
        # Garbage left of the client is never reached.
        ("10.0.0.1", None, "garbage, 203.0.113.7", "203.0.113.7"),
        # Forwarded wins over X-Forwarded-For; quoted IPv6 with port.
        ("10.0.0.1", 'for="[2001:db8:cafe::17]:4711"', "1.1.1.1", "2001:db8:cafe::17"),
        ("10.0.0.1", "for=198.51.100.17;proto=https, for=10.0.0.2", None, "198.51.100.17"),
        # A malformed Forwarded falls back to X-Forwarded-For.
        ("10.0.0.1", "proto=https", "203.0.113.7", "203.0.113.7"),
        ("10.0.0.1", "for=unknown", "203.0.113.7", "10.0.0.1"),
        # IPv6 peers and hops; addresses are returned in canonical form.
        ("2001:db8:ffff::1", None, "2001:0DB8:0000::0042", "2001:db8::42"),
        ("::ffff:10.0.0.1", None, "203.0.113.7", "203.0.113.7"),
        # A peer that is not an address (unix socket, test client) is kept.
        ("testclient", None, "203.0.113.7", "testclient"),
        (None, None, "203.0.113.7", None),
    ],
)
def test_resolve_client_ip(
    peer: str | None, forwarded: str | None, xff: str | None, expected: str | None
) -> None:
    """The client is the peer, or the first untrusted hop behind trusted proxies."""
    assert resolve_client_ip(peer, TRUSTED, forwarded, xff) == expected


def test_resolve_client_ip_without_trusted_proxies_is_the_peer() -> None:
    """With no trusted proxies the peer is returned without parsing anything."""
    assert resolve_client_ip("10.0.0.1", TrustedProxies(), None, "1.1.1.1") == "10.0.0.1"


@given(forwarded=st.one_of(st.none(), st.text()), xff=st.one_of(st.none(), st.text()))
def test_resolve_client_ip_never_raises(forwarded: str | None, xff: str | None) -> None:
    """Arbitrary forwarding headers give the peer or a parsed address, never an error."""
    result = resolve_client_ip("10.0.0.1", TRUSTED, forwarded, xff)
    assert result is not None
    assert result == str(ipaddress.ip_address(result))


def test_rejection_body_names_headers_not_the_value() -> None:
    """The 400 body is small JSON with the error code, a message and the fresh id."""
    body = orjson.loads(rejection_body("abc123", "X-Correlation-ID", "X-Request-ID"))
    assert set(body) == {"error", "message", "correlation_id"}
    assert body["error"] == "invalid_request_id_header"
    assert body["correlation_id"] == "abc123"
    assert "X-Correlation-ID" in body["message"]
    assert "X-Request-ID" in body["message"]


def test_settings_default_header_names_read_at_creation() -> None:
    """Header names default to the process-wide names at construction time."""
    set_header_names(correlation="X-Trace-Key", request="X-Req")
    settings = BoundarySettings.create()
    set_header_names(correlation="X-Other", request="X-Other-Req")
    assert (settings.correlation_header, settings.request_id_header) == ("X-Trace-Key", "X-Req")


@pytest.mark.parametrize(
    "options",
    [
        {"correlation_header": "X Correlation"},
        {"correlation_header": "X-Cid:"},
        {"request_id_header": "X-Req\r\n"},
        {"request_id_header": "X-Réq"},
        {"correlation_header": "X-Same", "request_id_header": "x-same"},
        {"correlation_header": "traceparent"},
        {"request_id_header": "Tracestate"},
        {"access_log_level": "LOUD"},
        {"access_log_level": True},
        {"access_log_level": 1.5},
        {"trusted_proxies": ["10.0.0.0/8", "nope"]},
    ],
)
def test_settings_reject_bad_options(options: dict[str, object]) -> None:
    """Bad header names, levels and proxies raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        BoundarySettings.create(**options)  # type: ignore[arg-type]


def test_settings_level_by_name() -> None:
    """access_log_level accepts a level name."""
    assert BoundarySettings.create(access_log_level="debug").access_log_level == logging.DEBUG


# --- incoming ids ---------------------------------------------------------------------

_ID_BYTES = st.sampled_from(
    [*b"0123456789abcdefABCDEFxyzXYZIiLlOoUu-._:/ \t\r\n\"'", 0, 0x7F, 0x80, 0xE9, 0xFF]
)


def _ids_of_length(n: int) -> st.SearchStrategy[bytes]:
    return st.lists(_ID_BYTES, min_size=n, max_size=n).map(bytes)


_ULID_TEXT = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyzILOUilou"
_INCOMING_IDS = st.one_of(
    st.binary(max_size=140),
    st.sampled_from([1, 25, 26, 27, 31, 32, 33, 35, 36, 37, 128, 129]).flatmap(_ids_of_length),
    st.uuids().map(lambda u: str(u).encode()),
    st.uuids().map(lambda u: str(u).upper().encode()),
    st.uuids().map(lambda u: u.hex.encode()),
    st.tuples(
        st.sampled_from("0123456789"), st.text(alphabet=_ULID_TEXT, min_size=25, max_size=25)
    ).map(lambda parts: (parts[0] + parts[1]).encode()),
)


@given(_INCOMING_IDS)
def test_accept_header_id_agrees_with_normalize_id(raw: bytes) -> None:
    """The middleware's id check gives normalize_id's answer for any bytes."""
    assert accept_header_id(raw, "test.invalid") == normalize_id(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
        (b"123E4567-E89B-12D3-A456-426614174000", "123e4567e89b12d3a456426614174000"),
        (b"01arz3ndektsv4rrffq69g5fav", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        (b"req-42.a:b_c", "req-42.a:b_c"),
        (b"123e4567-e89b-12d3-a456-42661417400-", "123e4567-e89b-12d3-a456-42661417400-"),
        (b"-leading-dash", None),
        (b"", None),
        (b"a" * 129, None),
        (b"bad id", None),
        (b"caf\xc3\xa9", None),
    ],
)
def test_accept_header_id_forms(raw: bytes, expected: str | None) -> None:
    """UUIDs and hex ids are normalised, ULIDs upper-cased, safe tokens kept, others refused."""
    assert accept_header_id(raw, "test.invalid") == expected


def test_accept_header_id_counts_what_it_refuses() -> None:
    """A refused id is counted under the given counter; an accepted one is not."""
    accept_header_id(b"fine-id", "test.invalid")
    accept_header_id(b"not fine", "test.invalid")
    assert counters.snapshot().get("test.invalid") == 1
