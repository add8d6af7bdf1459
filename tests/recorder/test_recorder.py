"""The recorder: hand-off, batching, backpressure, spool and replay, configure/shutdown."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import faultlens
from faultlens import events
from faultlens._metrics import counters
from faultlens.errors import ConfigurationError
from faultlens.events import Event
from faultlens.recorder import Recorder, RecorderSettings, default_spool_path, get_recorder

from ._fakes import FakeStore
from .conftest import MakeRecorder

# The ceiling of every wait for something that happens at once: long enough for
# a loaded CI machine, never reached when the test passes.
WAIT = 30.0


def _publish(kind: str, name: str, **payload: Any) -> Event:
    event = Event(kind, name, payload)
    events.publish(event)
    return event


def _spooled_names(spool: Path) -> list[str]:
    if not spool.exists():
        return []
    return [orjson.loads(line)["name"] for line in spool.read_bytes().splitlines()]


# --- recording --------------------------------------------------------------------------------


def test_events_reach_the_store_after_flush(store: FakeStore, make_recorder: MakeRecorder) -> None:
    """Every published event, of every kind, is in the store after flush()."""
    recorder = make_recorder(store)
    published = [_publish(kind, f"e{i}") for i, kind in enumerate(["operation", "error", "job"])]
    assert recorder.flush(WAIT)
    assert set(store.rows) == {e.id for e in published}
    assert counters.get("recorder.recorded") == 3
    assert recorder.queue_depth == 0


def test_batches_hold_at_most_batch_size_events(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """write_events never receives more than batch_size events."""
    recorder = make_recorder(store, batch_size=3)
    for i in range(10):
        _publish("error", f"e{i}")
    assert recorder.flush(WAIT)
    assert len(store.rows) == 10
    assert max(len(call) for call in store.calls) <= 3
    assert store.names() == [f"e{i}" for i in range(10)]


def test_a_full_batch_is_written_without_waiting_for_the_interval(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """Reaching batch_size wakes the writer although flush_interval is an hour."""
    make_recorder(store, batch_size=4, flush_interval=3600)
    for i in range(4):
        _publish("operation", f"op{i}")
    assert store.wait_for(4, timeout=WAIT)


def test_a_partial_batch_is_written_after_flush_interval(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """A lone event is written once flush_interval passed, with no flush() call."""
    make_recorder(store, batch_size=500, flush_interval=timedelta(milliseconds=10))
    _publish("error", "lonely")
    assert store.wait_for(1, timeout=WAIT)


def test_handoff_does_not_write_on_the_callers_thread(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """publish() returns while the store is blocked: the write happens on the writer thread."""
    store.gate = threading.Event()
    recorder = make_recorder(store, batch_size=1)
    _publish("error", "first")
    assert store.entered.wait(WAIT)
    for i in range(20):
        _publish("error", f"e{i}")  # would hang here if the hand-off wrote
    assert recorder.queue_depth == 20
    store.gate.set()
    assert recorder.flush(WAIT)
    assert len(store.rows) == 21


# --- backpressure -------------------------------------------------------------------------------


def test_a_full_queue_drops_operations_then_recoveries_then_errors(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """Lower-priority events are evicted for higher ones, and every drop is counted by kind."""
    store.gate = threading.Event()
    recorder = make_recorder(store, queue_size=5, batch_size=1)
    _publish("operation", "blocker")
    assert store.entered.wait(WAIT)  # the writer is stuck on this one; the queue is empty
    for i in range(6):
        _publish("operation", f"op{i}")  # op5 does not fit
    for i in range(3):
        _publish("recovery", f"rec{i}")  # each evicts the newest operation
    for i in range(4):
        _publish("error", f"err{i}")  # two evict operations, two evict recoveries
    assert store.names() == []
    assert counters.get("recorder.dropped.recovery") == 2
    _publish("error", "err4")  # evicts the last recovery
    _publish("error", "err5")  # nothing lower is left: this error is dropped
    assert recorder.queue_depth == 5
    assert counters.get("recorder.dropped.operation") == 6
    assert counters.get("recorder.dropped.recovery") == 3
    assert counters.get("recorder.dropped.error") == 1
    store.gate.set()
    assert not recorder.flush(WAIT)  # events were dropped since the last flush
    assert store.names("error") == [f"err{i}" for i in range(5)]
    assert store.names("recovery") == []
    assert store.names("operation") == ["blocker"]
    assert faultlens.stats()["recorder.dropped.error"] == 1


def test_alert_and_audit_events_rank_with_errors(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """Alerts and audit events evict operations and recoveries, like errors."""
    store.gate = threading.Event()
    recorder = make_recorder(store, queue_size=2, batch_size=1)
    _publish("operation", "blocker")
    assert store.entered.wait(WAIT)
    _publish("recovery", "rec")
    _publish("job", "job")
    _publish("alert", "alert")
    _publish("audit", "audit")
    assert counters.get("recorder.dropped.recovery") == 1
    assert counters.get("recorder.dropped.job") == 1
    store.gate.set()
    assert not recorder.flush(WAIT)
    assert recorder.flush(WAIT)  # nothing dropped since
    assert set(store.names()) == {"blocker", "alert", "audit"}


def test_handoff_never_raises_on_a_broken_event(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """An event that breaks the hand-off costs a counted drop; the caller never sees an error."""
    recorder = make_recorder(store)

    class BrokenKind(str):
        __slots__ = ()

        def __hash__(self) -> int:
            raise RuntimeError("broken")

    recorder._handoff(Event(BrokenKind("error"), "lost"))
    assert counters.get("recorder.handoff_errors") == 1
    assert counters.get("recorder.dropped.error") == 1
    assert counters.get("events.subscriber_errors") == 0


def test_the_writer_survives_its_own_failures(
    store: FakeStore, make_recorder: MakeRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside the writer is counted and the writer keeps going."""
    recorder = make_recorder(store, flush_interval=3600)
    # The writer's first round (at start) is over and it waits: from now on only
    # flush() makes it take events, so the failing _take is the flush's round.
    assert recorder.flush(WAIT)
    real_take = recorder._take
    calls = {"n": 0}

    def take_failing_once(limit: int) -> list[Event]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the writer")
        return real_take(limit)

    monkeypatch.setattr(recorder, "_take", take_failing_once)
    _publish("error", "e1")
    assert not recorder.flush(WAIT)  # that round failed, and says so
    assert counters.get("recorder.writer_errors") == 1
    assert recorder.flush(WAIT)
    assert store.names() == ["e1"]
    assert recorder._thread is not None
    assert recorder._thread.is_alive()


