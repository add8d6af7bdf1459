"""Unhandled-exception hooks: sys.excepthook, threading.excepthook, asyncio."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import orjson
import pytest

import faultlens
from faultlens import events
from faultlens._metrics import counters
from faultlens.errors import ConfigurationError, _hooks
from faultlens.errors._hooks import install_asyncio_handler, uninstall_asyncio_handler
from faultlens.testing import capture_events


class _Recorder:
    """Stands in for the hook that was installed before faultlens's."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


@pytest.fixture
def previous(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Recorder]:
    """Replace sys.excepthook and threading.excepthook by recorders, restored afterwards."""
    recorder = _Recorder()
    monkeypatch.setattr(sys, "excepthook", recorder)
    monkeypatch.setattr(threading, "excepthook", recorder)
    yield recorder
    faultlens.shutdown()


@pytest.fixture
def stream() -> io.StringIO:
    """The stream configure() logs to."""
    return io.StringIO()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def _unhandled_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in _lines(stream) if line["message"] == "unhandled exception"]


def _exc_info(exc: BaseException) -> tuple[type[BaseException], BaseException, TracebackType]:
    try:
        raise exc
    except BaseException as caught:
        tb = caught.__traceback__
    assert tb is not None
    return type(exc), exc, tb


# --- sys.excepthook ----------------------------------------------------------------------------


def test_sys_excepthook_captures_logs_and_chains(previous: _Recorder, stream: io.StringIO) -> None:
    """The hook captures an unhandled event, logs one line with the correlation, then chains."""
    faultlens.configure(log_stream=stream, capture_unhandled=True)
    info = _exc_info(RuntimeError("crash password=hunter2"))
    with capture_events(events.ERROR) as captured, faultlens.correlate() as ctx:
        sys.excepthook(*info)
    (event,) = captured
    assert event.correlation_id == ctx.correlation_id
    assert event.payload["mechanism"] == {"type": "sys.excepthook", "handled": False}
    (line,) = _unhandled_lines(stream)
    assert line["level"] == "ERROR"
    assert line["logger"] == "faultlens.errors"
    assert line["correlation_id"] == ctx.correlation_id
    assert line["event_id"] == event.id
    assert line["mechanism"] == "sys.excepthook"
    assert line["error"]["type"] == "RuntimeError"
    assert "hunter2" not in stream.getvalue()
    assert previous.calls == [info]


def test_hook_logs_with_the_context_the_exception_was_captured_in(
    previous: _Recorder, stream: io.StringIO
) -> None:
    """After every scope exited, the line still carries the correlation of the capture."""
    faultlens.configure(log_stream=stream, capture_unhandled=True)
    with capture_events(events.ERROR) as captured:
        try:
            with faultlens.correlate() as ctx:
                try:
                    raise RuntimeError("escaped")
                except RuntimeError as exc:
                    faultlens.capture(exc)
                    raise
        except RuntimeError as escaped:
            info = _exc_info(escaped)
        sys.excepthook(*info)
    assert len(captured) == 1  # captured once: the hook reuses the first event
    (line,) = _unhandled_lines(stream)
    assert line["correlation_id"] == ctx.correlation_id
    assert line["event_id"] == captured[0].id


def test_hooks_install_idempotently_and_uninstall(previous: _Recorder) -> None:
    """Configuring twice wraps once; shutdown and reconfigure restore the previous hooks."""
    faultlens.configure(log_stream=io.StringIO(), capture_unhandled=True)
    installed = sys.excepthook
    faultlens.configure(log_stream=io.StringIO(), capture_unhandled=True)
    assert sys.excepthook is installed
    assert installed.previous is previous  # type: ignore[attr-defined]
    assert threading.excepthook.previous is previous  # type: ignore[attr-defined]
    faultlens.shutdown()
    assert sys.excepthook is previous
    assert threading.excepthook is previous
    faultlens.shutdown()
    faultlens.configure(log_stream=io.StringIO(), capture_unhandled=True)
    assert sys.excepthook is not previous
    faultlens.configure(log_stream=io.StringIO())
    assert sys.excepthook is previous


