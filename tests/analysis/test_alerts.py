"""Alert rules: parsing, evaluation with the fake clock, cooldown, dedup, volume, lifecycle."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultlens import events as _events
from faultlens._metrics import counters
from faultlens.analysis import (
    DEFAULT_RULES,
    Alert,
    AlertEngine,
    AlertRule,
    LogChannel,
    SlackChannel,
    WebhookChannel,
    load_alert_config,
    parse_alert_config,
)
from faultlens.errors import ConfigurationError
from faultlens.events import Event
from faultlens.logs import get_logger
from faultlens.store import Store
from faultlens.store import open as open_store
from faultlens.testing import FakeClock, capture_events, capture_logs

from ._insight_data import error, recovery

T0 = 1_700_000_000.0


class Recorder:
    """A channel that keeps what it was sent (and can signal the test)."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.sent: list[Alert] = []
        self.arrived = threading.Event()

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)
        self.arrived.set()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """A fake clock at T0."""
    with FakeClock(T0) as fake:
        yield fake


@pytest.fixture
def store(clock: FakeClock) -> Iterator[Store]:
    """An in-memory SQLite store."""
    with open_store("sqlite:///:memory:") as opened:
        yield opened


def critical(ts: float, cid: str | None = None, fingerprint: str = "db") -> Event:
    """A critical error."""
    return error(
        fingerprint,
        ts,
        category="system",
        layer="infrastructure",
        severity="critical",
        correlation_id=cid,
        title="database down",
    )


def engine_for(store: Store, *rules: AlertRule, channel: Recorder | None = None) -> AlertEngine:
    """An engine with these rules delivering to a recording channel."""
    return AlertEngine(store, rules=rules, channels=[channel or Recorder()])


CRITICAL = AlertRule(
    name="critical_error_rate",
    condition="critical_errors > 3",
    window="5m",
    severity="critical",
    cooldown="15m",
)


# --- rules -------------------------------------------------------------------------------------


def test_condition_parsing() -> None:
    """Conditions name a metric, an operator and a threshold; % divides ratios by 100."""
    rule = AlertRule(name="c", condition="correlation_id_missing > 1%")
    assert (rule.metric, rule.op, rule.threshold) == ("correlation_id_missing", ">", 0.01)
    assert AlertRule(name="r", condition="recovery_success_rate<0.85").threshold == 0.85
    bare = AlertRule(name="n", condition="new_issue")
    assert (bare.metric, bare.op, bare.threshold) == ("new_issue", ">", 0.0)
    timed = AlertRule(name="t", condition="errors >= 5", window="90s", cooldown=0)
    assert (timed.window_seconds, timed.cooldown_seconds) == (90.0, 0.0)
    assert timed.matches(5.0)
    assert not timed.matches(4.0)
    assert not timed.matches(None)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("errors >", "is not 'METRIC OP NUMBER'"),
        ("latency > 3", "unknown metric 'latency'"),
        ("errors > 3%", "% applies to ratio metrics only"),
        ("correlation_id_missing > 5", "write 5% for a percentage"),
    ],
)
def test_bad_conditions(condition: str, message: str) -> None:
    """A bad condition fails at once, saying how to write it."""
    with pytest.raises(ConfigurationError, match=message):
        AlertRule(name="bad", condition=condition)


def test_bad_rule_fields() -> None:
    """Names, severities, volumes and windows are checked."""
    with pytest.raises(ConfigurationError, match="name"):
        AlertRule(name="no spaces", condition="errors > 1")
    with pytest.raises(ConfigurationError, match="severity"):
        AlertRule(name="x", condition="errors > 1", severity="urgent")
    with pytest.raises(ConfigurationError, match="min_volume"):
        AlertRule(name="x", condition="errors > 1", min_volume=-1)
    with pytest.raises(ConfigurationError, match="duration"):
        AlertRule(name="x", condition="errors > 1", window="soon")


def test_default_rules_cover_the_seeds() -> None:
    """The built-in rules hold the seeds' four alerts, new issues and regressions."""
    conditions = {rule.name: rule.condition for rule in DEFAULT_RULES}
    assert conditions == {
        "correlation_failure": "correlation_id_missing > 1%",
        "recovery_failure": "recovery_success_rate < 85%",
        "error_pattern_detected": "same_error_pattern > 10",
        "critical_error_rate": "critical_errors > 3",
        "new_issue": "new_issue",
        "regression": "regression",
    }
    windows = {rule.name: rule.window_seconds for rule in DEFAULT_RULES}
    assert (windows["error_pattern_detected"], windows["critical_error_rate"]) == (3600.0, 300.0)


