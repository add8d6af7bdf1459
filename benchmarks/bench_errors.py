"""Errors: classify() and handle() against the hand-written code they replace.

classify() is measured on a known type (a cached dict hit), an application error, a rule
that looks at the instance (an errno), and an exception no rule knows; next to it, the
usual hand-written ``isinstance`` chain over a dozen classes (what the seeds do) and the
least any lookup can cost (a dict keyed by type).

handle() builds the whole safe response (classification, correlation id, locale, catalog
message, details) for a registered application error, an unknown exception, a validation
error with a field, and a pydantic error; next to it, the naive answer an application
writes by hand (a dict with the category and a ``str.format``-ed template: unsafe, since
it formats with whatever the context holds), and ``to_dict()`` + orjson for scale.

    .venv/bin/python benchmarks/bench_errors.py
"""

from __future__ import annotations

import errno
from typing import Any

import orjson
import pydantic

import faultlens
from _harness import measure, ratio, report, versions
from faultlens.errors import (
    ConflictError,
    IntegrationError,
    NotFoundError,
    TransientError,
    ValidationError,
    classify,
    handle,
)

CID = "4bf92f3577b34da6a3ce929d0e0e4736"


class AppValidationError(Exception):
    """The seed's style: one class per category, a chain of isinstance checks."""


class AppSystemError(Exception):
    pass


class AppIntegrationError(Exception):
    pass


_CHAIN: tuple[tuple[type[BaseException], str], ...] = (
    (AppValidationError, "validation"),
    (AppSystemError, "system"),
    (AppIntegrationError, "integration"),
    (PermissionError, "authorization"),
    (FileNotFoundError, "not_found"),
    (TimeoutError, "transient"),
    (ConnectionError, "transient"),
    (OSError, "system"),
    (KeyError, "internal"),
    (ValueError, "internal"),
    (TypeError, "internal"),
    (MemoryError, "system"),
)
_BY_TYPE = {KeyError: "internal", ConflictError: "conflict"}


def isinstance_chain(exc: BaseException) -> str:
    for kind, category in _CHAIN:
        if isinstance(exc, kind):
            return category
    return "unknown"


def dict_by_type(exc: BaseException) -> str:
    return _BY_TYPE.get(type(exc), "unknown")


TEMPLATES = {
    "conflict": "The request conflicts with the current state: {detail}",
    "unknown": "An error occurred. Reference: {correlation_id}",
}


def naive_answer(exc: BaseException) -> dict[str, Any]:
    """What applications write by hand: unsafe (formats any context) and unlocalised."""
    category = isinstance_chain(exc)
    template = TEMPLATES.get(category, TEMPLATES["unknown"])
    try:
        message = template.format(detail=str(exc), correlation_id=faultlens.correlation_id())
    except (KeyError, IndexError):
        message = template
    return {"status": 500, "error": category, "message": message}


class Signup(pydantic.BaseModel):
    email: str
    age: int


def _pydantic_error() -> pydantic.ValidationError:
    try:
        Signup.model_validate({"email": 1, "age": "x"})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


def main() -> None:
    print(versions("faultlens", "pydantic", "orjson"))
    scope = faultlens.correlate(CID)
    scope.__enter__()

    key_error = KeyError("order_id")
    conflict = ConflictError("order 7 already paid", order_id=7)
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    unknown = RuntimeError("something odd")

    class NobodyKnowsThis(Exception):
        pass

    never_seen = NobodyKnowsThis("x")

    classified = measure(
        {
            "floor: dict[type] lookup": lambda: dict_by_type(key_error),
            "isinstance chain, 9th class": lambda: isinstance_chain(key_error),
            "isinstance chain, no match": lambda: isinstance_chain(never_seen),
            "classify(KeyError)": lambda: classify(key_error),
            "classify(ConflictError)": lambda: classify(conflict),
            "classify(OSError ENOSPC)": lambda: classify(disk_full),
            "classify(unknown type)": lambda: classify(never_seen),
        },
        number=200_000,
        rounds=11,
    )
    report(
        "classify(): one exception to a Classification", classified, "isinstance chain, 9th class"
    )
    known = ratio(classified, "classify(KeyError)", "isinstance chain, 9th class")
    print(f"  classify(known type): {classified['classify(KeyError)']:.3f} µs  (goal < 1 µs)")
    print(f"  classify(known) / isinstance chain: {known:.2f}")

    transient = TransientError("queue full", retry_after=5)
    validation = ValidationError("too short", field="project_name", value="ab")
    pydantic_error = _pydantic_error()
    integration = IntegrationError("refused", system="payments", operation="charge")
    not_found = NotFoundError("no such order")

    answered = measure(
        {
            "naive dict + str.format (unsafe)": lambda: naive_answer(conflict),
            "handle(ConflictError)": lambda: handle(conflict),
            "handle(NotFoundError, pt-BR)": lambda: handle(not_found, locale="pt-BR"),
            "handle(TransientError, Retry-After)": lambda: handle(transient),
            "handle(ValidationError field)": lambda: handle(validation),
            "handle(IntegrationError)": lambda: handle(integration),
            "handle(unknown RuntimeError)": lambda: handle(unknown),
            "handle(pydantic, 2 fields)": lambda: handle(pydantic_error),
            "handle(KeyError).to_dict() + orjson": lambda: orjson.dumps(
                handle(key_error).to_dict()
            ),
        },
        number=20_000,
        rounds=11,
    )
    report("handle(): the safe, localized response", answered, "naive dict + str.format (unsafe)")
    print(f"  handle(registered type): {answered['handle(ConflictError)']:.3f} µs  (goal < 5 µs)")
    print(f"  handle(unknown exception): {answered['handle(unknown RuntimeError)']:.3f} µs")
    naive = ratio(answered, "handle(ConflictError)", "naive dict + str.format (unsafe)")
    print(f"  handle(registered) / naive: {naive:.2f}")
    scope.__exit__(None, None, None)


if __name__ == "__main__":
    main()
