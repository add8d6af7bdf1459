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

    .venv/bin/python benchmarks/bench_recorder.py
"""

from __future__ import annotations

import tempfile
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


def main() -> None:
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


if __name__ == "__main__":
    main()
