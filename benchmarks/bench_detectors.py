"""Pattern detection throughput: faultlens's incremental detectors against the seed's rescans.

The seed's reference algorithm (``../shared/seeds/002_*``: an error context that
keeps a timeline of every error and, on each new one, runs four detectors over it)
is re-implemented here faithfully, in its own words: per error it appends to the
timeline and the per-layer records, updates the escalation level, then

* recurring: counts error types over the last 10 errors, and before adding a
  pattern scans every pattern detected so far for its id;
* cascade: checks the last 5 errors for strictly rising layers;
* burst: rebuilds the list of errors of the last 60 seconds from the whole
  timeline, and adds a pattern when there are 5 or more;
* degradation: rebuilds the lists of errors of the last two 5-minute windows from
  the whole timeline, and adds a pattern when the recent one is 1.5x the old one.

Its time source is the event's timestamp (the seed reads ``datetime.utcnow()``;
replaying a recorded stream needs the events' own times).  The automatic recovery
it also triggers is not pattern detection and is left out: the comparison is
generous to the reference.

faultlens: ``DetectorSet()`` (the four incremental detectors, defaults), fed in
batches of 500 as the recorder's writer hands them over.

Both get the same stream of pre-built samples: 20 errors a second (a busy service
in trouble), four layers, 200 fingerprints, a correlation per request, with bursts.
Sizes 10 000 and 100 000 errors.  The reference's cost grows with the timeline, so
the ratio grows with N.  At 100 000 a full run of the reference takes about 25
minutes: by default its time is measured exactly on evenly spaced slices of the
stream (the state before each slice is built by the same code, with the timeline
scans done incrementally) and integrated.  That estimate is a lower bound: the
slices start after a ``gc.collect()`` and so skip the full garbage collections a
long run pays over its ever larger heap.  ``--full`` runs it end to end instead;
``--check`` compares both at 10 000.

``--quality`` prints the detection quality instead: precision and recall of each
detector on the labelled scenarios of ``tests/analysis/test_scenarios.py`` (about
twenty hours of synthetic traffic per seed, six seeds; goal >= 0.9 for every type),
and how many episodes were reported as more than one pattern (goal: none).

    .venv/bin/python benchmarks/bench_detectors.py [--full]
    .venv/bin/python benchmarks/bench_detectors.py --quality
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from _harness import versions
from faultlens.analysis import DetectorSet, ErrorSample

LAYERS = ("infrastructure", "core", "service", "api")
LAYER_ORDER = ["infrastructure", "core", "service", "api"]
T0 = 1_700_000_000.0


# --- the stream -----------------------------------------------------------------------------


def stream(n: int, seed: int = 1) -> list[ErrorSample]:
    """``n`` errors, 20 a second on average, with a burst of 200 every 2 000 errors."""
    rng = random.Random(seed)
    out: list[ErrorSample] = []
    t = T0
    request = 0
    while len(out) < n:
        if len(out) % 2_000 == 1_000:
            for i in range(200):  # a burst: 200 errors within 5 s
                out.append(ErrorSample(t + i * 0.025, f"burst-{i % 7}", rng.choice(LAYERS), "high"))
            t += 5.0
            continue
        t += rng.expovariate(20.0)
        request += 1
        out.append(
            ErrorSample(
                t,
                f"fp-{rng.randrange(200)}",
                rng.choice(LAYERS),
                rng.choice(("low", "medium", "high")),
                f"req-{request}",
                "shop",
            )
        )
    return out[:n]


# --- the seed's reference algorithm, re-implemented --------------------------------------------


@dataclass
class RefPattern:
    pattern_id: str
    pattern_type: str
    first_occurrence: datetime
    last_occurrence: datetime
    occurrence_count: int
    affected_layers: list[str]
    confidence_score: float
    suggested_actions: list[str]


@dataclass
class RefLayerConfig:
    escalation_threshold: int
    severity_weights: dict[str, float]


SEVERITY_ORDER = ("low", "medium", "high", "critical")


def _weights(*values: float) -> dict[str, float]:
    return dict(zip(SEVERITY_ORDER, values, strict=True))


@dataclass
class ReferenceContext:
    """The seed's error context: a timeline rescanned by four detectors on every error."""

    layer_configs: dict[str, RefLayerConfig] = field(
        default_factory=lambda: {
            "api": RefLayerConfig(10, _weights(1, 2, 4, 8)),
            "service": RefLayerConfig(8, _weights(1.5, 3, 6, 12)),
            "core": RefLayerConfig(5, _weights(2, 4, 8, 16)),
            "infrastructure": RefLayerConfig(3, _weights(3, 6, 12, 24)),
        }
    )
    layer_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    error_timeline: list[tuple[datetime, str, str]] = field(default_factory=list)
    detected_patterns: list[RefPattern] = field(default_factory=list)
    escalation_level: str = "low"

    def add_layer_error(self, now: datetime, layer: str, error_type: str, severity: str) -> None:
        info = self.layer_errors.get(layer)
        if info is None:
            info = self.layer_errors[layer] = {
                "errors": [],
                "last_error_time": None,
                "error_count": 0,
                "severity_score": 0.0,
            }
        info["errors"].append({"error": error_type, "timestamp": now, "severity": severity})
        info["last_error_time"] = now
        info["error_count"] += 1
        config = self.layer_configs.get(layer)
        if config is not None:
            info["severity_score"] += config.severity_weights.get(severity, 1.0)
        self.error_timeline.append((now, layer, error_type))
        self._update_escalation_level(layer, severity)
        self._detect_error_patterns(now)

    def _update_escalation_level(self, layer: str, severity: str) -> None:
        config = self.layer_configs.get(layer)
        if config is None:
            return
        if self.layer_errors[layer]["error_count"] >= config.escalation_threshold:
            for level in ("critical", "high", "medium"):
                if level in (severity, self.escalation_level):
                    self.escalation_level = level
                    break

    def _detect_error_patterns(self, now: datetime) -> None:
        if len(self.error_timeline) < 3:
            return
        self._recurring()
        self._cascade(now)
        self._burst(now)
        self._degradation(now)

    def _recurring(self) -> None:
        types: dict[str, dict[str, Any]] = {}
        for ts, layer, error in self.error_timeline[-10:]:
            entry = types.setdefault(error, {"count": 0, "first": ts, "last": ts, "layers": set()})
            entry["count"] += 1
            entry["last"] = ts
            entry["layers"].add(layer)
        for error, entry in types.items():
            if entry["count"] >= 3:
                pattern = RefPattern(
                    f"recurring_{error}_{entry['first'].timestamp()}",
                    "recurring",
                    entry["first"],
                    entry["last"],
                    entry["count"],
                    list(entry["layers"]),
                    min(0.9, entry["count"] / 10.0),
                    [f"Investigate root cause of {error}", "Consider a circuit breaker"],
                )
                if not any(p.pattern_id == pattern.pattern_id for p in self.detected_patterns):
                    self.detected_patterns.append(pattern)

    def _cascade(self, now: datetime) -> None:
        sequence = [
            (LAYER_ORDER.index(layer), ts)
            for ts, layer, _ in self.error_timeline[-5:]
            if layer in LAYER_ORDER
        ]
        if len(sequence) >= 3 and all(
            sequence[i][0] > sequence[i - 1][0] for i in range(1, len(sequence))
        ):
            self.detected_patterns.append(
                RefPattern(
                    f"cascade_{now.timestamp()}",
                    "cascade",
                    sequence[0][1],
                    sequence[-1][1],
                    len(sequence),
                    [LAYER_ORDER[i] for i, _ in sequence],
                    0.8,
                    ["Investigate infrastructure layer issue"],
                )
            )

    def _burst(self, now: datetime) -> None:
        threshold = now - timedelta(seconds=60)
        recent = [(ts, layer, e) for ts, layer, e in self.error_timeline if ts >= threshold]
        if len(recent) >= 5:
            self.detected_patterns.append(
                RefPattern(
                    f"burst_{now.timestamp()}",
                    "burst",
                    recent[0][0],
                    recent[-1][0],
                    len(recent),
                    list({layer for _, layer, _ in recent}),
                    0.9,
                    ["Implement rate limiting"],
                )
            )

    def _degradation(self, now: datetime) -> None:
        if len(self.error_timeline) < 6:
            return
        window = timedelta(minutes=5)
        mid, old_threshold = now - window, now - 2 * window
        old = [ts for ts, _, _ in self.error_timeline if old_threshold <= ts < mid]
        recent = [ts for ts, _, _ in self.error_timeline if ts >= mid]
        if old and len(recent) > len(old) * 1.5:
            layers = list({layer for _, layer, _ in self.error_timeline[-len(recent) :]})
            self.detected_patterns.append(
                RefPattern(
                    f"degradation_{now.timestamp()}",
                    "degradation",
                    old[0],
                    recent[-1],
                    len(recent),
                    layers,
                    0.7,
                    ["Monitor system resources"],
                )
            )


