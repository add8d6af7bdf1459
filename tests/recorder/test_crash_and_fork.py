"""Reliability across processes: SIGKILL mid-batch, and os.fork()."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from faultlens import events
from faultlens._metrics import counters
from faultlens.events import Event
from faultlens.recorder import Recorder

from ._fakes import FakeStore, FileStore, read_ids, read_rows
from .conftest import MakeRecorder

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL (POSIX)")

# The ceiling of every wait for something that happens at once: long enough for
# a loaded CI machine, never reached when the test passes.
WAIT = 30.0


def _wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    pause = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        pause.wait(0.01)
    return condition()


def _worker(mode: str, url: str, spool: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(SRC)])}
    return subprocess.Popen(
        [sys.executable, str(TESTS / "recorder" / "_crash_worker.py"), mode, url, str(spool)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _spooled_ids(spool: Path) -> list[str]:
    ids = []
    for line in spool.read_bytes().splitlines(keepends=True):
        if line.endswith(b"\n"):
            ids.append(orjson.loads(line)["id"])
    return ids


def test_sigkill_mid_replay_writes_nothing_twice_on_restart(
    make_recorder: MakeRecorder, spool: Path, tmp_path: Path
) -> None:
    """A writer killed mid-replay leaves the spool whole; the next run finishes it."""
    down = FakeStore()
    down.down = True
    first = make_recorder(down)
    for i in range(60):
        events.publish(Event("error", f"e{i:02}"))
    assert not first.close(WAIT)
    spooled = _spooled_ids(spool)
    assert len(spooled) == 60

    url = f"file://{tmp_path / 'store.jsonl'}"
    store_file = tmp_path / "store.jsonl"
    # After each replayed batch of 10 the worker stalls for a minute: the kill below
    # lands mid-replay however slowly the machine runs (a short stall raced the kill).
    (tmp_path / "store.slow").write_text("60")
    proc = _worker("replay", url, spool)
    try:
        assert _wait_until(lambda: len(read_ids(store_file)) >= 10)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(WAIT)
    assert proc.returncode == -signal.SIGKILL
    written = read_ids(store_file)
    assert 10 <= len(written) < 60  # killed mid-replay
    assert _spooled_ids(spool) == spooled  # truncated only after a whole replay

    (tmp_path / "store.slow").unlink()
    restarted = make_recorder(FileStore(url))
    assert restarted.flush(WAIT)
    ids = read_ids(store_file)
    assert ids == spooled  # all of them, in order, each once
    assert spool.stat().st_size == 0
    assert counters.get("recorder.replayed") == 60


def test_sigkill_mid_spool_write_loses_only_the_torn_line(
    make_recorder: MakeRecorder, spool: Path, tmp_path: Path
) -> None:
    """A process killed while spooling leaves complete lines that a restart replays once."""
    url = f"file://{tmp_path / 'store.jsonl'}"
    (tmp_path / "store.down").write_text("")
    proc = _worker("spool", url, spool)
    try:
        assert proc.stdout is not None
        for _ in range(4):  # a few batches are spooled and fsynced
            assert proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(WAIT)
    complete = _spooled_ids(spool)
    assert len(complete) >= 200
    (tmp_path / "store.down").unlink()

    restarted = make_recorder(FileStore(url))
    events.publish(Event("error", "after-restart"))
    assert restarted.flush(WAIT)
    ids = read_ids(tmp_path / "store.jsonl")
    assert len(ids) == len(set(ids))
    assert ids[: len(complete)] == complete
    assert len(ids) == len(complete) + 1
    assert counters.get("recorder.spool_corrupt") <= 1


def test_sigkill_while_writing_sqlite_loses_nothing_acknowledged(
    make_recorder: MakeRecorder, spool: Path, tmp_path: Path
) -> None:
    """SIGKILL of a process recording into SQLite: a restart recovers all, once, uncorrupted."""
    database = tmp_path / "faultlens.db"
    url = f"sqlite:///{database}"
    proc = _worker("sqlite", url, spool)
    lock: sqlite3.Connection | None = None
    acknowledged = 0
    outcomes: list[int] = []
    try:
        assert proc.stdout is not None

        def next_line() -> None:
            nonlocal acknowledged
            line = proc.stdout.readline() if proc.stdout is not None else ""
            assert line, "the worker ended early"
            published, flushed = map(int, line.split())
            acknowledged = published
            outcomes.append(flushed)

        for _ in range(3):  # straight into SQLite
            next_line()
        assert outcomes == [1, 1, 1]
        # Another connection holds the write lock: the worker's batches go to the spool.
        lock = sqlite3.connect(database, isolation_level=None, timeout=30)
        lock.execute("BEGIN EXCLUSIVE")
        spooled_rounds = len(outcomes)
        while len(outcomes) < spooled_rounds + 3 or not (spool.exists() and spool.stat().st_size):
            next_line()
        assert outcomes[-1] == 0
        # Let go of the lock and kill the worker at once: wherever it is (replaying
        # the spool into SQLite, mid-transaction, appending to the spool, publishing).
        lock.execute("ROLLBACK")
        proc.send_signal(signal.SIGKILL)
    finally:
        if lock is not None:
            lock.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    # A new recorder (another process than the one killed) on the same store and spool.
    check = sqlite3.connect(database)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        check.close()
    restarted = make_recorder(url)
    assert restarted.flush(30)
    assert spool.stat().st_size == 0

    check = sqlite3.connect(database)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        names = [row[0] for row in check.execute("SELECT name FROM events WHERE kind = 'error'")]
        issue_total = check.execute("SELECT coalesce(sum(event_count), 0) FROM issues").fetchone()[
            0
        ]
        unassigned = check.execute(
            "SELECT count(*) FROM events WHERE kind = 'error' AND issue_id IS NULL"
        ).fetchone()[0]
    finally:
        check.close()
    assert len(names) == len(set(names))  # each event once
    stored = {int(name[1:]) for name in names}
    # Everything acknowledged (flushed into SQLite, or fsynced into the spool) is there;
    # beyond it, only what the killed process had already written.
    assert set(range(acknowledged)) <= stored
    assert stored <= set(range(max(stored) + 1))
    # Replaying a batch the killed process had committed counted nothing twice.
    assert issue_total == len(names)
    assert unassigned == 0


def test_a_forked_child_records_through_its_own_store_connection(
    make_recorder: MakeRecorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child re-opens the store from its URL, has its own writer, skips the parent's queue."""
    monkeypatch.setattr(Recorder, "_open_store", lambda self: FileStore(self._url))
    url = f"file://{tmp_path / 'store.jsonl'}"
    recorder = make_recorder(FileStore(url), flush_interval=3600)
    events.publish(Event("error", "parent-before"))
    assert recorder.flush(WAIT)
    events.publish(Event("error", "parent-queued"))  # still queued at the fork

    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 3
        try:
            events.publish(Event("error", "child-1"))
            events.publish(Event("operation", "child-2"))
            code = 0 if recorder.flush(WAIT) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert recorder.flush(WAIT)

    rows = read_rows(tmp_path / "store.jsonl")
    assert not [r for r in rows if "violation" in r]
    by_name = {str(r["name"]): r["pid"] for r in rows}
    assert sorted(by_name) == ["child-1", "child-2", "parent-before", "parent-queued"]
    assert by_name["child-1"] == by_name["child-2"] == pid
    assert by_name["parent-queued"] == by_name["parent-before"] == os.getpid()
    assert len(rows) == 4


def test_a_forked_child_spools_for_a_store_it_cannot_reopen(
    store: FakeStore, make_recorder: MakeRecorder, spool: Path
) -> None:
    """A store object without a URL is not used in the child: its events wait in the spool."""
    recorder = make_recorder(store)
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            events.publish(Event("error", "from-child"))
            flushed = recorder.flush(WAIT)
            code = 0 if not flushed and store.calls == [] else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    events.publish(Event("error", "from-parent"))
    assert recorder.flush(WAIT)
    assert store.names() == ["from-child", "from-parent"]