TOML = """
builtin_rules = true

[defaults]
cooldown = "30m"
min_volume = 2

[[rules]]
name = "checkout_errors"
condition = "errors > 50"
window = "10m"
severity = "low"
channels = ["slack", "log"]
action = "page the checkout team"

[[rules]]
name = "critical_error_rate"
condition = "critical_errors > 10"

[channels.slack]
type = "slack"
url_env = "TEST_SLACK_URL"

[channels.ops]
type = "webhook"
url = "https://ops.example.com/hook"
headers_env = { Authorization = "TEST_OPS_TOKEN" }
timeout = "2s"
"""


def test_toml_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A TOML file declares rules, defaults and channels; secrets come from the environment."""
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T0/B0/SECRET")
    monkeypatch.setenv("TEST_OPS_TOKEN", "Bearer abc")
    path = tmp_path / "alerts.toml"
    path.write_text(TOML)
    config = load_alert_config(path)
    rules = {rule.name: rule for rule in config.rules}
    assert set(rules) == {rule.name for rule in DEFAULT_RULES} | {"checkout_errors"}
    checkout = rules["checkout_errors"]
    assert (checkout.window_seconds, checkout.cooldown_seconds, checkout.min_volume) == (
        600.0,
        1800.0,
        2,
    )
    assert (checkout.severity, checkout.channels) == ("low", ("slack", "log"))
    assert rules["critical_error_rate"].threshold == 10.0  # the file's rule replaced the built-in
    slack, ops = config.channels
    assert isinstance(slack, SlackChannel)
    assert isinstance(ops, WebhookChannel)
    assert slack.shown_url == "https://hooks.slack.com/[REDACTED]"
    assert "SECRET" not in repr(slack)
    assert ops._http.headers["Authorization"] == "Bearer abc"
    assert ops._http.timeout == 2.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rules]]\nname = 'x'\ncondition = 'errors > 1'\nwindoww = '5m'\n", "unknown key"),
        ("", "has no rules"),
        ("[[rules]]\nname = 'x'\n", "needs a name and a condition"),
        (
            "[[rules]]\nname = 'x'\ncondition = 'errors > 1'\nchannels = ['pager']\n",
            "channel 'pager'",
        ),
        ("builtin_rules = true\n[channels.s]\ntype = 'slack'\nurl_env = 'NOPE_X'\n", "not set"),
        ("builtin_rules = true\n[channels.s]\ntype = 'sms'\n", "type must be"),
        ("rules = [", "invalid TOML"),
    ],
)
def test_bad_toml(text: str, message: str) -> None:
    """Mistakes in the file are reported with what to fix."""
    with pytest.raises(ConfigurationError, match=message):
        parse_alert_config(text)


# --- evaluation and lifecycle -------------------------------------------------------------------


def test_critical_errors_fire_with_a_correlation_id(clock: FakeClock, store: Store) -> None:
    """More than 3 critical errors in 5 minutes fire once, with the newest one's correlation."""
    channel = Recorder()
    engine = engine_for(store, CRITICAL, channel=channel)
    store.write_events([critical(T0 - 60 + i, f"c{i}") for i in range(3)])
    assert engine.run_once() == []
    store.write_events([critical(T0 - 10, "c3")])
    with capture_events("alert") as published:
        (alert,) = engine.run_once()
    assert (alert.rule, alert.status, alert.severity, alert.fired_at) == (
        "critical_error_rate",
        "firing",
        "critical",
        T0,
    )
    assert alert.correlation_id == "c3"
    assert alert.details["value"] == 4.0
    assert alert.message == "4 critical errors in the last 5m (critical_errors > 3)"
    assert store.alerts(status="firing") == [alert]
    (event,) = published
    assert (event.name, event.correlation_id, event.payload["status"]) == (
        "critical_error_rate",
        "c3",
        "firing",
    )
    assert [e.event.kind for e in store.timeline("c3")] == ["error", "alert"]
    assert engine.delivery.flush(30)
    assert channel.sent == [alert]
    assert counters.get("alerts.fired") == 1
    engine.stop()


