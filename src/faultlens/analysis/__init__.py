"""Analysis: pattern detection, escalation, insights and alert rules.

Pattern detection (``docs/patterns.md``): incremental detectors of recurring
errors, bursts, cascades across layers and slow degradation, run on the
recorder's writer thread and as a periodic store-level analysis; escalation per
correlation and per service from the layer policies.
"""

# --- patterns, detectors, escalation, store-level analysis ------------------------
from faultlens.analysis._detectors import (
    LAYER_ORDER,
    BurstDetector,
    CascadeDetector,
    DegradationDetector,
    DetectorSet,
    ErrorSample,
    PatternDetector,
    RecurringDetector,
    mann_kendall,
    rise_p_value,
)
from faultlens.analysis._escalation import (
    CRITICAL_PATTERN_CONFIDENCE,
    CRITICAL_PATTERN_TYPES,
    Escalation,
    EscalationTracker,
    should_escalate,
)
from faultlens.analysis._monitor import PatternMonitor
from faultlens.analysis._patterns import (
    PATTERN,
    Pattern,
    PatternChange,
    PatternStatus,
    PatternType,
    pattern_event,
)
from faultlens.analysis._store_analysis import StoreAnalyzer

# isort: split
# --- insights, alert rules, delivery, report -------------------------------------
from faultlens.analysis._alerts import (
    DEFAULT_RULES,
    METRICS,
    AlertConfig,
    AlertEngine,
    AlertRule,
    Metric,
    load_alert_config,
    parse_alert_config,
)
from faultlens.analysis._delivery import (
    AlertDelivery,
    Channel,
    DeliveryError,
    DeliveryFailure,
    DeliverySettings,
    LogChannel,
    SlackChannel,
    WebhookChannel,
)
from faultlens.analysis._health import HealthScore, health_score
from faultlens.analysis._insights import (
    CorrelationCoverage,
    Insights,
    Recommendation,
    RecoveryEffectiveness,
    TopIssue,
    Trend,
    UserImpact,
    insights,
)
from faultlens.analysis._report import render_report
from faultlens.store._protocol import Alert

# One sorted list (ruff RUF022 order: CONSTANTS, Classes, functions): insert new
# names where they sort, from either section.
__all__ = [
    "CRITICAL_PATTERN_CONFIDENCE",
    "CRITICAL_PATTERN_TYPES",
    "DEFAULT_RULES",
    "LAYER_ORDER",
    "METRICS",
    "PATTERN",
    "Alert",
    "AlertConfig",
    "AlertDelivery",
    "AlertEngine",
    "AlertRule",
    "BurstDetector",
    "CascadeDetector",
    "Channel",
    "CorrelationCoverage",
    "DegradationDetector",
    "DeliveryError",
    "DeliveryFailure",
    "DeliverySettings",
    "DetectorSet",
    "ErrorSample",
    "Escalation",
    "EscalationTracker",
    "HealthScore",
    "Insights",
    "LogChannel",
    "Metric",
    "Pattern",
    "PatternChange",
    "PatternDetector",
    "PatternMonitor",
    "PatternStatus",
    "PatternType",
    "Recommendation",
    "RecoveryEffectiveness",
    "RecurringDetector",
    "SlackChannel",
    "StoreAnalyzer",
    "TopIssue",
    "Trend",
    "UserImpact",
    "WebhookChannel",
    "health_score",
    "insights",
    "load_alert_config",
    "mann_kendall",
    "parse_alert_config",
    "pattern_event",
    "render_report",
    "rise_p_value",
    "should_escalate",
]
