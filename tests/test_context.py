"""RequestContext, scopes, bind, headers and job carriers."""

from __future__ import annotations

import re

import pytest

import faultlens
from faultlens import context
from faultlens._metrics import counters
from faultlens.context import RequestContext, correlate, extract, inject, resume, use


def test_no_context_outside_scope() -> None:
    """Outside any scope there is no context and no outgoing headers."""
    assert faultlens.correlation_id() is None
    assert faultlens.current_context() is None
    assert faultlens.outgoing_headers() == {}


def test_correlate_generates_w3c_compatible_id() -> None:
    """A fresh scope gets a 32-hex id that is also the trace id."""
    with correlate() as ctx:
        assert re.fullmatch(r"[0-9a-f]{32}", ctx.correlation_id)
        assert ctx.trace_id == ctx.correlation_id
        assert re.fullmatch(r"[0-9a-f]{16}", ctx.span_id)
        assert faultlens.correlation_id() == ctx.correlation_id
    assert faultlens.correlation_id() is None


def test_correlate_sets_attributes_and_fields() -> None:
    """Known keywords become attributes, others go into fields."""
    with correlate(user_id="u1", tenant_id="t1", permissions=["read"], order=7) as ctx:
        assert ctx.user_id == "u1"
        assert ctx.tenant_id == "t1"
        assert ctx.permissions == frozenset({"read"})
        assert ctx.fields == {"order": 7}


def test_explicit_ids_are_validated() -> None:
    """A given UUID is normalised; an unsafe one is replaced and counted."""
    with correlate("3F2504E0-4F89-11D3-9A0C-0305E82C3301") as ctx:
        assert ctx.correlation_id == "3f2504e04f8911d39a0c0305e82c3301"
        assert ctx.trace_id == ctx.correlation_id
    with correlate("job-42") as ctx:
        assert ctx.correlation_id == "job-42"
        assert re.fullmatch(r"[0-9a-f]{32}", ctx.trace_id)
    with correlate("bad\r\nid") as ctx:
        assert "\n" not in ctx.correlation_id
        assert ctx.correlation_id == ctx.trace_id
    assert counters.get("context.invalid_correlation_id") == 1


def test_scope_restored_when_body_raises() -> None:
    """The previous context comes back even when the body raises."""
    with correlate("outer") as outer:
        with pytest.raises(RuntimeError), correlate("inner"):
            assert faultlens.correlation_id() == "inner"
            raise RuntimeError("boom")
        assert faultlens.current_context() is outer
    assert faultlens.current_context() is None


def test_nested_scope_links_parent() -> None:
    """A nested scope records the outer correlation id."""
    with correlate("outer"), correlate() as inner:
        assert inner.parent_correlation_id == "outer"
        assert inner.correlation_id != "outer"


def test_context_is_immutable() -> None:
    """Attributes cannot be assigned; replace() returns a copy."""
    with correlate(user_id="u1") as ctx:
        with pytest.raises(AttributeError):
            ctx.user_id = "u2"  # type: ignore[misc]
        changed = ctx.replace(user_id="u2", extra=1)
        assert ctx.user_id == "u1"
        assert changed.user_id == "u2"
        assert changed.fields == {"extra": 1}


def test_scope_instance_cannot_be_entered_twice() -> None:
    """Re-entering an active scope object is a clear error."""
    scope = correlate()
    with scope, pytest.raises(RuntimeError, match="already entered"), scope:
        pass


def test_bind_lasts_until_scope_exit() -> None:
    """bind() changes the current context until the enclosing scope exits."""
    with correlate() as ctx:
        faultlens.bind(user_id="u9", cart=3)
        now = faultlens.current_context()
        assert now is not None
        assert now.user_id == "u9"
        assert now.fields["cart"] == 3
        assert now.correlation_id == ctx.correlation_id
    assert faultlens.current_context() is None


def test_bind_outside_scope_starts_one() -> None:
    """bind() with no scope starts a root context instead of losing the fields."""
    import contextvars

    def body() -> RequestContext | None:
        faultlens.bind(user_id="u1")
        return faultlens.current_context()

    ctx = contextvars.copy_context().run(body)
    assert ctx is not None
    assert ctx.user_id == "u1"


def test_to_dict_and_sanitized() -> None:
    """to_dict has the set attributes; sanitized redacts secrets and personal data."""
    with correlate(
        user_id="u1",
        ip_address="203.0.113.77",
        preferences={"lang": "pt-BR"},
        api_key="sk_live_abcdefghijklmnop",
        contact="ana@example.com",
    ) as ctx:
        data = ctx.to_dict()
        assert data["user_id"] == "u1"
        assert data["fields"]["api_key"] == "sk_live_abcdefghijklmnop"
        assert "journey_steps" not in data
        safe = ctx.sanitized()
        assert safe["ip_address"] == "203.0.113.0"
        assert "sk_live_abcdefghijklmnop" not in str(safe)
        assert "ana@example.com" not in str(safe)
        assert safe["preferences"] == {"lang": "pt-BR"}


