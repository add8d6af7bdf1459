"""classify(): built-in standard-library rules, registration, MRO specificity, caching."""

from __future__ import annotations

import errno
import json
import socket
import time
from typing import Any

import pytest

import faultlens
from faultlens.errors import (
    Classification,
    ConfigurationError,
    NotFoundError,
    Severity,
    ValidationError,
    classify,
    register,
    register_category,
)


def _json_error() -> json.JSONDecodeError:
    try:
        json.loads("{nope")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("unreachable")


def _decode_error() -> UnicodeDecodeError:
    try:
        b"\xff\xfe\xfa".decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc
    raise AssertionError("unreachable")


def _recursion_error() -> RecursionError:
    def down(n: int) -> int:
        return down(n + 1) + 1

    try:
        down(0)
    except RecursionError as exc:
        return exc
    raise AssertionError("unreachable")


STDLIB = [
    (TimeoutError("slow"), "transient", "timeout", True, 504),
    (TimeoutError(), "transient", "timeout", True, 504),
    (
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        "transient",
        "connection_failed",
        True,
        503,
    ),
    (ConnectionResetError(), "transient", "connection_lost", True, 503),
    (BrokenPipeError(), "transient", "connection_lost", True, 503),
    (ConnectionError("x"), "transient", "connection_failed", True, 503),
    (OSError(errno.ECONNREFUSED, "refused"), "transient", "connection_failed", True, 503),
    (OSError(errno.ETIMEDOUT, "timed out"), "transient", "timeout", True, 504),
    (OSError(errno.EHOSTUNREACH, "no route"), "transient", "connection_failed", True, 503),
    (OSError(errno.ENETUNREACH, "no net"), "transient", "connection_failed", True, 503),
    (OSError(errno.ECONNRESET, "reset"), "transient", "connection_lost", True, 503),
    (OSError(errno.ENOSPC, "full"), "system", "disk_full", False, 500),
    (OSError(errno.EMFILE, "files"), "system", "too_many_open_files", False, 500),
    (OSError(errno.ENOENT, "missing"), "system", "file_not_found", False, 500),
    (OSError("no errno"), "system", "os_error", False, 500),
    (PermissionError(errno.EACCES, "denied"), "system", "permission_denied", False, 500),
    (FileNotFoundError(errno.ENOENT, "missing"), "system", "file_not_found", False, 500),
    (
        socket.gaierror(socket.EAI_NONAME, "unknown host"),
        "transient",
        "name_resolution_failed",
        True,
        503,
    ),
    (_json_error(), "data", "malformed_json", False, 400),
    (_decode_error(), "data", "malformed_text", False, 400),
    (KeyError("id"), "internal", "internal_error", False, 500),
    (ValueError("bad"), "internal", "internal_error", False, 500),
    (TypeError("bad"), "internal", "internal_error", False, 500),
    (AttributeError("x"), "internal", "internal_error", False, 500),
    (MemoryError(), "system", "out_of_memory", False, 500),
    (_recursion_error(), "internal", "recursion_limit", False, 500),
    (Exception("who knows"), "unknown", "internal_error", False, 500),
    (KeyboardInterrupt(), "unknown", "internal_error", False, 500),
]


@pytest.mark.parametrize(("exc", "category", "code", "retryable", "status"), STDLIB)
def test_standard_library_rules(
    exc: BaseException, category: str, code: str, retryable: bool, status: int
) -> None:
    """Standard-library exceptions get their documented classification."""
    found = classify(exc)
    assert (found.category, found.code, found.retryable, found.status) == (
        category,
        code,
        retryable,
        status,
    )


def test_severities_of_standard_rules() -> None:
    """Resource exhaustion is critical, bugs high, transient failures medium."""
    assert classify(OSError(errno.ENOSPC, "full")).severity is Severity.CRITICAL
    assert classify(MemoryError()).severity is Severity.CRITICAL
    assert classify(KeyError("x")).severity is Severity.HIGH
    assert classify(TimeoutError()).severity is Severity.MEDIUM
    assert classify(TimeoutError()).layer == "infrastructure"


def test_exception_group_takes_its_most_severe_leaf() -> None:
    """A group classifies as its most severe member, nested groups included."""
    group = ExceptionGroup(
        "many", [KeyError("a"), ExceptionGroup("inner", [OSError(errno.ENOSPC, "full")])]
    )
    assert classify(group).code == "disk_full"
    assert classify(ExceptionGroup("one", [TimeoutError()])).code == "timeout"


class ShopError(Exception):
    """An application's own base exception."""


class PaymentDeclined(ShopError):
    """A subclass with its own rule."""


class CardExpired(PaymentDeclined):
    """A subclass without one."""


def test_registered_type_applies_to_subclasses() -> None:
    """A rule for a type covers its subclasses; values not given come from the category."""
    stored = register(ShopError, category="business_rule", code="shop_error")
    assert stored == Classification(
        "business_rule", Severity.MEDIUM, "service", "shop_error", False, 422
    )
    assert classify(CardExpired()) == stored


