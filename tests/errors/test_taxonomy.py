"""The exception taxonomy: classes, defaults, overrides, open categories and layers."""

from __future__ import annotations

import dataclasses
import json
import pickle
from datetime import timedelta
from typing import Any

import pytest

import faultlens.errors
from faultlens.errors import (
    AuthenticationError,
    AuthorizationError,
    BusinessRuleError,
    Category,
    Classification,
    ConfigurationError,
    ConflictError,
    DataError,
    FaultlensError,
    IntegrationError,
    Layer,
    MissingExtraError,
    NotFoundError,
    Severity,
    SystemFault,
    TransientError,
    ValidationError,
    categories,
    classify,
    layers,
    register_category,
    register_layer,
)

DEFAULTS = [
    (ValidationError, "validation", "low", "api", "validation_error", False, 422),
    (AuthenticationError, "authentication", "medium", "api", "authentication_error", False, 401),
    (AuthorizationError, "authorization", "medium", "service", "authorization_error", False, 403),
    (NotFoundError, "not_found", "low", "service", "not_found", False, 404),
    (ConflictError, "conflict", "low", "service", "conflict", False, 409),
    (
        BusinessRuleError,
        "business_rule",
        "medium",
        "service",
        "business_rule_violation",
        False,
        422,
    ),
    (IntegrationError, "integration", "high", "infrastructure", "integration_error", False, 502),
    (TransientError, "transient", "medium", "infrastructure", "transient_error", True, 503),
    (DataError, "data", "high", "core", "data_error", False, 500),
    (SystemFault, "system", "critical", "infrastructure", "system_fault", False, 500),
    (FaultlensError, "unknown", "high", "unknown", "internal_error", False, 500),
    (ConfigurationError, "configuration", "high", "core", "configuration_error", False, 500),
]


@pytest.mark.parametrize(("cls", "expected"), [(row[0], row[1:]) for row in DEFAULTS])
def test_class_defaults(cls: type[FaultlensError], expected: tuple[Any, ...]) -> None:
    """Each built-in error class carries its documented classification."""
    category, severity, layer, code, retryable, status = expected
    found = classify(cls("boom"))
    assert found == Classification(category, Severity(severity), layer, code, retryable, status)
    assert (cls.category, cls.severity, cls.layer, cls.code) == (category, severity, layer, code)
    assert (cls.retryable, cls.status) == (retryable, status)


def test_every_application_error_derives_from_the_root() -> None:
    """All application errors are FaultlensErrors, and the tree is in the module docstring."""
    doc = faultlens.errors.__doc__ or ""
    for cls, *_ in DEFAULTS:
        assert issubclass(cls, FaultlensError)
        assert cls.__name__ in doc
    assert "MissingExtraError" in doc


def test_severity_orders_by_seriousness() -> None:
    """Severity compares by rank, also against plain strings, and stays a string."""
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert Severity.CRITICAL > "high"
    assert Severity.HIGH > "low"
    assert Severity.HIGH >= "high"
    assert max(Severity) is Severity.CRITICAL
    assert sorted(["critical", Severity.LOW, Severity.HIGH], key=Severity) == [
        Severity.LOW,
        Severity.HIGH,
        Severity.CRITICAL,
    ]
    assert Severity.HIGH == "high"
    assert [s.rank for s in Severity] == [0, 1, 2, 3]
    with pytest.raises(TypeError):
        _ = Severity.LOW < 3


def test_instance_overrides_and_context() -> None:
    """Keywords override the class defaults; other keywords land in context."""
    exc = ConflictError(
        "version 3 is stale",
        severity="critical",
        code="order_stale",
        retryable=True,
        layer=Layer.CORE,
        status=412,
        order_id=7,
        version=3,
    )
    assert classify(exc) == Classification(
        "conflict", Severity.CRITICAL, "core", "order_stale", True, 412
    )
    assert exc.context == {"order_id": 7, "version": 3}
    assert str(exc) == "version 3 is stale" == exc.message
    assert classify(ConflictError("other")).code == "conflict"  # the class is untouched


def test_category_override_on_an_instance() -> None:
    """An instance may move to another category; unset values stay the class's."""
    exc = NotFoundError("gone", category=Category.CONFLICT)
    assert classify(exc).category == "conflict"
    assert classify(exc).status == 404


def test_validation_error_keeps_value_out_of_context() -> None:
    """ValidationError keeps field and value as attributes; value is not context."""
    exc = ValidationError("too short", field="project_name", value="ab", min_length=3)
    assert exc.field == "project_name"
    assert exc.value == "ab"
    assert exc.context == {"min_length": 3}


def test_integration_and_system_attributes() -> None:
    """IntegrationError names system and operation; SystemFault names its component."""
    exc = IntegrationError("refused", system="payments", operation="charge", amount=10)
    assert (exc.system, exc.operation, exc.context) == ("payments", "charge", {"amount": 10})
    fault = SystemFault("no ports", component="port_registry", requested="3000-5000")
    assert fault.component == "port_registry"
    assert fault.context == {"requested": "3000-5000"}


def test_retry_after_accepts_seconds_and_timedelta() -> None:
    """retry_after is stored in seconds; nonsense is refused with a clear error."""
    assert TransientError("x", retry_after=timedelta(minutes=1)).retry_after == 60.0
    assert TransientError("x", retry_after=2).retry_after == 2.0
    assert TransientError("x").retry_after is None
    for bad in (-1, "soon", True, 10**9):
        with pytest.raises(ConfigurationError, match="retry_after"):
            TransientError("x", retry_after=bad)


