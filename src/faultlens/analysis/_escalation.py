"""Escalation per correlation and per service, from the layer policies.

The thresholds and severity weights are the layer policies of
:mod:`faultlens.recovery` (``DEFAULT_LAYER_POLICIES``: the seed's values, e.g.
``infrastructure`` escalates at 3 errors or a weighted score of 6, its errors
weighing 3/6/12/24 by severity).  Two scopes:

* a **correlation** (one request, job or page run) escalates exactly as
  :class:`faultlens.recovery.ErrorContext` says: a layer reached its
  ``escalation_threshold`` errors, or twice that in weighted severity.  Its
  level only rises.
* a **service** escalates on its errors of the last minute, per layer: the
  count against the layer's ``max_errors_per_minute``, and the weighted score
  against twice that.  Ratio ≥ 0.5: ``elevated``; ≥ 1: ``high``; ≥ 2 (or ≥ 1
  with a critical error): ``critical``.  It falls again as the minute clears.

Either scope is raised to at least ``high`` by a *critical pattern*: an ongoing
``cascade`` or ``degradation`` whose confidence is above 0.8 (the seed's rule;
a cascade counts for the correlations it names, every pattern for the services
of the process).  ``should_escalate`` is ``level >= high``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, Literal

from faultlens._metrics import counters
from faultlens.analysis._detectors import ErrorSample
from faultlens.analysis._patterns import Pattern, PatternType
from faultlens.errors import ConfigurationError
from faultlens.recovery._layers import (
    ErrorContext,
    ErrorContexts,
    EscalationLevel,
    LayerPolicies,
    LayerPolicy,
    layer_policies,
    severity_name,
)

__all__ = [
    "CRITICAL_PATTERN_CONFIDENCE",
    "CRITICAL_PATTERN_TYPES",
    "Escalation",
    "EscalationTracker",
    "should_escalate",
]

CRITICAL_PATTERN_TYPES: Final = frozenset({PatternType.CASCADE, PatternType.DEGRADATION})
"""Pattern types that escalate on their own when confident enough (the seed's rule)."""

CRITICAL_PATTERN_CONFIDENCE: Final = 0.8
"""A critical pattern escalates when its confidence is above this."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_UNKNOWN_SERVICE: Final = "default"
_BUCKETS: Final = 12


def _is_critical(pattern: Pattern, confidence: float) -> bool:
    return (
        pattern.ongoing
        and pattern.type in CRITICAL_PATTERN_TYPES
        and pattern.confidence > confidence
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation:
    """How far one correlation or service has escalated, and why.

    ``layers`` maps each layer with errors to its figures (``count`` or
    ``errors_last_minute``, ``score``, ``ratio``: the larger of count and score
    against their thresholds).  ``patterns`` names the critical patterns in
    force; ``reasons`` says in words what raised the level.
    """

    scope: Literal["correlation", "service"]
    key: str
    level: EscalationLevel
    layers: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    patterns: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def should_escalate(self) -> bool:
        """True at level ``high`` or above."""
        return self.level >= EscalationLevel.HIGH

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "scope": self.scope,
            "key": self.key,
            "level": self.level.label,
            "should_escalate": self.should_escalate,
            "layers": {name: dict(figures) for name, figures in self.layers.items()},
            "patterns": list(self.patterns),
            "reasons": list(self.reasons),
        }


def should_escalate(
    target: ErrorContext | Escalation,
    *,
    layer: str | None = None,
    patterns: Iterable[Pattern] = (),
    confidence: float = CRITICAL_PATTERN_CONFIDENCE,
) -> bool:
    """The seed's escalation rule, for a correlation's error context or an :class:`Escalation`.

    True when ``layer`` (or, without one, any layer) reached its count or
    weighted-severity threshold, or when one of ``patterns`` is an ongoing
    ``cascade`` or ``degradation`` with confidence above ``confidence``.
    """
    if any(_is_critical(p, confidence) for p in patterns):
        return True
    if isinstance(target, ErrorContext):
        return target.should_escalate(layer)
    if layer is None:
        return target.should_escalate
    figures = target.layers.get(layer)
    return figures is not None and float(figures.get("ratio", 0.0)) >= 1.0


class _MinuteWindow:
    """Errors and weighted score of the last minute, in a ring of 5-second buckets."""

    __slots__ = ("counts", "criticals", "scores", "tick", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.counts = [0] * _BUCKETS
        self.scores = [0.0] * _BUCKETS
        self.criticals = [0] * _BUCKETS
        self.tick: int | None = None

    def _advance(self, tick: int) -> None:
        last = self.tick
        if last is not None and tick <= last:
            return
        if last is None or tick - last >= _BUCKETS:
            for i in range(_BUCKETS):
                self.counts[i] = 0
                self.scores[i] = 0.0
                self.criticals[i] = 0
        else:
            for t in range(last + 1, tick + 1):
                slot = t % _BUCKETS
                self.counts[slot] = 0
                self.scores[slot] = 0.0
                self.criticals[slot] = 0
        self.tick = tick

    def add(self, ts: float, count: int, score: float, critical: bool) -> None:
        tick = int(ts // self.width)
        self._advance(tick)
        assert self.tick is not None
        if tick <= self.tick - _BUCKETS:
            return  # older than the window
        slot = tick % _BUCKETS
        self.counts[slot] += count
        self.scores[slot] += score
        if critical:
            self.criticals[slot] += count

    def totals(self, now: float) -> tuple[int, float, bool]:
        self._advance(int(now // self.width))
        return sum(self.counts), sum(self.scores), any(self.criticals)


class _Service:
    __slots__ = ("layers", "policies")

    def __init__(self) -> None:
        self.layers: dict[str, _MinuteWindow] = {}
        self.policies: dict[str, LayerPolicy] = {}


def _level(ratio: float, critical: bool) -> EscalationLevel:
    if ratio >= 2.0 or (ratio >= 1.0 and critical):
        return EscalationLevel.CRITICAL
    if ratio >= 1.0:
        return EscalationLevel.HIGH
    if ratio >= 0.5:
        return EscalationLevel.ELEVATED
    return EscalationLevel.NONE


class EscalationTracker:
    """Escalation of correlations and services, fed with error samples and patterns.

    ``policies`` (default: the process-wide layer policies) give every layer's
    thresholds and severity weights.  At most ``max_correlations`` correlations
    (least recently used evicted first, ``recovery.error_contexts_evicted``) and
    ``max_services`` services (``analysis.escalation.services_evicted``) are
    kept.  The service window is ``window`` seconds (default a minute, to match
    ``max_errors_per_minute``), measured in the samples' timestamps.
    Thread-safe: the recorder's writer feeds it while others ask.
    """

    def __init__(
        self,
        *,
        policies: LayerPolicies | Mapping[str, LayerPolicy] | None = None,
        max_correlations: int = 10_000,
        max_services: int = 256,
        window: float | timedelta = 60.0,
        pattern_confidence: float = CRITICAL_PATTERN_CONFIDENCE,
    ) -> None:
        if policies is None:
            policies = layer_policies()
        elif not isinstance(policies, LayerPolicies):
            policies = LayerPolicies(policies)
        self.policies = policies
        seconds = window.total_seconds() if isinstance(window, timedelta) else window
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds > 0)
        ):
            raise ConfigurationError(f"window must be a positive number of seconds, not {window!r}")
        if isinstance(max_services, bool) or not isinstance(max_services, int) or max_services < 1:
            raise ConfigurationError(f"max_services must be an int >= 1, not {max_services!r}")
        self.window = float(seconds)
        self.max_services = max_services
        self.pattern_confidence = pattern_confidence
        self._contexts = ErrorContexts(max_correlations=max_correlations)
        self._services: OrderedDict[str, _Service] = OrderedDict()
        self._patterns: dict[str, Pattern] = {}
        self._lock = threading.Lock()
        self._now = -math.inf

    # -- feeding ------------------------------------------------------------------------

    def observe(self, sample: ErrorSample) -> None:
        """Count one error of a correlation and of its service."""
        policy = self.policies.policy_for(sample.layer)
        severity = sample.severity or "medium"
        if sample.correlation_id is not None:
            context = self._contexts.get(sample.correlation_id)
            for _ in range(min(sample.count, 1_000)):
                context.record(sample.layer, severity, policy)
        name = sample.service or _UNKNOWN_SERVICE
        layer = sample.layer or "unknown"
        with self._lock:
            self._now = max(self._now, sample.timestamp)
            service = self._services.get(name)
            if service is None:
                service = self._services[name] = _Service()
                if len(self._services) > self.max_services:
                    self._services.popitem(last=False)
                    counters.incr("analysis.escalation.services_evicted")
            else:
                self._services.move_to_end(name)
            window = service.layers.get(layer)
            if window is None:
                if len(service.layers) >= 32:  # layer names come from applications
                    counters.incr("analysis.escalation.layers_folded")
                    layer = "other"
                    window = service.layers.get(layer)
                if window is None:
                    window = service.layers[layer] = _MinuteWindow(self.window / _BUCKETS)
            service.policies[layer] = policy
            window.add(
                sample.timestamp,
                sample.count,
                policy.weight(severity) * sample.count,
                severity_name(severity) == "critical",
            )

    def observe_pattern(self, pattern: Pattern) -> None:
        """Take a pattern snapshot into account (an ended one is forgotten)."""
        with self._lock:
            if pattern.ongoing:
                self._patterns[pattern.id] = pattern
                if len(self._patterns) > 1_000:  # bounded: drop the oldest snapshot
                    self._patterns.pop(next(iter(self._patterns)))
            else:
                self._patterns.pop(pattern.id, None)

    # -- asking -------------------------------------------------------------------------

    def _critical(self, correlation_id: str | None = None) -> list[Pattern]:
        found = []
        for pattern in self._patterns.values():
            if not _is_critical(pattern, self.pattern_confidence):
                continue
            if correlation_id is not None:
                ids = pattern.details.get("correlation_ids") or ()
                if correlation_id not in ids:
                    continue
            found.append(pattern)
        return found

    def correlation(self, correlation_id: str) -> Escalation | None:
        """The escalation of one correlation, or None when it had no errors (or was evicted)."""
        context = self._contexts.peek(correlation_id)
        if context is None:
            return None
        snapshot = context.snapshot()
        level = context.level
        reasons: list[str] = []
        layers: dict[str, Mapping[str, Any]] = {}
        for name, figures in snapshot["layers"].items():
            policy = self.policies.policy_for(name)
            ratio = max(
                figures["count"] / policy.escalation_threshold,
                figures["score"] / policy.score_threshold,
            )
            layers[name] = MappingProxyType(
                {"count": figures["count"], "score": figures["score"], "ratio": round(ratio, 4)}
            )
            if ratio >= 1.0:
                reasons.append(
                    f"{name}: {figures['count']} errors (threshold "
                    f"{policy.escalation_threshold}), severity score {figures['score']:g} "
                    f"(threshold {policy.score_threshold:g})"
                )
        with self._lock:
            critical = self._critical(correlation_id)
        if critical and level < EscalationLevel.HIGH:
            level = EscalationLevel.HIGH
        reasons.extend(_pattern_reason(p, self.pattern_confidence) for p in critical)
        return Escalation(
            scope="correlation",
            key=correlation_id,
            level=level,
            layers=MappingProxyType(layers),
            patterns=tuple(p.id for p in critical),
            reasons=tuple(reasons),
        )

    def service(self, name: str | None = None, *, now: float | None = None) -> Escalation:
        """The escalation of service ``name`` (None: errors without a service) at ``now``.

        ``now`` defaults to the newest sample timestamp seen.
        """
        key = name or _UNKNOWN_SERVICE
        with self._lock:
            at = self._now if now is None else now
            service = self._services.get(key)
            level = EscalationLevel.NONE
            layers: dict[str, Mapping[str, Any]] = {}
            reasons: list[str] = []
            if service is not None:
                for layer, window in service.layers.items():
                    count, score, critical = window.totals(at)
                    if not count:
                        continue
                    policy = service.policies[layer]
                    budget = policy.max_errors_per_minute * self.window / 60.0
                    ratio = max(count / budget, score / (2.0 * budget))
                    layer_level = _level(ratio, critical)
                    level = max(level, layer_level)
                    layers[layer] = MappingProxyType(
                        {
                            "errors_last_minute": count,
                            "score": round(score, 4),
                            "ratio": round(ratio, 4),
                            "level": layer_level.label,
                        }
                    )
                    if ratio >= 1.0:
                        reasons.append(
                            f"{layer}: {count} errors in the last {self.window:g}s "
                            f"(budget {budget:g}), severity score {score:g} "
                            f"(threshold {2 * budget:g})"
                        )
            critical_patterns = self._critical()
        if critical_patterns and level < EscalationLevel.HIGH:
            level = EscalationLevel.HIGH
        reasons.extend(_pattern_reason(p, self.pattern_confidence) for p in critical_patterns)
        return Escalation(
            scope="service",
            key=key,
            level=level,
            layers=MappingProxyType(layers),
            patterns=tuple(p.id for p in critical_patterns),
            reasons=tuple(reasons),
        )

    def services(self) -> list[str]:
        """The services seen, least recently active first."""
        with self._lock:
            return list(self._services)

    def should_escalate(
        self,
        *,
        correlation_id: str | None = None,
        service: str | None = None,
        layer: str | None = None,
    ) -> bool:
        """True when the correlation (or else the service) should escalate, in ``layer`` or any."""
        if correlation_id is not None:
            found = self.correlation(correlation_id)
            return found is not None and should_escalate(found, layer=layer)
        return should_escalate(self.service(service), layer=layer)

    def escalated(self) -> list[Escalation]:
        """The services that should escalate now."""
        return [e for e in map(self.service, self.services()) if e.should_escalate]


def _pattern_reason(pattern: Pattern, threshold: float) -> str:
    return (
        f"ongoing {pattern.type.value} pattern {pattern.id} "
        f"(confidence {pattern.confidence:.2f} > {threshold:g})"
    )