def test_a_store_raising_a_base_exception_is_a_store_failure(
    make_recorder: MakeRecorder,
) -> None:
    """Even a BaseException from write_events spools the batch instead of losing it."""

    class Exploding:
        def write_events(self, events: Any, /) -> int:
            raise KeyboardInterrupt

    recorder = make_recorder(Exploding())
    _publish("error", "kept")
    assert not recorder.flush(WAIT)
    assert counters.get("recorder.store_failures") >= 1
    assert _spooled_names(recorder.spool_path) == ["kept"]


# --- the store down: spool and replay -------------------------------------------------------------


def test_store_down_spools_then_replays_in_order_without_duplicates(
    store: FakeStore, make_recorder: MakeRecorder, spool: Path
) -> None:
    """Batches the store refuses are spooled, then replayed in order before newer events."""
    # Only flush() takes a partial batch: e30 must not be spooled by a round the
    # writer runs on its own before the flush (a timer round, on a slow machine).
    recorder = make_recorder(store, batch_size=7, flush_interval=3600)
    store.down = True
    for i in range(20):
        _publish("error", f"e{i:02}")
    assert not recorder.flush(WAIT)
    assert _spooled_names(spool) == [f"e{i:02}" for i in range(20)]
    for i in range(20, 30):  # still down: appended after the older ones
        _publish("error", f"e{i:02}")
    assert not recorder.flush(WAIT)
    store.down = False
    _publish("error", "e30")
    assert recorder.flush(WAIT)
    assert store.names() == [f"e{i:02}" for i in range(31)]
    assert spool.stat().st_size == 0
    assert counters.get("recorder.spooled") == 30
    assert counters.get("recorder.replayed") == 30
    assert counters.get("recorder.recorded") == 1
    assert counters.get("recorder.store_failures") >= 2
    # No event reached write_events twice except by a failed (retried) replay.
    written = [i for call in store.calls for i in call]
    assert len(written) == len(set(written)) == 31