def _as_datetime(samples: list[ErrorSample]) -> list[datetime]:
    return [datetime.fromtimestamp(s.timestamp, UTC) for s in samples]


def run_reference(samples: list[ErrorSample], stamps: list[datetime]) -> ReferenceContext:
    context = ReferenceContext()
    add = context.add_layer_error
    for s, now in zip(samples, stamps, strict=True):
        add(now, s.layer or "unknown", s.fingerprint, s.severity or "medium")
    return context


class _FastForward:
    """Builds the reference's exact state after k errors without its O(N) rescans.

    The same conditions, evaluated with moving pointers (the timeline is in time
    order): used only to reach the state before a timed slice.
    """

    def __init__(self, context: ReferenceContext) -> None:
        self.context = context
        self.burst_lo = 0
        self.old_lo = 0
        self.mid_lo = 0
        self.recurring_ids: set[str] = set()

    def resync(self, now: datetime) -> None:
        """Find the pointers and the recurring ids again after the real code ran."""
        stamps = [ts for ts, _, _ in self.context.error_timeline]
        self.burst_lo = bisect.bisect_left(stamps, now - timedelta(seconds=60))
        self.old_lo = bisect.bisect_left(stamps, now - timedelta(minutes=10))
        self.mid_lo = bisect.bisect_left(stamps, now - timedelta(minutes=5))
        self.recurring_ids = {
            p.pattern_id for p in self.context.detected_patterns if p.pattern_type == "recurring"
        }

    def _recurring(self) -> None:
        c = self.context
        types: dict[str, dict[str, Any]] = {}
        for ts, layer, error in c.error_timeline[-10:]:
            entry = types.setdefault(error, {"count": 0, "first": ts, "last": ts, "layers": set()})
            entry["count"] += 1
            entry["last"] = ts
            entry["layers"].add(layer)
        for error, entry in types.items():
            if entry["count"] >= 3:
                pattern_id = f"recurring_{error}_{entry['first'].timestamp()}"
                if pattern_id not in self.recurring_ids:
                    self.recurring_ids.add(pattern_id)
                    c.detected_patterns.append(
                        RefPattern(
                            pattern_id,
                            "recurring",
                            entry["first"],
                            entry["last"],
                            entry["count"],
                            list(entry["layers"]),
                            min(0.9, entry["count"] / 10.0),
                            [f"Investigate root cause of {error}", "Consider a circuit breaker"],
                        )
                    )

    def add(self, now: datetime, layer: str, error_type: str, severity: str) -> None:
        c = self.context
        info = c.layer_errors.setdefault(
            layer, {"errors": [], "last_error_time": None, "error_count": 0, "severity_score": 0.0}
        )
        info["errors"].append({"error": error_type, "timestamp": now, "severity": severity})
        info["last_error_time"] = now
        info["error_count"] += 1
        config = c.layer_configs.get(layer)
        if config is not None:
            info["severity_score"] += config.severity_weights.get(severity, 1.0)
        c.error_timeline.append((now, layer, error_type))
        c._update_escalation_level(layer, severity)
        timeline = c.error_timeline
        n = len(timeline)
        if n < 3:
            return
        self._recurring()
        c._cascade(now)
        threshold = now - timedelta(seconds=60)
        while timeline[self.burst_lo][0] < threshold:
            self.burst_lo += 1
        count = n - self.burst_lo
        if count >= 5:
            recent = timeline[self.burst_lo :]
            c.detected_patterns.append(
                RefPattern(
                    f"burst_{now.timestamp()}",
                    "burst",
                    recent[0][0],
                    recent[-1][0],
                    count,
                    list({layer for _, layer, _ in recent}),
                    0.9,
                    ["Implement rate limiting"],
                )
            )
        if n < 6:
            return
        window = timedelta(minutes=5)
        mid, old_threshold = now - window, now - 2 * window
        while timeline[self.old_lo][0] < old_threshold:
            self.old_lo += 1
        while timeline[self.mid_lo][0] < mid:
            self.mid_lo += 1
        old_count = self.mid_lo - self.old_lo
        recent_count = n - self.mid_lo
        if old_count and recent_count > old_count * 1.5:
            layers = list({layer for _, layer, _ in timeline[-recent_count:]})
            c.detected_patterns.append(
                RefPattern(
                    f"degradation_{now.timestamp()}",
                    "degradation",
                    timeline[self.old_lo][0],
                    timeline[-1][0],
                    recent_count,
                    layers,
                    0.7,
                    ["Monitor system resources"],
                )
            )