def test_a_hook_wrapped_by_another_tool_is_switched_off_in_place(previous: _Recorder) -> None:
    """Uninstalling under another tool's wrapper leaves its chain intact, ours inert."""
    faultlens.configure(log_stream=io.StringIO(), capture_unhandled=True)
    ours = sys.excepthook
    outer = _Recorder()

    def wrapper(*args: Any) -> None:
        outer(*args)
        ours(*args)

    sys.excepthook = wrapper
    faultlens.shutdown()
    assert sys.excepthook is wrapper
    with capture_events(events.ERROR) as captured:
        sys.excepthook(*_exc_info(ValueError("x")))
    assert captured == []
    assert len(outer.calls) == len(previous.calls) == 1


def test_keyboard_interrupt_and_system_exit_are_not_captured(previous: _Recorder) -> None:
    """Ctrl-C and sys.exit() pass through to the previous hook without an event."""
    faultlens.configure(log_stream=io.StringIO(), capture_unhandled=True)
    with capture_events(events.ERROR) as captured:
        sys.excepthook(*_exc_info(KeyboardInterrupt()))
        sys.excepthook(*_exc_info(SystemExit(2)))
    assert captured == []
    assert len(previous.calls) == 2


def test_a_failing_hook_still_chains(previous: _Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside faultlens's hook is counted; the previous hook still runs."""
    faultlens.configure(log_stream=io.StringIO(), capture_unhandled=True)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(_hooks, "record_exception", broken)
    sys.excepthook(*_exc_info(ValueError("x")))
    assert counters.get("errors.hook_failures") == 1
    assert len(previous.calls) == 1


def test_operation_logged_stack_is_not_logged_again(
    previous: _Recorder, stream: io.StringIO
) -> None:
    """When an operation already logged the stack, the hook's line names the type only."""
    faultlens.configure(log_stream=stream, capture_unhandled=True)
    try:
        with faultlens.operation("job"):
            raise ValueError("failed in job")
    except ValueError as exc:
        info = _exc_info(exc)
    sys.excepthook(*info)
    (line,) = _unhandled_lines(stream)
    assert "error" not in line
    assert line["error_type"] == "ValueError"


# --- threading.excepthook ------------------------------------------------------------------


def test_thread_exception_is_captured_in_the_thread_context(
    previous: _Recorder, stream: io.StringIO
) -> None:
    """An exception escaping a real thread is captured with that thread's correlation."""
    faultlens.configure(log_stream=stream, capture_unhandled=True)
    seen: dict[str, str] = {}

    def work() -> None:
        ctx = faultlens.bind(job="nightly")  # the thread's own root context
        seen["cid"] = ctx.correlation_id
        raise ValueError("thread failed")

    with capture_events(events.ERROR) as captured:
        thread = threading.Thread(target=work, name="worker-1")
        thread.start()
        thread.join()
    (event,) = captured
    assert event.correlation_id == seen["cid"]
    assert event.payload["mechanism"] == {"type": "threading.excepthook", "handled": False}
    assert event.payload["fields"] == {"thread": "worker-1"}
    (line,) = _unhandled_lines(stream)
    assert line["correlation_id"] == seen["cid"]
    assert line["thread"] == "worker-1"
    assert len(previous.calls) == 1
    assert previous.calls[0][0].exc_type is ValueError


def test_thread_system_exit_is_not_captured(previous: _Recorder) -> None:
    """A thread ending with SystemExit is not an error."""
    faultlens.configure(log_stream=io.StringIO(), capture_unhandled=True)

    def work() -> None:
        raise SystemExit(0)

    with capture_events(events.ERROR) as captured:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert captured == []


# --- asyncio ------------------------------------------------------------------------------


def test_asyncio_callback_error_is_captured_with_its_context(stream: io.StringIO) -> None:
    """A failing loop callback is captured in the context it was scheduled from, then chained."""
    faultlens.configure(log_stream=stream)
    chained: list[dict[str, Any]] = []

    def fail() -> None:
        raise ValueError("callback failed")

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: chained.append(context))
        install_asyncio_handler()
        with faultlens.correlate() as ctx:
            loop.call_soon(fail)
        # Callbacks run in order: once this one has, fail() and the handler have too.
        ran = loop.create_future()
        loop.call_soon(ran.set_result, None)
        await ran
        return ctx.correlation_id

    with capture_events(events.ERROR) as captured:
        cid = asyncio.run(main())
    (event,) = captured
    assert event.correlation_id == cid
    assert event.payload["mechanism"] == {"type": "asyncio", "handled": False}
    assert event.payload["fields"]["asyncio_message"].startswith("Exception in callback")
    assert [c["exception"].args for c in chained] == [("callback failed",)]
    (line,) = _unhandled_lines(stream)
    assert line["correlation_id"] == cid