def test_dedup_then_resolve(clock: FakeClock, store: Store) -> None:
    """A firing alert is not repeated; it resolves once the condition clears; both stored."""
    engine = engine_for(store, CRITICAL)
    store.write_events([critical(T0 - i, f"c{i}") for i in range(4)])
    (fired,) = engine.run_once()
    clock.advance(60)
    assert engine.run_once() == []
    assert counters.get("alerts.deduplicated") == 1
    assert engine.firing() == [fired]
    clock.advance(300)  # the errors leave the 5-minute window
    (resolved,) = engine.run_once()
    assert (resolved.id, resolved.status, resolved.resolved_at) == (fired.id, "resolved", T0 + 360)
    assert resolved.message == (
        "critical_errors > 3 no longer holds: critical_errors is 0 (was 4) after 6m"
    )
    assert store.alerts() == [resolved]
    assert engine.firing() == []
    statuses = [e.event.payload["status"] for e in store.timeline("c0") if e.event.kind == "alert"]
    assert statuses == ["firing", "resolved"]
    assert counters.get("alerts.resolved") == 1
    engine.stop()


def test_cooldown(clock: FakeClock, store: Store) -> None:
    """After firing, the same rule and key stay quiet for the cooldown, then fire again."""
    engine = engine_for(store, CRITICAL)
    store.write_events([critical(T0 - i) for i in range(4)])
    (first,) = engine.run_once()
    clock.advance(400)
    (resolved,) = engine.run_once()
    assert resolved.status == "resolved"
    store.write_events([critical(clock.time() - i) for i in range(4)])
    assert engine.run_once() == []  # 400 s after firing: within the 15-minute cooldown
    assert counters.get("alerts.suppressed") == 1
    clock.advance(899 - 400)
    store.write_events([critical(clock.time() - i) for i in range(4)])
    assert engine.run_once() == []  # 899 s
    clock.advance(1)
    (second,) = engine.run_once()  # 900 s: the cooldown has passed
    assert second.status == "firing"
    assert second.id != first.id
    assert [a.status for a in store.alerts()] == ["firing", "resolved"]
    engine.stop()


def test_min_volume_guard(clock: FakeClock, store: Store) -> None:
    """A ratio over too few events does not fire; with enough volume it does."""
    rule = AlertRule(
        name="correlation_failure",
        condition="correlation_id_missing > 1%",
        window="15m",
        min_volume=100,
    )
    engine = AlertEngine(store, rules=[rule], channels=[Recorder()], count_log_lines=False)
    bare = [Event("operation", "x", {"phase": "end"}, timestamp=T0 - i) for i in range(10)]
    store.write_events(
        bare + [Event("operation", "x", {}, f"c{i}", timestamp=T0) for i in range(40)]
    )
    assert engine.run_once() == []  # 20 % missing, but 50 events < 100
    assert counters.get("alerts.below_min_volume") == 1
    store.write_events([Event("operation", "x", {}, f"d{i}", timestamp=T0) for i in range(60)])
    (alert,) = engine.run_once()
    assert alert.details["value"] == pytest.approx(10 / 110)
    assert alert.details["volume"] == 110
    assert alert.correlation_id is None
    assert alert.message.startswith("9.1% of 110 events and log lines in the last 15m")
    engine.stop()


def test_log_lines_count_in_the_coverage(clock: FakeClock, store: Store) -> None:
    """Log lines written since the engine started count, with and without a correlation id."""
    import faultlens

    rule = AlertRule(
        name="coverage", condition="correlation_id_missing > 40%", window="15m", min_volume=10
    )
    with capture_logs():
        engine = AlertEngine(store, rules=[rule], channels=[Recorder()])
        log = get_logger("app")
        for _ in range(6):
            log.info("no context")
        with faultlens.correlate("abc"):
            for _ in range(4):
                log.info("in a request")
        (alert,) = engine.run_once()
    assert alert.details["value"] == pytest.approx(0.6)
    assert alert.details["volume"] == 10
    engine.stop()


def test_recovery_success_rate(clock: FakeClock, store: Store) -> None:
    """Recovery below 85 % over enough attempts fires."""
    rule = AlertRule(
        name="recovery_failure",
        condition="recovery_success_rate < 85%",
        window="15m",
        min_volume=5,
    )
    engine = engine_for(store, rule)
    store.write_events(
        [recovery("fallback", "cache", "fell_back", T0 - i) for i in range(4)]
        + [recovery("fallback", "cache", "not_recovered", T0 - 5)]
        + [recovery("retry", "db", "succeeded_first_time", T0 - 6) for _ in range(10)]
    )
    (alert,) = engine.run_once()
    assert alert.details["value"] == pytest.approx(0.8)
    assert alert.details["volume"] == 5
    engine.stop()


