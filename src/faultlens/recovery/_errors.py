"""The exceptions recovery policies raise.

Exception tree (all under :class:`faultlens.errors.FaultlensError`)::

    RecoveryError                   transient, 503
    ├── RetryExhaustedError         retry(raise_exhausted=True) gave up; __cause__ is the last error
    ├── BulkheadFullError           bulkhead() had no free slot and no room in its queue
    ├── PolicyTimeoutError          timeout() ran out (also a TimeoutError), 504
    └── CircuitOpenError            (recovery/_breaker.py) the circuit is open

They classify as transient: a client may try again later (``retryable`` is the
classification's answer for clients).  Whether *another policy in the same
process* may retry them at once is a different question, answered by
``sheds_load``: errors raised to protect a dependency (a full bulkhead, an
exhausted retry, an open circuit) are not retried by :func:`retry` by default.
"""

from __future__ import annotations

from typing import ClassVar

from faultlens.errors import Category, FaultlensError

__all__ = ["BulkheadFullError", "PolicyTimeoutError", "RecoveryError", "RetryExhaustedError"]


class RecoveryError(FaultlensError):
    """Root of the errors raised by recovery policies (retry, breaker, timeout, bulkhead…).

    ``policy`` names the policy instance that raised it.
    """

    category = Category.TRANSIENT
    code = "recovery_failed"

    sheds_load: ClassVar[bool] = False
    """True for errors a policy raises to protect a dependency: never retried by default."""

    def __init__(self, message: str, *, policy: str | None = None) -> None:
        super().__init__(message)
        self.policy = policy


class RetryExhaustedError(RecoveryError):
    """A retry policy gave up; ``attempts`` says how often it tried.

    Raised only with ``retry(raise_exhausted=True)``; the last error is the
    ``__cause__``.  Catch it to handle "the dependency stayed down" in one place.
    An outer retry does not retry it: retries nested in retries multiply load.
    """

    code = "retry_exhausted"
    sheds_load = True

    def __init__(self, message: str, *, attempts: int, policy: str | None = None) -> None:
        super().__init__(message, policy=policy)
        self.attempts = attempts


class BulkheadFullError(RecoveryError):
    """A bulkhead rejected the call: all slots were busy and its queue was full.

    The dependency behind it is saturated; answer "try again later" (HTTP 503)
    or raise ``max_concurrent`` / ``max_queue`` if the dependency can take it.
    Not retried by ``retry()`` by default: retrying would add load to a full pool.
    """

    code = "bulkhead_full"
    sheds_load = True


class PolicyTimeoutError(RecoveryError, TimeoutError):
    """A timeout() policy ran out of time; ``seconds`` is the limit that was exceeded.

    It is also a :class:`TimeoutError`, so existing ``except TimeoutError`` code
    handles it.  Raise the limit, or make the call faster or cancellable.
    """

    code = "timeout"
    status = 504

    def __init__(self, message: str, *, seconds: float, policy: str | None = None) -> None:
        super().__init__(message, policy=policy)
        self.seconds = seconds
