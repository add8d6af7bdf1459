"""Redaction: key rules, value patterns, structures, hostile input, configuration."""

from __future__ import annotations

import copy
import dataclasses
import enum
import logging
import string
import time
from collections import OrderedDict, namedtuple
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from faultlens import redaction
from faultlens._metrics import counters
from faultlens.errors import ConfigurationError
from faultlens.redaction import (
    DEFAULT_ALLOW_KEYS,
    DEFAULT_SENSITIVE_KEYS,
    REDACTED,
    Redactor,
    get_redactor,
    neutralize_newlines,
    redact,
    redact_text,
    set_redactor,
)

R = Redactor()
VISA = "4111111111111111"  # Luhn-valid test numbers from the card networks
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _with_check_digit(body: str) -> str:
    return next(body + d for d in string.digits if _luhn_ok(body + d))


# -- public surface -------------------------------------------------------------------


def test_exported_names() -> None:
    """The module exports exactly the documented names, sorted."""
    assert redaction.__all__ == [
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
    assert REDACTED == "[REDACTED]"
    assert "password" in DEFAULT_SENSITIVE_KEYS
    assert "session_id" in DEFAULT_ALLOW_KEYS


def test_process_wide_redactor_is_replaceable() -> None:
    """get/set_redactor swap the engine the module-level functions use."""
    assert get_redactor() == Redactor()
    assert redact_text("password=x") == "password=[REDACTED]"
    set_redactor(Redactor(marker="***"))
    assert redact_text("password=x") == "password=***"
    assert redact({"token": "t"}) == {"token": "***"}


def test_redactor_is_hashable_and_replaceable() -> None:
    """Redactors compare by configuration, hash, and derive with dataclasses.replace."""
    base = Redactor(extra_keys=["pin"])
    assert base == Redactor(extra_keys=("pin",))
    assert hash(base) == hash(Redactor(extra_keys={"pin"}))
    derived = dataclasses.replace(base, redact_emails=True)
    assert derived.redact_text("to bob@example.com") == "to [REDACTED]"
    assert derived.is_sensitive_key("user_pin")


# -- keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "user_password",
        "userPassword",
        "passwd",
        "db_pwd",
        "DB-PWD",
        "passphrase",
        "secret",
        "client_secret",
        "aws_secret_access_key",
        "token",
        "authToken",
        "access_token",
        "refresh-token",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "apikey",
        "Authorization",
        "Proxy-Authorization",
        "auth",
        "X-Auth",
        "cookie",
        "Set-Cookie",
        "session",
        "sessionid",
        "session_key",
        "private_key",
        "privateKey",
        "credentials",
        "card_number",
        "cardNumber",
        "credit_card",
        "creditCard",
        "cvv",
        "card_cvv2",
        "cvc",
        "ssn",
        "user_ssn",
        "--password",
    ],
)
def test_sensitive_keys(key: str) -> None:
    """Every default key rule matches, whatever the case and separators."""
    assert R.is_sensitive_key(key)
    assert R.redact({key: "s3cr3t-value"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        "session_id",
        "sessionId",
        "Session-ID",
        "correlation_id",
        "request_id",
        "trace_id",
        "span_id",
        "token_type",
        "user_id",
        "max_tokens",
        "auth_method",
        "author",
        "oauth_provider",
        "cvc_check",
        "classname",
        "username",
        "order_id",
        "",
        "---",
    ],
)
def test_non_sensitive_keys(key: str) -> None:
    """Allow-listed keys and look-alikes are kept."""
    assert not R.is_sensitive_key(key)
    assert R.redact({key: "visible"}) == {key: "visible"}


def test_sensitive_key_hides_any_value_but_none_and_bools() -> None:
    """Containers and numbers under a sensitive key go; None and booleans stay."""
    data = {"password": {"a": 1}, "pin_token": 1234, "secret": None, "api_key": False}
    assert R.redact(data) == {
        "password": REDACTED,
        "pin_token": REDACTED,
        "secret": None,
        "api_key": False,
    }


def test_key_cache_is_bounded() -> None:
    """Unbounded key sets cannot grow the per-key cache without limit."""
    redactor = Redactor()
    for index in range(10_000):
        redactor.is_sensitive_key(f"field_{index}")
    assert len(redactor._key_cache) <= 4096
    assert redactor.is_sensitive_key("x" * 10_000 + "_password")