def reference_seconds_sampled(
    samples: list[ErrorSample], stamps: list[datetime], slices: int = 20, width: int = 200
) -> float:
    """The reference's total time, from exact timings of ``slices`` slices of ``width`` errors."""
    context = ReferenceContext()
    forward = _FastForward(context)
    n = len(samples)
    starts = [round(i * (n - width) / (slices - 1)) for i in range(slices)]
    position = 0
    per_error: list[tuple[int, float]] = []
    for start in starts:
        while position < start:
            s = samples[position]
            forward.add(
                stamps[position], s.layer or "unknown", s.fingerprint, s.severity or "medium"
            )
            position += 1
        gc.collect()
        began = time.perf_counter()
        for i in range(start, start + width):
            s = samples[i]
            context.add_layer_error(
                stamps[i], s.layer or "unknown", s.fingerprint, s.severity or "medium"
            )
        per_error.append((start + width // 2, (time.perf_counter() - began) / width))
        position = start + width
        forward.resync(stamps[position - 1])
    # integrate the per-error cost, piecewise linear between the slice centres
    total = 0.0
    points = [(0, per_error[0][1]), *per_error, (n, per_error[-1][1])]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        total += (x1 - x0) * (y0 + y1) / 2
    return total


# --- faultlens ---------------------------------------------------------------------------------


def run_faultlens(samples: list[ErrorSample]) -> DetectorSet:
    detectors = DetectorSet()
    for start in range(0, len(samples), 500):
        detectors.observe(samples[start : start + 500])
    return detectors


def best_of(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def quality() -> None:
    """Precision, recall and repeated reports of each detector on the labelled scenarios."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from analysis.test_scenarios import GRACE, SEEDS, build_scenario, run
    from faultlens.analysis import PatternType

    totals = {kind: [0, 0, 0, 0, 0] for kind in PatternType}  # episodes, reported, tp, found, rep
    for seed in SEEDS:
        scenario = build_scenario(seed)
        scores, reports = run(scenario)
        for kind, score in scores.items():
            total = totals[kind]
            total[0] += score.episodes
            total[1] += score.reported
            total[2] += score.true_positives
            total[3] += score.found
        for episode in scenario.episodes:
            found = [
                at
                for at, pattern in reports
                if pattern.type is episode.type
                and episode.start - 1 <= at <= episode.end + GRACE[episode.type]
                and (episode.key is None or episode.key == pattern.fingerprints[0])
            ]
            totals[episode.type][4] += len(found) > 1
    print(f"\n## detection quality, labelled scenarios (seeds {SEEDS[0]}-{SEEDS[-1]})")
    print(f"  {'detector':<12} {'episodes':>8} {'reported':>8} {'precision':>9} {'recall':>6}"
          f" {'reported twice':>14}")  # fmt: skip
    for kind, (episodes, reported, hits, found, repeated) in totals.items():
        precision = hits / reported if reported else 1.0
        recall = found / episodes if episodes else 1.0
        print(
            f"  {kind.value:<12} {episodes:>8} {reported:>8} {precision:>9.3f} {recall:>6.3f}"
            f" {repeated:>14}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="run the reference end to end at 100k")
    parser.add_argument(
        "--check", action="store_true", help="compare the sampled estimate with a full run at 10k"
    )
    parser.add_argument(
        "--quality", action="store_true", help="precision/recall on the labelled scenarios"
    )
    args = parser.parse_args()
    if args.quality:
        print(versions())
        quality()
        return
    if args.check:
        samples = stream(10_000)
        stamps = _as_datetime(samples)
        full = best_of(lambda: run_reference(samples, stamps), 1)
        sampled = reference_seconds_sampled(samples, stamps)
        print(f"reference at 10k: full run {full:.2f} s, sampled estimate {sampled:.2f} s")
        return
    print(versions())
    print("\n## pattern detection: errors/s (higher is better), same stream for both")
    print(
        f"  {'errors':>8}  {'faultlens':>14}  {'seed reference':>16}  {'ratio':>7}  reference timing"
    )
    ratios = []
    for n in (10_000, 100_000):
        samples = stream(n)
        stamps = _as_datetime(samples)
        ours = best_of(lambda samples=samples: run_faultlens(samples), 5)
        if n <= 10_000 or args.full:
            reference = best_of(lambda s=samples, d=stamps: run_reference(s, d), 1)
            how = "full run"
        else:
            reference = reference_seconds_sampled(samples, stamps)
            how = "20 exact slices of 200, integrated"
        ratio = reference / ours
        ratios.append(ratio)
        print(f"  {n:>8}  {n / ours:>12,.0f}/s  {n / reference:>14,.0f}/s  {ratio:>6.0f}x  {how}")
        sys.stdout.flush()
    # the per-error cost of faultlens does not grow with N (O(1) amortised)
    small_stream, large_stream = stream(10_000), stream(100_000)
    small = best_of(lambda: run_faultlens(small_stream), 5) / 10_000
    large = best_of(lambda: run_faultlens(large_stream), 3) / 100_000
    print(
        f"\n  faultlens per error: {small * 1e6:.2f} µs at 10k, {large * 1e6:.2f} µs at 100k "
        f"(the stream itself is built outside the timing)"
    )
    print(f"  ratio grows with N: {ratios[1] > ratios[0]} ({ratios[0]:.0f}x -> {ratios[1]:.0f}x)")


if __name__ == "__main__":
    main()
