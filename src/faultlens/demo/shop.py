"""Two small ASGI services: a shop, and the inventory service the shop calls.

The shop's order endpoint uses everything the foundation offers: the request
context (bound user and session), nested operations across layers with a
performance budget, a thread pool that carries the context, asyncio tasks, and
an outgoing HTTP call carrying ``outgoing_headers()`` to the inventory service,
which continues the same correlation.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faultlens
from faultlens.context import ContextExecutor
from faultlens.errors import MissingExtraError
from faultlens.integrations.asgi import FaultlensMiddleware

try:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise MissingExtraError("demo", "faultlens demo") from exc

__all__ = ["build_inventory", "build_shop"]

log = faultlens.get_logger("demo.shop")
inventory_log = faultlens.get_logger("demo.inventory")

# Users whose order history is slow to load: their requests exceed the budget.
SLOW_USERS = frozenset({"user-3"})


def build_inventory() -> Any:
    """Return the inventory service: reports stock for a list of item ids."""

    async def stock(request: Request) -> JSONResponse:
        items = request.query_params.get("items", "").split(",")
        with faultlens.operation("check_stock", layer="infrastructure") as op:
            op.annotate(items=len(items))
            inventory_log.info("stock checked", items=len(items))
        return JSONResponse({"in_stock": {item: True for item in items if item}})

    app = Starlette(routes=[Route("/stock", stock)])
    return FaultlensMiddleware(app)


def _query_orders(user: str) -> list[str]:
    # Runs in a pool thread: the context arrived through ContextExecutor.
    with faultlens.operation("query_orders", layer="infrastructure"):
        time.sleep(0.03 if user in SLOW_USERS else 0.002)  # the "database"
        orders = [f"{user}-order-{n}" for n in range(3)]
        log.debug("orders loaded", count=len(orders))
        return orders


async def _recommend(user: str) -> list[str]:
    async with faultlens.operation("recommend", layer="core"):
        await asyncio.sleep(0.001)
        log.info("recommendations computed", user=user)
        return [f"gift-for-{user}"]


def build_shop(inventory_client: httpx.AsyncClient, executor: ContextExecutor) -> Any:
    """Return the shop service; it calls the inventory service through ``inventory_client``."""

    async def orders(request: Request) -> JSONResponse:
        user = request.path_params["user"]
        faultlens.bind(user_id=user, session_id=request.headers.get("x-session-id"))
        log.info("order list requested")
        with faultlens.operation("list_orders", layer="service", budget_ms=25) as op:
            loop = asyncio.get_running_loop()
            rows = await loop.run_in_executor(executor, _query_orders, user)
            recommend = asyncio.create_task(_recommend(user))
            with faultlens.operation("call_inventory", layer="infrastructure"):
                response = await inventory_client.get(
                    "/stock",
                    params={"items": ",".join(rows)},
                    headers=faultlens.outgoing_headers(),
                )
            gifts = await recommend
            op.annotate(orders=len(rows))
        return JSONResponse(
            {
                "user": user,
                "orders": rows,
                "gifts": gifts,
                "stock": response.json()["in_stock"],
                "correlation_id": faultlens.correlation_id(),
            }
        )

    app = Starlette(routes=[Route("/users/{user}/orders", orders)])
    return FaultlensMiddleware(app)