def test_most_specific_rule_in_the_mro_wins() -> None:
    """The rule of the nearest class in the MRO wins, whatever the registration order."""
    register(PaymentDeclined, category="business_rule", code="payment_declined", status=402)
    register(ShopError, category="business_rule", code="shop_error")
    assert classify(CardExpired()).code == "payment_declined"
    assert classify(ShopError()).code == "shop_error"


def test_application_rule_overrides_a_builtin_one() -> None:
    """An application rule on ValueError replaces the built-in one; subclasses follow."""

    class AmountError(ValueError):
        pass

    assert classify(AmountError()).category == "internal"
    register(ValueError, category="validation", code="bad_value", status=400)
    assert classify(AmountError()).code == "bad_value"
    assert classify(KeyError()).category == "internal"  # a sibling is untouched
    assert classify(_json_error()).code == "malformed_json"  # a more specific built-in


def test_register_by_dotted_name() -> None:
    """A 'module.QualName' rule applies without the library being imported by faultlens."""
    register(f"{__name__}.PaymentDeclined", category="business_rule", code="declined_by_name")
    assert classify(CardExpired()).code == "declined_by_name"
    with pytest.raises(ConfigurationError, match=r"module\.QualName"):
        register("not a name", category="data")


def test_type_rule_beats_name_rule_on_the_same_class() -> None:
    """At one class, a rule registered with the type wins over one registered by name."""
    register(f"{__name__}.ShopError", category="data", code="by_name")
    register(ShopError, category="data", code="by_type")
    assert classify(ShopError()).code == "by_type"


def test_predicates_run_first_in_registration_order() -> None:
    """Predicates are checked before type rules and in the order they were registered."""
    register(ShopError, category="data", code="by_type")
    register(lambda exc: "retry" in str(exc), category="transient", code="first")
    register(
        lambda exc: "retry" in str(exc) or "later" in str(exc), category="transient", code="second"
    )
    assert classify(ShopError("please retry")).code == "first"
    assert classify(ShopError("come back later")).code == "second"
    assert classify(ShopError("no")).code == "by_type"
    assert classify(ValidationError("retry")).code == "first"  # predicates see everything


def test_failing_predicate_is_skipped_and_counted() -> None:
    """A predicate that raises is treated as no match and counted, never raised."""

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("bug in predicate")

    register(broken, category="data")
    assert classify(KeyError()).category == "internal"
    assert faultlens.stats()["errors.classify_failed"] == 1


def test_cache_is_invalidated_by_register() -> None:
    """A type classified (and cached) before a registration is reclassified after it."""
    assert classify(PaymentDeclined()).category == "unknown"
    assert classify(PaymentDeclined()).category == "unknown"  # now cached
    register(PaymentDeclined, category="business_rule")
    assert classify(PaymentDeclined()).category == "business_rule"


def test_category_registration_can_feed_rules() -> None:
    """A rule may use an application category and inherits its defaults."""
    register_category("billing", severity="high", status=402, code="billing_error")
    found = register(PaymentDeclined, category="billing")
    assert found == Classification("billing", Severity.HIGH, "service", "billing_error", False, 402)


@pytest.mark.parametrize(
    ("target", "kwargs", "match"),
    [
        (NotFoundError, {"category": "data"}, "class attributes"),
        (int, {"category": "data"}, "exception type"),
        (42, {"category": "data"}, "predicate"),
        (ShopError, {"category": "nope"}, "register_category"),
        (ShopError, {"category": "data", "status": 302}, "400 to 599"),
        (ShopError, {"category": "data", "layer": "nowhere"}, "register_layer"),
        (ShopError, {"category": "data", "severity": "meh"}, "severity"),
        (ShopError, {"category": "data", "code": "Bad Code"}, "error code"),
    ],
)
def test_register_rejects_invalid_rules(target: Any, kwargs: dict[str, Any], match: str) -> None:
    """Invalid targets and values raise ConfigurationError saying what to do."""
    with pytest.raises(ConfigurationError, match=match):
        register(target, **kwargs)


def test_rule_that_raises_falls_through() -> None:
    """A built-in rule that fails on a hostile instance is skipped, not raised."""

    class HostileOSError(OSError):
        @property
        def errno(self) -> int:  # type: ignore[override]
            raise RuntimeError("no errno for you")

    assert classify(HostileOSError()).category == "unknown"
    assert faultlens.stats()["errors.classify_failed"] == 1


def test_classify_known_type_is_fast() -> None:
    """Classifying a known type costs well under a microsecond (loose bound for CI).

    Measured in this thread's CPU time: wall time also counts the time other
    processes of a loaded machine hold the CPU, which is not classify()'s cost.
    """
    exc = KeyError("x")
    app = ValidationError("x", field="f")
    classify(exc)
    classify(app)
    rounds = 20_000
    start = time.thread_time()
    for _ in range(rounds):
        classify(exc)
        classify(app)
    per_call = (time.thread_time() - start) / (2 * rounds)
    assert per_call < 2e-6, f"{per_call * 1e6:.3f} µs per classify()"