# -- value patterns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [REDACTED]"),
        ("sent Bearer abc123def456 upstream", "sent Bearer [REDACTED] upstream"),
        ("BEARER abc123def456", "BEARER [REDACTED]"),
        ("header bearer abc123def456", "header bearer [REDACTED]"),
        ("Basic dXNlcjpwYXNz", "Basic [REDACTED]"),
        ("Bearer Bearer tok123456", "Bearer Bearer [REDACTED]"),
        ("authorization=bearer abc", "authorization=bearer [REDACTED]"),
    ],
)
def test_bearer_and_basic_keep_the_scheme(text: str, expected: str) -> None:
    """The scheme word stays, the credential goes."""
    assert R.redact_text(text) == expected


def test_scheme_words_in_prose_are_kept() -> None:
    """Lower-case 'basic' and scheme words glued to other words are not schemes."""
    for text in ["basic checks passed", "xBearer abc123def456", "Bearer"]:
        assert R.redact_text(text) == text


def test_jwt_redacted() -> None:
    """A JWT is redacted wherever it appears, signed or not."""
    assert R.redact_text(f"token {JWT} expired") == "token [REDACTED] expired"
    assert R.redact_text(f"id={JWT}") == "id=[REDACTED]"
    unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
    assert R.redact_text(f"got {unsigned}") == "got [REDACTED]"
    assert R.redact_text("eyJ is not a token. neither eyJ.x") == "eyJ is not a token. neither eyJ.x"


@pytest.mark.parametrize(
    "card",
    [
        VISA,
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        MASTERCARD,
        AMEX,
        "3782 822463 10005",
        "6011111111111117",
        "4222222222222",  # 13-digit Visa
        "6011 0009 9013 9424",  # Discover, grouped
    ],
)
def test_luhn_valid_cards_redacted(card: str) -> None:
    """Card numbers of 13-19 digits that pass Luhn are redacted, with separators."""
    assert _luhn_ok(card.replace(" ", "").replace("-", ""))
    assert R.redact_text(f"paid with {card} today") == "paid with [REDACTED] today"


def test_number_look_alikes_kept() -> None:
    """Luhn failures, order ids, timestamps and short numbers stay."""
    epoch_ms = _with_check_digit("171500000000")
    for text in [
        "card 4111111111111112 declined",  # fails Luhn
        "order 1234567890123 shipped",  # fails Luhn
        f"ts {epoch_ms}",  # Luhn-valid epoch ms, but no card starts with 1
        "id 0000000000000000",  # Luhn-valid, starts with 0
        "phone +1-555-123-4567",
        "amount 1234.56 at 12:30:45",
        "run 41111111111111111111111",  # too long to be a card
    ]:
        assert R.redact_text(text) == text


def test_card_inside_a_longer_digit_run() -> None:
    """A card next to other numbers is still found, group by group."""
    assert R.redact_text("paid 4111 1111 1111 1111 2 times") == "paid [REDACTED] 2 times"
    assert R.redact_text("3 4111 1111 1111 1111") == "3 [REDACTED]"
    assert R.redact_text("card_number: 4111 1111 1111 1112") == "card_number: [REDACTED]"


