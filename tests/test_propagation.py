"""The context follows the work through threads, executors and asyncio."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import faultlens
from faultlens import ContextExecutor, correlate, wrap


def test_wrap_carries_context_into_thread() -> None:
    """A thread running a wrapped function sees the submitter's context."""
    seen: list[str | None] = []
    with correlate() as ctx:
        t = threading.Thread(target=wrap(lambda: seen.append(faultlens.correlation_id())))
        t.start()
        t.join()
    assert seen == [ctx.correlation_id]


def test_plain_thread_does_not_inherit() -> None:
    """Without wrap, a new thread starts with no context (documents the need for wrap)."""
    seen: list[str | None] = []
    with correlate():
        t = threading.Thread(target=lambda: seen.append(faultlens.correlation_id()))
        t.start()
        t.join()
    assert seen == [None]


def test_wrapped_function_callable_concurrently() -> None:
    """One wrapped callable may run in several threads at once."""
    barrier = threading.Barrier(4)
    seen: list[str | None] = []

    def body() -> None:
        barrier.wait(timeout=10)
        seen.append(faultlens.correlation_id())

    with correlate() as ctx:
        fn = wrap(body)
    threads = [threading.Thread(target=fn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [ctx.correlation_id] * 4


def test_wrap_binds_in_copy() -> None:
    """bind() inside a wrapped call does not leak back to the caller."""
    with correlate(user_id="a"):
        wrap(lambda: faultlens.bind(user_id="b"))()
        ctx = faultlens.current_context()
        assert ctx is not None
        assert ctx.user_id == "a"


def test_executor_copies_context_at_each_submit() -> None:
    """ContextExecutor gives each task its submitter's context, even on a reused worker."""
    with ContextExecutor(max_workers=1) as pool:
        with correlate() as first:
            f1 = pool.submit(faultlens.correlation_id)
        with correlate() as second:
            f2 = pool.submit(faultlens.correlation_id)
            mapped = list(pool.map(lambda _: faultlens.correlation_id(), range(3)))
        f3 = pool.submit(faultlens.correlation_id)
        assert f1.result() == first.correlation_id
        assert f2.result() == second.correlation_id
        assert mapped == [second.correlation_id] * 3
        assert f3.result() is None


def test_plain_executor_loses_context() -> None:
    """A stock ThreadPoolExecutor does not carry context (why ContextExecutor exists)."""
    with ThreadPoolExecutor(max_workers=1) as pool, correlate():
        assert pool.submit(faultlens.correlation_id).result() is None


def test_asyncio_tasks_gather_and_to_thread_keep_context() -> None:
    """create_task, gather and to_thread all see the scope's context."""

    async def read() -> str | None:
        await asyncio.sleep(0)
        return faultlens.correlation_id()

    async def main() -> tuple[str, list[str | None]]:
        with correlate() as ctx:
            task = asyncio.create_task(read())
            gathered = await asyncio.gather(read(), read())
            threaded = await asyncio.to_thread(faultlens.correlation_id)
            return ctx.correlation_id, [await task, *gathered, threaded]

    cid, seen = asyncio.run(main())
    assert seen == [cid] * 4


def test_run_in_executor_with_context_default_executor() -> None:
    """loop.run_in_executor(None, ...) carries context once ContextExecutor is the default."""

    async def main() -> tuple[str, str | None]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ContextExecutor(max_workers=2))
        with correlate() as ctx:
            return ctx.correlation_id, await loop.run_in_executor(None, faultlens.correlation_id)

    cid, seen = asyncio.run(main())
    assert seen == cid


def test_wrap_coroutine_function() -> None:
    """A wrapped coroutine function runs in the captured context wherever it is awaited."""

    async def read() -> str | None:
        return faultlens.correlation_id()

    async def main() -> tuple[str, str | None]:
        with correlate() as ctx:
            wrapped = wrap(read)
        return ctx.correlation_id, await wrapped()

    cid, seen = asyncio.run(main())
    assert seen == cid


def test_no_leak_between_concurrent_tasks() -> None:
    """Many concurrent scopes in one loop each keep their own id across awaits."""

    async def request(n: int) -> bool:
        with correlate(f"req-{n}", user_id=f"u{n}"):
            for _ in range(5):
                await asyncio.sleep(0)
                ctx = faultlens.current_context()
                if ctx is None or ctx.correlation_id != f"req-{n}" or ctx.user_id != f"u{n}":
                    return False
            return True

    async def main() -> list[bool]:
        return await asyncio.gather(*(request(n) for n in range(200)))

    assert all(asyncio.run(main()))
    assert faultlens.current_context() is None


def test_no_leak_between_threads() -> None:
    """Scopes opened in many threads at once never see each other's ids."""
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(200):
            with correlate(f"t{n}-{i}"):
                if faultlens.correlation_id() != f"t{n}-{i}":
                    errors.append(f"t{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
