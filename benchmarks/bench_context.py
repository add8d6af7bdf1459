"""Context and operations: the per-request and per-operation cost on the hot path.

.venv/bin/python benchmarks/bench_context.py
"""

from __future__ import annotations

import contextvars
import logging
import os
import uuid

import faultlens
from _harness import Discard, measure, report, versions
from faultlens import logs as faultlens_logs

_plain: contextvars.ContextVar[str | None] = contextvars.ContextVar("plain", default=None)


def bare_contextvar_scope() -> None:
    """What any correlation library must at least do: generate an id, set and reset a var."""
    token = _plain.set(os.urandom(16).hex())
    _plain.reset(token)


def correlate_only() -> None:
    with faultlens.correlate():
        pass


op = faultlens.operation("bench_op", layer="service")


def correlate_and_operation() -> None:
    with faultlens.correlate(), op:
        pass


def main() -> None:
    # Logging configured but the level is above what operations log: the hot path
    # without output (the "logging below level").
    faultlens_logs.configure_logging("WARNING", stream=Discard())  # type: ignore[arg-type]
    logging.getLogger().setLevel(logging.WARNING)
    print(versions("faultlens"))
    ids = measure(
        {
            "uuid.uuid4().hex": lambda: uuid.uuid4().hex,
            "os.urandom(16).hex()": lambda: os.urandom(16).hex(),
            "faultlens.context.new_id()": faultlens.context.new_id,
        },
        number=50_000,
        rounds=9,
    )
    report("id generation", ids, "uuid.uuid4().hex")
    scopes = measure(
        {
            "bare contextvar scope + id": bare_contextvar_scope,
            "with correlate()": correlate_only,
            "with correlate(): with operation()": correlate_and_operation,
        },
        number=20_000,
        rounds=11,
    )
    report(
        "scopes (logging below level, no event subscribers)", scopes, "bare contextvar scope + id"
    )
    pair = scopes["with correlate(): with operation()"]
    print(f"  correlate + operation pair: {pair:.2f} µs  (aim < 2 µs)")


if __name__ == "__main__":
    main()
