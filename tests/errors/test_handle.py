"""handle() and ErrorResponse: fields, JSON body, problem+json, headers, details, debug."""

from __future__ import annotations

import dataclasses
import json
import warnings
from datetime import timedelta
from typing import Any

import orjson
import pydantic
import pytest

import faultlens
from faultlens.errors import (
    AuthenticationError,
    ConflictError,
    ErrorResponse,
    FaultlensError,
    IntegrationError,
    NotFoundError,
    TransientError,
    ValidationError,
    handle,
)

BODY_KEYS = {
    "status",
    "code",
    "message",
    "correlation_id",
    "retry_possible",
    "category",
    "severity",
    "details",
}


def test_response_fields_for_an_application_error() -> None:
    """handle() fills every field from the classification, catalog and context."""
    with faultlens.correlate("cid-1"):
        response = handle(NotFoundError("order 7 missing", order_id=7))
    assert response == ErrorResponse(
        status=404,
        code="not_found",
        message="The requested resource was not found.",
        correlation_id="cid-1",
        retry_possible=False,
        details={},
        category="not_found",
        severity="low",
        retry_after=None,
        locale="en",
        debug=None,
    )
    assert type(response.severity) is str


def test_response_is_frozen_and_slotted() -> None:
    """ErrorResponse cannot be changed and has no instance dict."""
    response = handle(KeyError())
    with pytest.raises(dataclasses.FrozenInstanceError):
        response.status = 200  # type: ignore[misc]
    assert not hasattr(response, "__dict__")


def test_to_dict_schema_and_json() -> None:
    """to_dict() has the documented keys and serialises with json and orjson."""
    with faultlens.correlate("cid-2"):
        body = handle(AuthenticationError("token expired")).to_dict()
    assert set(body) == BODY_KEYS
    assert body == {
        "status": 401,
        "code": "authentication_error",
        "message": "You need to sign in to continue.",
        "correlation_id": "cid-2",
        "retry_possible": False,
        "category": "authentication",
        "severity": "medium",
        "details": {},
    }
    assert json.loads(json.dumps(body)) == body
    assert orjson.loads(orjson.dumps(body)) == body


def test_retry_after_in_body_and_headers() -> None:
    """A known wait appears as whole seconds in the body and the Retry-After header."""
    with faultlens.correlate("cid-3"):
        response = handle(TransientError("queue full", retry_after=timedelta(seconds=29.2)))
    assert response.retry_possible is True
    assert response.to_dict()["retry_after"] == 30
    assert response.headers() == {
        "X-Correlation-ID": "cid-3",
        "Retry-After": "30",
        "Content-Language": "en",
    }
    assert "Retry-After" not in handle(ConflictError("x")).headers()
    assert "retry_after" not in handle(ConflictError("x")).to_dict()


def test_correlation_header_follows_configuration() -> None:
    """headers() uses the configured correlation header name."""
    faultlens.configure(correlation_header="X-Trace-Ref", install_log_handler=False)
    with faultlens.correlate("cid-4"):
        assert handle(KeyError()).headers()["X-Trace-Ref"] == "cid-4"
    assert "X-Trace-Ref" not in handle(KeyError()).headers()  # no correlation, no header


def test_correlation_id_is_the_current_one() -> None:
    """handle() reports the id of the innermost correlate() scope."""
    with faultlens.correlate("outer"):
        assert handle(KeyError()).correlation_id == "outer"
        with faultlens.correlate("inner"):
            response = handle(KeyError())
            assert response.correlation_id == faultlens.correlation_id() == "inner"
            assert "inner" in response.message


def test_problem_json_shape() -> None:
    """to_problem() is RFC 9457: type, title, status, detail, instance, then extensions."""
    with faultlens.correlate("cid-5"):
        response = handle(ConflictError("duplicate order"))
    problem = response.to_problem(instance="/orders/7")
    assert problem == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": response.message,
        "instance": "/orders/7",
        "code": "conflict",
        "correlation_id": "cid-5",
        "retry_possible": False,
        "category": "conflict",
        "severity": "low",
    }
    typed = response.to_problem(type_base="https://errors.example.com/")
    assert typed["type"] == "https://errors.example.com/conflict"
    assert "instance" not in typed
    assert json.loads(json.dumps(problem)) == problem


def test_problem_json_carries_validation_errors() -> None:
    """Field errors appear as the top-level 'errors' member, as in RFC 9457's example."""
    problem = handle(ValidationError("bad", field="email")).to_problem()
    assert problem["title"].startswith("Unprocessable")  # the phrase changed in Python 3.13
    assert problem["errors"] == [
        {
            "loc": ["email"],
            "field": "email",
            "type": "validation_error",
            "msg": "The value of the field 'email' is not valid.",
        }
    ]


def test_details_never_overwrite_problem_members() -> None:
    """A public context key named like a problem member cannot replace it."""

    class Odd(FaultlensError):
        public_context = ("status", "detail", "limit")

    response = handle(Odd("x", status=418, detail="<b>hi</b>", limit=3))
    problem = response.to_problem()
    assert problem["status"] == 418
    assert problem["detail"] == response.message
    assert problem["limit"] == "3"
    assert response.details["detail"] == "\u2039b\u203ahi\u2039/b\u203a"


def test_public_context_is_the_only_context_shown() -> None:
    """Only keys a class lists in public_context reach details, redacted."""

    class QuotaExceeded(ConflictError):
        public_context = ("limit", "api_token", "missing")

    response = handle(QuotaExceeded("x", limit=100, api_token="abc123", internal="no"))
    assert dict(response.details) == {"limit": "100", "api_token": "[REDACTED]"}
    assert "internal" not in json.dumps(response.to_dict())


