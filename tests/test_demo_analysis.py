"""The demo's analysis scene: an incident replay that shows every pattern type and alerts."""

from __future__ import annotations

from pathlib import Path

from faultlens import store as open_store
from faultlens.analysis import PatternType
from faultlens.demo.analysis_scene import build_incident, run_analysis_scene

NOW = 1_700_000_000.0
ALL_TYPES = {t.value for t in PatternType}


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'demo.db'}"


def test_scene_detects_every_pattern_type_and_fires_alerts(tmp_path: Path) -> None:
    """Each of the four pattern types is detected and the seeds' alerts fire."""
    scene = run_analysis_scene(_url(tmp_path), now=NOW, tenant_id="incident-test")
    assert scene.healthy
    assert scene.pattern_types == ALL_TYPES
    fired = {a.rule for a in scene.alerts if a.status == "firing"}
    assert {"critical_error_rate", "error_pattern_detected", "recovery_failure"} <= fired
    assert {"new_issue", "correlation_failure"} <= fired


def test_scene_saves_patterns_and_alerts(tmp_path: Path) -> None:
    """Patterns and alerts are stored under the replay's tenant."""
    scene = run_analysis_scene(_url(tmp_path), now=NOW, tenant_id="incident-test")
    store = open_store.open(_url(tmp_path))
    try:
        stored = store.patterns(tenant_id="incident-test", limit=1000)
        assert {p.type.value for p in stored} == ALL_TYPES
        assert {a.id for a in store.alerts(limit=1000)} == {a.id for a in scene.alerts}
        cascade = next(p for p in stored if p.type is PatternType.CASCADE)
        assert cascade.layers == ("infrastructure", "core", "service", "api")
    finally:
        store.close()


def test_render_names_patterns_alerts_and_report(tmp_path: Path) -> None:
    """The rendering lists every pattern type, the fired alerts and the insights report."""
    text = run_analysis_scene(_url(tmp_path), now=NOW, tenant_id="incident-test").render()
    for kind in ALL_TYPES:
        assert f"    {kind} " in text
    assert "critical critical_error_rate" in text
    assert "root cause OperationalError: connection to db-primary refused" in text
    assert "faultlens report: last 2h of the incident replay" in text
    assert "verdict: every pattern type and 2+ alerts" in text


def test_reruns_into_the_same_store_stay_healthy(tmp_path: Path) -> None:
    """Each run has a tenant of its own, so a second run fires its alerts again."""
    first = run_analysis_scene(_url(tmp_path), now=NOW)
    second = run_analysis_scene(_url(tmp_path), now=NOW + 600)
    assert first.tenant_id != second.tenant_id
    assert first.healthy
    assert second.healthy


def test_incident_is_deterministic_and_in_time_order() -> None:
    """The same end time gives the same events, sorted, all in the tenant, before the end."""
    events = build_incident(NOW, "t1")
    again = build_incident(NOW, "t1")
    shape = [(e.kind, e.name, e.timestamp, e.correlation_id) for e in events]
    assert shape == [(e.kind, e.name, e.timestamp, e.correlation_id) for e in again]
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)
    assert stamps[0] >= NOW - 86_400
    assert stamps[-1] <= NOW
    assert {e.tenant_id for e in events} == {"t1"}
    assert any(e.correlation_id is None for e in events)  # the cron job: coverage below 100 %
