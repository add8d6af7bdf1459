"""Alert rules, their evaluation against a store, and the alert lifecycle.

A rule (:class:`AlertRule`) is a condition over one metric of a recent window::

    AlertRule(name="critical_error_rate", condition="critical_errors > 3", window="5m",
              severity="critical", cooldown="15m")

or the same in a TOML file (:func:`load_alert_config`; ``docs/insights-and-alerts.md``
has the syntax).  The metrics are listed in :data:`METRICS`; some are *keyed*
(one value per issue), and then each key has an alert of its own.

:class:`AlertEngine` evaluates its rules when :meth:`AlertEngine.run_once` is
called (a background thread calls it every ``interval`` seconds after
:meth:`AlertEngine.start`).  For each rule and key:

* the condition holds and the metric's volume is at least ``min_volume``: if no
  alert of that rule and key is firing and none fired within ``cooldown``, a new
  alert **fires**; if one is firing, nothing happens (deduplication); if the
  cooldown has not passed, it is suppressed (``alerts.suppressed``);
* the condition does not hold (or the volume is too low to judge): a firing
  alert **resolves**.

Each transition is saved (:meth:`Store.save_alert`), written to the store and
published on the bus as an ``alert`` event (with the correlation id of a
triggering event when there is one, so it shows on that correlation's
timeline) and handed to the delivery channels.  The engine reloads firing and
recent alerts from the store when it starts, so a restart neither repeats nor
forgets them; run one engine per store.  Counters: ``alerts.fired``,
``alerts.resolved``, ``alerts.deduplicated``, ``alerts.suppressed``,
``alerts.below_min_volume``, ``alerts.capped``, ``alerts.evaluation_errors``.
"""

from __future__ import annotations

import math
import os
import re
import threading
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from faultlens import events as _events
from faultlens._clock import get_clock
from faultlens._ids import new_id
from faultlens._metrics import counters, report_once
from faultlens.analysis._delivery import (
    AlertDelivery,
    Channel,
    DeliverySettings,
    LogChannel,
    SlackChannel,
    WebhookChannel,
)
from faultlens.analysis._health import health_score
from faultlens.analysis._insights import (
    RecoveryEffectiveness,
    _coverage,
    _new_issues,
    _regressed_issues,
    duration_seconds,
    format_duration,
    log_line_counts,
    read_patterns,
    summarise_recovery,
)
from faultlens.errors import ConfigurationError, Severity
from faultlens.events import ALERT, ERROR, Event
from faultlens.redaction import neutralize_newlines
from faultlens.store import Issue, Store
from faultlens.store._protocol import Alert, EventStats
from faultlens.store._types import instant

__all__ = [
    "DEFAULT_RULES",
    "METRICS",
    "AlertConfig",
    "AlertEngine",
    "AlertRule",
    "Metric",
    "load_alert_config",
    "parse_alert_config",
]

_T = TypeVar("_T")
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]


@dataclass(frozen=True, slots=True)
class Metric:
    """A quantity rules can test: its unit, whether it is per issue, and what it measures."""

    name: str
    unit: Literal["ratio", "count", "flag", "score"]
    keyed: bool
    description: str


METRICS: Final[Mapping[str, Metric]] = {
    m.name: m
    for m in (
        Metric(
            "correlation_id_missing",
            "ratio",
            False,
            "share of events and log lines without a correlation id; volume: both counted",
        ),
        Metric(
            "recovery_success_rate",
            "ratio",
            False,
            "recovered / (recovered + failed) recovery attempts; volume: recovered + failed",
        ),
        Metric("errors", "count", False, "error events; volume: the same"),
        Metric(
            "critical_errors", "count", False, "error events of severity critical; volume: same"
        ),
        Metric(
            "same_error_pattern",
            "count",
            True,
            "error events of one issue (one fingerprint); volume: the same",
        ),
        Metric("new_issue", "flag", True, "1 for each issue first seen in the window"),
        Metric("regression", "flag", True, "1 for each issue that regressed in the window"),
        Metric(
            "health_score",
            "score",
            False,
            "the health score (0-100) of the window; volume: events counted",
        ),
    )
}
"""Every metric a condition may name."""

