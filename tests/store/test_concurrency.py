"""Many writers at once: threads sharing a store, processes sharing a database."""

from __future__ import annotations

import threading
from multiprocessing.context import SpawnContext

import pytest

from faultlens.store import Store
from faultlens.store import open as open_store

from ._helpers import T0, error, operation, write_from_process


@pytest.mark.timeout(600)  # spawned processes start slowly on a loaded machine
def test_processes_writing_one_database_at_once(store_url: str, spawn: SpawnContext) -> None:
    """Four processes write overlapping batches: every event once, issue counts exact."""
    open_store(store_url).migrate()  # the race on migrations has a test of its own
    count, shared, workers = 300, 100, 4
    with spawn.Pool(workers) as pool:
        written = pool.starmap(
            write_from_process, [(store_url, w, count, shared) for w in range(workers)]
        )
    unique = shared + workers * (count - shared)
    assert sum(written) == unique
    with open_store(store_url) as store:
        issues = store.issues(limit=100).items
        assert len(issues) == 5
        assert sum(i.count for i in issues) == unique
        # Users: 7 shared ones plus 3 per worker, spread over the five fingerprints.
        expected_users: dict[int, set[str]] = {}
        for w in range(workers):
            for i in range(count):
                user = f"user-{i % 7}" if i < shared else f"user-{w}-{i % 3}"
                expected_users.setdefault(i % 5, set()).add(user)
        assert sorted(i.users for i in issues) == sorted(len(u) for u in expected_users.values())
        assert all(i.sessions == 4 for i in issues)
        timeline = store.timeline("c-3", limit=10_000)
        assert len(timeline) == len({s.event.id for s in timeline}) == unique // 10


def test_threads_writing_and_reading_one_store(store: Store) -> None:
    """Eight threads write while four read: no lock errors, nothing lost."""
    store.migrate()
    failures: list[BaseException] = []
    stop = threading.Event()

    def write(worker: int) -> None:
        try:
            for batch in range(10):
                store.write_events(
                    [
                        error(
                            fingerprint=f"fp-{i % 3}",
                            correlation_id=f"w{worker}",
                            user=f"u{i}",
                            timestamp=T0 + batch * 20 + i,
                        )
                        if i % 2
                        else operation(correlation_id=f"w{worker}", timestamp=T0 + i)
                        for i in range(20)
                    ]
                )
        except BaseException as exc:
            failures.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                store.issues(limit=10)
                store.timeline("w1")
        except BaseException as exc:
            failures.append(exc)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert failures == []
    assert sum(len(store.timeline(f"w{w}", limit=1000)) for w in range(8)) == 8 * 200
    assert sum(i.count for i in store.issues()) == 8 * 100


def test_two_stores_on_one_sqlite_file_wait_for_each_other(tmp_path: object) -> None:
    """Two writer connections (as two processes would have) queue on BEGIN IMMEDIATE."""
    url = f"sqlite:///{tmp_path}/shared.db"
    first, second = open_store(url), open_store(url)
    first.migrate()
    failures: list[BaseException] = []

    def write(store: Store, tag: str) -> None:
        try:
            for i in range(30):
                store.write_events([error(correlation_id=tag, timestamp=T0 + i, user=tag)])
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=write, args=(first, "a")),
        threading.Thread(target=write, args=(second, "b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    (issue,) = first.issues()
    assert (issue.count, issue.users) == (60, 2)
    first.close()
    second.close()
