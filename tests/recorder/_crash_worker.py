"""A process the SIGKILL tests start and kill: ``python _crash_worker.py MODE STORE_URL SPOOL``.

``replay``: start a recorder on a (slow) FileStore, which replays the spool; wait.
``spool``: with the FileStore down, publish error events as fast as batches are
spooled; print a line after each flushed batch.
"""

from __future__ import annotations

import sys
import threading

from faultlens import events
from faultlens.events import Event
from faultlens.recorder import Recorder, RecorderSettings
from recorder._fakes import FileStore


def main() -> None:
    mode, url, spool = sys.argv[1:4]
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
