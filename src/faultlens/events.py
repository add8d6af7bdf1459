"""Events, and the in-process bus that carries them to subscribers.

Everything faultlens learns is an :class:`Event`: ``kind`` says what it is
(``operation``, ``error``, ``recovery``, ``alert``, ``job``, ``audit``; the set
is open), ``name`` what it is about, ``payload`` the details, and the
correlation fields tie it to a request.  The correlation timeline is every event
of one correlation id in time order.

The bus costs nothing when nobody listens: producers ask :func:`has_subscribers`
before building an event.  Subscribers run synchronously on the publishing
thread, so they must be fast and must not block (the recorder only appends to a
queue).  A subscriber that raises is isolated: the others still run, the failure
is counted (``events.subscriber_errors``) and reported once on stderr.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final

from faultlens._ids import new_id
from faultlens._metrics import counters, report_once
from faultlens.context import _current

__all__ = [
    "ALERT",
    "AUDIT",
    "ERROR",
    "JOB",
    "OPERATION",
    "RECOVERY",
    "Event",
    "EventBus",
    "Subscriber",
    "Subscription",
    "emit",
    "get_bus",
    "has_subscribers",
    "publish",
    "subscribe",
]

OPERATION: Final = "operation"
ERROR: Final = "error"
RECOVERY: Final = "recovery"
ALERT: Final = "alert"
JOB: Final = "job"
AUDIT: Final = "audit"

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_current_get = _current.get


@dataclass(frozen=True, slots=True)
class Event:
    """One thing faultlens learned, tied to a correlation.

    ``timestamp`` is seconds since the epoch (UTC).  ``payload`` holds JSON-safe
    values; what it contains depends on ``kind`` (see the docs).
    """

    kind: str
    name: str
    payload: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    correlation_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    tenant_id: str | None = None
    user_id: str | None = None
    timestamp: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "timestamp": self.timestamp,
            "correlation_id": self.correlation_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "payload": dict(self.payload),
        }


Subscriber = Callable[[Event], object]


class Subscription:
    """Handle returned by :func:`subscribe`; ``close()`` (or ``with``) unsubscribes."""

    __slots__ = ("_bus", "callback", "kinds")

    def __init__(self, bus: EventBus, callback: Subscriber, kinds: frozenset[str] | None) -> None:
        self._bus = bus
        self.callback = callback
        self.kinds = kinds

    def close(self) -> None:
        """Stop delivering events to this subscriber (idempotent)."""
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Routes events to subscribers by kind; publishing to nobody costs one dict lookup."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[Subscription, ...] = ()
        # Copy-on-write routing tables: publish() reads them without a lock.
        self._routes: dict[str, tuple[Subscriber, ...]] = {}
        self._wildcard: tuple[Subscriber, ...] = ()
        self.active = False
        """True while anyone subscribes: the one check hot paths make."""

    def subscribe(
        self, callback: Subscriber, *, kinds: Iterable[str] | None = None
    ) -> Subscription:
        """Deliver every event (or only those of ``kinds``) to ``callback``."""
        sub = Subscription(self, callback, frozenset(kinds) if kinds is not None else None)
        with self._lock:
            self._subscriptions = (*self._subscriptions, sub)
            self._rebuild()
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not sub)
            self._rebuild()

    def _rebuild(self) -> None:
        wildcard = tuple(s.callback for s in self._subscriptions if s.kinds is None)
        kinds = {k for s in self._subscriptions if s.kinds for k in s.kinds}
        self._routes = {
            k: tuple(s.callback for s in self._subscriptions if s.kinds is None or k in s.kinds)
            for k in kinds
        }
        self._wildcard = wildcard
        self.active = bool(self._subscriptions)

    def has_subscribers(self, kind: str) -> bool:
        """Return True when an event of ``kind`` would reach at least one subscriber."""
        return bool(self._routes.get(kind, self._wildcard))

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to its subscribers; never raises."""
        for callback in self._routes.get(event.kind, self._wildcard):
            try:
                callback(event)
            except Exception as exc:
                counters.incr("events.subscriber_errors")
                report_once(
                    f"subscriber:{id(callback)}",
                    f"event subscriber {getattr(callback, '__qualname__', callback)!r} raised "
                    f"{type(exc).__name__}; it stays subscribed, failures are counted in "
                    "faultlens.stats()['events.subscriber_errors']",
                )

    def clear(self) -> None:
        """Remove every subscriber (tests use this)."""
        with self._lock:
            self._subscriptions = ()
            self._rebuild()


