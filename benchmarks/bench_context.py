"""Context and operations: the per-request and per-operation cost on the hot path.

.venv/bin/python benchmarks/bench_context.py

Besides the usual side-by-side medians (wall time), the scopes are also reported as
the best round of thread CPU time: on a busy machine that figure moves much less, so
compare those when the medians jump between runs.
"""

from __future__ import annotations

import contextvars
import gc
import logging
import os
import time
import uuid
from collections.abc import Callable

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


def operation_only() -> None:
    with op:
        pass


def correlate_and_operation() -> None:
    with faultlens.correlate(), op:
        pass


async def _async_pair() -> None:
    with faultlens.correlate():
        async with op:
            pass


def correlate_and_async_operation() -> None:
    # The coroutine never suspends, so one send() runs it to the end without a loop.
    coro = _async_pair()
    try:  # noqa: SIM105 (contextlib.suppress would add its own cost to the figure)
        coro.send(None)
    except StopIteration:
        pass


def correlate_with_fields() -> None:
    with faultlens.correlate(user_id="u1"):
        pass


def cpu_best(
    cases: dict[str, Callable[[], object]], *, number: int = 2_000, rounds: int = 200
) -> dict[str, float]:
    """Return each case's best round of thread CPU time, µs per call, measured interleaved."""
    best = dict.fromkeys(cases, float("inf"))
    clock = time.thread_time_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in cases.items():
                start = clock()
                for _ in range(number):
                    fn()
                best[name] = min(best[name], (clock() - start) / number / 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


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
    cases: dict[str, Callable[[], object]] = {
        "bare contextvar scope + id": bare_contextvar_scope,
        "with correlate()": correlate_only,
        "with operation()": operation_only,
        "with correlate(): with operation()": correlate_and_operation,
        "with correlate(): async with operation()": correlate_and_async_operation,
        "with correlate(user_id=...)": correlate_with_fields,
    }
    scopes = measure(cases, number=20_000, rounds=11)
    title = "scopes (logging below level, no event subscribers)"
    report(title, scopes, "bare contextvar scope + id")
    cpu = cpu_best(cases)
    report(f"{title}: best round, thread CPU time", cpu, "bare contextvar scope + id")
    pair = "with correlate(): with operation()"
    print(
        f"  correlate + operation pair: {scopes[pair]:.2f} µs median, "
        f"{cpu[pair]:.2f} µs best CPU  (aim < 2 µs)"
    )


if __name__ == "__main__":
    main()
