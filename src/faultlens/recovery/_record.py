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
from typing import Any, Final, Literal

from faultlens import _clock
from faultlens import events as _events
from faultlens._ids import new_id
from faultlens.context import _current

__all__ = [
    "OUTCOMES",
    "POLICY_KINDS",
    "Outcome",
    "PolicyKind",
    "RecoveryEvent",
    "allocate",
    "bus",
    "current_context",
    "error_type",
    "fill",
    "has_subscribers",
    "publish",
    "record",
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
_EVENT_FIELDS = (
    "kind",
    "name",
    "payload",
    "correlation_id",
    "trace_id",
    "span_id",
    "tenant_id",
    "user_id",
    "timestamp",
    "id",
)
_id_lock = threading.Lock()

# What a RecoveryEvent stores, in one tuple (one slot write on the hot path).
(
    _NAME,
    _POLICY,
    _ATTEMPT,
    _OUTCOME,
    _DELAY,
    _DURATION,
    _ERROR,
    _EXTRA,
    _CTX,
    _TIME,
    _MONO,
    _CLOCK,
) = range(12)


class RecoveryEvent(_Event):
    """A ``recovery`` :class:`~faultlens.events.Event` that builds its parts on first read.

    It is an ``Event`` in every observable way (same fields, equality, ``to_dict``,
    pickles as a plain ``Event``); only the work moves: the policy stores one
    tuple, and ``payload``, ``id`` and the correlation fields are computed when a
    subscriber (usually the recorder's writer thread, off the hot path) reads them.
    The id is fixed at its first read, under a lock, so every reader sees the same.
    """

    __slots__ = ("_id", "_payload", "_state", "_timestamp")
    _state: tuple[Any, ...]
    _payload: Mapping[str, Any]
    _id: str
    _timestamp: float
    kind = _RECOVERY

    @property
    def name(self) -> str:
        name: str = self._state[_NAME]
        return name

    @property
    def payload(self) -> Mapping[str, Any]:
        try:
            return self._payload
        except AttributeError:
            pass
        state = self._state
        payload: dict[str, Any] = {
            "policy": state[_POLICY],
            "name": state[_NAME],
            "attempt": state[_ATTEMPT],
            "outcome": state[_OUTCOME],
            "delay_s": state[_DELAY],
            "duration_ms": state[_DURATION],
            "error_type": state[_ERROR],
        }
        extra = state[_EXTRA]
        if extra:
            payload.update(extra)
        # Two threads racing here build equal dicts; either one may stay.
        _set_payload(self, payload)
        return payload

    @property
    def correlation_id(self) -> str | None:
        ctx = self._state[_CTX]
        return None if ctx is None else ctx.correlation_id

    @property
    def trace_id(self) -> str | None:
        ctx = self._state[_CTX]
        return None if ctx is None else ctx.trace_id

    @property
    def span_id(self) -> str | None:
        ctx = self._state[_CTX]
        return None if ctx is None else ctx.span_id

    @property
    def tenant_id(self) -> str | None:
        ctx = self._state[_CTX]
        return None if ctx is None else ctx.tenant_id

    @property
    def user_id(self) -> str | None:
        ctx = self._state[_CTX]
        return None if ctx is None else ctx.user_id

    @property
    def timestamp(self) -> float:
        state = self._state
        timestamp: float | None = state[_TIME]
        if timestamp is not None:
            return timestamp
        # Recorded with the monotonic reading only (the retry success path): the
        # wall time is now minus the monotonic time elapsed since, on the same clock.
        # Fixed at its first read, like the id.
        try:
            return self._timestamp
        except AttributeError:
            pass
        with _id_lock:
            try:
                return self._timestamp
            except AttributeError:
                clock = state[_CLOCK]
                value: float = clock.time() - (clock.monotonic() - state[_MONO])
                _set_timestamp(self, value)
                return value

    @property
    def id(self) -> str:
        try:
            return self._id
        except AttributeError:
            pass
        with _id_lock:
            try:
                return self._id
            except AttributeError:
                value = new_id()
                _set_id(self, value)
                return value

    def __new__(cls, *args: Any, **kwargs: Any) -> _events.Event:  # type: ignore[misc]
        # Built by hand only in record(); anything else constructing one
        # (dataclasses.replace, a subscriber's copy) gets a plain Event.
        return _Event(*args, **kwargs)

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


_new = object.__new__
# Bound once: the bus is a process-wide singleton (subscribers change, the object not).
_has_subscribers = bus.has_subscribers
_publish = bus.publish

has_subscribers: Final = bus.has_subscribers
publish: Final = bus.publish
# The frozen dataclass __setattr__ refuses writes: the slots are written directly.
_set_state = RecoveryEvent.__dict__["_state"].__set__


# The success path of retry builds its event inline, without the call to record()
# (a tenth of a healthy recorded call): it allocates with `allocate(RecoveryEvent)`,
# fills the state with `fill(event, state)` and publishes with `publish(event)`.  The
# state tuple is, in order: name, policy, attempt, outcome, delay_s, duration_ms,
# error_type, extra, context (``current_context()``), then either the wall-clock
# timestamp, None, None, or None, the clock's monotonic reading at the event and the
# clock (the wall time is then derived on first read: one clock call less).
allocate: Final = object.__new__
fill: Final = _set_state
current_context: Final = _current.get
_set_payload = RecoveryEvent.__dict__["_payload"].__set__
_set_id = RecoveryEvent.__dict__["_id"].__set__
_set_timestamp = RecoveryEvent.__dict__["_timestamp"].__set__

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
        event = _new(RecoveryEvent)
        _set_state(
            event,
            (
                name,
                policy,
                attempt,
                outcome,
                delay_s,
                duration_ms,
                None if error is None else error_type(error),
                extra,
                _current.get(),
                _clock._clock.time(),
                None,
                None,
            ),
        )
        _publish(event)
    except Exception:  # recording never breaks the call it describes
        from faultlens._metrics import counters

        counters.incr("recovery.record_errors")
