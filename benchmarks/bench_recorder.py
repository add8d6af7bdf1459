"""Recording an event: what the application's thread pays to hand one to the recorder.

The recorder subscribes to the event bus; publishing an event runs its hand-off on
the caller's thread, which only appends to a bounded deque (and, once per batch,
sets a threading.Event to wake the writer).  Measured side by side:

* a bare ``deque.append`` of the same event: the floor;
* ``bus.publish`` with nobody subscribed, and ``events.emit`` with nobody
  subscribed (which returns before building an event);
* ``bus.publish`` into a recorder whose writer is parked (batch and interval so
  large it never wakes): the hand-off alone;
* ``bus.publish`` into a recorder with default settings whose writer drains to a
  store that discards every batch: the hand-off plus the GIL time the writer
  thread takes from the caller;
* ``events.emit`` into that recorder: building the event (id, timestamp,
  context) and handing it off, the whole cost an ``operation`` pays per event.

Goal: the bus publish + hand-off stays under 2 µs.

Then the writer thread's side of ``configure(store=..., detect_patterns=True)``:
per error event, what ``store.write_events`` costs on a real SQLite store (batches
of 500 error events as ``capture`` builds them, 20 errors a second of event time)
and what the :class:`~faultlens.analysis.PatternMonitor` observer adds on the same
batches (a sample per error with the store's fingerprint, the four detectors, the
escalation tracker, saving the pattern changes).  Neither runs on an application
thread; the figure says how much of the writer's capacity detection takes.

    .venv/bin/python benchmarks/bench_recorder.py
    .venv/bin/python benchmarks/bench_recorder.py --detection-only --errors 20000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import faultlens
from _harness import measure, report, versions
from faultlens import events
from faultlens.events import Event, EventBus
from faultlens.recorder import Recorder, RecorderSettings


class DiscardStore:
    """A store that accepts every batch and keeps nothing."""

    def __init__(self) -> None:
        self.written = 0

    def write_events(self, batch: Sequence[Event], /) -> int:
        self.written += len(batch)
        return len(batch)


def detection_cost(errors: int, rounds: int) -> None:
    """Writer-thread µs per error event: the store write, and the pattern monitor on top."""
    from bench_store import error_events
    from faultlens.analysis import PatternMonitor
    from faultlens.store import open as open_store

    base = error_events(errors)
    start = base[0].timestamp
    stream = [
        Event(e.kind, e.name, e.payload, e.correlation_id, e.trace_id, e.span_id, e.tenant_id,
              e.user_id, start + i * 0.05)
        for i, e in enumerate(base)
    ]  # fmt: skip
    batches = [stream[i : i + 500] for i in range(0, len(stream), 500)]
    directory = Path(tempfile.mkdtemp(prefix="faultlens-bench-detect-"))
    writes: list[float] = []
    observes: list[float] = []
    changes = 0
    for r in range(rounds):
        store = open_store(f"sqlite:///{directory / f'round{r}.db'}")
        store.migrate()
        monitor = PatternMonitor(store=store)
        written = observed = 0.0
        for batch in batches:
            began = time.perf_counter()
            store.write_events(batch)
            written += time.perf_counter() - began
            began = time.perf_counter()
            monitor(batch)
            observed += time.perf_counter() - began
        changes = len(monitor.changes)
        store.close()
        writes.append(written / len(stream) * 1e6)
        observes.append(observed / len(stream) * 1e6)
    write, observe = statistics.median(writes), statistics.median(observes)
    print(
        f"\nwriter thread, per error event ({len(stream)} errors in batches of 500, "
        f"median of {rounds} rounds, {changes} pattern changes a round):"
    )
    print(f"  store.write_events (SQLite)      {write:8.1f} µs")
    print(
        f"  PatternMonitor (detect_patterns) {observe:8.1f} µs  ({observe / write:.2f}x the write)"
    )
    print(
        f"  writer capacity: {1e6 / write:,.0f} errors/s without detection, "
        f"{1e6 / (write + observe):,.0f} errors/s with it"
    )
    shutil_rmtree(directory)


def shutil_rmtree(path: Path) -> None:
    """Remove a benchmark directory."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--errors", type=int, default=5000, help="error events for detection")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the detection cost")
    parser.add_argument(
        "--detection-only", action="store_true", help="only the writer-thread detection cost"
    )
    args = parser.parse_args()
    if args.detection_only:
        print(versions("faultlens"))
        detection_cost(args.errors, args.rounds)
        return
    spool_dir = Path(tempfile.mkdtemp(prefix="faultlens-bench-"))
    event = Event("operation", "checkout", {"outcome": "success", "duration_ms": 12.5})
    payload = {"outcome": "success"}
    print(versions("faultlens"))

    # 1. Nobody on the process-wide bus; the parked recorder listens on its own bus.
    floor: deque[Event] = deque()
    quiet_bus = EventBus()
    parked_bus = EventBus()
    parked = Recorder(
        DiscardStore(),
        settings=RecorderSettings(
            batch_size=10_000_000,
            queue_size=10_000_000,
            flush_interval=3600,
            spool_path=spool_dir / "parked.jsonl",
        ),
        bus=parked_bus,
    ).start()
    quiet = measure(
        {
            "deque.append (floor)": lambda: floor.append(event),
            "bus.publish, no subscriber": lambda: quiet_bus.publish(event),
            "events.emit, no subscriber": lambda: events.emit("operation", "checkout", payload),
            "Event(...) construction": lambda: Event("operation", "checkout", payload),
            "bus.publish -> recorder (writer parked)": lambda: parked_bus.publish(event),
        }
    )
    report("app-thread cost, writer parked", quiet, "deque.append (floor)")
    for queue in parked._queues:
        queue.clear()
    parked.close(timeout=5)

    # 2. A recorder with default settings on the process-wide bus, draining to a
    #    store that discards: its writer thread competes for the GIL.
    sink = DiscardStore()
    live = Recorder(sink, settings=RecorderSettings(spool_path=spool_dir / "live.jsonl")).start()
    floor.clear()
    busy = measure(
        {
            "deque.append (floor)": lambda: floor.append(event),
            "bus.publish -> recorder (writer draining)": lambda: events.publish(event),
            "events.emit -> recorder (writer draining)": lambda: events.emit(
                "operation", "checkout", payload
            ),
        }
    )
    report("app-thread cost, writer draining", busy, "deque.append (floor)")
    live.flush(30)
    dropped = sum(v for k, v in faultlens.stats().items() if k.startswith("recorder.dropped."))
    print(
        f"  the draining recorder wrote {sink.written} events and dropped {dropped} "
        "(a synthetic load of ~1M events/s)"
    )
    live.close(timeout=5)

    hand_off = busy["bus.publish -> recorder (writer draining)"]
    parked_cost = quiet["bus.publish -> recorder (writer parked)"]
    print(
        f"\n  bus.publish + hand-off: {parked_cost:.3f} µs parked, {hand_off:.3f} µs draining"
        "  (goal < 2 µs)"
    )
    detection_cost(args.errors, args.rounds)


if __name__ == "__main__":
    main()
