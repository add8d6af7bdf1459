"""Request boundary: what each correlation middleware adds to an in-process Starlette request.

Raw ASGI calls (no HTTP client in the loop) to a one-route Starlette app, bare and wrapped
in: a bare contextvar middleware (the floor), asgi-correlation-id, and faultlens's
FaultlensMiddleware with the access line off and on (written to a discarding stream).

    .venv/bin/python benchmarks/bench_middleware.py [--rounds 200] [--batch 200]

How it is kept fair:

* every candidate wraps its own instance of the same Starlette app and gets the same
  request (a copy of one scope: four headers, a valid ``traceparent``, no id header);
  each is checked once to do its job (its id header is on the response) before timing;
* asgi-correlation-id runs with its documented defaults (``app.add_middleware(
  CorrelationIdMiddleware)``).  Its Sentry extension is switched off: it is only active
  when ``sentry-sdk`` is importable, which it is here only because another benchmark
  compares against Sentry, and it would add Sentry's cost to the peer's figure;
* rounds are interleaved and the order of the candidates rotates every round, so drift
  and bursts of machine noise hit all of them alike;
* each batch is timed in CPU time of this thread (``time.thread_time_ns``), so time the
  process spends descheduled on a loaded machine is not counted, and what a candidate
  adds is the median over rounds of (its batch minus the bare app's batch of the same round).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import logging
import statistics
import time
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from _harness import Discard, versions
from faultlens import logs as faultlens_logs
from faultlens.integrations.asgi import FaultlensMiddleware

_cid: contextvars.ContextVar[str | None] = contextvars.ContextVar("cid", default=None)

BARE = "starlette (no middleware)"
FLOOR = "+ bare contextvar middleware"
PEER = "+ asgi-correlation-id"
OFF = "+ faultlens (access line off)"
ON = "+ faultlens (access line on)"


async def hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("hello")


def starlette_app() -> Any:
    return Starlette(routes=[Route("/orders/{n}", hello)])


class BareContextvarMiddleware:
    """The least a correlation middleware can do: set a contextvar, call, reset."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        token = _cid.set("fixed")
        try:
            await self.app(scope, receive, send)
        finally:
            _cid.reset(token)


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/orders/7",
    "raw_path": b"/orders/7",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"bench"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ],
    "client": ("10.0.0.7", 40000),
    "server": ("bench", 80),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


async def batch(app: Any, n: int) -> int:
    """CPU nanoseconds this thread spends on ``n`` requests to ``app``."""
    scope = SCOPE
    receive = _receive
    send = _send
    start = time.thread_time_ns()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return time.thread_time_ns() - start


async def response_headers(app: Any) -> set[bytes]:
    """The names of the response headers ``app`` sends for the benchmark request."""
    names: set[bytes] = set()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            names.update(name for name, _ in message["headers"])

    await app(dict(SCOPE), _receive, send)
    return names


def candidates() -> dict[str, Any]:
    peer = CorrelationIdMiddleware(starlette_app())
    peer.sentry_extension = lambda correlation_id: None  # see the module docstring
    return {
        BARE: starlette_app(),
        FLOOR: BareContextvarMiddleware(starlette_app()),
        PEER: peer,
        OFF: FaultlensMiddleware(starlette_app(), access_log=False),
        ON: FaultlensMiddleware(starlette_app(), access_log=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=200, help="requests per batch")
    options = parser.parse_args()
    faultlens_logs.configure_logging("INFO", stream=Discard())  # type: ignore[arg-type]
    logging.getLogger("asgi_correlation_id").setLevel(logging.WARNING)
    apps = candidates()
    print(versions("faultlens", "starlette", "asgi-correlation-id"))
    loop = asyncio.new_event_loop()
    # Each candidate does its job: its id header is on the response.
    expected = {PEER: b"x-request-id", OFF: b"x-correlation-id", ON: b"x-correlation-id"}
    for name, header in expected.items():
        assert header in loop.run_until_complete(response_headers(apps[name])), name
    for app in apps.values():
        loop.run_until_complete(batch(app, 2000))
    names = list(apps)
    totals: dict[str, list[float]] = {name: [] for name in names}
    added: dict[str, list[float]] = {name: [] for name in names if name != BARE}
    n = options.batch
    gc.collect()
    gc.disable()
    try:
        for round_ in range(options.rounds):
            shift = round_ % len(names)
            this_round = {}
            for name in names[shift:] + names[:shift]:
                this_round[name] = loop.run_until_complete(batch(apps[name], n)) / n / 1000
            for name, us in this_round.items():
                totals[name].append(us)
                if name != BARE:
                    added[name].append(us - this_round[BARE])
    finally:
        gc.enable()
    print(f"\n## in-process request, CPU µs per request ({options.rounds} rounds of {n})")
    bare = statistics.median(totals[BARE])
    for name in names:
        us = statistics.median(totals[name])
        print(f"  {name:<32} {us:8.3f} µs  {us / bare:5.2f}x {BARE}")
    print("\n## added per request (µs): median, and the middle half of the rounds")
    medians = {name: statistics.median(values) for name, values in added.items()}
    for name, values in added.items():
        q1, _, q3 = statistics.quantiles(values, n=4)
        print(f"  {name:<32} {medians[name]:7.3f}   [{q1:6.3f} .. {q3:6.3f}]")
    peer = medians[PEER]
    print(
        f"\n  faultlens (access off) added / asgi-correlation-id added: "
        f"{medians[OFF] / peer:.2f}  (goal <= 0.30)"
    )
    print(f"  faultlens (access on) added / asgi-correlation-id added:  {medians[ON] / peer:.2f}")


if __name__ == "__main__":
    main()
