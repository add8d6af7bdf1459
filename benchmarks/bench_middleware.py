"""Request boundary: what each correlation middleware adds to an in-process Starlette request.

Raw ASGI calls (no HTTP client in the loop) to a one-route Starlette app, bare and wrapped
in: a bare contextvar middleware (the floor), asgi-correlation-id, and faultlens's
FaultlensMiddleware with the access line off and on (written to a discarding stream).

    .venv/bin/python benchmarks/bench_middleware.py
"""

from __future__ import annotations

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

from _harness import Discard, report, versions
from faultlens import logs as faultlens_logs
from faultlens.integrations.asgi import FaultlensMiddleware

_cid: contextvars.ContextVar[str | None] = contextvars.ContextVar("cid", default=None)


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
    start = time.perf_counter_ns()
    for _ in range(n):
        await app(dict(SCOPE), _receive, _send)
    return time.perf_counter_ns() - start


def main() -> None:
    faultlens_logs.configure_logging("INFO", stream=Discard())  # type: ignore[arg-type]
    logging.getLogger("asgi_correlation_id").setLevel(logging.WARNING)
    apps = {
        "starlette (no middleware)": starlette_app(),
        "+ bare contextvar middleware": BareContextvarMiddleware(starlette_app()),
        "+ asgi-correlation-id": CorrelationIdMiddleware(starlette_app()),
        "+ faultlens (access line off)": FaultlensMiddleware(starlette_app(), access_log=False),
        "+ faultlens (access line on)": FaultlensMiddleware(starlette_app(), access_log=True),
    }
    print(versions("faultlens", "starlette", "asgi-correlation-id"))
    loop = asyncio.new_event_loop()
    n, rounds = 2000, 15
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():
        loop.run_until_complete(batch(app, 500))
    gc.disable()
    try:
        for _ in range(rounds):
            for name, app in apps.items():
                samples[name].append(loop.run_until_complete(batch(app, n)) / n / 1000)
    finally:
        gc.enable()
    results = {name: statistics.median(v) for name, v in samples.items()}
    report("in-process request (µs per request)", results, "starlette (no middleware)")
    base = results["starlette (no middleware)"]
    added = {name: us - base for name, us in results.items() if name != "starlette (no middleware)"}
    print("\n## added per request (µs)")
    for name, us in added.items():
        print(f"  {name:<32} {us:7.3f}")
    peer = added["+ asgi-correlation-id"]
    ours = added["+ faultlens (access line off)"]
    print(
        f"\n  faultlens (access off) added / asgi-correlation-id added: {ours / peer:.2f}  (goal <= 0.30)"
    )
    print(
        f"  faultlens (access on) added / asgi-correlation-id added:  {added['+ faultlens (access line on)'] / peer:.2f}"
    )


if __name__ == "__main__":
    main()
