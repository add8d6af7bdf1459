"""Event builders and multiprocessing workers shared by the store tests."""

from __future__ import annotations

from typing import Any

from faultlens.events import Event
from faultlens.store import open as open_store

T0 = 1_700_000_000.0  # FakeClock's default start


def error(
    *,
    fingerprint: str | None = "checkout-failed",
    timestamp: float = T0,
    user: str | None = None,
    session: str | None = None,
    tenant: str | None = None,
    correlation_id: str | None = None,
    message: str = "payment declined",
    type_: str = "app.PaymentError",
    category: str = "integration",
    layer: str = "service",
    event_id: str | None = None,
    **extra: Any,
) -> Event:
    """An error event shaped like capture() builds them; grouped by ``fingerprint``."""
    payload: dict[str, Any] = {
        "type": type_,
        "message": message,
        "frames": [
            {
                "filename": "/srv/app/orders.py",
                "module": "app.orders",
                "function": "checkout",
                "lineno": 42,
                "in_app": True,
            }
        ],
        "classification": {"category": category, "severity": "high", "layer": layer},
        "context": {"session_id": session, "correlation_id": correlation_id},
        **extra,
    }
    if fingerprint is not None:
        payload["fingerprint"] = [fingerprint]
    fields: dict[str, Any] = {}
    if event_id is not None:
        fields["id"] = event_id
    return Event(
        "error",
        type_,
        payload,
        correlation_id=correlation_id,
        tenant_id=tenant,
        user_id=user,
        timestamp=timestamp,
        **fields,
    )


def operation(
    name: str = "checkout",
    *,
    timestamp: float = T0,
    correlation_id: str | None = None,
    tenant: str | None = None,
    event_id: str | None = None,
) -> Event:
    """An operation event."""
    fields: dict[str, Any] = {}
    if event_id is not None:
        fields["id"] = event_id
    return Event(
        "operation",
        name,
        {"outcome": "success", "duration_ms": 1.5, "layer": "service"},
        correlation_id=correlation_id,
        tenant_id=tenant,
        timestamp=timestamp,
        **fields,
    )


def write_from_process(url: str, worker: int, count: int, shared: int) -> int:
    """Write ``count`` events in batches: ``shared`` ids every worker writes, the rest its own.

    Runs in a child process (spawned, so it imports everything afresh).
    """
    store = open_store(url, timeout=30)
    try:
        written = 0
        batch: list[Event] = []
        for i in range(count):
            if i < shared:
                event_id = f"shared-{i:06d}"
                user = f"user-{i % 7}"
            else:
                event_id = f"w{worker}-{i:06d}"
                user = f"user-{worker}-{i % 3}"
            batch.append(
                error(
                    fingerprint=f"fp-{i % 5}",
                    timestamp=T0 + i,
                    user=user,
                    session=f"s-{i % 4}",
                    correlation_id=f"c-{i % 10}",
                    event_id=event_id,
                )
            )
            if len(batch) == 50:
                written += store.write_events(batch)
                batch = []
        if batch:
            written += store.write_events(batch)
        return written
    finally:
        store.close()


def migrate_from_process(url: str) -> list[int]:
    """Open a store and migrate it (several processes race to do this at once)."""
    store = open_store(url, timeout=30, migrate=False)
    try:
        return store.migrate()
    finally:
        store.close()
