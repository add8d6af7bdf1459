"""The system health score: one number from 0 to 100, and the penalties that make it.

::

    score = 100 - errors - recovery - correlation - issues        (clamped to 0..100)

    errors      = 40 * min(1, weighted_error_rate / 0.10)
                  weighted_error_rate = sum(weight[severity] * errors) / max(operations, errors)
                  weight: low 0.25, medium 0.5, high 1, critical 2 (anything else 0.5)
    recovery    = 25 * (1 - recovery_success_rate)       0 when nothing needed recovering
    correlation = 15 * min(1, missing_share / 0.05)      missing_share: events and log lines
                                                         without a correlation id
    issues      = min(20, 4 * (new issues + regressed issues + ongoing patterns))

``operations`` counts finished operations (``operation`` events of phase
``end``); when they are not recorded, every counted event is an error and the
error penalty saturates, so record operations for a meaningful score.  The
status is ``healthy`` from 90, ``degraded`` from 70, ``unhealthy`` from 40 and
``critical`` below.  ``docs/insights-and-alerts.md`` explains the choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["SEVERITY_WEIGHTS", "HealthScore", "HealthStatus", "health_score"]

HealthStatus = Literal["healthy", "degraded", "unhealthy", "critical"]

SEVERITY_WEIGHTS: Final[Mapping[str, float]] = {
    "low": 0.25,
    "medium": 0.5,
    "high": 1.0,
    "critical": 2.0,
}
"""How much one error of each severity weighs in the error rate (others: 0.5)."""

_OTHER_WEIGHT: Final = 0.5
_ERROR_POINTS: Final = 40.0
_ERROR_RATE_CEILING: Final = 0.10
_RECOVERY_POINTS: Final = 25.0
_CORRELATION_POINTS: Final = 15.0
_MISSING_CEILING: Final = 0.05
_ISSUE_POINTS: Final = 4.0
_ISSUE_CAP: Final = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthScore:
    """The health score and its parts (each penalty is in points out of 100)."""

    score: float
    status: HealthStatus
    error_penalty: float
    recovery_penalty: float
    correlation_penalty: float
    issue_penalty: float
    weighted_error_rate: float
    """Severity-weighted errors per finished operation (0 when there were none)."""


def _status(score: float) -> HealthStatus:
    if score >= 90:
        return "healthy"
    if score >= 70:
        return "degraded"
    if score >= 40:
        return "unhealthy"
    return "critical"


def health_score(
    *,
    errors_by_severity: Mapping[str, int],
    operations: int,
    recovery_success_rate: float | None,
    missing_share: float | None,
    new_issues: int = 0,
    regressed_issues: int = 0,
    ongoing_patterns: int = 0,
) -> HealthScore:
    """The health score of a window from its figures (see the module docstring)."""
    errors = sum(errors_by_severity.values())
    weighted = sum(
        SEVERITY_WEIGHTS.get(severity, _OTHER_WEIGHT) * count
        for severity, count in errors_by_severity.items()
    )
    requests = max(operations, errors)
    rate = weighted / requests if requests > 0 else 0.0
    error_penalty = _ERROR_POINTS * min(1.0, rate / _ERROR_RATE_CEILING)
    recovery_penalty = (
        0.0
        if recovery_success_rate is None
        else _RECOVERY_POINTS * (1.0 - max(0.0, min(1.0, recovery_success_rate)))
    )
    correlation_penalty = (
        0.0
        if missing_share is None
        else _CORRELATION_POINTS * min(1.0, max(0.0, missing_share) / _MISSING_CEILING)
    )
    issue_penalty = min(
        _ISSUE_CAP, _ISSUE_POINTS * (new_issues + regressed_issues + ongoing_patterns)
    )
    score = 100.0 - error_penalty - recovery_penalty - correlation_penalty - issue_penalty
    score = round(max(0.0, min(100.0, score)), 1)
    return HealthScore(
        score=score,
        status=_status(score),
        error_penalty=round(error_penalty, 2),
        recovery_penalty=round(recovery_penalty, 2),
        correlation_penalty=round(correlation_penalty, 2),
        issue_penalty=round(issue_penalty, 2),
        weighted_error_rate=rate,
    )