def test_same_error_pattern_is_per_issue(clock: FakeClock, store: Store) -> None:
    """More than 10 errors of one issue in an hour fire for that issue only."""
    rule = AlertRule(name="pattern", condition="same_error_pattern > 10", window="1h")
    engine = engine_for(store, rule)
    store.write_events(
        [critical(T0 - 300 * i, f"a{i}", fingerprint="A") for i in range(11)]
        + [critical(T0 - i, f"b{i}", fingerprint="B") for i in range(10)]
    )
    issues = {i.title.split(":")[0]: i.id for i in store.issues()}
    (alert,) = engine.run_once()
    assert alert.key == f"issue:{issues['A']}"
    assert alert.details["issue_id"] == issues["A"]
    assert alert.correlation_id == "a0"  # the issue's newest event
    assert alert.message == (
        f"issue {issues['A']} (A: database down) occurred 11 times in the last 1h "
        "(same_error_pattern > 10)"
    )
    store.write_events([critical(T0, "b10", fingerprint="B")])
    (other,) = engine.run_once()
    assert other.key == f"issue:{issues['B']}"
    assert len(engine.firing()) == 2
    engine.stop()


def test_new_issue_and_regression(clock: FakeClock, store: Store) -> None:
    """A new issue fires its rule; a resolved issue seen again fires the regression rule."""
    rules = [r for r in DEFAULT_RULES if r.name in ("new_issue", "regression")]
    engine = engine_for(store, *rules)
    store.write_events([critical(T0 - 10, "n1")])
    (issue,) = store.issues().items
    (new,) = engine.run_once()
    assert (new.rule, new.key, new.correlation_id) == ("new_issue", f"issue:{issue.id}", "n1")
    assert new.message == f"new issue {issue.id} (db: database down) (new_issue)"
    clock.advance(3601)
    (gone,) = engine.run_once()
    assert (gone.rule, gone.status) == ("new_issue", "resolved")
    store.set_issue_status(issue.id, "resolved", actor="ana")
    clock.advance(60)
    store.write_events([critical(clock.time(), "again")])
    (regression,) = engine.run_once()
    assert (regression.rule, regression.severity, regression.correlation_id) == (
        "regression",
        "high",
        "again",
    )
    assert regression.message == f"issue {issue.id} (db: database down) regressed (regression)"
    engine.stop()


def test_health_score_rule(clock: FakeClock, store: Store) -> None:
    """A rule can watch the health score."""
    rule = AlertRule(name="health", condition="health_score < 70", window="1h")
    engine = engine_for(store, rule)
    store.write_events(
        [critical(T0 - i, f"c{i}") for i in range(5)]
        + [Event("operation", "x", {"phase": "end"}, f"c{i}", timestamp=T0) for i in range(20)]
    )
    (alert,) = engine.run_once()
    # errors 40 * min(1, (5 * 2 / 20) / 0.1) = 40; one new issue 4: score 56
    assert alert.details["value"] == 56.0
    assert alert.message == "health score 56.0/100 over the last 1h (health_score < 70)"
    engine.stop()


def test_max_alerts_caps_a_keyed_rule(clock: FakeClock, store: Store) -> None:
    """A keyed rule fires for at most max_alerts keys at once."""
    rule = AlertRule(name="new", condition="new_issue", window="1h", max_alerts=2)
    engine = engine_for(store, rule)
    store.write_events([critical(T0 - i, fingerprint=f"f{i}") for i in range(4)])
    assert len(engine.run_once()) == 2
    assert counters.get("alerts.capped") == 2
    engine.stop()


def test_restart_keeps_firing_alerts_and_cooldowns(clock: FakeClock, store: Store) -> None:
    """A new engine on the same store neither repeats a firing alert nor forgets it."""
    first = engine_for(store, CRITICAL)
    store.write_events([critical(T0 - i) for i in range(4)])
    (fired,) = first.run_once()
    first.stop()
    second = engine_for(store, CRITICAL)
    assert second.run_once() == []
    assert second.firing() == [fired]
    assert counters.get("alerts.deduplicated") == 1
    clock.advance(400)
    (resolved,) = second.run_once()
    assert resolved.id == fired.id
    second.stop()
    third = engine_for(store, CRITICAL)
    store.write_events([critical(clock.time() - i) for i in range(4)])
    assert third.run_once() == []  # the cooldown survived the restart
    assert counters.get("alerts.suppressed") == 1
    third.stop()


def test_tenant_engine(clock: FakeClock, store: Store) -> None:
    """An engine for one tenant counts only its events and tags its alerts."""
    engine = AlertEngine(store, rules=[CRITICAL], channels=[Recorder()], tenant_id="acme")
    others = [critical(T0 - i) for i in range(4)]
    store.write_events(others)
    assert engine.run_once() == []
    mine = [
        Event(e.kind, e.name, e.payload, tenant_id="acme", timestamp=T0 - i)
        for i, e in enumerate(others)
    ]
    store.write_events(mine)
    (alert,) = engine.run_once()
    assert alert.tenant_id == "acme"
    engine.stop()


