"""pipeline(): several policies around one call, in an explicit order.

``pipeline(a, b, c)`` is ``a(b(c(fn)))``: the first policy is the outermost.  The
order is the semantics, so it is never rearranged behind your back; it is
inspectable (``.policies``, ``describe()``), and :meth:`PipelineBuilder.default`
builds the safe order for the usual set::

    fallback ▸ retry ▸ circuit breaker ▸ timeout ▸ bulkhead ▸ call

- fallback outermost: it answers whatever is left after every other policy gave
  up, including an open circuit or a full bulkhead;
- retry outside the breaker: the breaker sees (and counts) every attempt, and once
  it opens, its ``CircuitOpenError`` stops the retry at once instead of being
  retried;
- timeout inside the breaker: an attempt that times out counts as a failure of
  the dependency; inside the retry: each attempt gets its own time;
- bulkhead innermost: a slot is held only while the dependency is actually being
  called (not during retry waits), and waiting for a slot counts against the
  attempt's timeout (a sync bulkhead never queues past that deadline).

A total deadline for the whole thing goes outermost: ``pipeline(timeout(10),
...)``, or ``retry(deadline=10)``.

The composition happens once, at decoration: the pipeline adds no layer of its own
to a call, and a retry directly around an (untimed) circuit breaker is composed
into one function rather than two nested wrappers (see ``_fused``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import ParamSpec, TypeVar

from faultlens.errors import ConfigurationError
from faultlens.recovery._policy import Policy, as_coroutine_function

__all__ = ["Pipeline", "PipelineBuilder", "pipeline"]

P = ParamSpec("P")
R = TypeVar("R")


def _flatten(policies: Iterable[Policy]) -> tuple[Policy, ...]:
    out: list[Policy] = []
    for policy in policies:
        if isinstance(policy, Pipeline):
            out.extend(policy.policies)
        elif isinstance(policy, Policy):
            out.append(policy)
        else:
            raise ConfigurationError(
                f"pipeline() takes recovery policies (retry(), CircuitBreaker(), timeout()…), "
                f"not {policy!r}"
            )
    return tuple(out)


class Pipeline(Policy):
    """Policies applied around one call, outermost first; see :func:`pipeline`."""

    __slots__ = ("name", "policies")
    kind = "strategy"

    def __init__(self, *policies: Policy, name: str | None = None) -> None:
        self.policies: tuple[Policy, ...] = _flatten(policies)
        self.name = name or "pipeline"

    def describe(self) -> str:
        """The order as text, e.g. ``fallback ▸ retry ▸ circuit_breaker ▸ call``."""
        return " ▸ ".join([*(p.kind for p in self.policies), "call"])

    def wrap(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` wrapped by every policy, the first one outermost."""
        from faultlens.recovery._fused import can_fuse, retry_over_breaker

        policies = self.policies
        wrapped: Callable[P, R] = fn
        i = len(policies) - 1
        while i >= 0:
            policy = policies[i]
            if i > 0 and can_fuse(policies[i - 1], policy):
                # retry ▸ breaker: one function (see _fused); the retry is consumed too.
                inner = retry_over_breaker(policies[i - 1], policy, wrapped, fn)  # type: ignore[arg-type]
                i -= 2
            else:
                inner = policy.wrap(wrapped)
                i -= 1
            if inner is not wrapped:
                # Each layer looks like the function: inner policies name their
                # events after it, not after the wrapper below them.
                functools.update_wrapper(inner, fn)
            wrapped = inner
        return wrapped

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Return coroutine function ``fn`` wrapped by every policy, the first one outermost."""
        from faultlens.recovery._fused import can_fuse, retry_over_breaker_async

        policies = self.policies
        wrapped: Callable[P, Awaitable[R]] = as_coroutine_function(fn)
        i = len(policies) - 1
        while i >= 0:
            policy = policies[i]
            if i > 0 and can_fuse(policies[i - 1], policy):
                inner = retry_over_breaker_async(policies[i - 1], policy, wrapped, fn)  # type: ignore[arg-type]
                i -= 2
            else:
                inner = policy.wrap_async(wrapped)
                i -= 1
            if inner is not wrapped:
                functools.update_wrapper(inner, fn)
            wrapped = inner
        return wrapped

    def __repr__(self) -> str:
        return f"<Pipeline {self.describe()}>"


class PipelineBuilder:
    """Builds pipelines: ``pipeline(*policies)`` or ``pipeline.default(...)``."""

    __slots__ = ()

    def __call__(self, *policies: Policy, name: str | None = None) -> Pipeline:
        """Compose ``policies`` around a call, the first one outermost.

        ``pipeline(fallback(...), retry(...), breaker)`` protects a function as
        ``fallback(retry(breaker(fn)))``.  The result is itself a policy: a
        decorator for sync and async functions, with ``.call`` / ``.acall``.
        Nested pipelines are flattened; ``.policies`` lists the order.
        """
        return Pipeline(*policies, name=name)

    def default(
        self,
        *,
        fallback: Policy | None = None,
        retry: Policy | None = None,
        breaker: Policy | None = None,
        timeout: Policy | None = None,
        bulkhead: Policy | None = None,
        name: str | None = None,
    ) -> Pipeline:
        """The given policies in the safe order: fallback ▸ retry ▸ breaker ▸ timeout ▸ bulkhead.

        Leave out what you do not need; see the module documentation (and
        ``docs/recovery.md``) for why this order.
        """
        chosen = [p for p in (fallback, retry, breaker, timeout, bulkhead) if p is not None]
        if not chosen:
            raise ConfigurationError("pipeline.default() needs at least one policy")
        return Pipeline(*chosen, name=name)


pipeline = PipelineBuilder()
"""Compose policies: ``pipeline(*policies)``; ``pipeline.default(...)`` for the safe order."""