def test_asyncio_task_exception_never_retrieved_is_captured() -> None:
    """A task whose exception nobody retrieved is captured when it is collected."""

    async def fails() -> None:
        raise KeyError("lost")

    async def main() -> None:
        install_asyncio_handler()
        task = asyncio.get_running_loop().create_task(fails())
        await asyncio.wait([task])
        del task
        gc.collect()

    with capture_events(events.ERROR) as captured:
        asyncio.run(main())
    (event,) = captured
    assert event.payload["type"] == "KeyError"
    assert event.payload["fields"]["asyncio_message"] == "Task exception was never retrieved"


def test_configure_inside_a_running_loop_installs_the_handler() -> None:
    """configure(capture_unhandled=True) from inside a loop hooks that loop; shutdown unhooks."""

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        faultlens.configure(log_stream=io.StringIO(), capture_unhandled=True)
        installed = getattr(loop.get_exception_handler(), "faultlens_hook", False)
        faultlens.shutdown()
        restored = loop.get_exception_handler() is None and loop.get_task_factory() is None
        return installed, restored

    try:
        assert asyncio.run(main()) == (True, True)
    finally:
        faultlens.shutdown()


def test_install_asyncio_handler_is_idempotent_and_removable() -> None:
    """Installing twice keeps one handler; uninstalling restores the previous one."""

    def mine(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        pass

    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(mine)
        install_asyncio_handler(loop)
        handler = loop.get_exception_handler()
        install_asyncio_handler(loop)
        assert loop.get_exception_handler() is handler
        assert handler.previous is mine  # type: ignore[union-attr]
        uninstall_asyncio_handler(loop)
        assert loop.get_exception_handler() is mine
        uninstall_asyncio_handler(loop)
    finally:
        loop.close()


def test_install_asyncio_handler_outside_a_loop_says_what_to_do() -> None:
    """Without a running loop and without loop=, a ConfigurationError explains the fix."""
    with pytest.raises(ConfigurationError, match="running event loop"):
        install_asyncio_handler()


# --- asyncio: which correlation a failed task belongs to -----------------------------------


async def _fails_with(exc: BaseException) -> None:
    raise exc


async def _forget_failed_tasks(tasks: list[Any]) -> None:
    """Let ``tasks`` fail, then drop them: asyncio reports their exceptions as never retrieved.

    The caller keeps no other reference, so they are collected here, in the
    caller's current context.
    """
    await asyncio.wait(tasks)
    tasks.clear()
    gc.collect()


def test_task_created_in_a_correlation_is_reported_with_it() -> None:
    """A task created inside correlate() that fails unretrieved carries that correlation id.

    The task's body opens no scope of its own, so nothing stamps the exception:
    the correlation comes from the task's contextvars (Task.get_context() on
    3.12+, faultlens's task factory on 3.11), even when the task is collected
    while another correlation is current.
    """

    async def main() -> tuple[str, str]:
        install_asyncio_handler()
        with faultlens.correlate() as ctx:
            tasks = [asyncio.get_running_loop().create_task(_fails_with(KeyError("lost")))]
        with faultlens.correlate() as other:
            await _forget_failed_tasks(tasks)
        return ctx.correlation_id, other.correlation_id

    with capture_events(events.ERROR) as captured:
        cid, other = asyncio.run(main())
    (event,) = captured
    assert event.correlation_id == cid != other
    assert event.payload["fields"]["asyncio_message"] == "Task exception was never retrieved"
    assert event.payload["mechanism"] == {"type": "asyncio", "handled": False}


def test_task_reports_the_fields_it_bound() -> None:
    """The event has the task's own context at the end: fields bound inside the task count."""

    async def job() -> None:
        faultlens.bind(user_id="u-7")
        raise ValueError("job failed")

    async def main() -> str:
        install_asyncio_handler()
        with faultlens.correlate() as ctx:
            tasks = [asyncio.ensure_future(job())]
        await _forget_failed_tasks(tasks)
        return ctx.correlation_id

    with capture_events(events.ERROR) as captured:
        cid = asyncio.run(main())
    (event,) = captured
    assert (event.correlation_id, event.user_id) == (cid, "u-7")


def test_task_created_outside_any_correlation_is_reported_without_one() -> None:
    """A failed task that ran outside any correlation is not given the current one."""

    async def main() -> None:
        install_asyncio_handler()
        tasks = [asyncio.get_running_loop().create_task(_fails_with(KeyError("lost")))]
        with faultlens.correlate():
            await _forget_failed_tasks(tasks)

    with capture_events(events.ERROR) as captured:
        asyncio.run(main())
    (event,) = captured
    assert event.correlation_id is None


def test_tasks_gather_creates_carry_their_correlation() -> None:
    """Tasks that gather() creates get the correlation too (retrieved ones are not reported)."""

    async def main() -> str:
        install_asyncio_handler()
        with faultlens.correlate() as ctx:
            results = await asyncio.gather(
                _fails_with(KeyError("a")), asyncio.sleep(0, "ok"), return_exceptions=True
            )
            assert isinstance(results[0], KeyError)
            tasks = [asyncio.ensure_future(_fails_with(ValueError("b")))]
        await _forget_failed_tasks(tasks)
        return ctx.correlation_id

    with capture_events(events.ERROR) as captured:
        cid = asyncio.run(main())
    assert [(e.payload["type"], e.correlation_id) for e in captured] == [("ValueError", cid)]


def test_task_factory_chains_the_previous_one_and_is_removed() -> None:
    """An application's own task factory keeps being used; uninstalling restores it."""
    created: list[Any] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        created.append(task)
        return task

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(factory)
        install_asyncio_handler()
        install_asyncio_handler()  # idempotent: one faultlens factory in the chain
        with faultlens.correlate() as ctx:
            tasks = [loop.create_task(_fails_with(KeyError("lost")))]
        assert created == tasks
        created.clear()
        await _forget_failed_tasks(tasks)
        uninstall_asyncio_handler()
        assert loop.get_task_factory() is factory
        return ctx.correlation_id

    with capture_events(events.ERROR) as captured:
        cid = asyncio.run(main())
    (event,) = captured
    assert event.correlation_id == cid


def test_stamp_inside_the_task_wins_over_the_creating_correlation() -> None:
    """An exception escaping a scope opened inside the task keeps that inner correlation."""

    async def job() -> None:
        with faultlens.correlate(correlation_id="1" * 32):
            raise ValueError("inner")

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main(with_factory: bool) -> None:
        if with_factory:
            asyncio.get_running_loop().set_task_factory(factory)
        install_asyncio_handler()
        with faultlens.correlate(correlation_id="2" * 32):
            tasks = [asyncio.ensure_future(job())]
        await _forget_failed_tasks(tasks)

    for with_factory in (False, True):
        with capture_events(events.ERROR) as captured:
            asyncio.run(main(with_factory))
        (event,) = captured
        assert event.correlation_id == "1" * 32


def test_task_repr_and_type_unchanged_for_asyncio_messages() -> None:
    """Tasks from faultlens's factory are asyncio Tasks and read as ``<Task ...>``."""

    async def main() -> tuple[bool, str]:
        install_asyncio_handler()
        task = asyncio.ensure_future(asyncio.sleep(0))
        await task
        return isinstance(task, asyncio.Task), repr(task)

    is_task, text = asyncio.run(main())
    assert is_task
    assert text.startswith("<Task finished")