def test_no_retry_before_the_backoff_unless_flushed(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """While backing off, new batches go straight to the spool without calling the store."""
    recorder = make_recorder(store, batch_size=1, flush_interval=0)
    store.down = True
    _publish("error", "a")
    assert not recorder.flush(WAIT)
    failures = store.failures
    _publish("error", "b")
    _publish("error", "c")
    pause = threading.Event()
    deadline = time.monotonic() + WAIT
    # The writer spools them on its own, without a flush.
    while counters.get("recorder.spooled") < 3 and time.monotonic() < deadline:
        pause.wait(0.01)
    assert counters.get("recorder.spooled") == 3
    assert store.failures == failures  # the store was not hammered meanwhile


def test_a_spool_left_by_a_previous_run_is_replayed_first(
    store: FakeStore, make_recorder: MakeRecorder, spool: Path
) -> None:
    """A new recorder replays an existing spool before anything it records itself."""
    first = make_recorder(store)
    store.down = True
    for i in range(5):
        _publish("error", f"old{i}")
    assert not first.close(WAIT)
    assert _spooled_names(spool) == [f"old{i}" for i in range(5)]
    store.down = False
    second = make_recorder(store)
    _publish("error", "new")
    assert second.flush(WAIT)
    assert store.names() == [*(f"old{i}" for i in range(5)), "new"]
    assert spool.stat().st_size == 0


def test_a_replay_that_fails_half_way_keeps_the_spool(
    store: FakeStore, make_recorder: MakeRecorder, spool: Path
) -> None:
    """The spool is truncated only after a whole replay; a rerun writes nothing twice."""
    recorder = make_recorder(store, batch_size=2)
    store.down = True
    for i in range(6):
        _publish("error", f"e{i}")
    assert not recorder.flush(WAIT)
    store.down = False
    store.fail_after = 1  # the first replayed batch is written, then the store fails
    assert not recorder.flush(WAIT)
    assert len(_spooled_names(spool)) == 6
    assert store.names() == ["e0", "e1"]
    store.down, store.fail_after = False, None
    assert recorder.flush(WAIT)
    assert store.names() == [f"e{i}" for i in range(6)]
    assert counters.get("recorder.replayed") == 6


def test_the_spool_is_capped_and_keeps_errors_first(
    store: FakeStore, make_recorder: MakeRecorder, spool: Path
) -> None:
    """Beyond spool_max_bytes events are dropped, operations before errors, and counted."""
    line = len(orjson.dumps(Event("error", "e0", id="x" * 32).to_dict())) + 1
    # One batch, taken at flush(): the spool ranks events within the batch it appends.
    recorder = make_recorder(
        store, spool_max_bytes=line * 4 + line // 2, batch_size=100, flush_interval=3600
    )
    # The writer's first round (at start) is over: it cannot take part of the batch.
    assert recorder.flush(WAIT)
    store.down = True
    for i in range(4):
        _publish("operation", f"op{i}")
    for i in range(3):
        _publish("error", f"e{i}")
    assert not recorder.flush(WAIT)
    names = _spooled_names(spool)
    assert [n for n in names if n.startswith("e")] == ["e0", "e1", "e2"]
    assert len(names) == 4
    assert counters.get("recorder.dropped.operation") == 3
    assert counters.get("recorder.spool_overflow") == 3
    assert spool.stat().st_size <= line * 4 + line // 2


def test_a_torn_spool_line_is_skipped_and_counted(
    store: FakeStore, make_recorder: MakeRecorder, spool: Path
) -> None:
    """A line cut by a crash is counted and skipped; lines appended after it survive."""
    spool.parent.mkdir(parents=True)
    good = Event("error", "before")
    spool.write_bytes(orjson.dumps(good.to_dict()) + b"\n" + b'{"id": "torn", "ki')
    store.down = True
    recorder = make_recorder(store)
    _publish("error", "after")
    assert not recorder.flush(WAIT)
    store.down = False
    assert recorder.flush(WAIT)
    assert store.names() == ["before", "after"]
    assert counters.get("recorder.spool_corrupt") == 1


def test_an_unwritable_spool_drops_and_counts(
    store: FakeStore, make_recorder: MakeRecorder, tmp_path: Path
) -> None:
    """When the spool cannot be written either, the batch is dropped and counted, never raised."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    recorder = make_recorder(store, spool_path=blocker / "spool.jsonl")
    store.down = True
    _publish("error", "lost")
    assert not recorder.flush(WAIT)
    assert counters.get("recorder.spool_failures") == 1
    assert counters.get("recorder.dropped.error") == 1
    store.down = False
    _publish("error", "kept")
    assert recorder.flush(WAIT)
    assert store.names() == ["kept"]


def test_steady_load_with_the_store_down_loses_no_error(
    store: FakeStore, make_recorder: MakeRecorder
) -> None:
    """The store goes down and back under steady load: every error arrives once, in order."""
    recorder = make_recorder(store, batch_size=50, flush_interval=0.001, queue_size=100_000)
    stop = threading.Event()
    produced: list[list[str]] = [[], []]

    def produce(worker: int) -> None:
        i = 0
        while not stop.is_set() or i < 2000:
            produced[worker].append(_publish("error", f"w{worker}-{i}").id)
            _publish("operation", f"op{worker}-{i}")
            i += 1
            if i % 100 == 0:
                stop.wait(0.0005)

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    store.wait_for(200)
    store.down = True
    while counters.get("recorder.spooled") < 500:
        stop.wait(0.001)
    store.down = False
    stop.set()
    for thread in threads:
        thread.join()
    assert recorder.flush(WAIT)
    errors = [e.id for e in store.rows.values() if e.kind == "error"]
    for worker in range(2):
        mine = set(produced[worker])
        assert [i for i in errors if i in mine] == produced[worker]
    assert counters.get("recorder.dropped.error") == 0
    assert counters.get("recorder.replayed") >= 500
    total = sum(len(p) for p in produced) * 2
    assert len(store.rows) == total


# --- configure / shutdown / stats ---------------------------------------------------------------


def test_configure_store_starts_the_recorder_and_shutdown_flushes(
    store: FakeStore, spool: Path
) -> None:
    """configure(store=...) records every event; shutdown() writes what is queued and stops."""
    faultlens.configure(store=store, recorder=RecorderSettings(spool_path=spool))
    recorder = get_recorder()
    assert recorder is not None
    with faultlens.operation("checkout"):
        pass
    faultlens.capture(ValueError("boom"))
    faultlens.shutdown()
    assert get_recorder() is None
    assert sorted(e.kind for e in store.rows.values()) == ["error", "operation", "operation"]
    assert not events.get_bus().active
    faultlens.shutdown()  # twice is fine


def test_stats_reports_the_recorder(store: FakeStore, spool: Path) -> None:
    """faultlens.stats() has the recorder's counters and its queue depth and spool size."""
    faultlens.configure(store=store, recorder=RecorderSettings(spool_path=spool))
    _publish("error", "e")
    recorder = get_recorder()
    assert recorder is not None
    assert recorder.flush(WAIT)
    stats = faultlens.stats()
    assert stats["recorder.recorded"] == 1
    assert stats["recorder.queue_depth"] == 0
    assert stats["recorder.spool_bytes"] == 0
    assert list(stats) == sorted(stats)
    faultlens.shutdown()
    assert "recorder.queue_depth" not in faultlens.stats()


def test_configure_again_replaces_the_recorder(store: FakeStore, spool: Path) -> None:
    """A second configure() stops the first recorder; configure() without store records nothing."""
    faultlens.configure(store=store, recorder=RecorderSettings(spool_path=spool))
    first = get_recorder()
    other = FakeStore()
    faultlens.configure(store=other, recorder=RecorderSettings(spool_path=spool))
    second = get_recorder()
    assert second is not None
    assert second is not first
    _publish("error", "e")
    assert second.flush(WAIT)
    assert other.names() == ["e"]
    assert store.names() == []
    faultlens.configure()
    assert get_recorder() is None
    assert not events.get_bus().active


def test_a_bad_store_is_a_clear_configuration_error() -> None:
    """A store that is neither a URL nor a writer raises ConfigurationError; nothing is applied."""
    with pytest.raises(ConfigurationError, match="write_events"):
        faultlens.configure(store=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="URL"):
        faultlens.configure(store="faultlens.db")
    assert get_recorder() is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("batch_size", 0),
        ("queue_size", True),
        ("flush_interval", -1),
        ("shutdown_timeout", "5"),
        ("spool_max_bytes", -1),
        ("spool_path", 3),
    ],
)
def test_invalid_settings_are_rejected(name: str, value: object) -> None:
    """RecorderSettings checks its values and names the bad one."""
    with pytest.raises(ConfigurationError, match=name):
        RecorderSettings(**{name: value})  # type: ignore[arg-type]


def test_default_spool_path_is_per_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default spool lives in the user cache directory, one file per store URL."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = default_spool_path("sqlite:///a.db")
    assert a.parent == tmp_path / "faultlens" / "spool"
    assert a == default_spool_path("sqlite:///a.db") != default_spool_path("sqlite:///b.db")
    assert default_spool_path(FakeStore()).parent == a.parent


def test_close_drops_and_counts_what_it_cannot_write(store: FakeStore, spool: Path) -> None:
    """Events still queued when close() gives up are counted as dropped."""
    store.gate = threading.Event()
    recorder = Recorder(store, settings=RecorderSettings(spool_path=spool, batch_size=1)).start()
    _publish("error", "stuck")
    assert store.entered.wait(WAIT)
    _publish("error", "queued")
    assert not recorder.close(timeout=0.05)
    assert counters.get("recorder.dropped.error") == 1
    store.gate.set()
    # The writer finishes "stuck" and ends: it must not count into the next test.
    assert recorder._thread is not None
    recorder._thread.join(WAIT)
    assert not recorder._thread.is_alive()
