"""Capturing an error: faultlens.capture() against sentry_sdk.capture_exception().

The same exception type, raised 10 frames deep, captured on the caller's thread:

* faultlens with one subscriber to ``error`` events that appends the event to a list,
  so the whole event (classification, chain, frames, context, journey, breadcrumbs,
  system figures) is built;
* sentry-sdk initialised with a transport whose ``capture_envelope`` discards the
  envelope (no network; a fake DSN), default options otherwise, so the event is
  built, scoped and enveloped as in production, then dropped;
* the same sentry-sdk without what faultlens leaves out by default (local
  variables, source lines around each frame): the like-for-like comparison.

Each call raises a fresh exception (both libraries refuse to capture one exception
object twice), so both sides pay for the raise; "raise only" measures that share.
Both run inside a correlation / scope with a few log lines of breadcrumbs.

    .venv/bin/python benchmarks/bench_capture.py
"""

from __future__ import annotations

import io
import logging
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import faultlens
from _harness import measure, ratio, report, versions
from faultlens import events

DEPTH = 10


class DiscardTransport(Transport):
    """A sentry transport that drops every envelope: no network, no serialisation."""

    def capture_envelope(self, envelope: Envelope) -> None:
        pass


class PaymentDeclined(Exception):
    """The exception both libraries capture."""


def _raise_at(depth: int, order_id: int) -> None:
    if depth == 0:
        raise PaymentDeclined(f"card declined for order {order_id}")
    _raise_at(depth - 1, order_id)


def _fresh_exception() -> BaseException:
    try:
        _raise_at(DEPTH - 1, 1234)
    except PaymentDeclined as exc:
        return exc
    raise AssertionError("unreachable")


DSN = "https://public@example.invalid/1"


def setup() -> tuple[list[Any], Any]:
    sink: list[Any] = []
    faultlens.configure(log_stream=io.StringIO(), service="bench")
    events.subscribe(sink.append, kinds=[events.ERROR])
    # Default integrations stay on: sentry's breadcrumbs come from its logging
    # integration, as faultlens's come from its log handler.
    sentry_sdk.init(dsn=DSN, transport=DiscardTransport)
    lean = sentry_sdk.Client(
        dsn=DSN,
        transport=DiscardTransport,
        include_local_variables=False,
        include_source_context=False,
    )
    return sink, lean


def main() -> None:
    sink, lean_client = setup()
    log = faultlens.get_logger("bench.app")
    std = logging.getLogger("bench.app")
    scope = faultlens.correlate(user_id="u-42")
    scope.__enter__()
    sentry_sdk.set_user({"id": "u-42"})
    for i in range(5):  # a few lines of breadcrumbs for both
        log.info("step done", step=i)
        std.info("step %d done", i)

    def raise_only() -> None:
        _fresh_exception()

    def faultlens_capture() -> None:
        faultlens.capture(_fresh_exception(), order_id=1234)

    def sentry_capture() -> None:
        sentry_sdk.capture_exception(_fresh_exception())

    def sentry_lean_capture() -> None:
        with sentry_sdk.new_scope() as sentry_scope:
            sentry_scope.set_client(lean_client)
            sentry_scope.capture_exception(_fresh_exception())

    faultlens_capture()
    event = sink[-1]
    assert event.payload["type"].endswith("PaymentDeclined")
    assert len(event.payload["frames"]) == DEPTH + 1

    print(versions("faultlens", "sentry-sdk"))
    results = measure(
        {
            "raise only (10 frames)": raise_only,
            "sentry_sdk.capture_exception": sentry_capture,
            "sentry, no locals/source lines": sentry_lean_capture,
            "faultlens.capture": faultlens_capture,
        },
        number=500,
        rounds=11,
    )
    sink.clear()
    report("capture one exception raised 10 frames deep", results, "sentry_sdk.capture_exception")
    r = ratio(results, "faultlens.capture", "sentry_sdk.capture_exception")
    print(f"  faultlens.capture / sentry_sdk.capture_exception: {r:.2f}  (goal <= 0.50)")
    base = results["raise only (10 frames)"]
    net = (results["faultlens.capture"] - base) / (results["sentry_sdk.capture_exception"] - base)
    print(f"  same, without the shared raise:                   {net:.2f}")
    lean = ratio(results, "faultlens.capture", "sentry, no locals/source lines")
    print(f"  faultlens.capture / sentry without locals/source:  {lean:.2f}")

    quiet = measure(
        {
            "faultlens.capture, nobody subscribed": _unsubscribed_capture(),
        },
        number=20_000,
        rounds=11,
    )
    report("capture with nobody listening (an exception raised once)", quiet)
    scope.__exit__(None, None, None)


def _unsubscribed_capture() -> Any:
    exc = _fresh_exception()
    bus = events.get_bus()

    def run() -> None:
        faultlens.capture(exc)

    # Measured without subscribers: capture() returns None after two checks.
    bus.clear()
    return run


if __name__ == "__main__":
    main()