def test_mask_ip_v6_and_garbage() -> None:
    """IPv6 is truncated to /48 and an invalid address is not echoed."""
    assert context.mask_ip("2001:db8:1234:5678::1") == "2001:db8:1234::"
    assert context.mask_ip("not-an-ip\r\n") == "[INVALID-IP]"


def test_outgoing_headers_continue_trace_with_new_span() -> None:
    """Outgoing traceparent keeps the trace id with a fresh span id per call."""
    with correlate() as ctx:
        first = faultlens.outgoing_headers()
        second = faultlens.outgoing_headers()
    version, trace_id, span_id, flags = first["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", ctx.trace_id, "01")
    assert span_id not in (ctx.span_id, second["traceparent"].split("-")[2])
    assert first["X-Correlation-ID"] == ctx.correlation_id


def test_header_names_configurable() -> None:
    """faultlens.configure changes the correlation header name used outgoing."""
    import io

    faultlens.configure(correlation_header="X-Trace-Token", log_stream=io.StringIO())
    with correlate() as ctx:
        assert faultlens.outgoing_headers()["X-Trace-Token"] == ctx.correlation_id


def test_context_from_headers_traceparent_becomes_correlation() -> None:
    """A valid traceparent continues the trace and its trace id becomes the correlation id."""
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ctx, rejected = context.context_from_headers(traceparent=tp, tracestate="vendor=x")
    assert not rejected
    assert ctx.correlation_id == ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.parent_span_id == "00f067aa0ba902b7"
    assert ctx.span_id != "00f067aa0ba902b7"
    assert ctx.tracestate == (("vendor", "x"),)
    assert ctx.request_id == ctx.span_id


def test_context_from_headers_explicit_correlation_wins() -> None:
    """An explicit correlation header wins over the traceparent's trace id."""
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    ctx, _ = context.context_from_headers(correlation_id="order-flow-1", traceparent=tp)
    assert ctx.correlation_id == "order-flow-1"
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.trace_flags == 0


def test_context_from_headers_invalid_traceparent_restarts() -> None:
    """An invalid traceparent starts a new trace and drops tracestate."""
    ctx, rejected = context.context_from_headers(
        traceparent="00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        tracestate="vendor=x",
    )
    assert not rejected
    assert ctx.trace_id != "0" * 32
    assert ctx.tracestate == ()
    assert ctx.parent_span_id is None


def test_context_from_headers_rejects_unsafe_ids() -> None:
    """Unsafe correlation and request ids are flagged, replaced and counted."""
    ctx, rejected = context.context_from_headers(
        correlation_id=b"evil\r\nSet-Cookie: x", request_id="ok-1"
    )
    assert rejected
    assert "evil" not in ctx.correlation_id
    assert ctx.request_id == "ok-1"
    ctx, rejected = context.context_from_headers(request_id=" ")
    assert rejected
    assert ctx.request_id == ctx.span_id
    assert counters.get("context.invalid_correlation_id") == 1
    assert counters.get("context.invalid_request_id") == 1


def test_inject_extract_round_trip() -> None:
    """A job carrier restores correlation, trace and identity on the consuming side."""
    with correlate(
        user_id="u1",
        tenant_id="t1",
        session_id="s1",
        permissions=["a"],
        step="charge",
        password="hunter2hunter2",
    ) as producer:
        carrier = inject({})
    assert carrier["X-Correlation-ID"] == producer.correlation_id
    assert "hunter2hunter2" not in str(carrier)
    with resume(carrier) as consumer:
        assert faultlens.correlation_id() == producer.correlation_id
        assert consumer.trace_id == producer.trace_id
        assert consumer.user_id == "u1"
        assert consumer.tenant_id == "t1"
        assert consumer.session_id == "s1"
        assert consumer.permissions == frozenset({"a"})
        assert consumer.fields["step"] == "charge"
    assert faultlens.current_context() is None


def test_extract_neutralises_hostile_carrier() -> None:
    """Forged or malformed carrier entries are dropped and counted, never trusted blindly."""
    ctx = extract(
        {
            "x-correlation-id": "a\nb",
            "traceparent": "garbage",
            "faultlens-context": "{not json",
        }
    )
    assert "\n" not in ctx.correlation_id
    assert counters.get("context.invalid_carrier") == 1
    ctx = extract({"faultlens-context": '{"user_id": "' + "x" * 1000 + '", "tenant_id": 5}'})
    assert ctx.user_id is None
    assert ctx.tenant_id is None
    assert extract({"faultlens-context": "[1,2]"}).user_id is None


