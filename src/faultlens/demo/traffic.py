"""Drive the demo shop with simulated users and summarise what the logs show."""

from __future__ import annotations

import asyncio
import io
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

import faultlens
from faultlens.context import ContextExecutor
from faultlens.demo.analysis_scene import run_analysis_scene
from faultlens.demo.errors_scene import run_error_scene
from faultlens.demo.recovery_scene import run_recovery_scene
from faultlens.demo.store_scene import read_store_scene
from faultlens.errors import CaptureSettings

__all__ = ["DEFAULT_STORE", "DemoSummary", "run_demo", "run_traffic"]

DEFAULT_STORE = "sqlite:///faultlens.db"


class _Tee(io.TextIOBase):
    """A text stream that keeps every line and optionally echoes it."""

    def __init__(self, echo: TextIO | None, console: bool = False) -> None:
        self.lines: list[str] = []
        self._echo = echo
        self._partial = ""
        self._console = None
        if console:
            from faultlens.logs import ConsoleFormatter

            self._console = ConsoleFormatter(colors=bool(echo and echo.isatty()))

    def write(self, text: str) -> int:
        data = self._partial + text
        *complete, self._partial = data.split("\n")
        self.lines.extend(complete)
        if self._echo is not None:
            if self._console is None:
                self._echo.write(text)
            else:
                for raw in complete:
                    self._echo.write(self._console.format_data(orjson.loads(raw)) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._echo is not None:
            self._echo.flush()


@dataclass
class DemoSummary:
    """What one demo run did and what its log lines show."""

    requests: int = 0
    ok_responses: int = 0
    correlation_ids: set[str] = field(default_factory=set)
    log_lines: int = 0
    lines_without_correlation: int = 0
    lines_by_logger: Counter[str] = field(default_factory=Counter)
    downstream_correlated: int = 0
    thread_lines_correlated: int = 0
    over_budget: int = 0

    @property
    def healthy(self) -> bool:
        """True when every request succeeded and every line carries a correlation id."""
        return (
            self.ok_responses == self.requests
            and self.lines_without_correlation == 0
            and len(self.correlation_ids) == self.requests
            and self.downstream_correlated == self.requests
        )

    def render(self) -> str:
        """The summary as a small aligned table."""
        rows = [
            ("requests sent", self.requests),
            ("successful responses", self.ok_responses),
            ("distinct correlation ids", len(self.correlation_ids)),
            ("log lines", self.log_lines),
            ("log lines missing a correlation id", self.lines_without_correlation),
            ("requests whose inventory call shared the id", self.downstream_correlated),
            ("pool-thread lines carrying the id", self.thread_lines_correlated),
            ("operations over budget (warnings)", self.over_budget),
        ]
        width = max(len(name) for name, _ in rows)
        body = "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)
        verdict = "every line correlated" if self.healthy else "PROBLEMS FOUND"
        return f"faultlens demo summary ({verdict})\n{body}"


async def run_traffic(users: int, requests: int) -> list[dict[str, Any]]:
    """Send ``requests`` requests for each of ``users`` concurrent users; return the bodies."""
    import httpx

    from faultlens.demo.shop import build_inventory, build_shop

    executor = ContextExecutor(max_workers=4, thread_name_prefix="shop-db")
    inventory = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_inventory()), base_url="http://inventory"
    )
    shop = build_shop(inventory, executor)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=shop), base_url="http://shop")

    async def user_session(n: int) -> list[dict[str, Any]]:
        bodies = []
        for _ in range(requests):
            # The simulated browser/client starts the correlation and sends it along,
            # so the client's own lines and the shop's share one id.
            with faultlens.correlate(client=f"user-{n}") as ctx:
                response = await client.get(
                    f"/users/user-{n}/orders",
                    headers={"X-Session-ID": f"session-{n}", **faultlens.outgoing_headers()},
                )
            body = response.json() if response.status_code == 200 else {}
            body["_status"] = response.status_code
            body["_header"] = response.headers.get("x-correlation-id")
            body["_sent"] = ctx.correlation_id
            bodies.append(body)
        return bodies

    try:
        sessions = await asyncio.gather(*(user_session(n) for n in range(1, users + 1)))
    finally:
        await client.aclose()
        await inventory.aclose()
        executor.shutdown(wait=True)
    return [body for session in sessions for body in session]


def summarise(bodies: list[dict[str, Any]], lines: list[str]) -> DemoSummary:
    """Cross-check the responses against the log lines."""
    summary = DemoSummary(requests=len(bodies))
    for body in bodies:
        if body.get("_status") == 200 and (
            body.get("correlation_id") == body.get("_header") == body.get("_sent")
        ):
            summary.ok_responses += 1
            summary.correlation_ids.add(str(body["correlation_id"]))
    inventory_ids: set[str] = set()
    for raw in lines:
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # console format: counted as lines only
        summary.log_lines += 1
        logger = str(line.get("logger"))
        summary.lines_by_logger[logger] += 1
        cid = line.get("correlation_id")
        if not cid:
            summary.lines_without_correlation += 1
            continue
        if logger == "demo.inventory":
            inventory_ids.add(cid)
        if line.get("operation") == "query_orders" and cid in summary.correlation_ids:
            summary.thread_lines_correlated += 1
        if line.get("message") == "operation over budget":
            summary.over_budget += 1
    summary.downstream_correlated = len(inventory_ids & summary.correlation_ids)
    return summary


def run_demo(
    *,
    users: int = 4,
    requests: int = 3,
    log_format: str = "json",
    quiet: bool = False,
    store: str = DEFAULT_STORE,
) -> int:
    """Run the demo end to end and print the log lines and the summary; returns 0 when healthy.

    Every event is recorded into ``store`` (SQLite in the working directory by
    default), which is read back at the end: top issues and one timeline.  Then
    an incident replay (:mod:`faultlens.demo.analysis_scene`) writes two hours of
    a synthetic tenant into it, detects its patterns, fires its alerts and prints
    the insights report.
    """
    tee = _Tee(None if quiet else sys.stdout, console=log_format == "console")
    faultlens.configure(
        service="faultlens-demo",
        level="DEBUG",
        log_format="json",
        log_stream=tee,  # type: ignore[arg-type]
        store=store,
        # faultlens's own frames are not in-app; the demo plays an application here.
        capture=CaptureSettings(in_app_include=("faultlens.demo",)),
    )
    try:
        # The run itself is a unit of work too: lines outside any request (the event
        # loop starting, say) carry the run's id, and each request links to it.
        with faultlens.correlate(job="faultlens-demo"):
            bodies = asyncio.run(run_traffic(users, requests))
            error_scene = asyncio.run(run_error_scene())
            recovery_scene = run_recovery_scene()
    finally:
        faultlens.shutdown()  # flushes the recorder into the store
    dropped = sum(v for k, v in faultlens.stats().items() if k.startswith("recorder.dropped."))
    failing = next(a for a in error_scene.answers if a.scenario == "dependency down")
    store_scene = read_store_scene(store, failing.correlation_id, dropped=dropped)
    summary = summarise(bodies, tee.lines)
    print()
    print(summary.render())
    print()
    print(error_scene.render())
    print()
    print(recovery_scene.render())
    print()
    print(store_scene.render())
    print()
    # After the store scene has read its figures: the incident replay writes two hours
    # of a synthetic tenant into the same store, and its alert engine logs its alerts.
    analysis_scene = run_analysis_scene(store)
    print(analysis_scene.render())
    healthy = (
        summary.healthy
        and error_scene.healthy
        and recovery_scene.healthy
        and store_scene.healthy
        and analysis_scene.healthy
    )
    return 0 if healthy else 1
