"""Layer policies, the per-correlation error context, escalation and the per-minute budget."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest

from faultlens import correlate
from faultlens._metrics import counters
from faultlens.errors import ConfigurationError, Severity
from faultlens.recovery._layers import (
    DEFAULT_LAYER_POLICIES,
    DEFAULT_LAYER_POLICY,
    ErrorContext,
    ErrorContexts,
    EscalationLevel,
    LayerPolicies,
    LayerPolicy,
    error_context,
    error_contexts,
    layer_policies,
    policy_for,
    set_layer_policy,
)
from faultlens.testing import FakeClock


@pytest.fixture(autouse=True)
def _reset_recovery_state() -> Iterator[None]:
    """Start every test with the built-in layer policies and no error contexts."""
    layer_policies().reset()
    error_contexts().clear()
    yield
    layer_policies().reset()
    error_contexts().clear()


# --- policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "per_minute", "threshold", "automatic", "weights"),
    [
        ("api", 20, 10, True, (1.0, 2.0, 4.0, 8.0)),
        ("service", 15, 8, True, (1.5, 3.0, 6.0, 12.0)),
        ("core", 10, 5, False, (2.0, 4.0, 8.0, 16.0)),
        ("infrastructure", 5, 3, True, (3.0, 6.0, 12.0, 24.0)),
    ],
)
def test_default_policies(
    layer: str,
    per_minute: int,
    threshold: int,
    automatic: bool,
    weights: tuple[float, float, float, float],
) -> None:
    """Each built-in layer has the documented budget, threshold, switch and weights."""
    policy = policy_for(layer)
    assert policy is DEFAULT_LAYER_POLICIES[layer]
    assert policy.max_errors_per_minute == per_minute
    assert policy.escalation_threshold == threshold
    assert policy.automatic_recovery is automatic
    assert policy.strategies == ()
    assert tuple(policy.severity_weights[s] for s in ("low", "medium", "high", "critical")) == (
        weights
    )
    assert policy.score_threshold == 2 * threshold


def test_unknown_layers_use_the_default_policy() -> None:
    """A layer nobody configured, or no layer, gets the default policy."""
    assert policy_for("ui") is DEFAULT_LAYER_POLICY
    assert policy_for(None) is DEFAULT_LAYER_POLICY
    assert DEFAULT_LAYER_POLICY.max_errors_per_minute == 10
    assert DEFAULT_LAYER_POLICY.escalation_threshold == 5


def test_weight_accepts_severity_members_and_strings() -> None:
    """weight() takes Severity members or their names; unknown severities weigh 1.0."""
    policy = policy_for("infrastructure")
    assert policy.weight(Severity.CRITICAL) == 24.0
    assert policy.weight("HIGH") == 12.0
    assert policy.weight("catastrophic") == 1.0


def test_policies_are_immutable_and_validated() -> None:
    """Policies are frozen; bad numbers are configuration errors naming the field."""
    policy = LayerPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.escalation_threshold = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.severity_weights["low"] = 5.0  # type: ignore[index]
    with pytest.raises(ConfigurationError, match="max_errors_per_minute"):
        LayerPolicy(max_errors_per_minute=0)
    with pytest.raises(ConfigurationError, match="escalation_threshold"):
        LayerPolicy(escalation_threshold=True)
    with pytest.raises(ConfigurationError, match="severity_weights"):
        LayerPolicy(severity_weights={"low": -1})
    assert LayerPolicy(severity_weights={Severity.HIGH: 3}).weight("high") == 3.0


def test_override_and_restore_a_layer_policy() -> None:
    """set_layer_policy replaces a layer's policy; None restores the built-in one."""
    custom = dataclasses.replace(policy_for("core"), automatic_recovery=True)
    previous = set_layer_policy("core", custom)
    assert previous is DEFAULT_LAYER_POLICIES["core"]
    assert policy_for("core") is custom
    set_layer_policy("billing", LayerPolicy(max_errors_per_minute=2))
    assert policy_for("billing").max_errors_per_minute == 2
    set_layer_policy("core", None)
    set_layer_policy("billing", None)
    assert policy_for("core") is DEFAULT_LAYER_POLICIES["core"]
    assert policy_for("billing") is DEFAULT_LAYER_POLICY


