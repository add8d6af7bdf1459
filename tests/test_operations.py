"""Operation tracking: lifecycle, nesting, journey, budgets, events."""

from __future__ import annotations

import asyncio

import pytest

import faultlens
from faultlens import operation
from faultlens.errors import ConfigurationError
from faultlens.operations import current
from faultlens.testing import FakeClock, capture_events, capture_logs


def test_decorator_logs_start_and_completion() -> None:
    """A decorated call logs start (DEBUG) and completion with duration (INFO)."""

    @operation("create_client", layer="service", client="acme")
    def create() -> int:
        return 42

    with capture_logs() as logs, faultlens.correlate() as ctx:
        assert create() == 42
    started, completed = logs
    assert started["message"] == "operation started"
    assert started["level"] == "DEBUG"
    assert completed["message"] == "operation completed"
    assert completed["operation"] == "create_client"
    assert completed["layer"] == "service"
    assert completed["client"] == "acme"
    assert completed["duration_ms"] >= 0
    assert completed["correlation_id"] == ctx.correlation_id


def test_failure_is_logged_and_reraised_unchanged() -> None:
    """A failing run logs the exception once and re-raises the same object."""
    err = KeyError("missing")

    @operation("outer")
    def outer() -> None:
        with operation("inner", layer="core"):
            raise err

    with capture_logs() as logs, pytest.raises(KeyError) as info:
        outer()
    assert info.value is err
    failures = [line for line in logs if line["message"] == "operation failed"]
    assert [f["operation"] for f in failures] == ["inner", "outer"]
    assert "stack" in failures[0]["error"]
    assert "error" not in failures[1]  # the stack is logged once, by the innermost
    assert failures[1]["error_type"] == "KeyError"


def test_nesting_parent_and_journey() -> None:
    """Runs know their parent; finished runs form the correlation's journey."""
    with faultlens.correlate() as ctx:
        with operation("checkout", layer="api") as outer:
            with operation("charge", layer="service") as inner:
                assert inner.parent is outer
                assert current() is inner
                assert inner.path() == ("checkout", "charge")
            assert current() is outer
        assert current() is None
        assert [(s.name, s.layer, s.outcome) for s in ctx.journey] == [
            ("charge", "service", "ok"),
            ("checkout", "api", "ok"),
        ]


def test_annotate_adds_fields() -> None:
    """annotate() fields appear on the completion line."""
    with capture_logs() as logs, operation("import") as op:
        op.annotate(rows=10)
    assert logs[-1]["rows"] == 10


def test_budget_exceeded_warns_with_fake_clock() -> None:
    """Exceeding budget_ms logs a warning; time is driven by the fake clock."""
    with FakeClock() as clock, capture_logs() as logs:
        with operation("slow", budget_ms=10):
            clock.advance(0.05)
        with operation("fast", budget_ms=10):
            clock.advance(0.001)
    warnings = [line for line in logs if line["level"] == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0]["operation"] == "slow"
    assert warnings[0]["duration_ms"] == 50.0
    assert warnings[0]["budget_ms"] == 10


def test_budget_from_context() -> None:
    """The context's performance_budget applies to operations of that name."""
    with FakeClock() as clock, capture_logs() as logs:
        with faultlens.correlate(performance_budget={"render": 5}), operation("render"):
            clock.advance(0.01)
    assert any(line["message"] == "operation over budget" for line in logs)


def test_async_decorator_and_async_with() -> None:
    """Coroutine functions and async with are tracked, with the context kept."""

    @operation("fetch", layer="infrastructure")
    async def fetch() -> str | None:
        await asyncio.sleep(0)
        return faultlens.correlation_id()

    async def main() -> tuple[str, str | None]:
        with faultlens.correlate() as ctx:
            async with operation("page", layer="ui") as op:
                got = await fetch()
                assert current() is op
            return ctx.correlation_id, got

    with capture_logs() as logs:
        cid, got = asyncio.run(main())
    assert got == cid
    done = [line["operation"] for line in logs if line["message"] == "operation completed"]
    assert done == ["fetch", "page"]