@pytest.mark.parametrize(
    ("keyword", "value", "hint"),
    [
        ("category", "inventory", "register_category"),
        ("layer", "business_logic", "register_layer"),
        ("severity", "fatal", "low, medium, high, critical"),
        ("code", "Not A Code", "lower-case"),
        ("status", 200, "400 to 599"),
    ],
)
def test_invalid_overrides_say_how_to_fix(keyword: str, value: Any, hint: str) -> None:
    """An unknown category or layer, or a bad value, raises ConfigurationError with a hint."""
    with pytest.raises(ConfigurationError, match=hint):
        DataError("x", **{keyword: value})


def test_registered_category_gives_defaults_to_subclasses() -> None:
    """A class naming an application category takes that category's defaults."""
    info = register_category(
        "inventory", severity="high", status=409, retryable=False, layer="core", code="out_of_stock"
    )
    assert info.name == "inventory"

    class OutOfStock(FaultlensError):
        category = "inventory"

    class Backordered(OutOfStock):
        retryable = True

    class StaleStock(ConflictError):
        category = "inventory"
        severity = Severity.LOW

    assert classify(OutOfStock("none left")) == Classification(
        "inventory", Severity.HIGH, "core", "out_of_stock", False, 409
    )
    assert classify(Backordered("later")).retryable is True
    assert classify(Backordered("later")).code == "out_of_stock"
    assert classify(StaleStock("x")) == Classification(
        "inventory", Severity.LOW, "core", "out_of_stock", False, 409
    )
    assert "inventory" in categories()


def test_subclass_without_category_inherits() -> None:
    """A subclass that does not name a category inherits every value of its parent."""

    class EmailTaken(ConflictError):
        code = "email_taken"

    assert classify(EmailTaken("x")) == Classification(
        "conflict", Severity.LOW, "service", "email_taken", False, 409
    )


def test_unknown_category_fails_at_class_definition() -> None:
    """Defining a class with an unregistered category fails at once, naming the fix."""
    with pytest.raises(ConfigurationError, match=r"register_category\('billing'"):

        class Unpaid(FaultlensError):
            category = "billing"


def test_register_layer() -> None:
    """An application layer becomes usable once registered; registering twice is harmless."""
    with pytest.raises(ConfigurationError, match="register_layer"):
        BusinessRuleError("x", layer="business_logic")
    assert register_layer("business_logic", description="rules") == "business_logic"
    assert register_layer("business_logic") == "business_logic"
    assert classify(BusinessRuleError("x", layer="business_logic")).layer == "business_logic"
    assert "business_logic" in layers()
    assert {"api", "service", "core", "infrastructure", "ui", "background"} <= set(layers())


def test_category_registration_rules() -> None:
    """Built-ins cannot be redefined; same values are a no-op; new values replace; names checked."""
    with pytest.raises(ConfigurationError, match="built-in"):
        register_category("validation", status=400)
    first = register_category("billing", status=402)
    assert register_category("billing", status=402) == first
    assert register_category("billing", status=409).status == 409
    for bad in ("Billing", "1st", "", "a" * 65, "bill ing"):
        with pytest.raises(ConfigurationError, match="category name"):
            register_category(bad)
    with pytest.raises(ConfigurationError, match="register_layer"):
        register_category("shipping", layer="nowhere")
    assert register_category("shipping").code == "shipping_error"


def test_registries_are_read_only_snapshots() -> None:
    """categories() and layers() cannot be used to change the registries."""
    snapshot = categories()
    with pytest.raises(TypeError):
        snapshot["x"] = snapshot["validation"]  # type: ignore[index]
    assert snapshot[Category.TRANSIENT].retryable is True
    names = {value for key, value in vars(Category).items() if key.isupper()}
    assert names == set(snapshot)  # every constant is a registered built-in
    assert {value for key, value in vars(Layer).items() if key.isupper()} <= set(layers())


def test_classification_is_frozen_slotted_and_json_ready() -> None:
    """Classification cannot change, has no __dict__, and to_dict() serialises as JSON."""
    found = classify(TransientError("x"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.status = 500  # type: ignore[misc]
    assert not hasattr(found, "__dict__")
    data = found.to_dict()
    assert json.loads(json.dumps(data)) == {
        "category": "transient",
        "severity": "medium",
        "layer": "infrastructure",
        "code": "transient_error",
        "retryable": True,
        "status": 503,
    }
    assert type(data["severity"]) is str


def test_pickling_keeps_everything() -> None:
    """Errors survive pickling (task queues, processes) with keywords and context."""
    exc = ValidationError("bad", field="email", value="x", severity="high", tenant="t1")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is ValidationError
    assert (copy.field, copy.value, copy.context, str(copy)) == (
        "email",
        "x",
        {"tenant": "t1"},
        "bad",
    )
    assert classify(copy) == classify(exc)
    missing = pickle.loads(pickle.dumps(MissingExtraError("flask", "faultlens.integrations.flask")))
    assert missing.extra == "flask"
    assert "pip install 'faultlens[flask]'" in str(missing)


def test_existing_errors_keep_their_bases() -> None:
    """ConfigurationError is still a ValueError, MissingExtraError an ImportError."""
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(MissingExtraError, ImportError)
    assert classify(MissingExtraError("x", "m")).code == "missing_extra"
    assert classify(MissingExtraError("x", "m")).category == "configuration"


def test_message_may_be_given_by_keyword() -> None:
    """message= works as a keyword too (it is never swallowed into context)."""
    exc = ValidationError(message="too short", field="name")
    assert str(exc) == "too short"
    assert exc.context == {}
