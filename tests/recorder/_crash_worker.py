"""A process the SIGKILL tests start and kill: ``python _crash_worker.py MODE STORE_URL SPOOL``.

``replay``: start a recorder on a (slow) FileStore, which replays the spool; wait.
``spool``: with the FileStore down, publish error events as fast as batches are
spooled; print a line after each flushed batch.
``sqlite``: the real recorder writing into a real SQLite store (``STORE_URL`` is
``sqlite:///...``, opened with a 0.2 s busy timeout so that a lock the test holds
sends batches to the spool); publish error events ``e0``, ``e1``, ... in rounds of
50, flush after each round and print ``<published> <1 if flushed into the store
else 0>``: every event up to the last number printed is in the store or the spool.
"""

from __future__ import annotations

import sys
import threading

from faultlens import events
from faultlens.events import Event
from faultlens.recorder import Recorder, RecorderSettings
from recorder._fakes import FileStore


def sqlite(url: str, spool: str) -> None:
    """Write through the real recorder into SQLite until killed."""
    from faultlens.store import open as open_store

    recorder = Recorder(
        open_store(url, timeout=0.2),
        settings=RecorderSettings(spool_path=spool, batch_size=50, retry_initial=3600),
    ).start()
    i = 0
    while True:
        for _ in range(50):
            events.publish(
                Event(
                    "error",
                    f"e{i}",
                    {"type": "app.CrashError", "message": f"order {i} failed", "order": i},
                    correlation_id=f"req-{i}",
                )
            )
            i += 1
        flushed = recorder.flush(30)
        print(i, int(flushed), flush=True)


def main() -> None:
    mode, url, spool = sys.argv[1:4]
    if mode == "sqlite":
        sqlite(url, spool)
        return
    recorder = Recorder(
        FileStore(url),
        settings=RecorderSettings(spool_path=spool, batch_size=10, retry_initial=3600),
    ).start()
    if mode == "replay":
        print("started", flush=True)
        threading.Event().wait(60)
    elif mode == "spool":
        i = 0
        while True:
            for _ in range(50):
                events.publish(Event("error", f"e{i}", {"blob": "x" * 500}))
                i += 1
            recorder.flush(30)  # generous: each line printed means 50 more spooled
            print(i, flush=True)


if __name__ == "__main__":
    main()