def test_cancellation_recorded_as_cancelled() -> None:
    """A cancelled async run is recorded as cancelled and the cancellation propagates."""

    @operation("waits")
    async def waits() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(waits())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with capture_events("operation") as got:
        asyncio.run(main())
    assert got[-1].payload["outcome"] == "cancelled"


def test_events_published_only_when_subscribed() -> None:
    """Start and end events carry ids, parent, duration and outcome."""
    with capture_events("operation") as got, FakeClock() as clock:
        with operation("parent"), operation("child", layer="core", budget_ms=1) as child:
            child.annotate(k="v")
            clock.advance(0.002)
    assert [(e.name, e.payload["phase"]) for e in got] == [
        ("parent", "start"),
        ("child", "start"),
        ("child", "end"),
        ("parent", "end"),
    ]
    child_end = got[2]
    assert child_end.payload["parent_name"] == "parent"
    assert child_end.payload["parent_id"] == got[0].payload["operation_id"]
    assert child_end.payload["duration_ms"] == 2.0
    assert child_end.payload["outcome"] == "ok"
    assert child_end.payload["over_budget"] is True
    assert child_end.payload["fields"] == {"k": "v"}


def test_operation_object_reusable_across_threads() -> None:
    """One operation object can run in many threads at once."""
    from faultlens import ContextExecutor

    op = operation("shared")

    def body(n: int) -> str | None:
        with op as run:
            return run.name if current() is run else None

    with ContextExecutor(max_workers=4) as pool:
        assert list(pool.map(body, range(50))) == ["shared"] * 50


def test_bad_arguments_are_clear_errors() -> None:
    """Empty names, non-positive budgets and generator functions are refused clearly."""
    with pytest.raises(ConfigurationError):
        operation("")
    with pytest.raises(ConfigurationError):
        operation("x", budget_ms=0)

    def gen():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(ConfigurationError, match="generator"):
        operation("x")(gen)


def test_journey_is_bounded_and_keeps_the_most_recent() -> None:
    """A long correlation keeps only the last JOURNEY_LENGTH steps, in order."""
    from faultlens.context import JOURNEY_LENGTH

    with faultlens.correlate() as ctx:
        for i in range(3 * JOURNEY_LENGTH + 5):
            with operation(f"step{i}"):
                pass
        names = [s.name for s in ctx.journey]
    assert len(names) == JOURNEY_LENGTH
    assert names[-1] == f"step{3 * JOURNEY_LENGTH + 4}"
    assert names[0] == f"step{2 * JOURNEY_LENGTH + 5}"
    assert len(ctx.journey_steps or []) <= 2 * JOURNEY_LENGTH


def test_fake_clock_is_the_global_clock_and_sleeps_without_blocking() -> None:
    """Inside FakeClock, get_clock() is it; sleep advances time and records the delay."""
    from faultlens._clock import SystemClock, get_clock

    with FakeClock() as clock:
        assert get_clock() is clock
        before = clock.monotonic()
        get_clock().sleep(30.0)
        asyncio.run(get_clock().asleep(5.0))
        assert clock.monotonic() - before == pytest.approx(35.0)
        assert clock.sleeps == [30.0, 5.0]
    assert isinstance(get_clock(), SystemClock)


def test_level_changes_take_effect_between_runs() -> None:
    """Raising and lowering the logger level changes what the next runs log."""
    import logging

    with capture_logs() as logs:
        logger = logging.getLogger("faultlens.operation")
        previous = logger.level
        try:
            logger.setLevel(logging.WARNING)
            with operation("quiet"):
                pass
            logger.setLevel(logging.INFO)
            with operation("loud"):
                pass
        finally:
            logger.setLevel(previous)
    assert [line["operation"] for line in logs] == ["loud"]


def test_run_attributes_through_its_lifecycle() -> None:
    """A run is an OperationRun: running with no duration inside, then ok with one."""
    from faultlens.operations import OperationRun

    with operation("job", layer="background", budget_ms=1000, k=1) as run:
        assert isinstance(run, OperationRun)
        assert (run.name, run.layer, run.outcome, run.duration_ms) == (
            "job",
            "background",
            "running",
            None,
        )
        assert run.fields == {"k": 1}
        assert run.budget_ms == 1000
    assert run.outcome == "ok"
    assert run.duration_ms is not None
    assert run.duration_ms >= 0
    assert current() is None