def test_aws_access_key_ids_and_secrets() -> None:
    """AKIA/ASIA key ids and aws_secret_access_key values are redacted."""
    assert R.redact_text("key AKIAIOSFODNN7EXAMPLE used") == "key [REDACTED] used"
    assert R.redact_text("ASIAIOSFODNN7EXAMPLE") == "[REDACTED]"
    kept = "XAKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLEX AKIA-SHORT"
    assert R.redact_text(kept) == kept
    secret = "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY region=eu"
    assert R.redact_text(secret) == "aws_secret_access_key=[REDACTED] region=eu"
    assert R.redact_text("AWS_SECRET_ACCESS_KEY: abc/def") == "AWS_SECRET_ACCESS_KEY: [REDACTED]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgres://bob:s3cr3t@db.example.com:5432/app",
            "postgres://bob:[REDACTED]@db.example.com:5432/app",
        ),
        ("redis://:p@ss@cache:6379/0", "redis://:[REDACTED]@cache:6379/0"),
        ("see https://u:pw@h.io/x?a=1 now", "see https://u:[REDACTED]@h.io/x?a=1 now"),
        ("https://example.com:8080/path", "https://example.com:8080/path"),
        ("https://bob@example.com/", "https://bob@example.com/"),
    ],
)
def test_url_credentials(text: str, expected: str) -> None:
    """A URL keeps its scheme, user and host; only the password goes."""
    assert R.redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login password=hunter2 ok", "login password=[REDACTED] ok"),
        ("?user=bob&token=abc&next=/x", "?user=bob&token=[REDACTED]&next=/x"),
        ("api_key: k-123, retries: 3", "api_key: [REDACTED], retries: 3"),
        ("{'password': 'hunter 2', 'user': 'bob'}", "{'password': '[REDACTED]', 'user': 'bob'}"),
        ('{"secret": "a\\"b", "n": 1}', '{"secret": "[REDACTED]", "n": 1}'),
        ('{\\"token\\": \\"abc\\"}', '{\\"token\\": \\"[REDACTED]\\"}'),
        ("--password=hunter2 --user=bob", "--password=[REDACTED] --user=bob"),
        ("Config(password='x', host='h')", "Config(password='[REDACTED]', host='h')"),
        ("f(token=abc)", "f(token=[REDACTED])"),
        ("password='unterminated rest", "password='[REDACTED]"),
        ("Cookie: a=b; sid=c\nHost: x", "Cookie: [REDACTED]\nHost: x"),
        ("Authorization: Digest user=a, nonce=b", "Authorization: Digest [REDACTED]"),
        ("password= &next=1", "password= &next=1"),
        ("session_id=abc token_type=bearer", "session_id=abc token_type=bearer"),
        ("session=abc", "session=[REDACTED]"),
        ("password=[REDACTED]", "password=[REDACTED]"),
        ("x >= 5 and y == 6", "x >= 5 and y == 6"),
        (":=", ":="),
    ],
)
def test_key_value_pairs_in_text(text: str, expected: str) -> None:
    """Values of sensitive keys are redacted inside free text, JSON and query strings."""
    assert R.redact_text(text) == expected


def test_emails_and_ips_are_opt_in() -> None:
    """E-mail and IP addresses stay by default and go when asked."""
    text = "bob@example.com from 10.0.0.1 and fe80::1ff:fe23:4567:890a"
    assert R.redact_text(text) == text
    assert Redactor(redact_emails=True).redact_text(text) == (
        "[REDACTED] from 10.0.0.1 and fe80::1ff:fe23:4567:890a"
    )
    assert Redactor(redact_ips=True).redact_text(text) == (
        "bob@example.com from [REDACTED] and [REDACTED]"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from ::1.", "from [REDACTED]."),
        ("host:fe80::1 up", "host:[REDACTED] up"),
        ("ip ::ffff:192.0.2.1", "ip [REDACTED]"),
        ("at 192.168.1.254:8080", "at [REDACTED]:8080"),
        ("time 12:30:45.123", "time 12:30:45.123"),
        ("mac 00:1a:2b:3c:4d:5e", "mac 00:1a:2b:3c:4d:5e"),
        ("Foo::Bad", "Foo::Bad"),
        ("a [x]:: b", "a [x]:: b"),
        ("v1.2.3.256 and 1.2.3.4.5", "v1.2.3.256 and 1.2.3.4.5"),
    ],
)
def test_ip_addresses(text: str, expected: str) -> None:
    """Only valid IPv4/IPv6 addresses are redacted, not times or MAC addresses."""
    assert Redactor(redact_ips=True).redact_text(text) == expected


def test_redacted_text_is_stable() -> None:
    """Redacting redacted text changes nothing (markers are not secrets)."""
    for text in [
        "password=hunter2 & token='x' Bearer abcdefgh",
        f"{JWT} {VISA} AKIAIOSFODNN7EXAMPLE https://u:p@h/ Cookie: a=b",
        "f(api_key=abc) secret: 12 34",
    ]:
        once = R.redact_text(text)
        assert once != text
        assert R.redact_text(once) == once


def test_clean_text_is_returned_as_is() -> None:
    """Text without secrets comes back as the very same object."""
    text = "GET /api/users/42 completed in 12.5 ms with status 200: ok"
    assert R.redact_text(text) is text