def test_inject_outside_scope_writes_nothing() -> None:
    """inject() without a context leaves the carrier empty."""
    assert inject() == {}


def test_use_restores_on_async_exit() -> None:
    """use() works as an async context manager too."""
    import asyncio

    async def main() -> str | None:
        ctx = context.new_context("async-1")
        async with use(ctx):
            inside = faultlens.correlation_id()
        assert faultlens.correlation_id() is None
        return inside

    assert asyncio.run(main()) == "async-1"


def test_opentelemetry_span_is_used_when_active() -> None:
    """With an active OpenTelemetry span, its trace context is used instead of a new one."""
    trace = pytest.importorskip("opentelemetry.trace")
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    tracer = sdk.TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("op") as span:
        sc = span.get_span_context()
        with correlate() as ctx:
            assert ctx.trace_id == f"{sc.trace_id:032x}"
            assert ctx.span_id == f"{sc.span_id:016x}"
            headers = faultlens.outgoing_headers()
        assert headers["traceparent"].split("-")[1] == f"{sc.trace_id:032x}"
    assert trace.get_current_span().get_span_context().is_valid is False


def test_escaping_exception_remembers_the_innermost_scope() -> None:
    """An exception leaving correlate() carries that scope's context for later hooks."""
    with pytest.raises(ValueError, match="boom") as info, faultlens.correlate() as outer:
        with faultlens.correlate() as inner:
            raise ValueError("boom")
    assert info.value.__faultlens_context__ is inner  # type: ignore[attr-defined]
    assert inner is not outer


def test_lazy_ids_are_stable_and_shared_by_copies() -> None:
    """A plain correlate() draws its ids when first read; copies read the same ids."""
    with correlate() as ctx:
        faultlens.bind(user_id="u1")
        bound = faultlens.current_context()
        assert bound is not None
        # The copy is read first: the original must still agree with it.
        assert bound.trace_id == ctx.trace_id == ctx.correlation_id
        assert bound.span_id == ctx.span_id
        assert re.fullmatch(r"[0-9a-f]{16}", ctx.span_id)
        assert ctx.replace(correlation_id="other").trace_id == ctx.trace_id
        headers = faultlens.outgoing_headers()
    assert headers["X-Correlation-ID"] == ctx.correlation_id
    assert headers["traceparent"].split("-")[1] == ctx.trace_id


def test_lazy_ids_agree_across_racing_threads() -> None:
    """Threads reading a fresh context's ids at the same moment all get the same ones."""
    import threading

    for _ in range(20):
        ctx = correlate().context
        barrier = threading.Barrier(8)
        seen: list[tuple[str, str]] = []

        def read(
            ctx: RequestContext = ctx,
            barrier: threading.Barrier = barrier,
            seen: list[tuple[str, str]] = seen,
        ) -> None:
            barrier.wait()
            seen.append((ctx.correlation_id, ctx.span_id))

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(seen)) == 1


def test_lazy_context_behaves_as_a_plain_context() -> None:
    """Equality, repr, to_dict, _asdict and copy see the drawn ids."""
    import copy

    with correlate() as ctx:
        pass
    plain = RequestContext(*ctx._asdict().values())
    assert ctx == plain
    assert not ctx != plain  # noqa: SIM202 (__ne__ is under test)
    assert ctx != ctx.replace(user_id="u2")
    assert ctx.correlation_id in repr(ctx)
    assert ctx.to_dict()["trace_id"] == ctx.trace_id
    assert ctx._asdict()["span_id"] == ctx.span_id
    clone = copy.copy(ctx)
    assert clone == ctx
    assert clone.correlation_id == ctx.correlation_id
    assert clone.span_id == ctx.span_id


def test_nested_plain_scope_links_the_outer_id() -> None:
    """A nested plain correlate() records the outer (lazily drawn) id as its parent."""
    with correlate() as outer, correlate() as inner:
        assert inner.parent_correlation_id == outer.correlation_id
        assert inner.correlation_id != outer.correlation_id
        assert faultlens.correlation_id() == inner.correlation_id
    assert outer.started_at <= inner.started_at


def test_plain_and_keyword_scopes_build_the_same_context() -> None:
    """correlate() and correlate(**fields) differ only in the fields given."""
    with correlate() as plain:
        pass
    with correlate(user_id="u1") as keyword:
        pass
    plain_data = plain.to_dict()
    keyword_data = keyword.to_dict()
    assert keyword_data.pop("user_id") == "u1"
    assert plain_data.keys() == keyword_data.keys()
    assert plain.trace_flags == keyword.trace_flags == 1
    assert plain.journey == keyword.journey == ()