_OPERATORS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_CONDITION: Final = re.compile(
    r"\s*([a-z_]+)\s*(?:(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*(%)?)?\s*"
)
_RULE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
_SYSTEM_KINDS: Final = frozenset({ALERT, _events.AUDIT, "pattern"})
_MAX_LOADED: Final = 1000


def _parse_condition(condition: object) -> tuple[str, Comparison, float]:
    match = _CONDITION.fullmatch(condition) if isinstance(condition, str) else None
    if match is None:
        raise ConfigurationError(
            f"alert condition {condition!r} is not 'METRIC OP NUMBER' (for example "
            "'critical_errors > 3' or 'correlation_id_missing > 1%') nor a bare metric "
            "('new_issue', meaning > 0)"
        )
    name, op, number, percent = match.groups()
    metric = METRICS.get(name)
    if metric is None:
        raise ConfigurationError(
            f"alert condition {condition!r}: unknown metric {name!r}; the metrics are "
            f"{', '.join(sorted(METRICS))}"
        )
    if op is None:
        return name, ">", 0.0
    threshold = float(number)
    if percent:
        if metric.unit != "ratio":
            raise ConfigurationError(
                f"alert condition {condition!r}: % applies to ratio metrics only "
                "(correlation_id_missing, recovery_success_rate)"
            )
        threshold /= 100.0
    elif metric.unit == "ratio" and not 0.0 <= threshold <= 1.0:
        raise ConfigurationError(
            f"alert condition {condition!r}: {name} is a ratio from 0 to 1; write "
            f"{threshold:g}% for a percentage"
        )
    return name, op, threshold  # type: ignore[return-value]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    """One alert rule; invalid values raise :class:`~faultlens.errors.ConfigurationError`.

    ``condition`` is ``"METRIC OP NUMBER"`` (``>``, ``>=``, ``<``, ``<=``,
    ``==``, ``!=``; ``%`` after the number for ratio metrics) or a bare metric
    (``"new_issue"``: ``> 0``).  The metric is measured over the last
    ``window``.  Below ``min_volume`` (see :data:`METRICS` for what each
    metric's volume is) the rule does not fire, and a firing alert resolves.
    After an alert of a key fires, that key does not fire again before
    ``cooldown``.  ``channels`` names the delivery channels (``None``: all);
    ``max_alerts`` caps the alerts of a keyed rule firing at once.  Durations
    are seconds, ``timedelta`` or strings like ``"15m"``.
    """

    name: str
    condition: str
    window: float | timedelta | str = 300.0
    severity: Severity | str = "high"
    min_volume: int = 0
    cooldown: float | timedelta | str = 900.0
    action: str | None = None
    channels: tuple[str, ...] | None = None
    max_alerts: int = 50
    metric: str = field(init=False)
    op: Comparison = field(init=False)
    threshold: float = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _RULE_NAME.fullmatch(self.name):
            raise ConfigurationError(
                f"alert rule name {self.name!r} must be 1-100 letters, digits, '_', '.' or '-'"
            )
        metric, op, threshold = _parse_condition(self.condition)
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "window", duration_seconds(self.window, "window"))
        object.__setattr__(self, "cooldown", _cooldown(self.cooldown))
        try:
            severity = Severity(self.severity)
        except ValueError:
            raise ConfigurationError(
                f"alert rule {self.name!r}: severity must be one of "
                f"{', '.join(s.value for s in Severity)}, not {self.severity!r}"
            ) from None
        object.__setattr__(self, "severity", severity.value)
        for name in ("min_volume", "max_alerts"):
            value = getattr(self, name)
            minimum = 0 if name == "min_volume" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigurationError(
                    f"alert rule {self.name!r}: {name} must be an int >= {minimum}, not {value!r}"
                )
        channels: object = self.channels
        if channels is not None:
            if not isinstance(channels, list | tuple) or not all(
                isinstance(c, str) for c in channels
            ):
                raise ConfigurationError(
                    f"alert rule {self.name!r}: channels must be a list of channel names"
                )
            object.__setattr__(self, "channels", tuple(channels))
        if self.action is not None and not isinstance(self.action, str):
            raise ConfigurationError(f"alert rule {self.name!r}: action must be a string")

    @property
    def window_seconds(self) -> float:
        """The window in seconds."""
        return float(self.window)  # type: ignore[arg-type]

    @property
    def cooldown_seconds(self) -> float:
        """The cooldown in seconds."""
        return float(self.cooldown)  # type: ignore[arg-type]

    def matches(self, value: float | None) -> bool:
        """True when ``value`` meets the condition (never for an unknown value)."""
        return value is not None and _OPERATORS[self.op](value, self.threshold)


def _cooldown(value: float | timedelta | str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    return duration_seconds(value, "cooldown")


DEFAULT_RULES: Final[tuple[AlertRule, ...]] = (
    AlertRule(
        name="correlation_failure",
        condition="correlation_id_missing > 1%",
        window="15m",
        severity="high",
        min_volume=100,
        cooldown="1h",
        action="check that every entry point runs inside faultlens.correlate() or the middleware",
    ),
    AlertRule(
        name="recovery_failure",
        condition="recovery_success_rate < 85%",
        window="15m",
        severity="medium",
        min_volume=20,
        cooldown="1h",
        action="review the recovery strategies of the failing policies",
    ),
    AlertRule(
        name="error_pattern_detected",
        condition="same_error_pattern > 10",
        window="1h",
        severity="high",
        cooldown="1h",
        action="investigate the issue: the same error keeps happening",
    ),
    AlertRule(
        name="critical_error_rate",
        condition="critical_errors > 3",
        window="5m",
        severity="critical",
        cooldown="15m",
        action="look at the critical errors now",
    ),
    AlertRule(
        name="new_issue",
        condition="new_issue",
        window="1h",
        severity="medium",
        cooldown="1h",
        action="triage the new issue",
    ),
    AlertRule(
        name="regression",
        condition="regression",
        window="1h",
        severity="high",
        cooldown="1h",
        action="the error came back after it was resolved: reopen the fix",
    ),
)
"""The built-in rules: the seeds' four monitoring alerts, new issues and regressions."""


# --- configuration files ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Rules and channels read from a TOML file (see :func:`load_alert_config`)."""

    rules: tuple[AlertRule, ...]
    channels: tuple[Channel, ...]


_RULE_KEYS: Final = frozenset(
    {
        "name",
        "condition",
        "window",
        "severity",
        "min_volume",
        "cooldown",
        "action",
        "channels",
        "max_alerts",
    }
)
_DEFAULT_KEYS: Final = _RULE_KEYS - {"name", "condition", "action"}
_CHANNEL_KEYS: Final = frozenset(
    {"type", "url", "url_env", "headers", "headers_env", "timeout", "transport"}
)
_TOP_KEYS: Final = frozenset({"builtin_rules", "defaults", "rules", "channels"})


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"alert config: {where} must be a table")
    return value


