"""The recorder while PostgreSQL is stopped under steady load (issue 5's reliability test).

The cluster is a throwaway one this module starts with the machine's PostgreSQL
binaries, in a temporary directory and on a free port of its own: the shared
server (``FAULTLENS_TEST_POSTGRES_URL``, port 5432) is never touched, since the
test stops and restarts the server it talks to.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import faultlens
from faultlens import events
from faultlens.events import Event
from faultlens.recorder import RecorderSettings, get_recorder
from faultlens.store import Store
from faultlens.store import open as open_store

pytestmark = pytest.mark.postgres

SHARED_PORT = 5432
DATABASE = "faultlens_outage"


# --- a temporary PostgreSQL cluster ------------------------------------------------------------


def _bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl, or PATH's."""

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(Path(candidate, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(candidate)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def _free_port() -> int:
    """A TCP port nothing listens on now (never the shared server's)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port != SHARED_PORT:
            return port


class Cluster:
    """A PostgreSQL cluster in a temporary directory, on its own port, trust auth."""

    def __init__(self, bin_dir: Path, root: Path, prefix: Sequence[str]) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "server.log"
        self.prefix = list(prefix)  # runuser -u postgres -- when running as root
        self.port = _free_port()
        # PG* variables of the environment must not point the tools at another server.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    @property
    def url(self) -> str:
        """The URL of the test database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, str(self.bin_dir / tool), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _check(self, done: subprocess.CompletedProcess[str], what: str) -> None:
        if done.returncode != 0:
            server_log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{what} failed ({done.returncode}): {done.stdout[-1000:]}{done.stderr[-1000:]}"
                f"\n--- server log ---\n{server_log}"
            )

    def init(self) -> None:
        """Create the cluster files: superuser ``postgres``, trust auth, no fsync."""
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self._check(done, "initdb")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=20 -c shared_buffers=16MB"
        )
        done = self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
            "-o", options,
        )  # fmt: skip
        self._check(done, f"pg_ctl start on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients disconnected, clean shutdown)."""
        done = self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30")
        self._check(done, f"pg_ctl stop -m {mode}")

    def running(self) -> bool:
        """Whether a server runs on the cluster's directory (its pid file is there)."""
        return (self.data / "postmaster.pid").exists()

    def create_database(self) -> None:
        """Create the test database."""
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")


def _cluster_unavailable() -> tuple[Path, list[str]] | str:
    """The binaries and the command prefix to run them, or why no cluster can be made."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'faultlens[postgres]'"
    bin_dir = _bin_dir()
    if bin_dir is None:
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on "
            "PATH: install the postgresql package to run the outage test"
        )
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return bin_dir, []
    # PostgreSQL refuses to run as root: run its tools as the postgres OS user.
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "running as root and there is no `postgres` OS user to run PostgreSQL as"
    runuser = shutil.which("runuser")
    if runuser is None:
        return "running as root and `runuser` is missing: cannot run PostgreSQL as `postgres`"
    return bin_dir, [runuser, "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A started temporary cluster with an empty test database; removed afterwards."""
    found = _cluster_unavailable()
    if isinstance(found, str):
        pytest.skip(found)
    bin_dir, prefix = found
    # As root, in /tmp: $TMPDIR may be a directory the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="faultlens-pg-", dir="/tmp" if prefix else None))
    made = Cluster(bin_dir, root, prefix)
    try:
        made.sockets.mkdir()
        if prefix:
            owner = pwd.getpwnam("postgres")
            for path in (root, made.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        made.init()
        for attempt in range(3):  # the free port may be taken between the probe and the start
            try:
                made.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                made.port = _free_port()
        made.create_database()
        yield made
    finally:
        if made.running():
            with contextlib.suppress(Exception):
                made.stop("immediate")
        if made.running():  # pg_ctl failed: end the postmaster this fixture started, by pid
            with contextlib.suppress(Exception):
                pid = int((made.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(root, ignore_errors=True)


# --- the test ----------------------------------------------------------------------------------


class _WriteLog:
    """The real store, remembering the order in which event ids reached ``write_events``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url
        self.written: list[str] = []  # ids of every successful write_events call, in order
        self.succeeded: list[float] = []  # time.monotonic() at the end of each of those calls
        self.lock = threading.Lock()

    def write_events(self, events: Sequence[Event], /) -> int:
        """Write through to PostgreSQL; log the ids when it succeeded."""
        new = self.store.write_events(events)
        with self.lock:
            self.written.extend(e.id for e in events)
            self.succeeded.append(time.monotonic())
        return new

    def first_success_after(self, moment: float) -> float | None:
        """When the first write that succeeded after ``moment`` ended, or None."""
        with self.lock:
            return next((t for t in self.succeeded if t > moment), None)


class _Checkout(Exception):
    """The application's failure."""


def _fail(order: int) -> None:
    raise _Checkout(f"card declined for order {order}")


def _percentile(samples: list[int], q: float) -> float:
    """The ``q`` quantile of nanosecond samples, in microseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _stat(name: str) -> int:
    return faultlens.stats().get(name, 0)


_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None)  # Linux


def _preemptions() -> int:
    """How often the OS took the CPU from the calling thread (0 where it cannot tell)."""
    if _RUSAGE_THREAD is None:
        return 0
    return resource.getrusage(_RUSAGE_THREAD).ru_nivcsw


CORRELATIONS = 8
#: Long enough that psycopg_pool's own reconnect backoff (1 s, doubling) would wait
#: seconds between attempts when the server is back (after a 40 s outage, the store
#: used to reconnect 22 s after the restart; it now takes under 2 s).
OUTAGE_S = 15.0
STORE_TIMEOUT = 1.0
RETRY_MAX = 1.0
#: The bound: a connection attempt in progress gives up (the store's timeout), then the
#: recorder's next retry (at most ``retry_max`` later) connects a fresh pool at once;
#: plus slack for a loaded 2-core machine.
RECONNECT_CEILING_S = STORE_TIMEOUT + RETRY_MAX + 10.0
RATE = 400  # requests per second, each: one operation and two error events
SAMPLES = 300  # timed requests each phase needs at least
WAIT = 60.0  # the ceiling of every wait: long enough for a loaded CI machine


@pytest.mark.timeout(600)  # its waits have ceilings of their own, for a loaded machine
def test_postgres_stopped_under_steady_load_loses_no_error_and_replays_everything(
    cluster: Cluster, tmp_path: Path
) -> None:
    """PostgreSQL stopped then restarted under load: prompt replay, once, in order; app unslowed."""
    reader = open_store(cluster.url, timeout=2)
    reader.migrate()
    # A 1 s pool timeout rather than 5 s: the writer gives up on the stopped server
    # quickly, so the outage really goes through the spool within the test's seconds
    # (with 5 s, a 3 s outage is mostly absorbed by the in-memory queue).
    store = _WriteLog(open_store(cluster.url, timeout=STORE_TIMEOUT))
    faultlens.configure(
        store=store,
        recorder=RecorderSettings(
            spool_path=tmp_path / "spool.jsonl",
            flush_interval=0.05,
            retry_initial=0.2,
            retry_max=RETRY_MAX,
        ),
        install_log_handler=False,
    )
    recorder = get_recorder()
    assert recorder is not None

    phase = "warmup"
    handoff: dict[str, list[int]] = {"warmup": [], "healthy": [], "outage": [], "recovery": []}
    capture: dict[str, list[int]] = {name: [] for name in handoff}
    preempted = dict.fromkeys(handoff, 0)  # requests not timed: the OS took the CPU meanwhile
    produced: dict[str, list[str]] = {f"req-{c}": [] for c in range(CORRELATIONS)}
    stop = threading.Event()
    failures: list[BaseException] = []

    def produce() -> None:
        clock = time.perf_counter_ns
        period = 1 / RATE
        due = time.perf_counter()
        n = 0
        try:
            while not stop.is_set():
                switches = _preemptions()
                correlation = f"req-{n % CORRELATIONS}"
                with faultlens.correlate(correlation_id=correlation):
                    with faultlens.operation("checkout"):
                        try:
                            _fail(n)
                        except _Checkout as exc:
                            started = clock()
                            captured = faultlens.capture(exc, order=n)
                            captured_ns = clock() - started
                    started = clock()
                    emitted = events.emit("error", "payment.declined", {"order": n})
                    handoff_ns = clock() - started
                # A request during which the OS ran something else (the other processes
                # of a loaded machine; a thread kept off the CPU also keeps the GIL from
                # the writer until it drops it mid-call) measures the machine, not the
                # hand-off.  Waiting on a lock, the GIL or I/O, as a regression would,
                # is no preemption: such requests are timed.
                if _preemptions() == switches:
                    capture[phase].append(captured_ns)
                    handoff[phase].append(handoff_ns)
                else:
                    preempted[phase] += 1
                assert captured is not None
                assert emitted is not None
                produced[correlation] += [captured, emitted.id]
                n += 1
                due += period
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                else:
                    due = time.perf_counter()  # running late: no burst to catch up
        except BaseException as failure:
            failures.append(failure)

    def timed(name: str) -> Callable[[], bool]:
        """Whether phase ``name`` has its timed requests."""
        return lambda: len(handoff[name]) >= SAMPLES

    producer = threading.Thread(target=produce, name="producer")
    producer.start()
    try:
        assert _wait_until(lambda: _stat("recorder.recorded") >= 500, WAIT)
        phase = "healthy"
        time.sleep(1.5)
        # A loaded machine runs the producer below RATE: each phase lasts until it
        # has its timed requests too (a producer held up by the outage never would).
        assert _wait_until(timed("healthy"), WAIT), preempted
        phase = "outage"
        cluster.stop("fast")
        assert _wait_until(lambda: _stat("recorder.spooled") > 0, WAIT)
        time.sleep(OUTAGE_S)
        assert _wait_until(timed("outage"), WAIT), preempted
        cluster.start()
        back = time.monotonic()
        phase = "recovery"
        assert _wait_until(lambda: store.first_success_after(back) is not None, WAIT)
        first = store.first_success_after(back)
        assert first is not None
        reconnected = first - back
        assert _wait_until(lambda: _stat("recorder.replayed") > 0, WAIT)
        time.sleep(0.5)
        assert _wait_until(timed("recovery"), WAIT), preempted
    finally:
        stop.set()
        producer.join(10)
        if not cluster.running():
            cluster.start()
    assert not failures, failures
    # Recovery is prompt and bounded, whatever the outage's length: the first write
    # after the restart (the spool's replay, before anything newer) came at the
    # recorder's next retry, not after psycopg_pool's doubling reconnect backoff
    # (which, after this outage, would wait about 16 s more).
    assert reconnected <= RECONNECT_CEILING_S, f"reconnected {reconnected:.2f} s after the restart"
    assert _wait_until(lambda: recorder.flush(10), WAIT), faultlens.stats()
    stats = faultlens.stats()
    faultlens.shutdown()
    store.store.close()

    # Zero error events lost, none stored twice, everything replayed.
    try:
        for correlation, ids in produced.items():
            timeline = reader.timeline(correlation, limit=10_000)
            assert [s.event.id for s in timeline if s.event.kind == "error"] == ids
            # Order kept on the way too: the spool went in before any newer event.
            mine = set(ids)
            assert list(dict.fromkeys(i for i in store.written if i in mine)) == ids
        stored = reader.event_stats(since=0).events
    finally:
        reader.close()
    errors = sum(len(ids) for ids in produced.values())
    assert stored["error"] == errors
    assert stats.get("recorder.store_failures", 0) > 0
    assert stats.get("recorder.spooled", 0) > 0
    assert stats.get("recorder.replayed", 0) == stats["recorder.spooled"]
    assert stats.get("recorder.dropped.error", 0) == 0
    assert stats["recorder.spool_bytes"] == 0
    assert sum(stored.values()) == stats["recorder.recorded"] + stats["recorder.replayed"]
    assert len(capture["outage"]) >= SAMPLES  # the producer went on while the store was down

    # Application latency unaffected.  The hand-off (emit: build the event, publish
    # it, the recorder appends it to its queue) never waits for the writer; its p99 is
    # a few µs in every phase.  A regression (a lock held across a store call, spool
    # I/O on the caller's thread) costs 100 µs to seconds on many calls, so: p99 under
    # 1 ms, and within 5x the healthy p99 with a 50 µs floor, below which differences
    # are timer noise.  Requests the OS preempted are not timed (see produce()): on a
    # loaded 2-core machine they made p99 alone (485 µs against a healthy 37 µs).
    # The full capture() call has millisecond tails in every phase (GIL hand-overs
    # with the writer thread), so only its median is compared.
    healthy = _percentile(handoff["healthy"], 0.99)
    for name in ("outage", "recovery"):
        p99 = _percentile(handoff[name], 0.99)
        seen = f"hand-off p99 {name} {p99:.1f} µs vs healthy {healthy:.1f} µs ({preempted=})"
        assert p99 < 1000, seen
        assert p99 <= max(5 * healthy, 50), seen
    median = _percentile(capture["outage"], 0.5)
    healthy_median = _percentile(capture["healthy"], 0.5)
    assert median <= 2 * healthy_median, (
        f"capture median {median:.0f} vs {healthy_median:.0f} µs ({preempted=})"
    )