def test_registry_rejects_what_is_not_a_policy() -> None:
    """Only LayerPolicy instances and non-empty layer names are accepted."""
    with pytest.raises(ConfigurationError, match="LayerPolicy"):
        set_layer_policy("api", {"max_errors_per_minute": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="layer name"):
        set_layer_policy("", LayerPolicy())
    with pytest.raises(ConfigurationError, match="LayerPolicy"):
        LayerPolicies({"api": object()})  # type: ignore[dict-item]


def test_a_private_registry_and_reset() -> None:
    """A LayerPolicies of one's own starts from given policies; reset forgets overrides."""
    registry = LayerPolicies({"api": LayerPolicy(max_errors_per_minute=1)})
    assert registry.policy_for("api").max_errors_per_minute == 1
    assert registry.policy_for("service") is DEFAULT_LAYER_POLICY
    registry.set("service", LayerPolicy(escalation_threshold=1))
    assert set(registry.as_dict()) == {"api", "service"}
    registry.reset()
    assert set(registry.as_dict()) == {"api"}


# --- error context ----------------------------------------------------------------------


def test_error_context_counts_and_weights_per_layer() -> None:
    """Counts and severity scores accumulate per layer with the layer's weights."""
    ctx = ErrorContext("c-1")
    ctx.record("api", "low", policy_for("api"))
    ctx.record("api", "high", policy_for("api"))
    ctx.record("infrastructure", Severity.MEDIUM, policy_for("infrastructure"))
    assert ctx.count("api") == 2
    assert ctx.score("api") == 5.0
    assert ctx.score("infrastructure") == 6.0
    assert ctx.count() == 3
    assert ctx.score() == 11.0
    assert ctx.layers() == ("api", "infrastructure")
    assert ctx.count("core") == 0
    assert ctx.score("core") == 0.0


def test_escalation_by_count_threshold() -> None:
    """A layer escalates when its error count reaches escalation_threshold."""
    policy = LayerPolicy(escalation_threshold=4, max_errors_per_minute=100)
    ctx = ErrorContext("c")
    levels = [ctx.record("service", "low", policy).level for _ in range(8)]
    assert levels == [
        EscalationLevel.NONE,
        EscalationLevel.ELEVATED,
        EscalationLevel.ELEVATED,
        EscalationLevel.HIGH,
        EscalationLevel.HIGH,
        EscalationLevel.HIGH,
        EscalationLevel.HIGH,
        EscalationLevel.CRITICAL,
    ]
    assert ctx.should_escalate()
    assert ctx.should_escalate("service")
    assert not ctx.should_escalate("api")


def test_escalation_by_weighted_score() -> None:
    """A weighted score of twice the threshold escalates before the count does."""
    ctx = ErrorContext("c")
    # infrastructure: threshold 3, score threshold 6; one medium error weighs 6.
    state = ctx.record("infrastructure", "medium", policy_for("infrastructure"))
    assert state.count == 1
    assert state.level is EscalationLevel.HIGH
    assert state.escalated
    # api: threshold 10, score threshold 20; one low error weighs 1.
    other = ErrorContext("d")
    assert other.record("api", "low", policy_for("api")).level is EscalationLevel.NONE
    assert not other.should_escalate()


def test_a_critical_error_at_the_threshold_is_critical() -> None:
    """Reaching the threshold with a critical error makes the level critical."""
    policy = LayerPolicy(escalation_threshold=2, severity_weights={"critical": 1.0})
    ctx = ErrorContext("c")
    ctx.record("service", "critical", policy)
    assert ctx.level is EscalationLevel.ELEVATED
    assert ctx.record("service", "low", policy).level is EscalationLevel.CRITICAL


def test_escalated_is_true_only_for_the_rising_error() -> None:
    """LayerErrorState.escalated marks the error that raised the level to high or above."""
    policy = LayerPolicy(escalation_threshold=2, max_errors_per_minute=100)
    ctx = ErrorContext("c")
    flags = [ctx.record("api", "low", policy).escalated for _ in range(5)]
    assert flags == [False, True, False, True, False]


def test_level_never_falls() -> None:
    """The level of a correlation only rises, also after the minute passed."""
    policy = LayerPolicy(escalation_threshold=1)
    with FakeClock() as clock:
        ctx = ErrorContext("c")
        ctx.record("api", "low", policy)
        clock.advance(3600)
        ctx.record("service", "low", LayerPolicy(escalation_threshold=100))
    assert ctx.level is EscalationLevel.HIGH


def test_errors_per_minute_with_a_fake_clock() -> None:
    """Errors leave the per-minute count once a minute has passed."""
    policy = LayerPolicy(max_errors_per_minute=3, escalation_threshold=100)
    with FakeClock() as clock:
        ctx = ErrorContext("c")
        states = [ctx.record("infrastructure", "low", policy) for _ in range(4)]
        assert [s.errors_last_minute for s in states] == [1, 2, 3, 4]
        assert [s.over_budget for s in states] == [False, False, False, True]
        assert ctx.over_budget("infrastructure")
        clock.advance(30)
        assert ctx.errors_last_minute("infrastructure") == 4
        ctx.record("infrastructure", "low", policy)
        assert ctx.errors_last_minute("infrastructure") == 5
        clock.advance(35)  # the first four are more than a minute old
        assert ctx.errors_last_minute("infrastructure") == 1
        assert not ctx.over_budget("infrastructure")
        clock.advance(600)
        assert ctx.errors_last_minute("infrastructure") == 0
    assert ctx.count("infrastructure") == 5  # the total count does not decay
    assert ctx.errors_last_minute("api") == 0
    assert not ctx.over_budget("api")


def test_rate_window_memory_is_fixed() -> None:
    """Many errors over a long time keep the same number of buckets."""
    from faultlens.recovery._layers import _BUCKETS, _RateWindow

    window = _RateWindow()
    for second in range(0, 10_000, 7):
        window.add(float(second))
    assert len(window._counts) == _BUCKETS
    assert window.total(10_000.0) <= 60 // 7 + 2


def test_snapshot_is_json_ready() -> None:
    """snapshot() summarises level, layers and recoveries as plain data."""
    import orjson

    with FakeClock():
        ctx = ErrorContext("c")
        ctx.record("api", "high", policy_for("api"))
        ctx.record_recovery("recovered")
        snapshot = ctx.snapshot()
    orjson.dumps(snapshot)
    assert snapshot["correlation_id"] == "c"
    assert snapshot["level"] == "none"
    assert snapshot["layers"]["api"]["count"] == 1
    assert snapshot["layers"]["api"]["errors_last_minute"] == 1
    assert snapshot["layers"]["api"]["last_error_at"] == 1_700_000_000.0
    assert snapshot["recoveries"] == {"recovered": 1}


def test_layers_per_context_are_bounded() -> None:
    """Beyond 32 distinct layers, further ones are folded into 'other' and counted."""
    ctx = ErrorContext("c")
    for i in range(40):
        ctx.record(f"layer{i}", "low", DEFAULT_LAYER_POLICY)
    assert len(ctx.layers()) == 33
    assert ctx.count("other") == 8
    assert counters.get("recovery.error_context_layers_folded") == 8


def test_record_without_policy_uses_the_registry() -> None:
    """record() without a policy looks the layer's policy up; no layer means 'unknown'."""
    ctx = ErrorContext("c")
    assert ctx.record("infrastructure", "low").score == 3.0
    assert ctx.record(None, "low").layer == "unknown"


def test_record_is_thread_safe() -> None:
    """Concurrent records from many threads are all counted."""
    ctx = ErrorContext("c")
    policy = LayerPolicy(max_errors_per_minute=100_000, escalation_threshold=100_000)

    def work() -> None:
        for _ in range(500):
            ctx.record("service", "low", policy)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ctx.count("service") == 4000
    assert ctx.errors_last_minute("service") == 4000


# --- the contexts of many correlations --------------------------------------------------


def test_contexts_are_keyed_by_correlation_id() -> None:
    """get() returns the same context for the same correlation id."""
    contexts = ErrorContexts()
    assert contexts.get("a") is contexts.get("a")
    assert contexts.get("a") is not contexts.get("b")
    assert len(contexts) == 2
    assert contexts.peek("a") is not None
    assert contexts.peek("zzz") is None
    contexts.discard("a")
    assert contexts.peek("a") is None


def test_contexts_are_a_bounded_lru() -> None:
    """The least recently used correlation is evicted first, and counted."""
    contexts = ErrorContexts(max_correlations=2)
    a = contexts.get("a")
    contexts.get("b")
    assert contexts.get("a") is a  # a is now the most recent
    contexts.get("c")
    assert contexts.peek("b") is None
    assert contexts.peek("a") is a
    assert len(contexts) == 2
    assert counters.get("recovery.error_contexts_evicted") == 1
    assert {c.correlation_id for c in contexts} == {"a", "c"}
    contexts.clear()
    assert len(contexts) == 0


def test_no_correlation_gets_a_fresh_unshared_context() -> None:
    """Errors outside a correlation do not accumulate into a shared context."""
    contexts = ErrorContexts()
    one = contexts.get(None)
    one.record("api", "low", DEFAULT_LAYER_POLICY)
    assert contexts.get(None) is not one
    assert contexts.get(None).count() == 0
    assert len(contexts) == 0


def test_max_correlations_is_validated() -> None:
    """max_correlations must be a positive integer."""
    with pytest.raises(ConfigurationError):
        ErrorContexts(max_correlations=0)
    with pytest.raises(ConfigurationError):
        ErrorContexts(max_correlations=True)


def test_error_context_of_the_current_correlation() -> None:
    """error_context() without an id returns the current correlation's context."""
    with correlate() as ctx:
        mine = error_context()
        assert mine.correlation_id == ctx.correlation_id
        assert error_contexts().get(ctx.correlation_id) is mine
    assert error_context(ctx.correlation_id) is mine


def test_engine_escalates_a_correlation_across_calls() -> None:
    """Errors of one correlation accumulate through the decorator until it escalates."""
    from faultlens.errors import ValidationError
    from faultlens.recovery._strategies import recover

    class Never:
        name = "never"

        def can_recover(self, error: BaseException, context: object) -> bool:
            return False

        def attempt_recovery(self, error: BaseException, context: object) -> object:
            raise AssertionError("not applicable")

        def get_fallback(self, error: BaseException, context: object) -> object:
            raise AssertionError("not applicable")

    @recover(Never())  # type: ignore[arg-type]
    def submit() -> None:
        raise ValidationError("bad input")  # api layer, severity low

    with FakeClock(), correlate() as ctx:
        for _ in range(9):
            with pytest.raises(ValidationError):
                submit()
        assert not error_context().should_escalate("api")
        with pytest.raises(ValidationError):
            submit()
        assert error_context().should_escalate("api")
    assert error_contexts().get(ctx.correlation_id).level is EscalationLevel.HIGH