def _known(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigurationError(
            f"alert config: unknown key {unknown[0]!r} in {where}; known keys: "
            f"{', '.join(sorted(allowed))}"
        )


def _env(name: object, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"alert config: {where} must name an environment variable")
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(
            f"alert config: {where} names the environment variable {name!r}, which is not set"
        )
    return value


def _channel(name: str, table: Mapping[str, Any]) -> Channel:
    where = f"[channels.{name}]"
    _known(table, _CHANNEL_KEYS, where)
    kind = table.get("type", "webhook")
    if kind == "log":
        return LogChannel(name=name)
    if kind not in ("webhook", "slack"):
        raise ConfigurationError(
            f"alert config: {where} type must be 'log', 'webhook' or 'slack', not {kind!r}"
        )
    if ("url" in table) == ("url_env" in table):
        raise ConfigurationError(
            f"alert config: {where} needs url or url_env (an environment variable holding the "
            "URL, to keep its secret out of the file), not both"
        )
    url = table["url"] if "url" in table else _env(table["url_env"], f"{where} url_env")
    options: dict[str, Any] = {}
    if "timeout" in table:
        options["timeout"] = table["timeout"]
    if "transport" in table:
        options["transport"] = table["transport"]
    if kind == "slack":
        if "headers" in table or "headers_env" in table:
            raise ConfigurationError(f"alert config: {where} a slack channel takes no headers")
        return SlackChannel(url, name=name, **options)
    headers = {str(k): str(v) for k, v in _table(table.get("headers", {}), where).items()}
    for header, variable in _table(table.get("headers_env", {}), where).items():
        headers[str(header)] = _env(variable, f"{where} headers_env.{header}")
    return WebhookChannel(url, name=name, headers=headers, **options)


def parse_alert_config(text: str, *, source: str = "<string>") -> AlertConfig:
    """Rules and channels from TOML text; see :func:`load_alert_config` for the format."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"alert config {source}: invalid TOML: {exc}") from None
    _known(data, _TOP_KEYS, "the top level")
    defaults = dict(_table(data.get("defaults", {}), "[defaults]"))
    _known(defaults, _DEFAULT_KEYS, "[defaults]")
    rules: dict[str, AlertRule] = {}
    if data.get("builtin_rules", False) is True:
        rules.update((rule.name, rule) for rule in DEFAULT_RULES)
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigurationError("alert config: rules must be an array of tables ([[rules]])")
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules):
        table = _table(raw, f"[[rules]] number {index + 1}")
        _known(table, _RULE_KEYS, f"[[rules]] {table.get('name', index + 1)!r}")
        if "name" not in table or "condition" not in table:
            raise ConfigurationError(
                f"alert config: [[rules]] number {index + 1} needs a name and a condition"
            )
        options = {**defaults, **table}
        if "channels" in options and options["channels"] is not None:
            options["channels"] = tuple(options["channels"])
        rule = AlertRule(**options)
        if rule.name in seen:
            raise ConfigurationError(f"alert config: two rules are called {rule.name!r}")
        seen.add(rule.name)
        rules[rule.name] = rule  # replaces a built-in rule of the same name
    channels = tuple(
        _channel(str(name), _table(table, f"[channels.{name}]"))
        for name, table in _table(data.get("channels", {}), "[channels]").items()
    )
    if not rules:
        raise ConfigurationError(
            f"alert config {source} has no rules: add [[rules]] or builtin_rules = true"
        )
    names = {c.name for c in channels} | {"log"}
    for rule in rules.values():
        for name in rule.channels or ():
            if name not in names:
                raise ConfigurationError(
                    f"alert config: rule {rule.name!r} names the channel {name!r}, which is "
                    "not defined in [channels]"
                )
    return AlertConfig(tuple(rules.values()), channels)


def load_alert_config(path: str | os.PathLike[str]) -> AlertConfig:
    """Rules and channels from a TOML file.

    ::

        builtin_rules = true            # keep the built-in rules (same name: replaced)

        [defaults]                      # for every rule that does not say
        cooldown = "30m"

        [[rules]]
        name = "checkout_errors"
        condition = "errors > 50"
        window = "10m"
        severity = "high"
        min_volume = 50
        channels = ["slack"]
        action = "page the checkout team"

        [channels.slack]
        type = "slack"                  # or "webhook" (JSON POST) or "log"
        url_env = "FAULTLENS_SLACK_URL" # or url = "https://..."

    Unknown keys, bad conditions and missing environment variables raise
    :class:`~faultlens.errors.ConfigurationError` naming what to fix.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"alert config {str(file)!r} cannot be read: {exc.strerror or exc}"
        ) from None
    return parse_alert_config(text, source=repr(str(file)))