def test_secret_at_the_end_of_a_huge_string() -> None:
    """Long strings are scanned whole, in linear time (CPU time of this thread, see below)."""
    for text in [
        "x" * 1_000_000 + " password=hunter2",
        "word " * 200_000 + VISA,
        "a:b " * 100_000 + f"Bearer {JWT}",
    ]:
        started = time.thread_time()
        out = R.redact_text(text)
        assert out.endswith(REDACTED)
        assert time.thread_time() - started < 5


def test_hostile_text_stays_linear() -> None:
    """Inputs built to trigger backtracking finish quickly."""
    hostile = [
        "1 " * 200_000,
        "4" * 500_000,
        "a-" * 200_000 + "=",
        "password='" + "\\x" * 200_000,
        "ab:" * 200_000,
        "a.a@" * 100_000,
        ")" * 100_000,
        "password=" + ")" * 100_000,
        "://" * 100_000 + "@",
        "://a:" * 100_000,
        "eyJ" * 100_000,
        "password=a:" * 50_000,  # many separators inside one unquoted value
        "cookie:a:" * 50_000,
        "password=a)" * 50_000,
        "token:Token " * 50_000,
    ]
    redactor = Redactor(redact_emails=True, redact_ips=True)
    for text in hostile:
        # This thread's CPU time, not wall time: on a loaded machine the wall clock
        # also counts other processes.  Backtracking would cost minutes of CPU here.
        started = time.thread_time()
        redactor.redact_text(text)
        assert time.thread_time() - started < 5, text[:20]


def test_custom_marker() -> None:
    """The marker is configurable and used everywhere."""
    redactor = Redactor(marker="<hidden>")
    assert redactor.redact_text(f"Bearer {JWT}") == "Bearer <hidden>"
    assert redactor.redact({"password": "x", "m": f"card {VISA}"}) == {
        "password": "<hidden>",
        "m": "card <hidden>",
    }


# -- structures -----------------------------------------------------------------------


@dataclasses.dataclass
class Login:
    user: str
    password: str
    note: str = "Bearer abcdefghijkl"


@dataclasses.dataclass(frozen=True, slots=True)
class Wrapper:
    inner: Login
    tags: tuple[str, ...]


Credentials = namedtuple("Credentials", ["user", "api_key"])


class Colour(enum.Enum):
    RED = 1