_bus = EventBus()


def get_bus() -> EventBus:
    """Return the process-wide bus."""
    return _bus


def subscribe(callback: Subscriber, *, kinds: Iterable[str] | None = None) -> Subscription:
    """Subscribe ``callback`` to the process-wide bus; see :meth:`EventBus.subscribe`."""
    return _bus.subscribe(callback, kinds=kinds)


def has_subscribers(kind: str) -> bool:
    """Return True when an event of ``kind`` would reach a subscriber."""
    return _bus.has_subscribers(kind)


def publish(event: Event) -> None:
    """Publish ``event`` on the process-wide bus; never raises."""
    _bus.publish(event)


def emit(kind: str, name: str, payload: Mapping[str, Any] | None = None) -> Event | None:
    """Build an event tied to the current context and publish it.

    Returns the event, or ``None`` without building anything when nobody
    subscribes to ``kind``.
    """
    if not _bus.active or not _bus.has_subscribers(kind):
        return None
    ctx = _current_get()
    if ctx is None:
        event = _make_event(kind, name, payload or _EMPTY, None, None, None, None, None)
    else:
        event = _make_event(
            kind,
            name,
            payload or _EMPTY,
            ctx.correlation_id,
            ctx.trace_id,
            ctx.span_id,
            ctx.tenant_id,
            ctx.user_id,
        )
    _bus.publish(event)
    return event


# A frozen dataclass's __init__ stores each field through object.__setattr__ (~2 µs for
# an Event); the slot descriptors below store the same values directly, in 60% of the
# time.  emit() is on the hot path of every operation and recovery attempt.
_new_object = object.__new__
_time = time.time
# The Event fields in declaration order (what the slot setters and _restore_event() take).
_EVENT_FIELDS: Final = tuple(f.name for f in fields(Event))
(
    _set_kind,
    _set_name,
    _set_payload,
    _set_correlation_id,
    _set_trace_id,
    _set_span_id,
    _set_tenant_id,
    _set_user_id,
    _set_timestamp,
    _set_id,
) = (getattr(Event, name).__set__ for name in _EVENT_FIELDS)


def _make_event(  # noqa: PLR0917 (private hot path: positional on purpose)
    kind: str,
    name: str,
    payload: Mapping[str, Any],
    correlation_id: str | None,
    trace_id: str | None,
    span_id: str | None,
    tenant_id: str | None,
    user_id: str | None,
) -> Event:
    """Build an :class:`Event` equal to ``Event(...)`` with those values, faster."""
    event: Event = _new_object(Event)
    _set_kind(event, kind)
    _set_name(event, name)
    _set_payload(event, payload)
    _set_correlation_id(event, correlation_id)
    _set_trace_id(event, trace_id)
    _set_span_id(event, span_id)
    _set_tenant_id(event, tenant_id)
    _set_user_id(event, user_id)
    _set_timestamp(event, _time())
    _set_id(event, new_id())
    return event


def _restore_event(  # noqa: PLR0917 (private hot path: positional on purpose)
    kind: str,
    name: str,
    payload: Mapping[str, Any],
    correlation_id: str | None,
    trace_id: str | None,
    span_id: str | None,
    tenant_id: str | None,
    user_id: str | None,
    timestamp: float,
    event_id: str,
) -> Event:
    """Build an :class:`Event` with every field given (its timestamp and id kept), fast.

    For code that rebuilds an event it already has (the store's sanitiser); values
    are stored as they are, without the dataclass's ``__init__``.
    """
    event: Event = _new_object(Event)
    _set_kind(event, kind)
    _set_name(event, name)
    _set_payload(event, payload)
    _set_correlation_id(event, correlation_id)
    _set_trace_id(event, trace_id)
    _set_span_id(event, span_id)
    _set_tenant_id(event, tenant_id)
    _set_user_id(event, user_id)
    _set_timestamp(event, timestamp)
    _set_id(event, event_id)
    return event