def test_validation_error_never_echoes_its_value() -> None:
    """ValidationError(value=...) is never in the message, details or body."""
    exc = ValidationError(
        "bad email hunter2@example.com", field="email", value="hunter2@example.com"
    )
    register_value_template()
    body = json.dumps(handle(exc).to_dict())
    assert "hunter2" not in body
    assert "email" in body


def register_value_template() -> None:
    """A template that (wrongly) names {value}: it must not be filled."""
    from faultlens.errors import register_messages

    register_messages("en", {"validation_error": "Field {field} has value {value}."})


def test_pydantic_details() -> None:
    """pydantic errors give loc, field, type and msg per field, never the input."""

    class Signup(pydantic.BaseModel):
        email: str
        age: int = pydantic.Field(ge=18)

    with pytest.raises(pydantic.ValidationError) as info:
        Signup.model_validate({"email": 12345678, "age": "sixteen-secret"})
    response = handle(info.value, locale="pt-BR")
    assert response.status == 422
    assert (
        response.message == "A solicitação contém dados inválidos. Verifique-os e tente novamente."
    )
    errors = response.details["errors"]
    assert [e["field"] for e in errors] == ["email", "age"]
    assert [e["type"] for e in errors] == ["string_type", "int_parsing"]
    assert all(set(e) == {"loc", "field", "type", "msg"} for e in errors)
    body = json.dumps(response.to_dict())
    assert "sixteen-secret" not in body
    assert "12345678" not in body


def test_pydantic_single_field_names_it_in_the_message() -> None:
    """When exactly one field failed, the message names it."""

    class Item(pydantic.BaseModel):
        quantity: int

    with pytest.raises(pydantic.ValidationError) as info:
        Item.model_validate({"quantity": "many"})
    assert handle(info.value).message == "The value of the field 'quantity' is not valid."


def test_custom_validator_echoing_input_is_replaced() -> None:
    """A validator message that quotes the input is replaced by the catalog's."""

    class Account(pydantic.BaseModel):
        iban: str

        @pydantic.field_validator("iban")
        @classmethod
        def check(cls, value: str) -> str:
            raise ValueError(f"{value} is not an IBAN we accept")

    with pytest.raises(pydantic.ValidationError) as info:
        Account.model_validate({"iban": "DE89370400440532013000"})
    response = handle(info.value)
    entry = response.details["errors"][0]
    assert entry["msg"] == "The value of the field 'iban' is not valid."
    assert "DE89370400440532013000" not in json.dumps(response.to_dict())


def test_many_field_errors_are_capped() -> None:
    """At most 50 field errors are listed; the rest are counted."""
    model = pydantic.create_model(  # type: ignore[call-overload]
        "Wide", **{f"f{i}": (int, ...) for i in range(60)}
    )
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate({})
    response = handle(info.value)
    assert len(response.details["errors"]) == 50
    assert response.details["errors_omitted"] == 10


@pytest.fixture
def development() -> None:
    """faultlens configured for development (restored by the package fixture)."""
    faultlens.configure(environment="development", install_log_handler=False)


@pytest.mark.usefixtures("development")
def test_debug_in_development() -> None:
    """debug=True in development shows type, redacted text and stack."""
    try:
        raise KeyError("lookup failed for password=hunter2")
    except KeyError as exc:
        response = handle(exc, debug=True)
    debug = response.to_dict()["debug"]
    assert debug["exception"] == "builtins.KeyError"
    assert "lookup failed" in debug["message"]
    assert "hunter2" not in json.dumps(debug)
    assert any("test_debug_in_development" in line for line in debug["stack"])
    assert debug["classification"]["code"] == "internal_error"
    assert response.message == handle(KeyError("x")).message  # the user message is unchanged
    assert "debug" in response.to_problem()


@pytest.mark.parametrize("environment", [None, "production", "staging"])
def test_debug_is_ignored_outside_development(environment: str | None) -> None:
    """debug=True outside development adds nothing, warns once and is counted."""
    faultlens.configure(environment=environment, install_log_handler=False)
    with pytest.warns(RuntimeWarning, match="ignored outside development"):
        first = handle(KeyError("secret"), debug=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = handle(KeyError("secret"), debug=True)
    assert first.debug is None
    assert second.debug is None
    assert "debug" not in first.to_dict()
    assert faultlens.stats()["errors.debug_ignored"] == 2


class Hostile(Exception):
    """An exception that fails wherever it can."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    @property
    def response(self) -> Any:
        raise RuntimeError("no response")

    def errors(self) -> Any:
        raise RuntimeError("no errors")


def test_handle_never_raises() -> None:
    """Hostile exceptions and values still get an answer."""
    response = handle(Hostile())
    assert response.status == 500
    from faultlens.errors import register

    register(Hostile, category="validation")
    assert handle(Hostile()).status == 422
    register(Hostile, category="transient")
    assert handle(Hostile()).retry_after is None

    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert handle(ConflictError("x", thing=Weird())).status == 409


def test_handle_survives_an_internal_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """If building the answer fails, a generic 500 comes back and the failure is counted."""
    from faultlens.errors import _responses

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("catalog broken")

    monkeypatch.setattr(_responses, "catalog_for", broken)
    with faultlens.correlate("cid-6"):
        response = handle(IntegrationError("x"))
    assert (response.status, response.code, response.correlation_id) == (
        500,
        "internal_error",
        "cid-6",
    )
    assert faultlens.stats()["errors.handle_failed"] == 1


def test_top_level_handle_is_the_same_function() -> None:
    """faultlens.handle is faultlens.errors.handle."""
    assert faultlens.handle is handle