# --- evaluation ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sample:
    """One measured value of a rule's metric, for one key (``""`` when not keyed)."""

    key: str
    value: float | None
    volume: int
    subject: str | None = None
    correlation_id: str | None = None
    issue_id: int | None = None
    tenant_id: str | None = None


class _Snapshot:
    """What one evaluation reads from the store: each query once per window length."""

    def __init__(self, engine: AlertEngine, now: float) -> None:
        self.engine = engine
        self.store = engine.store
        self.tenant_id = engine.tenant_id
        self.now = now
        self.until = math.nextafter(now, math.inf)  # the window includes `now`
        self._cache: dict[tuple[str, float], Any] = {}

    def _memo(self, what: str, window: float, compute: Callable[[float], _T]) -> _T:
        key = (what, window)
        if key not in self._cache:
            self._cache[key] = compute(self.now - window)
        value: _T = self._cache[key]
        return value

    def stats(self, window: float) -> EventStats:
        return self._memo(
            "stats",
            window,
            lambda since: self.store.event_stats(
                since=since, until=self.until, tenant_id=self.tenant_id
            ),
        )

    def recovery(self, window: float) -> list[RecoveryEffectiveness]:
        return self._memo(
            "recovery",
            window,
            lambda since: summarise_recovery(
                self.store.recovery_stats(since=since, until=self.until, tenant_id=self.tenant_id)
            ),
        )

    def issue_counts(self, window: float) -> dict[int, int]:
        def compute(since: float) -> dict[int, int]:
            totals: dict[int, int] = {}
            for count in self.store.counts(
                bucket_seconds=window,
                since=since,
                until=self.until,
                by="issue",
                tenant_id=self.tenant_id,
            ):
                if isinstance(count.key, int):
                    totals[count.key] = totals.get(count.key, 0) + count.count
            return totals

        return self._memo("issues", window, compute)

    def new_issues(self, window: float) -> list[Issue]:
        return self._memo(
            "new",
            window,
            lambda since: _new_issues(self.store, since, self.until, self.tenant_id),
        )

    def regressed(self, window: float) -> list[Issue]:
        return self._memo(
            "regressed",
            window,
            lambda since: _regressed_issues(self.store, since, self.until, self.tenant_id),
        )