class ReadOnly(Mapping[str, object]):
    def __init__(self, data: dict[str, object]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_nested_containers_of_every_kind() -> None:
    """Dicts, Mappings, lists, tuples, sets and frozensets are walked at any depth."""
    data = {
        "list": [{"token": "a"}, "password=b"],
        "tuple": ({"secret": "c"}, f"x {VISA}"),
        "set": {f"Bearer {'d' * 12}"},
        "frozenset": frozenset({"api_key=e"}),
        "ordered": OrderedDict(password="f"),
        "proxy": MappingProxyType({"cookie": "g"}),
        "custom": ReadOnly({"auth": "h", "ok": 1}),
    }
    assert R.redact(data) == {
        "list": [{"token": REDACTED}, "password=[REDACTED]"],
        "tuple": ({"secret": REDACTED}, "x [REDACTED]"),
        "set": ["Bearer [REDACTED]"],
        "frozenset": ["api_key=[REDACTED]"],
        "ordered": {"password": REDACTED},
        "proxy": {"cookie": REDACTED},
        "custom": {"auth": REDACTED, "ok": 1},
    }


def test_dataclasses_and_named_tuples_become_dicts() -> None:
    """Dataclass instances and named tuples are walked by field name."""
    value = [Wrapper(Login("bob", "pw"), ("t",)), Credentials("bob", "k")]
    assert R.redact(value) == [
        {
            "inner": {"user": "bob", "password": REDACTED, "note": "Bearer [REDACTED]"},
            "tags": ("t",),
        },
        {"user": "bob", "api_key": REDACTED},
    ]
    assert R.redact(Login) is Login  # the class itself is not an instance


def test_unknown_objects_are_left_for_the_encoder() -> None:
    """Other objects come back as they are (enums as their value); redact_text does str()."""

    class Opaque:
        def __str__(self) -> str:
            return "Opaque(token=abc)"

    opaque = Opaque()
    out = R.redact({"obj": opaque, "colour": Colour.RED, "n": 10**30, "f": 1.5, "c": 2j})
    assert isinstance(out, dict)
    assert out["obj"] is opaque
    assert out["colour"] == Colour.RED.value  # an enum member becomes its (redacted) value
    assert out["n"] == 10**30
    assert R.redact_text(str(opaque)) == "Opaque(token=[REDACTED])"


def test_bytes_are_decoded_and_scanned() -> None:
    """bytes, bytearray and memoryview become redacted text, invalid UTF-8 replaced."""
    assert R.redact(b"token=abc \xff") == "token=[REDACTED] \ufffd"
    assert R.redact({"m": bytearray(b"password=x")}) == {"m": "password=[REDACTED]"}
    assert R.redact([memoryview(b"Bearer abcdefghijkl")]) == ["Bearer [REDACTED]"]


def test_non_str_keys() -> None:
    """Keys of other types become their str() form, judged and scanned like any key."""

    class BadKey:
        def __str__(self) -> str:
            raise RuntimeError("no str")

    bad = BadKey()
    data: dict[Any, object] = {
        1: "one",
        ("password", 2): "t",
        b"api_key": "k",
        None: "n",
        Colour.RED: "r",
        2.5: "f",
        bad: "b",
    }
    out = R.redact(data)
    assert isinstance(out, dict)
    assert out["1"] == "one"
    assert out["('password', 2)"] == REDACTED
    assert out["api_key"] == REDACTED
    assert out["None"] == "n"
    assert out["Colour.RED"] == "r"
    assert out["2.5"] == "f"
    assert out[object.__repr__(bad)] == "b"
    assert all(type(key) is str for key in out)


def test_key_collisions_are_counted() -> None:
    """Distinct keys with the same str() form keep the last value and are counted."""
    assert R.redact({1: "a", "1": "b"}) == {"1": "b"}
    assert counters.get("redaction.key_collisions") == 1


def test_keys_holding_secrets_are_scanned() -> None:
    """A secret used as a key is redacted in the key itself."""
    assert R.redact({f"card {VISA}": 1}) == {"card [REDACTED]": 1}


def test_recursive_structures_are_cut() -> None:
    """Self-references become a marker, counted; shared references are not cycles."""
    loop: dict[str, object] = {"name": "a", "password": "x"}
    loop["self"] = loop
    items: list[object] = [1]
    items.append(items)
    shared = {"token": "t"}
    assert R.redact(loop) == {"name": "a", "password": REDACTED, "self": "[RECURSIVE]"}
    assert R.redact(items) == [1, "[RECURSIVE]"]
    assert R.redact([shared, shared]) == [{"token": REDACTED}, {"token": REDACTED}]
    assert R.redact_mapping(loop) == {"name": "a", "password": REDACTED, "self": "[RECURSIVE]"}
    assert counters.get("redaction.recursive") == 3


def test_depth_is_limited() -> None:
    """Containers nested deeper than max_depth are replaced by a marker, counted."""
    deep: object = "password=x"
    for _ in range(12):
        deep = [deep]
    out = R.redact(deep)
    for _ in range(10):
        assert isinstance(out, list)
        out = out[0]
    assert out == "[DEPTH LIMIT]"
    assert counters.get("redaction.depth_limit") == 1
    assert Redactor(max_depth=1).redact({"a": {"b": 1}, "c": 2}) == {"a": "[DEPTH LIMIT]", "c": 2}
    very_deep: object = {}
    for _ in range(100_000):
        very_deep = {"k": very_deep}
    assert isinstance(R.redact(very_deep), dict)


def test_broken_containers_are_marked_not_raised() -> None:
    """A Mapping that fails while read becomes a marker, counted; nothing raises."""

    class Broken(ReadOnly):
        def __iter__(self) -> Iterator[str]:
            raise OSError("gone")

    broken = Broken({"a": 1})
    assert R.redact({"ok": 1, "bad": broken}) == {"ok": 1, "bad": "[UNREDACTABLE]"}
    assert R.redact_mapping(broken) == {"redaction_failed": "[UNREDACTABLE] OSError"}
    assert counters.get("redaction.failed") == 2


def test_input_is_never_mutated() -> None:
    """redact returns a copy and leaves every nested input container untouched."""
    data = {
        "password": "x",
        "nested": [{"token": "t", "ok": (1, {"secret": "s"})}],
        "login": Login("bob", "pw"),
        "text": f"card {VISA}",
    }
    before = copy.deepcopy(data)
    out = R.redact(data)
    assert data == before
    assert isinstance(out, dict)
    assert out["nested"] is not data["nested"]


def test_redact_mapping_fast_path_matches_redact() -> None:
    """redact_mapping gives the same result as redact for a mapping."""
    data = {"user": "bob", "n": 1, "f": 1.5, "b": True, "x": None, "password": "x", "l": [1]}
    assert R.redact_mapping(data) == R.redact(data)
    assert R.redact_mapping(MappingProxyType(data)) == R.redact(data)


# -- configuration --------------------------------------------------------------------


def test_extra_keys_add_to_the_defaults() -> None:
    """extra_keys adds entries; short ones match a key's last word only."""
    redactor = Redactor(extra_keys=["pin", "mothers_maiden_name"])
    assert redactor.is_sensitive_key("card_pin")
    assert not redactor.is_sensitive_key("pinned")
    assert redactor.is_sensitive_key("mothersMaidenName")
    assert redactor.is_sensitive_key("password")
    assert redactor.redact_text("pin=1234") == "pin=[REDACTED]"


def test_keys_replace_the_defaults() -> None:
    """keys replaces the list: the default entries no longer apply."""
    redactor = Redactor(keys=["internal_code"])
    assert redactor.is_sensitive_key("internal_code")
    assert not redactor.is_sensitive_key("password")
    assert (
        redactor.redact_text("password=x internal_code=y") == "password=x internal_code=[REDACTED]"
    )
    assert Redactor(keys=()).redact({"password": "x"}) == {"password": "x"}


def test_allow_keys_win_over_sensitive_keys() -> None:
    """allow_keys replaces the allow list and beats every key rule."""
    redactor = Redactor(allow_keys=["csrf_token"])
    assert not redactor.is_sensitive_key("csrfToken")
    assert redactor.is_sensitive_key("session_id")
    assert redactor.redact_text("csrf_token=abc") == "csrf_token=abc"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"keys": "password"},
        {"extra_keys": ["ok", ""]},
        {"allow_keys": [1]},
        {"marker": ""},
        {"max_depth": 0},
        {"max_depth": 1000},
        {"max_depth": True},
    ],
)
def test_invalid_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    """Unusable settings raise ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        Redactor(**kwargs)


def test_disabled_redactor_returns_inputs_unchanged() -> None:
    """enabled=False returns the very same objects (a shallow copy for redact_mapping)."""
    redactor = Redactor(enabled=False)
    data = {"password": "x"}
    text = "password=x"
    assert redactor.redact(data) is data
    assert redactor.redact_text(text) is text
    copied = redactor.redact_mapping(data)
    assert copied == data
    assert copied is not data


# -- newlines -------------------------------------------------------------------------


def test_neutralize_newlines() -> None:
    """CR, LF and other control characters become visible escapes; tab stays."""
    assert neutralize_newlines("a\r\nb") == "a\\r\\nb"
    assert neutralize_newlines("x\x1b[31mred\x00\x7f") == "x\\x1b[31mred\\x00\\x7f"
    assert neutralize_newlines("tab\there") == "tab\there"
    assert neutralize_newlines("nel\x85 ls\u2028 ps\u2029") == "nel\\x85 ls\\u2028 ps\\u2029"
    assert neutralize_newlines("caf\u00e9 \u00a0ok") == "caf\u00e9 \u00a0ok"
    clean = "nothing to do"
    assert neutralize_newlines(clean) is clean


@given(st.text())
def test_neutralized_text_has_no_line_breaks(text: str) -> None:
    """No output of neutralize_newlines splits into lines or holds a control character."""
    out = neutralize_newlines(text)
    assert len(out.splitlines()) <= 1
    assert not any(ord(c) < 0x20 and c != "\t" for c in out)


# -- properties -----------------------------------------------------------------------

TOKEN_CHARS = string.ascii_letters + string.digits + "-_.~+/"
tokens = st.text(alphabet=TOKEN_CHARS, min_size=12, max_size=40)
# 64-bit integers: orjson refuses larger ones, whatever redaction does.
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=10)
)
noise = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


LONG_ENTRIES = [
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "privatekey",
    "passphrase",
    "credential",
    "creditcard",
    "cardnumber",
]


@st.composite
def sensitive_keys(draw: st.DrawFn) -> str:
    """A key the default rules must catch, in any case and with any prefix."""
    cases = [str.lower, str.upper, str.capitalize]
    prefix = draw(st.text(alphabet=string.ascii_letters, max_size=6))
    if draw(st.booleans()):
        word = draw(st.sampled_from(LONG_ENTRIES))
        separator = draw(st.sampled_from(["", "_", "-", "."]))
    else:  # short entries match only as the last word, so a separator is needed
        word = draw(st.sampled_from(["pwd", "auth", "ssn", "cvv", "cvc"]))
        separator = draw(st.sampled_from(["_", "-", "."])) if prefix else ""
    return prefix + separator + draw(st.sampled_from(cases))(word)


@st.composite
def nested_around(draw: st.DrawFn, inner: object) -> object:
    """``inner`` placed at a random position in a random dict/list/tuple nesting."""
    value = inner
    for kind in draw(st.lists(st.sampled_from(["dict", "list", "tuple"]), max_size=8)):
        siblings: list[object] = draw(st.lists(noise, max_size=3))
        position = draw(st.integers(0, len(siblings)))
        if kind == "dict":
            keys = draw(st.lists(st.text(max_size=6), min_size=len(siblings) + 1, unique=True))
            container: dict[str, object] = dict(zip(keys[1:], siblings, strict=False))
            container[keys[0]] = value
            value = container
        else:
            siblings.insert(position, value)
            value = siblings if kind == "list" else tuple(siblings)
    return value


def _dumped(value: object) -> str:
    return orjson.dumps(value, default=str).decode()


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(key=sensitive_keys(), secret=tokens, data=st.data())
def test_secret_under_sensitive_key_never_leaks(key: str, secret: str, data: st.DataObject) -> None:
    """A token under a sensitive key anywhere in a nested structure never reaches JSON."""
    assert R.is_sensitive_key(key)
    structure = data.draw(nested_around({key: secret}))
    # Noise may spell the secret by chance (an integer full of zeros): only the
    # planted copy counts.  Redaction writes markers containing "[", which no
    # secret contains, so it cannot create a copy.
    assume(_dumped(structure).count(secret) == 1)
    assert secret not in _dumped(R.redact(structure))


@st.composite
def cards(draw: st.DrawFn) -> str:
    """A Luhn-valid card number, as written by people: plain, spaced or dashed."""
    length = draw(st.integers(13, 19))
    body = str(draw(st.integers(2, 6))) + "".join(
        draw(st.lists(st.sampled_from(string.digits), min_size=length - 2, max_size=length - 2))
    )
    number = _with_check_digit(body)
    separator = draw(st.sampled_from(["", " ", "-"]))
    if not separator:
        return number
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


b64url = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=4, max_size=30)
jwts = st.builds(lambda a, b, c: f"eyJ{a}.{b}.{c}", b64url, b64url, b64url)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(
    kind=st.sampled_from(["card", "jwt", "bearer"]),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    data=st.data(),
)
def test_pattern_secret_in_text_never_leaks(
    kind: str, before: str, after: str, data: st.DataObject
) -> None:
    """A card, JWT or bearer token embedded in any text, anywhere, never reaches JSON."""
    if kind == "card":
        secret = leaked = data.draw(cards())
    elif kind == "jwt":
        secret = leaked = data.draw(jwts)
    else:
        leaked = data.draw(tokens)
        secret = data.draw(st.sampled_from(["Bearer ", "Basic ", "bearer ", "BEARER "])) + leaked
    text = f"{before} {secret} {after}"
    assume(text.count(leaked) == 1)
    structure = data.draw(nested_around(text))
    assume(_dumped(structure).count(leaked) == 1)  # see the key test above
    assert leaked not in _dumped(R.redact(structure))
    assert leaked not in R.redact_text(text)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(structure=noise)
def test_redact_copies_without_mutating(structure: object) -> None:
    """Arbitrary structures are never mutated and always serialise after redaction."""
    before = copy.deepcopy(structure)
    _dumped(R.redact(structure))
    assert repr(structure) == repr(before)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(data=st.data())
def test_redact_never_raises_on_recursive_input(data: st.DataObject) -> None:
    """Randomly cross-linked, self-referencing containers redact without raising."""
    containers: list[Any] = [[], {}]
    for _ in range(data.draw(st.integers(1, 12))):
        containers.append(data.draw(st.sampled_from([[], {}, set()])))
    for _ in range(data.draw(st.integers(1, 30))):
        target = data.draw(st.sampled_from(containers))
        item: Any = data.draw(st.sampled_from(containers) | leaves)
        if isinstance(target, list):
            target.append(item)
        elif isinstance(target, dict):
            target[data.draw(st.text(max_size=4) | st.integers())] = item
        elif not isinstance(item, list | dict | set):
            target.add(item)
    redactor = Redactor(max_depth=data.draw(st.integers(1, 20)))
    for root in containers:
        _dumped(redactor.redact(root))
        if isinstance(root, dict):
            _dumped(redactor.redact_mapping(root))


_Point = namedtuple("_Point", "x y")


class _Color(enum.Enum):
    RED = "red"


def _redacted_json(redactor: Redactor, mapping: dict[str, object]) -> bytes | None:
    try:
        return orjson.dumps(redactor.redact_mapping(mapping))
    except TypeError:
        return None


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(
    mapping=st.dictionaries(st.text(max_size=8), noise | tokens | cards() | jwts, max_size=6),
    options=st.fixed_dictionaries({"redact_emails": st.booleans(), "redact_ips": st.booleans()}),
)
def test_clean_json_is_the_json_of_the_redacted_copy(
    mapping: dict[str, object], options: dict[str, bool]
) -> None:
    """_clean_json answers only when redaction changes nothing, with that JSON."""
    redactor = Redactor(redact_emails=options["redact_emails"], redact_ips=options["redact_ips"])
    assert redactor._clean_json(mapping) is None or not mapping  # no key judged yet
    redacted = redactor.redact_mapping(mapping)  # now every key is
    blob = redactor._clean_json(mapping)
    if blob is not None:
        assert blob == _redacted_json(redactor, mapping)
        assert redacted == mapping


@pytest.mark.parametrize(
    "value",
    [
        {"a", "b"},
        b"bytes",
        _Point(1, 2),
        _Color.RED,
        MappingProxyType({"password": "x"}),
        OrderedDict(password="x"),
        type("Text", (str,), {})("password=hunter2"),
        {"password": "hunter2"},
        ["token=abc"],
        "Bearer abcdefghijklmnop",
        VISA,
        2**70,
    ],
)
def test_clean_json_declines_what_the_redactor_converts(value: object) -> None:
    """Values the redactor converts or may redact are never passed through as JSON."""
    redactor = Redactor()
    redactor.redact_mapping({"field": value})  # the key is known and clean
    if isinstance(value, enum.Enum):  # encoded as its value by both: fine either way
        blob = redactor._clean_json({"field": value})
        assert blob is None or blob == orjson.dumps({"field": value.value})
        return
    assert redactor._clean_json({"field": value}) is None


def test_clean_json_needs_known_clean_keys() -> None:
    """A key never judged, or a sensitive one, sends the mapping the long way."""
    redactor = Redactor()
    assert redactor._clean_json({"fresh_key": 1}) is None  # not judged yet
    redactor.redact_mapping({"fresh_key": 1, "password": "x"})
    assert redactor._clean_json({"fresh_key": 1}) == b'{"fresh_key":1}'
    assert redactor._clean_json({"password": None}) is None


def test_an_enum_holding_a_secret_is_redacted_in_logs_and_by_the_redactor() -> None:
    """orjson writes an enum as its value, so a secret in that value is redacted too."""
    import io

    from faultlens.logs import configure_logging, get_logger, reset_logging

    class Credential(enum.Enum):
        DEPLOY = "Bearer abcdefghijklmnopqrstuvwxyz0123456789"
        NESTED = ("x", {"password": "hunter2"})

    assert Redactor().redact({"k": Credential.DEPLOY}) == {"k": "Bearer [REDACTED]"}
    stream = io.StringIO()
    configure_logging(stream=stream)
    try:
        get_logger("enum").info("m", k=Credential.DEPLOY, n=Credential.NESTED)
        logging.getLogger("enum.std").info("m", extra={"k": Credential.DEPLOY})
    finally:
        reset_logging()
    out = stream.getvalue()
    assert out.count("\n") == 2
    assert "abcdefghijklmnopqrstuvwxyz" not in out
    assert "hunter2" not in out
