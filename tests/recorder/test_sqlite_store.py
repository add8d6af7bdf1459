"""The recorder with the real SQLite store: grouping, an outage, a fork."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import faultlens
from faultlens import events
from faultlens._metrics import counters
from faultlens.events import Event
from faultlens.recorder import RecorderSettings, get_recorder
from faultlens.store import Store
from faultlens.store import open as open_store

from .conftest import MakeRecorder

# The ceiling of every wait for something that happens at once: long enough for
# a loaded CI machine, never reached when the test passes.
WAIT = 30.0


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite store URL in the test's directory."""
    return f"sqlite:///{tmp_path / 'faultlens.db'}"


@pytest.fixture
def reader(url: str) -> Iterator[Store]:
    """A second connection to the store, to read back what the recorder wrote."""
    store = open_store(url)
    yield store
    store.close()


def _fail(order: int) -> None:
    raise KeyError(f"order-{order}")


def test_configure_with_a_sqlite_url_records_and_groups(
    url: str, reader: Store, spool: Path
) -> None:
    """configure(store="sqlite:///...") writes events; errors of one code path are one issue."""
    faultlens.configure(
        store=url,
        recorder=RecorderSettings(spool_path=spool, shutdown_timeout=WAIT),
        install_log_handler=False,
    )
    with faultlens.correlate(correlation_id="req-1"):
        for order in range(3):
            with faultlens.operation("checkout"):
                try:
                    _fail(order)
                except KeyError as exc:
                    faultlens.capture(exc)
    faultlens.shutdown()
    timeline = reader.timeline("req-1")
    assert sorted(e.event.kind for e in timeline) == ["error"] * 3 + ["operation"] * 6
    (issue,) = reader.issues()
    assert issue.count == 3
    assert issue.title.startswith("KeyError: 'order-")
    assert issue.culprit is not None
    assert issue.culprit.endswith(" in _fail")


def test_a_locked_database_is_an_outage_that_loses_no_error(
    url: str, reader: Store, make_recorder: MakeRecorder, tmp_path: Path
) -> None:
    """While another connection holds the write lock, batches are spooled; then replayed once."""
    store = open_store(url, timeout=0.02)
    recorder = make_recorder(store, batch_size=20, flush_interval=0.001)
    published: list[str] = []

    def publish(n: int) -> None:
        for _ in range(n):
            event = Event("error", "E", {"type": "E", "message": "m"}, correlation_id="load")
            published.append(event.id)
            events.publish(event)

    publish(30)
    assert recorder.flush(WAIT)
    lock = sqlite3.connect(tmp_path / "faultlens.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    publish(100)
    assert not recorder.flush(WAIT)
    assert counters.get("recorder.spooled") == 100
    publish(50)
    assert not recorder.flush(WAIT)
    lock.execute("ROLLBACK")
    lock.close()
    # The flush replays the spool now.  (Publishing first raced the writer: a round
    # it ran on its own, before the flush, spooled the newer events as well.)
    assert recorder.flush(WAIT)
    assert counters.get("recorder.replayed") == 150
    publish(20)  # the spool is empty again: written directly
    assert recorder.flush(WAIT)
    stored = [e.event.id for e in reader.timeline("load", limit=10_000)]
    assert sorted(stored) == sorted(published)
    assert len(stored) == len(set(stored)) == 200
    (issue,) = reader.issues()
    assert issue.count == 200
    assert counters.get("recorder.replayed") == 150
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reopens_the_sqlite_store(url: str, reader: Store, spool: Path) -> None:
    """After fork the child writes through its own connection, opened from the URL."""
    faultlens.configure(
        store=url,
        recorder=RecorderSettings(spool_path=spool, shutdown_timeout=WAIT),
        install_log_handler=False,
    )
    recorder = get_recorder()
    assert recorder is not None
    events.publish(Event("error", "parent", correlation_id="fork"))
    assert recorder.flush(WAIT)
    parent_store = recorder._store
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            events.publish(Event("error", "child", correlation_id="fork"))
            ok = recorder.flush(WAIT)
            code = 0 if ok and recorder._store is not parent_store else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    events.publish(Event("error", "parent-after", correlation_id="fork"))
    faultlens.shutdown()
    names = sorted(e.event.name for e in reader.timeline("fork"))
    assert names == ["child", "parent", "parent-after"]


def test_a_bad_store_url_fails_configure() -> None:
    """An unknown scheme is a ConfigurationError from configure(), before anything starts."""
    with pytest.raises(faultlens.errors.ConfigurationError, match="scheme"):
        faultlens.configure(store="mysql://localhost/db")
    assert get_recorder() is None


def test_writes_from_many_threads_all_arrive(url: str, reader: Store, spool: Path) -> None:
    """Eight threads publishing at once: every event is stored once."""
    faultlens.configure(
        store=url,
        recorder=RecorderSettings(spool_path=spool, shutdown_timeout=WAIT),
        install_log_handler=False,
    )

    def work(worker: int) -> None:
        for i in range(250):
            events.publish(Event("operation", f"w{worker}-{i}", correlation_id="threads"))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    faultlens.shutdown()
    stored = [e.event.name for e in reader.timeline("threads", limit=10_000)]
    assert len(stored) == len(set(stored)) == 2000
