"""Recovery policies: retry, circuit breaker, timeout, fallback, bulkhead, pipeline.

Every policy is a :class:`Policy`: a decorator for sync and async functions, with
``.call`` / ``.acall`` for one-off calls, composable with :func:`pipeline` (the
first policy outermost; ``pipeline.default(...)`` orders the usual set safely).
Every attempt, rejection and fallback is a ``recovery`` event tied to the current
correlation id.  See ``docs/recovery.md``.

Exception tree (under :class:`faultlens.errors.FaultlensError`)::

    RecoveryError
    ├── RetryExhaustedError         retry(raise_exhausted=True) gave up
    ├── BulkheadFullError           no slot and no room in the queue
    ├── PolicyTimeoutError          timeout() ran out (also a TimeoutError)
    └── CircuitOpenError            the circuit is open
"""

from faultlens.recovery._backoff import Backoff, retry_after_hint
from faultlens.recovery._breaker import (
    BreakerMetrics,
    CircuitBreaker,
    CircuitOpenError,
    StateChange,
)
from faultlens.recovery._breaker_redis import RedisBreakerState
from faultlens.recovery._breaker_state import (
    BreakerSettings,
    BreakerStateStore,
    CircuitState,
    InMemoryBreakerState,
    SharedState,
    SyncRequest,
)
from faultlens.recovery._builtin_strategies import (
    AuthenticationRecoveryStrategy,
    DatabaseRecoveryStrategy,
    ValidationRecoveryStrategy,
)
from faultlens.recovery._bulkhead import Bulkhead, bulkhead
from faultlens.recovery._errors import (
    BulkheadFullError,
    PolicyTimeoutError,
    RecoveryError,
    RetryExhaustedError,
)
from faultlens.recovery._fallback import Fallback, fallback
from faultlens.recovery._layers import (
    DEFAULT_LAYER_POLICIES,
    DEFAULT_LAYER_POLICY,
    ErrorContext,
    ErrorContexts,
    EscalationLevel,
    LayerErrorState,
    LayerPolicies,
    LayerPolicy,
    error_context,
    error_contexts,
    layer_policies,
    policy_for,
    set_layer_policy,
)
from faultlens.recovery._pipeline import Pipeline, pipeline
from faultlens.recovery._policy import Policy
from faultlens.recovery._retry import Retry, RetryBudget, is_retryable, retry
from faultlens.recovery._strategies import (
    AsyncRecoveryStrategy,
    CallSite,
    RecoveryContext,
    RecoveryEngine,
    RecoveryResult,
    RecoveryStatus,
    RecoveryStrategy,
    StrategyChain,
    recover,
)
from faultlens.recovery._timeout import Timeout, deadline, remaining, timeout

__all__ = [
    "DEFAULT_LAYER_POLICIES",
    "DEFAULT_LAYER_POLICY",
    "AsyncRecoveryStrategy",
    "AuthenticationRecoveryStrategy",
    "Backoff",
    "BreakerMetrics",
    "BreakerSettings",
    "BreakerStateStore",
    "Bulkhead",
    "BulkheadFullError",
    "CallSite",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "DatabaseRecoveryStrategy",
    "ErrorContext",
    "ErrorContexts",
    "EscalationLevel",
    "Fallback",
    "InMemoryBreakerState",
    "LayerErrorState",
    "LayerPolicies",
    "LayerPolicy",
    "Pipeline",
    "Policy",
    "PolicyTimeoutError",
    "RecoveryContext",
    "RecoveryEngine",
    "RecoveryError",
    "RecoveryResult",
    "RecoveryStatus",
    "RecoveryStrategy",
    "RedisBreakerState",
    "Retry",
    "RetryBudget",
    "RetryExhaustedError",
    "SharedState",
    "StateChange",
    "StrategyChain",
    "SyncRequest",
    "Timeout",
    "ValidationRecoveryStrategy",
    "bulkhead",
    "deadline",
    "error_context",
    "error_contexts",
    "fallback",
    "is_retryable",
    "layer_policies",
    "pipeline",
    "policy_for",
    "recover",
    "remaining",
    "retry",
    "retry_after_hint",
    "set_layer_policy",
    "timeout",
]