def _events_counted(stats: EventStats) -> tuple[int, int]:
    total = sum(n for kind, n in stats.events.items() if kind not in _SYSTEM_KINDS)
    carried = sum(n for kind, n in stats.with_correlation.items() if kind not in _SYSTEM_KINDS)
    return total, carried


def _format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "no data"
    unit = METRICS[metric].unit
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "score":
        return f"{value:.1f}"
    return f"{value:g}"


def _issue_label(issue_id: int | None, subject: str | None) -> str:
    title = neutralize_newlines(subject or "")[:120]
    return f"issue {issue_id}" + (f" ({title})" if title else "")


class AlertEngine:
    """Evaluates alert rules against a store and keeps each alert's lifecycle.

    ``rules`` default to :data:`DEFAULT_RULES`; ``channels`` to the log
    (:class:`LogChannel`); ``delivery`` settings to :class:`DeliverySettings`'s.
    With ``tenant_id`` only that tenant's events count and alerts carry it.
    ``publish=False`` keeps alert events off the in-process bus (they are still
    written to the store).  ``count_log_lines`` adds this process's log lines
    to the correlation coverage.  See the module docstring for the lifecycle.
    """

    def __init__(
        self,
        store: Store,
        *,
        rules: Iterable[AlertRule] | None = None,
        channels: Iterable[Channel] | None = None,
        delivery: DeliverySettings | None = None,
        tenant_id: str | None = None,
        publish: bool = True,
        count_log_lines: bool = True,
    ) -> None:
        self.store = store
        self.rules: tuple[AlertRule, ...] = tuple(DEFAULT_RULES if rules is None else rules)
        for rule in self.rules:
            if not isinstance(rule, AlertRule):
                raise ConfigurationError(f"{rule!r} is not an AlertRule")
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise ConfigurationError("two alert rules have the same name")
        self.delivery = AlertDelivery(
            [LogChannel()] if channels is None else channels, settings=delivery, store=store
        )
        self.tenant_id = tenant_id
        self.publish = publish
        self.count_log_lines = count_log_lines
        self.runs = 0
        """How many evaluations completed."""
        self._firing: dict[tuple[str, str], Alert] = {}
        self._last_fired: dict[tuple[str, str], float] = {}
        self._loaded = False
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._horizon = max(
            [rule.cooldown_seconds for rule in self.rules]
            + [rule.window_seconds for rule in self.rules]
            + [0.0]
        )
        total, with_id = log_line_counts()
        self._lines: deque[tuple[float, int, int]] = deque([(get_clock().time(), total, with_id)])

    @classmethod
    def from_config(cls, store: Store, path: str | os.PathLike[str], **options: Any) -> AlertEngine:
        """An engine with the rules and channels of a TOML file (:func:`load_alert_config`)."""
        config = load_alert_config(path)
        channels: list[Channel] = list(config.channels)
        if not any(c.name == "log" for c in channels):
            channels.insert(0, LogChannel())
        return cls(store, rules=config.rules, channels=channels, **options)

    # -- evaluation ----------------------------------------------------------------------

    def firing(self) -> list[Alert]:
        """The alerts firing now (as of the last evaluation), oldest first."""
        with self._run_lock:
            return sorted(self._firing.values(), key=lambda a: (a.fired_at, a.id))

    def run_once(self, now: float | datetime | None = None) -> list[Alert]:
        """Evaluate every rule as of ``now`` (default: the clock); return the transitions made.

        Store failures raise :class:`~faultlens.store.StoreError`; the alerts
        already saved keep their state, and the next run picks up from there.
        """
        with self._run_lock:
            at = instant(now, "now")
            if at is None:
                at = get_clock().time()
            self._sample_lines(at)
            if not self._loaded:
                self._load(at)
            snapshot = _Snapshot(self, at)
            transitions: list[Alert] = []
            for rule in self.rules:
                transitions.extend(self._apply(rule, self._measure(rule, snapshot), at))
            self._forget(at)
            self.runs += 1
            return transitions

    def _load(self, at: float) -> None:
        """Pick up firing alerts and recent firings (for cooldowns) from the store."""
        names = {rule.name for rule in self.rules}
        found = self.store.alerts(status="firing", limit=_MAX_LOADED)
        found += self.store.alerts(since=at - self._horizon, limit=_MAX_LOADED)
        for alert in found:
            if alert.rule not in names or alert.tenant_id != self.tenant_id:
                continue
            key = (alert.rule, alert.key)
            self._last_fired[key] = max(self._last_fired.get(key, -math.inf), alert.fired_at)
            if alert.status == "firing":
                self._firing.setdefault(key, alert)
        self._loaded = True

    def _forget(self, at: float) -> None:
        cutoff = at - self._horizon
        for key in [k for k, t in self._last_fired.items() if t < cutoff]:
            if key not in self._firing:
                del self._last_fired[key]

    def _sample_lines(self, at: float) -> None:
        total, with_id = log_line_counts()
        lines = self._lines
        lines.append((at, total, with_id))
        # Keep one sample older than the longest window (the baseline), drop the rest.
        while len(lines) > 2 and lines[1][0] <= at - self._horizon:
            lines.popleft()
        while len(lines) > 10_000:
            lines.popleft()

    def _lines_in(self, window: float) -> tuple[int, int]:
        """``(lines, lines with a correlation id)`` written during the last ``window``."""
        if not self.count_log_lines:
            return 0, 0
        now, total, with_id = self._lines[-1]
        baseline = self._lines[0]
        for sample in self._lines:
            if sample[0] <= now - window:
                baseline = sample
            else:
                break
        return max(0, total - baseline[1]), max(0, with_id - baseline[2])

    def _measure(self, rule: AlertRule, snap: _Snapshot) -> list[_Sample]:
        window = rule.window_seconds
        metric = rule.metric
        if metric == "correlation_id_missing":
            coverage = _coverage(snap.stats(window), self._lines_in(window))
            return [_Sample("", coverage.missing_share, coverage.total)]
        if metric == "recovery_success_rate":
            rows = snap.recovery(window)
            recovered = sum(r.recovered for r in rows)
            attempted = recovered + sum(r.failed for r in rows)
            return [_Sample("", recovered / attempted if attempted else None, attempted)]
        if metric in ("errors", "critical_errors"):
            stats = snap.stats(window)
            if metric == "errors":
                count = stats.events.get(ERROR, 0)
                latest = stats.latest_correlation
                cid = next(
                    (latest[s.value] for s in reversed(Severity) if s.value in latest),
                    next(iter(latest.values()), None),
                )
            else:
                count = stats.errors_by_severity.get("critical", 0)
                cid = stats.latest_correlation.get("critical")
            return [_Sample("", float(count), count, correlation_id=cid)]
        if metric == "same_error_pattern":
            return [
                _Sample(f"issue:{issue_id}", float(count), count, issue_id=issue_id)
                for issue_id, count in sorted(snap.issue_counts(window).items())
            ]
        if metric in ("new_issue", "regression"):
            issues = snap.new_issues(window) if metric == "new_issue" else snap.regressed(window)
            return [
                _Sample(
                    f"issue:{issue.id}",
                    1.0,
                    1,
                    subject=issue.title,
                    issue_id=issue.id,
                    tenant_id=issue.tenant_id,
                )
                for issue in issues
            ]
        if metric == "health_score":
            stats = snap.stats(window)
            rows = snap.recovery(window)
            recovered = sum(r.recovered for r in rows)
            attempted = recovered + sum(r.failed for r in rows)
            coverage = _coverage(stats, self._lines_in(window))
            patterns = read_patterns(self.store, since=snap.now - window, tenant_id=self.tenant_id)
            health = health_score(
                errors_by_severity=stats.errors_by_severity,
                operations=stats.operations_ended,
                recovery_success_rate=recovered / attempted if attempted else None,
                missing_share=coverage.missing_share,
                new_issues=len(snap.new_issues(window)),
                regressed_issues=len(snap.regressed(window)),
                ongoing_patterns=sum(1 for p in patterns if p.ongoing),
            )
            return [_Sample("", health.score, _events_counted(stats)[0])]
        raise ConfigurationError(f"no measurement for metric {metric!r}")  # pragma: no cover

    def _apply(self, rule: AlertRule, samples: Sequence[_Sample], at: float) -> list[Alert]:
        transitions: list[Alert] = []
        held: dict[str, _Sample] = {}
        values: dict[str, float | None] = {}
        open_keys = {key for (name, key) in self._firing if name == rule.name}
        for sample in samples:
            values[sample.key] = sample.value
            if not rule.matches(sample.value):
                continue
            if sample.volume < rule.min_volume:
                counters.incr("alerts.below_min_volume")
                continue
            held[sample.key] = sample
        for key, sample in held.items():
            if key in open_keys:
                counters.incr("alerts.deduplicated")
                continue
            last = self._last_fired.get((rule.name, key))
            if last is not None and at - last < rule.cooldown_seconds:
                counters.incr("alerts.suppressed")
                continue
            if len(open_keys) >= rule.max_alerts:
                counters.incr("alerts.capped")
                continue
            transitions.append(self._fire(rule, sample, at))
            open_keys.add(key)
        # A key no longer measured counts nothing: 0 for counts and flags.
        absent = 0.0 if METRICS[rule.metric].unit in ("count", "flag") else None
        for key in sorted(open_keys - set(held)):
            alert = self._firing.get((rule.name, key))
            if alert is not None:
                transitions.append(self._resolve(rule, alert, values.get(key, absent), at))
        return transitions

    # -- transitions ---------------------------------------------------------------------

    def _describe(self, rule: AlertRule, sample: _Sample) -> str:
        metric = rule.metric
        window = format_duration(rule.window_seconds)
        value = _format_value(metric, sample.value)
        if metric == "correlation_id_missing":
            text = (
                f"{value} of {sample.volume} events and log lines in the last {window} "
                "carry no correlation id"
            )
        elif metric == "recovery_success_rate":
            text = (
                f"recovery succeeded for {value} of {sample.volume} failures in the last {window}"
            )
        elif metric == "errors":
            text = f"{value} errors in the last {window}"
        elif metric == "critical_errors":
            text = f"{value} critical errors in the last {window}"
        elif metric == "same_error_pattern":
            text = (
                f"{_issue_label(sample.issue_id, sample.subject)} occurred {value} times "
                f"in the last {window}"
            )
        elif metric == "new_issue":
            text = f"new {_issue_label(sample.issue_id, sample.subject)}"
        elif metric == "regression":
            text = f"{_issue_label(sample.issue_id, sample.subject)} regressed"
        else:
            text = f"health score {value}/100 over the last {window}"
        return f"{text} ({rule.condition.strip()})"

    def _locate(self, sample: _Sample) -> None:
        """Fill in an issue's title and the correlation id of its newest event."""
        if sample.issue_id is None:
            return
        try:
            if sample.subject is None:
                issue = self.store.issue(sample.issue_id, tenant_id=self.tenant_id)
                if issue is not None:
                    sample.subject = issue.title
                    sample.tenant_id = issue.tenant_id
            if sample.correlation_id is None:
                page = self.store.issue_events(sample.issue_id, limit=1, tenant_id=self.tenant_id)
                for stored in page:
                    sample.correlation_id = stored.event.correlation_id
        except Exception:  # the alert matters more than its decoration
            counters.incr("alerts.lookup_failures")

    def _fire(self, rule: AlertRule, sample: _Sample, at: float) -> Alert:
        self._locate(sample)
        details: dict[str, Any] = {
            "metric": rule.metric,
            "condition": rule.condition.strip(),
            "key": sample.key,
            "value": sample.value,
            "threshold": rule.threshold,
            "volume": sample.volume,
            "window": format_duration(rule.window_seconds),
            "window_s": rule.window_seconds,
            "message": self._describe(rule, sample),
            "correlation_id": sample.correlation_id,
        }
        if rule.action:
            details["action"] = rule.action
        if sample.issue_id is not None:
            details["issue_id"] = sample.issue_id
        alert = Alert(
            id=new_id(),
            rule=rule.name,
            status="firing",
            severity=str(rule.severity),
            fired_at=at,
            tenant_id=self.tenant_id if self.tenant_id is not None else sample.tenant_id,
            details=details,
        )
        self.store.save_alert(alert)
        key = (rule.name, sample.key)
        self._firing[key] = alert
        self._last_fired[key] = at
        counters.incr("alerts.fired")
        self._announce(rule, alert, at)
        return alert

    def _resolve(self, rule: AlertRule, alert: Alert, value: float | None, at: float) -> Alert:
        fired_value = alert.details.get("value")
        now_value = _format_value(rule.metric, value)
        details = dict(alert.details)
        details["resolved_value"] = value
        details["message"] = (
            f"{rule.condition.strip()} no longer holds: {rule.metric} is {now_value} "
            f"(was {_format_value(rule.metric, fired_value)}) after "
            f"{format_duration(max(at - alert.fired_at, 0.0))}"
        )
        resolved = replace(alert, status="resolved", resolved_at=at, details=details)
        self.store.save_alert(resolved)
        del self._firing[(rule.name, alert.key)]
        counters.incr("alerts.resolved")
        self._announce(rule, resolved, at)
        return resolved

    def _announce(self, rule: AlertRule, alert: Alert, at: float) -> None:
        """Write and publish the alert event, then hand the alert to the channels."""
        details = alert.details
        event = Event(
            ALERT,
            alert.rule,
            {
                "alert_id": alert.id,
                "rule": alert.rule,
                "status": alert.status,
                "severity": alert.severity,
                "metric": details.get("metric"),
                "condition": details.get("condition"),
                "key": alert.key,
                "value": details.get("value"),
                "threshold": details.get("threshold"),
                "message": alert.message,
                "fired_at": alert.fired_at,
                "resolved_at": alert.resolved_at,
            },
            correlation_id=alert.correlation_id,
            tenant_id=alert.tenant_id,
            timestamp=at,
        )
        try:
            self.store.write_events([event])
        except Exception as exc:  # the alert row is saved: the event is the lesser loss
            counters.incr("alerts.event_write_failures")
            report_once(
                "alerts.event",
                f"writing an alert event failed ({type(exc).__name__}); the alert itself is "
                "saved; failures are counted in faultlens.stats()['alerts.event_write_failures']",
            )
        if self.publish:
            _events.publish(event)
        self.delivery.submit(alert, rule.channels)

    # -- background evaluation -----------------------------------------------------------

    def start(self, interval: float | timedelta | str = 30.0) -> AlertEngine:
        """Evaluate every ``interval`` on a daemon thread (the first run at once); return self.

        A failing evaluation is counted (``alerts.evaluation_errors``), reported
        once on stderr and tried again at the next interval.
        """
        every = duration_seconds(interval, "interval")
        if self._thread is not None and self._thread.is_alive():
            raise ConfigurationError("this AlertEngine is already running: call stop() first")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(every,), name="faultlens-alert-engine", daemon=True
        )
        self._thread.start()
        return self

    def _loop(self, every: float) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:
                counters.incr("alerts.evaluation_errors")
                report_once(
                    "alerts.evaluation",
                    f"evaluating alert rules failed ({type(exc).__name__}: "
                    f"{neutralize_newlines(str(exc))[:300]}); it is tried again every "
                    f"{format_duration(every)}, failures are counted in "
                    "faultlens.stats()['alerts.evaluation_errors']",
                )
            self._stop.wait(every)

    def stop(self, timeout: float | timedelta | None = None) -> None:
        """Stop the background thread and the delivery workers (flushing them); idempotent."""
        self._stop.set()
        thread = self._thread
        wait = None if timeout is None else duration_seconds(timeout, "timeout")
        if thread is not None:
            thread.join(wait if wait is not None else 10.0)
            self._thread = None
        self.delivery.close(wait)

    close = stop

    def __enter__(self) -> AlertEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
