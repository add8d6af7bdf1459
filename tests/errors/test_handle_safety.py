"""Hostile input cannot change, break or leak through a response (property-based)."""

from __future__ import annotations

import json
import string

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faultlens
from faultlens.errors import (
    BusinessRuleError,
    DataError,
    IntegrationError,
    SystemFault,
    ValidationError,
    handle,
    negotiate_locale,
    register_messages,
)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PREFIX = "The value of the field '"
SUFFIX = "' is not valid."
MAX_VALUE = 100
FORBIDDEN_IN_MESSAGES = ("\r", "\n", "<", ">", "\u202e")

# Secrets made of characters the surrounding text cannot extend into a longer word.
SECRETS = st.text(alphabet=string.ascii_letters + string.digits, min_size=10, max_size=24).map(
    lambda s: "Zq" + s
)
ANY_TEXT = st.text(max_size=300)


def _assert_clean(message: str) -> None:
    for forbidden in FORBIDDEN_IN_MESSAGES:
        assert forbidden not in message


@SETTINGS
@given(field=ANY_TEXT)
def test_field_values_only_change_the_value_slot(field: str) -> None:
    """Any field value lands in its slot only: the template around it is untouched."""
    message = handle(ValidationError("x", field=field)).message
    _assert_clean(message)
    if field == "":
        assert message.startswith("The request contains invalid data.")
        return
    assert message.startswith(PREFIX)
    assert message.endswith(SUFFIX)
    assert message.count("'") == 2  # the value cannot close the quotes around its slot
    assert len(message) <= len(PREFIX) + MAX_VALUE + len(SUFFIX)


@SETTINGS
@given(first=ANY_TEXT, second=ANY_TEXT)
def test_several_slots_stay_separate(first: str, second: str) -> None:
    """Values holding braces or other slot names are never expanded a second time."""
    register_messages("en", {"order_blocked": "Order [{order}] is blocked until [{until}]."})
    exc = BusinessRuleError("x", code="order_blocked", order=first, until=second)
    message = handle(exc).message
    _assert_clean(message)
    if first and second:
        assert message.startswith("Order [")
        assert message.endswith("].")
        assert "] is blocked until [" in message


def test_braces_in_values_are_text() -> None:
    """A value that looks like a placeholder or a format field stays literal."""
    register_messages("en", {"order_blocked": "Order {order} is blocked until {until}."})
    exc = BusinessRuleError("x", code="order_blocked", order="{until}", until="{0.__class__}")
    assert handle(exc).message == "Order {until} is blocked until {0.__class__}."


@SETTINGS
@given(before=ANY_TEXT, secret=SECRETS, after=ANY_TEXT, form=st.integers(0, 4))
def test_secrets_in_values_never_leak(before: str, secret: str, after: str, form: int) -> None:
    """A credential written into a field value is redacted in the message and details."""
    shapes = [
        f"password={secret}",
        f"Authorization: Bearer {secret}",
        f"token: {secret}",
        f"https://user:{secret}@db.internal/x",
        f'{{"api_key": "{secret}"}}',
    ]
    value = f"{before} {shapes[form]} {after}"
    response = handle(ValidationError("x", field=value))
    body = json.dumps(response.to_dict(), ensure_ascii=False)
    assert secret not in body
    assert secret not in response.message


@SETTINGS
@given(text=ANY_TEXT)
def test_raw_exception_text_never_reaches_the_response(text: str) -> None:
    """Whatever an exception's own message says, the response does not repeat it."""
    marker = "Zq-raw-" + text
    for exc in (
        RuntimeError(marker),
        KeyError(marker),
        DataError(marker),
        IntegrationError(marker, system="payments"),
        SystemFault(marker, component="disk"),
        ValidationError(marker, field="email"),
    ):
        response = handle(exc)
        for rendered in (
            json.dumps(response.to_dict(), ensure_ascii=False),
            json.dumps(response.to_problem(), ensure_ascii=False),
            json.dumps(response.headers(), ensure_ascii=False),
        ):
            assert marker not in rendered


HOSTILE = (
    "<script>alert(1)</script>\r\nSet-Cookie: session=abc; password=hunter2 "
    "Traceback (most recent call last): card 4111 1111 1111 1111"
)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(HOSTILE),
        KeyError(HOSTILE),
        ValueError(HOSTILE),
        OSError(HOSTILE),
        TimeoutError(HOSTILE),
        DataError(HOSTILE, detail=HOSTILE),
        ValidationError(HOSTILE, field="email", value=HOSTILE),
        IntegrationError(HOSTILE, system=HOSTILE, operation=HOSTILE),
        SystemFault(HOSTILE, component=HOSTILE),
        ExceptionGroup(HOSTILE, [KeyError(HOSTILE)]),
    ],
)
def test_hostile_errors_give_clean_responses(exc: BaseException) -> None:
    """Secrets, HTML, CR/LF, type names and stacks in an error never reach the response."""
    with faultlens.correlate("cid-safe"):
        response = handle(exc, locale="pt-BR")
    texts = [
        json.dumps(response.to_dict(), ensure_ascii=False),
        json.dumps(response.to_problem(instance="/x"), ensure_ascii=False),
        *response.headers().keys(),
        *response.headers().values(),
    ]
    for text in texts:
        for leak in ("hunter2", "<script>", "\r", "\n", "Set-Cookie", "Traceback", "4111"):
            assert leak not in text
        assert type(exc).__name__ not in text or type(exc).__name__ in response.code


def test_pydantic_input_with_secrets_is_not_echoed() -> None:
    """Field errors of a pydantic model leave out inputs, even echoed by a validator."""

    class Login(pydantic.BaseModel):
        user: str

        @pydantic.field_validator("user")
        @classmethod
        def reject(cls, value: str) -> str:
            raise ValueError(f"bad user {value}")

    with pytest.raises(pydantic.ValidationError) as info:
        Login.model_validate({"user": "admin password=hunter2 <img src=x>"})
    body = json.dumps(handle(info.value).to_dict())
    assert "hunter2" not in body
    assert "<img" not in body


@SETTINGS
@given(value=st.text(max_size=200))
def test_any_locale_value_negotiates_safely(value: str) -> None:
    """Any locale or Accept-Language text negotiates to a shipped locale, headers stay clean."""
    assert negotiate_locale(value) in ("en", "pt-BR")
    headers = handle(KeyError(), locale=value).headers()
    for name, header in headers.items():
        assert "\r" not in name + header
        assert "\n" not in name + header


@pytest.mark.parametrize(
    "field", ["\ud800broken", "a\x00b\x1b[31mred", "\u202eevil", "x" * 100_000]
)
def test_odd_text_still_serialises(field: str) -> None:
    """Lone surrogates, control and bidi characters, huge values: the body is valid JSON."""
    response = handle(ValidationError("x", field=field))
    body = orjson.loads(orjson.dumps(response.to_dict()))
    assert "\x00" not in body["message"]
    assert "\x1b" not in body["message"]
    assert "\u202e" not in body["message"]
    assert len(body["message"]) < 200