def test_rule_channels_route_deliveries(clock: FakeClock, store: Store) -> None:
    """A rule's channels receive its alerts; the others do not."""
    pager, chat = Recorder("pager"), Recorder("chat")
    rule = AlertRule(
        name="critical_error_rate", condition="critical_errors > 3", channels=("pager",)
    )
    engine = AlertEngine(store, rules=[rule], channels=[pager, chat])
    store.write_events([critical(T0 - i) for i in range(4)])
    engine.run_once()
    assert engine.delivery.flush(30)
    assert (len(pager.sent), len(chat.sent)) == (1, 0)
    engine.stop()


def test_default_channel_is_the_log(clock: FakeClock, store: Store) -> None:
    """Without channels, alerts go to the log, carrying the triggering correlation id."""
    with capture_logs() as logs:
        engine = AlertEngine(store, rules=[CRITICAL])
        assert list(engine.delivery.channels) == ["log"]
        assert isinstance(engine.delivery.channels["log"], LogChannel)
        store.write_events([critical(T0 - i, f"c{i}") for i in range(4)])
        engine.run_once()
        engine.stop()
    (line,) = [r for r in logs if r.get("rule") == "critical_error_rate"]
    assert line["level"] == "ERROR"
    assert line["correlation_id"] == "c0"
    assert line["message"] == (
        "[CRITICAL] FIRING critical_error_rate: 4 critical errors in the last 5m "
        "(critical_errors > 3)"
    )


def test_background_thread(clock: FakeClock, store: Store) -> None:
    """start() evaluates at once on a daemon thread; stop() ends it."""
    channel = Recorder()
    engine = engine_for(store, CRITICAL, channel=channel)
    store.write_events([critical(T0 - i) for i in range(4)])
    engine.start(interval=3600)
    with pytest.raises(ConfigurationError, match="already running"):
        engine.start()
    assert channel.arrived.wait(10)
    engine.stop()
    assert engine.runs >= 1
    assert channel.sent[0].rule == "critical_error_rate"


def test_background_failures_are_counted(clock: FakeClock) -> None:
    """A failing evaluation on the thread is counted and reported, never raised."""
    tried = threading.Event()

    class Broken:
        def alerts(self, **_: object) -> list[Alert]:
            tried.set()
            raise RuntimeError("database unreachable")

    engine = AlertEngine(Broken(), rules=[CRITICAL], channels=[Recorder()])  # type: ignore[arg-type]
    engine.start(interval=3600)
    assert tried.wait(10)
    engine.stop()
    assert counters.get("alerts.evaluation_errors") == 1


def test_event_write_failure_keeps_the_alert(clock: FakeClock, store: Store) -> None:
    """If the alert event cannot be written, the saved alert stands and the loss is counted."""
    engine = engine_for(store, CRITICAL)
    store.write_events([critical(T0 - i) for i in range(4)])

    def refuse(events: object) -> int:
        raise RuntimeError("disk full")

    store.write_events = refuse  # type: ignore[method-assign]
    with capture_events("alert") as published:
        (alert,) = engine.run_once()
    assert store.alerts() == [alert]
    assert counters.get("alerts.event_write_failures") == 1
    assert len(published) == 1
    engine.stop()


def test_publish_off(clock: FakeClock, store: Store) -> None:
    """publish=False keeps alert events off the bus (they are still stored)."""
    engine = AlertEngine(store, rules=[CRITICAL], channels=[Recorder()], publish=False)
    store.write_events([critical(T0 - i, "c") for i in range(4)])
    with capture_events("alert") as published:
        engine.run_once()
    assert published == []
    assert "alert" in [e.event.kind for e in store.timeline("c")]
    engine.stop()


def test_duplicate_rule_names_refused(store: Store) -> None:
    """Two rules with one name are refused."""
    with pytest.raises(ConfigurationError, match="same name"):
        AlertEngine(store, rules=[CRITICAL, CRITICAL])


def test_from_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: Store) -> None:
    """An engine from a TOML file gets its rules and channels, plus the log."""
    path = tmp_path / "alerts.toml"
    path.write_text("[[rules]]\nname = 'errors'\ncondition = 'errors > 100'\n")
    engine = AlertEngine.from_config(store, path)
    assert [r.name for r in engine.rules] == ["errors"]
    assert list(engine.delivery.channels) == ["log"]
    engine.stop()
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_alert_config(tmp_path / "missing.toml")


def test_bus_is_clean_after_engine() -> None:
    """The engine leaves no subscription behind."""
    assert not _events.get_bus().active
