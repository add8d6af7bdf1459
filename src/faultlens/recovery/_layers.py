"""Layer policies and the error context of each correlation: when to recover, when to escalate.

A :class:`LayerPolicy` says how one architectural layer (``api``, ``service``,
``core``, ``infrastructure``…) treats its errors: how many per minute a
correlation may produce before automatic recovery stops (recovering from an
error storm only feeds it), after how many errors — or how much weighted
severity — it escalates, whether recovery is automatic at all, and extra
strategies every error of the layer gets.  :func:`policy_for` looks a layer's
policy up; :func:`set_layer_policy` overrides one process-wide.

An :class:`ErrorContext` accumulates the errors of one correlation per layer:
counts, a severity score weighted by the layer's ``severity_weights``, the
errors of the last minute (a ring buffer of time buckets read through
:func:`faultlens._clock.get_clock`, O(1) per error, bounded memory) and the
correlation's :class:`EscalationLevel`.  :class:`ErrorContexts` keeps the most
recently used correlations (an LRU of bounded size); every method of both is
thread-safe.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from faultlens._clock import get_clock
from faultlens._metrics import counters
from faultlens.context import correlation_id as _current_correlation_id
from faultlens.errors import ConfigurationError

if TYPE_CHECKING:
    from faultlens.recovery._strategies import RecoveryStrategy

__all__ = [
    "DEFAULT_LAYER_POLICIES",
    "DEFAULT_LAYER_POLICY",
    "ErrorContext",
    "ErrorContexts",
    "EscalationLevel",
    "LayerErrorState",
    "LayerPolicies",
    "LayerPolicy",
    "error_context",
    "error_contexts",
    "layer_policies",
    "policy_for",
    "set_layer_policy",
]

SEVERITIES: Final = ("low", "medium", "high", "critical")
"""The severity names ``severity_weights`` is keyed by, least serious first."""

_UNKNOWN_SEVERITY_WEIGHT: Final = 1.0
_WINDOW_S: Final = 60.0
_BUCKETS: Final = 12  # 5-second buckets: the minute is counted to within 5 s
_MAX_LAYERS_PER_CONTEXT: Final = 32
_OVERFLOW_LAYER: Final = "other"


def _weights(low: float, medium: float, high: float, critical: float) -> Mapping[str, float]:
    return MappingProxyType(dict(zip(SEVERITIES, (low, medium, high, critical), strict=True)))


def severity_name(severity: object) -> str:
    """Return the lower-case name of ``severity`` (a ``Severity`` member or its string)."""
    value = getattr(severity, "value", severity)
    return str(value).lower()


@dataclass(frozen=True, slots=True)
class LayerPolicy:
    """How one layer treats its errors (immutable; derive variants with ``dataclasses.replace``).

    ``max_errors_per_minute``: errors one correlation may produce in this layer
    within a minute; above it automatic recovery is not attempted.
    ``escalation_threshold``: the error count at which the layer escalates; a
    weighted severity score of twice the threshold escalates too.
    ``strategies``: tried (after the call site's own) for every error of the layer.
    ``automatic_recovery``: ``False`` means errors of this layer are never
    recovered automatically (they need a person).  ``severity_weights`` maps
    ``low``/``medium``/``high``/``critical`` to the score one such error adds
    (a severity it does not name adds 1.0).
    """

    max_errors_per_minute: int = 10
    escalation_threshold: int = 5
    strategies: tuple[RecoveryStrategy, ...] = ()
    automatic_recovery: bool = True
    severity_weights: Mapping[str, float] = field(
        default_factory=lambda: _weights(1.0, 2.0, 4.0, 8.0)
    )

    def __post_init__(self) -> None:
        for name in ("max_errors_per_minute", "escalation_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"LayerPolicy.{name} must be a positive integer, not {value!r}"
                )
        weights: dict[str, float] = {}
        for key, weight in dict(self.severity_weights).items():
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise ConfigurationError(
                    f"LayerPolicy.severity_weights[{key!r}] must be a number >= 0, not {weight!r}"
                )
            weights[severity_name(key)] = float(weight)
        object.__setattr__(self, "severity_weights", MappingProxyType(weights))
        object.__setattr__(self, "strategies", tuple(self.strategies))

    @property
    def score_threshold(self) -> float:
        """The weighted severity score at which the layer escalates (twice the count threshold)."""
        return 2.0 * self.escalation_threshold

    def weight(self, severity: object) -> float:
        """Return the score one error of ``severity`` adds in this layer."""
        return self.severity_weights.get(severity_name(severity), _UNKNOWN_SEVERITY_WEIGHT)


DEFAULT_LAYER_POLICY: Final = LayerPolicy()
"""The policy of a layer nobody configured (and of errors whose layer is unknown)."""

DEFAULT_LAYER_POLICIES: Final[Mapping[str, LayerPolicy]] = MappingProxyType(
    {
        "api": LayerPolicy(
            max_errors_per_minute=20,
            escalation_threshold=10,
            severity_weights=_weights(1.0, 2.0, 4.0, 8.0),
        ),
        "service": LayerPolicy(
            max_errors_per_minute=15,
            escalation_threshold=8,
            severity_weights=_weights(1.5, 3.0, 6.0, 12.0),
        ),
        "core": LayerPolicy(
            max_errors_per_minute=10,
            escalation_threshold=5,
            # Errors in domain logic are bugs or corrupt data: a person looks at them.
            automatic_recovery=False,
            severity_weights=_weights(2.0, 4.0, 8.0, 16.0),
        ),
        "infrastructure": LayerPolicy(
            max_errors_per_minute=5,
            escalation_threshold=3,
            severity_weights=_weights(3.0, 6.0, 12.0, 24.0),
        ),
    }
)
"""The built-in policies of the ``api``, ``service``, ``core`` and ``infrastructure`` layers."""


class LayerPolicies:
    """A registry of layer policies: the built-in defaults plus overrides.

    Reads take no lock (the table is replaced, never mutated), so
    :meth:`policy_for` costs one dict lookup.
    """

    __slots__ = ("_default", "_initial", "_lock", "_table")

    def __init__(
        self,
        policies: Mapping[str, LayerPolicy] | None = None,
        *,
        default: LayerPolicy = DEFAULT_LAYER_POLICY,
    ) -> None:
        initial = dict(DEFAULT_LAYER_POLICIES if policies is None else policies)
        for layer, policy in initial.items():
            _check_policy(layer, policy)
        _check_policy("default", default)
        self._initial: Mapping[str, LayerPolicy] = MappingProxyType(initial)
        self._table: Mapping[str, LayerPolicy] = self._initial
        self._default = default
        self._lock = threading.Lock()

    def policy_for(self, layer: str | None) -> LayerPolicy:
        """Return the policy of ``layer`` (the default policy for ``None`` or an unknown layer)."""
        if layer is None:
            return self._default
        return self._table.get(layer, self._default)

    def set(self, layer: str, policy: LayerPolicy | None) -> LayerPolicy | None:
        """Override ``layer``'s policy (``None``: back to the initial one); return the old one."""
        if not isinstance(layer, str) or not layer:
            raise ConfigurationError(f"a layer name must be a non-empty string, not {layer!r}")
        if policy is not None:
            _check_policy(layer, policy)
        with self._lock:
            table = dict(self._table)
            previous = table.get(layer)
            if policy is None:
                initial = self._initial.get(layer)
                if initial is None:
                    table.pop(layer, None)
                else:
                    table[layer] = initial
            else:
                table[layer] = policy
            self._table = MappingProxyType(table)
        return previous

    def reset(self) -> None:
        """Forget every override."""
        with self._lock:
            self._table = self._initial

    def as_dict(self) -> dict[str, LayerPolicy]:
        """Return the configured layers and their policies."""
        return dict(self._table)


def _check_policy(layer: str, policy: object) -> None:
    if not isinstance(policy, LayerPolicy):
        raise ConfigurationError(
            f"the policy of layer {layer!r} must be a faultlens.recovery.LayerPolicy, "
            f"not {type(policy).__name__}"
        )


_policies = LayerPolicies()


def layer_policies() -> LayerPolicies:
    """Return the process-wide registry of layer policies."""
    return _policies


def policy_for(layer: str | None) -> LayerPolicy:
    """Return the process-wide policy of ``layer``; see :meth:`LayerPolicies.policy_for`."""
    return _policies.policy_for(layer)


def set_layer_policy(layer: str, policy: LayerPolicy | None) -> LayerPolicy | None:
    """Override ``layer``'s policy process-wide (``None`` restores the built-in one)."""
    return _policies.set(layer, policy)


# --- errors per minute ------------------------------------------------------------------


class _RateWindow:
    """Events of the last minute, counted in a ring of time buckets.

    Adding and reading cost O(1) (at most ``_BUCKETS`` buckets are cleared when
    time jumps); memory is fixed.  The count covers the current bucket and the
    eleven before it, so an error leaves the window 55 to 60 seconds after it
    happened.
    """

    __slots__ = ("_counts", "_tick", "_total")

    _WIDTH: Final = _WINDOW_S / _BUCKETS

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self._tick: int | None = None
        self._total = 0

    def _advance(self, now: float) -> None:
        tick = int(now // self._WIDTH)
        last = self._tick
        if last is None or tick - last >= _BUCKETS:
            self._counts = [0] * _BUCKETS
            self._total = 0
        elif tick > last:
            counts = self._counts
            for t in range(last + 1, tick + 1):
                slot = t % _BUCKETS
                self._total -= counts[slot]
                counts[slot] = 0
        else:  # the same bucket, or a clock that went back: keep counting where we are
            return
        self._tick = tick

    def add(self, now: float) -> int:
        """Count one event at ``now`` (monotonic seconds); return the events in the window."""
        self._advance(now)
        tick = self._tick
        assert tick is not None
        self._counts[tick % _BUCKETS] += 1
        self._total += 1
        return self._total

    def total(self, now: float) -> int:
        """Return the events in the window ending at ``now``."""
        self._advance(now)
        return self._total


# --- the error context of a correlation ---------------------------------------------------


class EscalationLevel(enum.IntEnum):
    """How far a correlation's errors have escalated; only ever rises.

    ``none``: below half of every layer's thresholds.  ``elevated``: a layer is
    at half its threshold.  ``high``: a layer reached its threshold (the
    correlation should escalate).  ``critical``: a layer reached twice its
    threshold, or reached it with a critical error.
    """

    NONE = 0
    ELEVATED = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """The lower-case name used in events and snapshots (``"high"``)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class LayerErrorState:
    """A layer of one correlation right after an error was recorded (what the engine decides on).

    ``escalated`` is True for the one error that raised the correlation to
    ``high`` or ``critical``; ``over_budget`` when the layer has exceeded its
    ``max_errors_per_minute``.
    """

    correlation_id: str | None
    layer: str
    count: int
    errors_last_minute: int
    score: float
    level: EscalationLevel
    previous_level: EscalationLevel
    over_budget: bool

    @property
    def escalated(self) -> bool:
        """True when this error raised the correlation's level to ``high`` or above."""
        return self.level > self.previous_level and self.level >= EscalationLevel.HIGH


class _LayerErrors:
    __slots__ = ("count", "critical", "last_error_at", "policy", "score", "window")

    def __init__(self, policy: LayerPolicy) -> None:
        self.count = 0
        self.score = 0.0
        self.critical = False
        self.last_error_at: float | None = None
        self.policy = policy
        self.window = _RateWindow()

    def ratio(self) -> float:
        policy = self.policy
        return max(self.count / policy.escalation_threshold, self.score / policy.score_threshold)

    def level(self) -> EscalationLevel:
        ratio = self.ratio()
        if ratio >= 2.0 or (ratio >= 1.0 and self.critical):
            return EscalationLevel.CRITICAL
        if ratio >= 1.0:
            return EscalationLevel.HIGH
        if ratio >= 0.5:
            return EscalationLevel.ELEVATED
        return EscalationLevel.NONE


class ErrorContext:
    """The errors of one correlation, per layer, and how far they have escalated.

    Create them through :class:`ErrorContexts` (or :func:`error_context`);
    :meth:`record` is what the recovery engine calls for every error it sees.
    """

    __slots__ = ("_layers", "_level", "_lock", "_recoveries", "correlation_id")

    def __init__(self, correlation_id: str | None = None) -> None:
        self.correlation_id = correlation_id
        self._lock = threading.Lock()
        self._layers: dict[str, _LayerErrors] = {}
        self._level = EscalationLevel.NONE
        self._recoveries: dict[str, int] = {}

    def record(
        self, layer: str | None, severity: object = "medium", policy: LayerPolicy | None = None
    ) -> LayerErrorState:
        """Count one error of ``severity`` in ``layer`` under ``policy``; return the layer's state.

        ``policy`` defaults to the process-wide policy of the layer.  The
        policy's weights and thresholds in force at the latest error apply.
        """
        name = layer or "unknown"
        if policy is None:
            policy = policy_for(layer)
        now = get_clock().monotonic()
        with self._lock:
            errors = self._layers.get(name)
            if errors is None:
                if len(self._layers) >= _MAX_LAYERS_PER_CONTEXT:
                    # Layer names come from applications: bound what one correlation keeps.
                    counters.incr("recovery.error_context_layers_folded")
                    name = _OVERFLOW_LAYER
                    errors = self._layers.get(name)
                if errors is None:
                    errors = self._layers[name] = _LayerErrors(policy)
            errors.policy = policy
            errors.count += 1
            errors.score += policy.weight(severity)
            errors.last_error_at = get_clock().time()
            if severity_name(severity) == "critical":
                errors.critical = True
            in_window = errors.window.add(now)
            previous = self._level
            self._level = max(previous, errors.level())
            return LayerErrorState(
                correlation_id=self.correlation_id,
                layer=name,
                count=errors.count,
                errors_last_minute=in_window,
                score=errors.score,
                level=self._level,
                previous_level=previous,
                over_budget=in_window > policy.max_errors_per_minute,
            )

    def record_recovery(self, outcome: str) -> None:
        """Count one recovery attempt of this correlation by its outcome (``recovered``…)."""
        with self._lock:
            if outcome in self._recoveries or len(self._recoveries) < _MAX_LAYERS_PER_CONTEXT:
                self._recoveries[outcome] = self._recoveries.get(outcome, 0) + 1

    @property
    def level(self) -> EscalationLevel:
        """The correlation's escalation level."""
        return self._level

    def should_escalate(self, layer: str | None = None) -> bool:
        """True when ``layer`` (or, without one, any layer) reached its escalation threshold."""
        if layer is None:
            return self._level >= EscalationLevel.HIGH
        with self._lock:
            errors = self._layers.get(layer)
            return errors is not None and errors.ratio() >= 1.0

    def count(self, layer: str | None = None) -> int:
        """The errors recorded in ``layer`` (or in all layers)."""
        with self._lock:
            if layer is None:
                return sum(e.count for e in self._layers.values())
            errors = self._layers.get(layer)
            return 0 if errors is None else errors.count

    def score(self, layer: str | None = None) -> float:
        """The weighted severity score of ``layer`` (or the sum over all layers)."""
        with self._lock:
            if layer is None:
                return sum(e.score for e in self._layers.values())
            errors = self._layers.get(layer)
            return 0.0 if errors is None else errors.score

    def errors_last_minute(self, layer: str) -> int:
        """The errors recorded in ``layer`` within the last minute (to within 5 seconds)."""
        now = get_clock().monotonic()
        with self._lock:
            errors = self._layers.get(layer)
            return 0 if errors is None else errors.window.total(now)

    def over_budget(self, layer: str) -> bool:
        """True when ``layer`` has exceeded its ``max_errors_per_minute`` in this correlation."""
        now = get_clock().monotonic()
        with self._lock:
            errors = self._layers.get(layer)
            if errors is None:
                return False
            return errors.window.total(now) > errors.policy.max_errors_per_minute

    def layers(self) -> tuple[str, ...]:
        """The layers that had errors, in the order of their first error."""
        with self._lock:
            return tuple(self._layers)

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-ready summary: level, and per layer count, score and recent errors."""
        now = get_clock().monotonic()
        with self._lock:
            return {
                "correlation_id": self.correlation_id,
                "level": self._level.label,
                "layers": {
                    name: {
                        "count": e.count,
                        "score": e.score,
                        "errors_last_minute": e.window.total(now),
                        "last_error_at": e.last_error_at,
                        "should_escalate": e.ratio() >= 1.0,
                    }
                    for name, e in self._layers.items()
                },
                "recoveries": dict(self._recoveries),
            }

    def __repr__(self) -> str:
        return f"<ErrorContext {self.correlation_id!r} level={self._level.label}>"


class ErrorContexts:
    """The error contexts of the most recently active correlations (an LRU, thread-safe).

    Keeping ``max_correlations`` bounds memory: the least recently used
    correlation is forgotten first (counted in ``recovery.error_contexts_evicted``).
    An error outside any correlation gets a fresh context of its own: there is
    no unit of work to accumulate over, and one shared context would let
    unrelated calls exhaust each other's budget.
    """

    __slots__ = ("_contexts", "_lock", "max_correlations")

    def __init__(self, *, max_correlations: int = 1024) -> None:
        if isinstance(max_correlations, bool) or not isinstance(max_correlations, int):
            raise ConfigurationError(
                f"max_correlations must be a positive integer, not {max_correlations!r}"
            )
        if max_correlations < 1:
            raise ConfigurationError(
                f"max_correlations must be a positive integer, not {max_correlations!r}"
            )
        self.max_correlations = max_correlations
        self._contexts: OrderedDict[str, ErrorContext] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, correlation_id: str | None) -> ErrorContext:
        """Return the context of ``correlation_id``, creating it (and marking it recently used).

        Without a correlation id there is nothing to accumulate over: a fresh
        context is returned and not kept.
        """
        if correlation_id is None:
            return ErrorContext(None)
        with self._lock:
            ctx = self._contexts.get(correlation_id)
            if ctx is not None:
                self._contexts.move_to_end(correlation_id)
                return ctx
            ctx = self._contexts[correlation_id] = ErrorContext(correlation_id)
            if len(self._contexts) > self.max_correlations:
                self._contexts.popitem(last=False)
                counters.incr("recovery.error_contexts_evicted")
            return ctx

    def peek(self, correlation_id: str) -> ErrorContext | None:
        """Return the context of ``correlation_id`` if there is one, without touching the LRU."""
        with self._lock:
            return self._contexts.get(correlation_id)

    def discard(self, correlation_id: str) -> None:
        """Forget the context of ``correlation_id`` (e.g. when its request ended)."""
        with self._lock:
            self._contexts.pop(correlation_id, None)

    def clear(self) -> None:
        """Forget every context."""
        with self._lock:
            self._contexts.clear()

    def __len__(self) -> int:
        return len(self._contexts)

    def __iter__(self) -> Iterator[ErrorContext]:
        with self._lock:
            return iter(list(self._contexts.values()))


_contexts = ErrorContexts()


def error_contexts() -> ErrorContexts:
    """Return the process-wide error contexts the default recovery engine records into."""
    return _contexts


def error_context(correlation_id: str | None = None) -> ErrorContext:
    """Return the process-wide error context of ``correlation_id`` (default: the current one)."""
    if correlation_id is None:
        correlation_id = _current_correlation_id()
    return _contexts.get(correlation_id)
