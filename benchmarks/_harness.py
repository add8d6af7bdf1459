"""Side-by-side timing: every candidate runs in the same process, interleaved by round.

Absolute times on shared machines are noise; the ratios between candidates measured
in the same rounds are the figures.  Each round times a batch of every candidate in
turn (so a burst of machine noise hits them all alike) and the median per-call time
over the rounds is reported.
"""

from __future__ import annotations

import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version


class Discard:
    """A stream that accepts text or bytes and keeps nothing."""

    def write(self, data: object) -> int:
        return 0

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def measure(
    cases: dict[str, Callable[[], object]], *, number: int = 20_000, rounds: int = 15
) -> dict[str, float]:
    """Return the median µs per call of each case, measured interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():  # warm up caches and lazy imports
        for _ in range(1000):
            fn()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in cases.items():
                start = time.perf_counter_ns()
                for _ in range(number):
                    fn()
                samples[name].append((time.perf_counter_ns() - start) / number / 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def versions(*packages: str) -> str:
    """One line naming Python and each package's installed version."""
    parts = [f"Python {platform.python_version()}"]
    for package in packages:
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    return ", ".join(parts)


def report(title: str, results: dict[str, float], baseline: str | None = None) -> None:
    """Print a table of µs per call and each case's ratio to ``baseline``."""
    print(f"\n## {title}")
    width = max(len(n) for n in results)
    base = results.get(baseline) if baseline else None
    for name, us in results.items():
        ratio = f"  {us / base:5.2f}x {baseline}" if base else ""
        print(f"  {name:<{width}}  {us:8.3f} µs{ratio}")
    sys.stdout.flush()


def ratio(results: dict[str, float], a: str, b: str) -> float:
    """results[a] / results[b]."""
    return results[a] / results[b]
