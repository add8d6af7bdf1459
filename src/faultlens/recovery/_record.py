"""Recovery events: one per attempt, decision or rejection of a policy.

An event has kind :data:`faultlens.events.RECOVERY`, the policy instance's name as
``name``, and a payload with at least:

``policy``
    what the policy is: ``retry``, ``circuit_breaker``, ``timeout``, ``fallback``,
    ``bulkhead`` or ``strategy``;
``name``
    the policy instance's name;
``attempt``
    the attempt number (1 for the first call);
``outcome``
    one of :data:`OUTCOMES`;
``delay_s``
    the wait scheduled before the next attempt (0.0 when none);
``duration_ms``
    how long the attempt (or the decision) took;
``error_type``
    ``module.qualname`` of the exception, or ``None``.

Policies add their own keys (``reason``, ``degraded``…).  The correlation fields
come from the current context, as with :func:`faultlens.events.emit`.

Recording costs one attribute check when nobody listens: producers write
``if bus.active: record(...)``.  When someone listens, ``record`` hands over an
:class:`~faultlens.events.Event` whose payload, id and correlation fields are
materialised on first read (see :class:`RecoveryEvent`): policies record every
attempt, and building a frozen dataclass eagerly would cost more than the whole
successful policy call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Literal

from faultlens import _clock
from faultlens import events as _events
from faultlens._ids import new_id
from faultlens._metrics import counters, report_once
from faultlens.context import _current

if TYPE_CHECKING:
    from faultlens._clock import Clock
    from faultlens.context import RequestContext

__all__ = [
    "OUTCOMES",
    "POLICY_KINDS",
    "Outcome",
    "PolicyKind",
    "RecoveryEvent",
    "bus",
    "current_context",
    "error_type",
    "has_subscribers",
    "publish",
    "record",
    "subscriber_failed",
    "success_template",
]

PolicyKind = Literal["retry", "circuit_breaker", "timeout", "fallback", "bulkhead", "strategy"]
Outcome = Literal[
    "succeeded_first_time",
    "succeeded_after_retry",
    "retrying",
    "failed_after_retry",
    "rejected_open",
    "fell_back",
    "timed_out",
    "rejected_full",
    "recovered",
    "not_recovered",
]
POLICY_KINDS: Final = frozenset(
    {"retry", "circuit_breaker", "timeout", "fallback", "bulkhead", "strategy"}
)
OUTCOMES: Final = frozenset(
    {
        "succeeded_first_time",
        "succeeded_after_retry",
        "retrying",
        "failed_after_retry",
        "rejected_open",
        "fell_back",
        "timed_out",
        "rejected_full",
        "recovered",
        "not_recovered",
    }
)

bus: Final = _events.get_bus()
"""The process-wide event bus; ``bus.active`` is the one check a hot path makes."""

_RECOVERY: Final = _events.RECOVERY
_Event = _events.Event
_EVENT_FIELDS = _events._EVENT_FIELDS
_id_lock = threading.Lock()

# The constant part of an event, one tuple (built once per protected function on
# the success path): name, policy, attempt, outcome, delay_s, error_type, extra.
_NAME, _POLICY, _ATTEMPT, _OUTCOME, _DELAY, _ERROR, _EXTRA = range(7)


def _read_only(field: str) -> tuple[Any, Any]:
    def refuse_set(self: Any, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {field!r}")

    def refuse_delete(self: Any) -> None:
        raise FrozenInstanceError(f"cannot delete field {field!r}")

    return refuse_set, refuse_delete


def _field(field: str, getter: Any) -> Any:
    refuse_set, refuse_delete = _read_only(field)
    return property(getter, refuse_set, refuse_delete, getter.__doc__)


def _context_field(field: str) -> Any:
    read = attrgetter(field)

    def get(self: RecoveryEvent) -> Any:
        ctx = self._ctx
        return None if ctx is None else read(ctx)

    return _field(field, get)


class RecoveryEvent(_Event):
    """A ``recovery`` :class:`~faultlens.events.Event` that builds its parts on first read.

    It is an ``Event`` in every observable way (same fields, equality, ``to_dict``,
    ``dataclasses.replace``, pickles and copies as a plain ``Event``, its fields
    refuse assignment); only the work moves: a policy stores a few references,
    and ``payload``, ``id``, ``timestamp`` and the correlation fields are computed
    when a subscriber (usually the recorder's writer thread, off the hot path)
    reads them.  The id and the timestamp are fixed at their first read, under a
    lock, so every reader sees the same.

    Built as ``event = RecoveryEvent()`` followed by plain writes of its private
    slots (see :func:`record`): construction and those writes run at C speed,
    where the frozen dataclass machinery (or slot descriptors called from
    Python) costs more than the whole successful policy call.
    """

    __slots__ = ("_clock", "_ctx", "_end", "_id", "_payload", "_start", "_t", "_wall")
    _t: tuple[Any, ...]
    _ctx: RequestContext | None
    _start: float | None
    _end: float
    _clock: Clock
    _wall: float
    _payload: Mapping[str, Any]
    _id: str

    # C-level construction and private writes: the public fields stay read-only
    # through their properties (FrozenInstanceError, as on a frozen Event).
    __init__ = object.__init__
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__

    @property  # type: ignore[misc]
    def __class__(self) -> type[_events.Event]:  # type: ignore[override]
        # dataclasses.replace() builds `obj.__class__(**fields)`: a plain Event.
        # type(event) and isinstance(event, RecoveryEvent) still see the subclass.
        return _Event

    kind = _field("kind", lambda self: _RECOVERY)
    name = _field("name", lambda self: self._t[_NAME])
    correlation_id = _context_field("correlation_id")
    trace_id = _context_field("trace_id")
    span_id = _context_field("span_id")
    tenant_id = _context_field("tenant_id")
    user_id = _context_field("user_id")

    def _get_payload(self) -> Mapping[str, Any]:
        try:
            return self._payload
        except AttributeError:
            pass
        t = self._t
        start = self._start
        payload: dict[str, Any] = {
            "policy": t[_POLICY],
            "name": t[_NAME],
            "attempt": t[_ATTEMPT],
            "outcome": t[_OUTCOME],
            "delay_s": t[_DELAY],
            "duration_ms": self._end if start is None else (self._end - start) * 1000.0,
            "error_type": t[_ERROR],
        }
        extra = t[_EXTRA]
        if extra:
            payload.update(extra)
        # Two threads racing here build equal dicts; either one may stay.
        self._payload = payload
        return payload

    payload = _field("payload", _get_payload)

    def _get_timestamp(self) -> float:
        try:
            return self._wall
        except AttributeError:
            pass
        # Recorded with the monotonic reading only (the success path): the wall
        # time is now minus the monotonic time elapsed since, on the same clock.
        # Fixed at its first read, like the id.
        with _id_lock:
            try:
                return self._wall
            except AttributeError:
                clock = self._clock
                value: float = clock.time() - (clock.monotonic() - self._end)
                self._wall = value
                return value

    timestamp = _field("timestamp", _get_timestamp)

    def _get_id(self) -> str:
        try:
            return self._id
        except AttributeError:
            pass
        with _id_lock:
            try:
                return self._id
            except AttributeError:
                value = new_id()
                self._id = value
                return value

    id = _field("id", _get_id)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in _EVENT_FIELDS)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Event):
            return self._values() == tuple(getattr(other, f) for f in _EVENT_FIELDS)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple[Any, ...]:
        # Unpickles (and copies) as a plain Event with the same values.
        return (_Event, self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in _EVENT_FIELDS)
        return f"Event({fields})"


# Bound once: the bus is a process-wide singleton (subscribers change, the object not).
_has_subscribers = bus.has_subscribers
_publish = bus.publish

has_subscribers: Final = bus.has_subscribers
publish: Final = bus.publish
current_context: Final = _current.get

# The success paths skip record() (whose frame alone is a tenth of a healthy recorded
# call): they check the bus inline and, only when someone listens, hand the constant part
# of the event to deliver_success():
#
#     if bus.active:
#         subscribers = bus._routes.get(RECOVERY, bus._wildcard)   # what publish() reads
#         if subscribers:
#             deliver_success(subscribers, template, started, clock)
#
# That is EventBus.publish() unrolled (the bus's copy-on-write routing tables are
# read without a lock, as publish() reads them); `test_recovery_events.py` pins
# that both deliver alike.


def deliver_success(
    subscribers: Any, template: tuple[Any, ...], started: float, clock: Any
) -> None:
    """Build a first-attempt success event and hand it to ``subscribers``, as publish() does.

    ``template`` is :func:`success_template`'s tuple, ``started`` the attempt's
    monotonic start on ``clock``; duration and timestamp are derived on read.
    """
    event = RecoveryEvent()
    event._t = template
    event._ctx = current_context()
    event._start = started
    event._end = clock.monotonic()
    event._clock = clock
    for subscriber in subscribers:
        try:
            subscriber(event)
        except Exception as error:
            subscriber_failed(subscriber, error)


def subscriber_failed(callback: Any, exc: Exception) -> None:
    """Count and report a subscriber that raised, exactly as ``EventBus.publish`` does."""
    counters.incr("events.subscriber_errors")
    report_once(
        f"subscriber:{id(callback)}",
        f"event subscriber {getattr(callback, '__qualname__', callback)!r} raised "
        f"{type(exc).__name__}; it stays subscribed, failures are counted in "
        "faultlens.stats()['events.subscriber_errors']",
    )


def success_template(name: str, policy: PolicyKind, outcome: Outcome) -> tuple[Any, ...]:
    """The constant part of a policy's first-attempt success event (see above)."""
    return (name, policy, 1, outcome, 0.0, None, None)


_type_names: dict[type[BaseException], str] = {}


def error_type(exc: BaseException | None) -> str | None:
    """Return ``module.qualname`` of ``exc``'s class (``None`` for ``None``)."""
    if exc is None:
        return None
    cls = type(exc)
    name = _type_names.get(cls)
    if name is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if len(_type_names) < 4096:  # bounded: classes can be created dynamically
            _type_names[cls] = name
    return name


def record(  # noqa: PLR0917 (positional on purpose, hot path)
    policy: PolicyKind,
    name: str,
    attempt: int,
    outcome: Outcome,
    delay_s: float = 0.0,
    duration_ms: float = 0.0,
    error: BaseException | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Publish one recovery event; never raises.

    Call it as ``if bus.active: record(...)`` so that nothing is computed when
    nobody listens.  ``extra`` is merged into the payload (policy-specific keys,
    JSON-safe values).  The exception itself is not kept, only its type name.
    """
    if not _has_subscribers(_RECOVERY):
        return
    try:
        event = RecoveryEvent()
        event._t = (
            name,
            policy,
            attempt,
            outcome,
            delay_s,
            None if error is None else error_type(error),
            extra,
        )
        event._ctx = _current.get()
        event._start = None
        event._end = duration_ms
        event._wall = _clock._clock.time()
        _publish(event)
    except Exception:  # recording never breaks the call it describes
        counters.incr("recovery.record_errors")
