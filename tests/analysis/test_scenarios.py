"""The labelled scenario suite: precision and recall of each detector on synthetic traffic.

A seeded generator writes about twenty hours of errors, on fake time: steady
background noise (5 errors a minute over 300 fingerprints, one error per request),
into which it injects labelled episodes — bursts, recurring errors, cascades inside
one request and across requests, step and slow (ramp) degradations — separated by
quiet periods with no error at all.  The detectors see the stream the way the
recorder hands it over (one batch a second, idle ticks when nothing arrives).

A reported pattern is a true positive when an episode of its type (and its key:
the fingerprint of a recurring error, the root fingerprint of a cascade) was
running when it was reported, give or take the detector's lag; recall is the
share of episodes reported.  Both are pooled over six seeds (some 50 episodes per
detector) and must be at least 0.9.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from faultlens.analysis import DetectorSet, ErrorSample, Pattern, PatternType

LAYERS = ("infrastructure", "core", "service", "api")
MINUTE = 60.0
T0 = 1_700_000_000.0
NOISE_PER_MINUTE = 5.0
#: How long after an episode ends a report still counts for it (the detector's lag).
GRACE = {
    PatternType.RECURRING: 30.0,
    PatternType.BURST: 60.0,
    PatternType.CASCADE: 30.0,
    PatternType.DEGRADATION: 6 * MINUTE,
}


@dataclass
class Episode:
    """One injected, labelled phenomenon."""

    type: PatternType
    start: float
    end: float
    key: str | None = None
    detected: bool = False


@dataclass
class Scenario:
    """A stream of samples (in time order) and its labels."""

    samples: list[ErrorSample] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    quiet: list[tuple[float, float]] = field(default_factory=list)
    end: float = T0


class Generator:
    """Builds a :class:`Scenario` segment by segment, with a seeded random source."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.scenario = Scenario()
        self.now = T0
        self.cid = 0
        self.k = 0

    def _cid(self) -> str:
        self.cid += 1
        return f"req-{self.cid}"

    def _error(self, ts: float, fp: str, layer: str, cid: str | None = None) -> None:
        severity = self.rng.choice(("low", "medium", "medium", "high"))
        self.scenario.samples.append(
            ErrorSample(ts, fp, layer, severity, cid if cid is not None else self._cid(), "shop")
        )

    def _poisson(self, start: float, end: float, per_minute: float) -> Iterator[float]:
        t = start
        rate = per_minute / MINUTE
        while True:
            t += self.rng.expovariate(rate)
            if t >= end:
                return
            yield t

    def noise(self, start: float, end: float, per_minute: float = NOISE_PER_MINUTE) -> None:
        """Background errors: many fingerprints, one error per request."""
        for ts in self._poisson(start, end, per_minute):
            self._error(ts, f"noise-{self.rng.randrange(300)}", self.rng.choice(LAYERS))

    def steady(self, minutes: float) -> None:
        """Only background noise."""
        self.noise(self.now, self.now + minutes * MINUTE)
        self.now += minutes * MINUTE

    def quiet(self, minutes: float) -> None:
        """No error at all (a night, a deploy window)."""
        self.scenario.quiet.append((self.now, self.now + minutes * MINUTE))
        self.now += minutes * MINUTE

    def quiet_then_steady(self) -> None:
        """A quiet period, then ordinary noise again."""
        self.quiet(45)
        self.steady(20)

    def burst(self) -> None:
        """50-90 errors within 20-45 s, from many fingerprints, over noise."""
        self.k += 1
        start = self.now + 3 * MINUTE
        length = self.rng.uniform(20, 45)
        for i in range(self.rng.randint(50, 90)):
            ts = start + self.rng.uniform(0, length)
            self._error(ts, f"burst-{self.k}-{i % 30}", self.rng.choice(LAYERS))
        self.scenario.episodes.append(Episode(PatternType.BURST, start, start + length))
        self.steady(8)

    def recurring(self) -> None:
        """One fingerprint every 35 to 50 seconds for 8 minutes (a failing job), over noise."""
        self.k += 1
        fp = f"recurring-{self.k}"
        start = self.now + 2 * MINUTE
        end = start + 8 * MINUTE
        ts = start
        while ts < end:
            self._error(ts, fp, self.rng.choice(LAYERS))
            ts += self.rng.uniform(35, 50)
        self.scenario.episodes.append(Episode(PatternType.RECURRING, start, end, fp))
        self.steady(14)

    def cascade(self) -> None:
        """Three requests, each failing up the layers: infrastructure, service, api."""
        self.k += 1
        root = f"cascade-{self.k}-db"
        start = self.now + 2 * MINUTE
        t = start
        for _ in range(3):
            cid = self._cid()
            self._error(t, root, "infrastructure", cid)
            self._error(t + self.rng.uniform(0.05, 1), f"cascade-{self.k}-service", "service", cid)
            self._error(t + self.rng.uniform(1, 3), f"cascade-{self.k}-api", "api", cid)
            t += self.rng.uniform(10, 25)
        self.scenario.episodes.append(Episode(PatternType.CASCADE, start, t + 3, root))
        self.steady(6)

    def cross_cascade(self) -> None:
        """A database failing for background jobs, then services, then the API: other requests."""
        self.k += 1
        root = f"xcascade-{self.k}-db"
        start = self.now + 2 * MINUTE
        for i in range(4):
            self._error(start + i * 1.2, root, "infrastructure")
        for i in range(3):
            self._error(start + 3 + i * 1.0, f"xcascade-{self.k}-service", "service")
        for i in range(3):
            self._error(start + 5 + i * 0.8, f"xcascade-{self.k}-api", "api")
        self.scenario.episodes.append(Episode(PatternType.CASCADE, start, start + 8, root))
        self.steady(6)

    def step_degradation(self) -> None:
        """The error rate jumps to 2.5 times and stays there for 15 minutes."""
        start = self.now + 10 * MINUTE
        end = start + 15 * MINUTE
        self.noise(self.now, end)
        self.noise(start, end, 1.5 * NOISE_PER_MINUTE)
        self.scenario.episodes.append(Episode(PatternType.DEGRADATION, start, end))
        self.now = end
        self.steady(12)

    def slow_degradation(self) -> None:
        """The error rate creeps from 5 to 15 a minute over 40 minutes (no step is 1.5x)."""
        start = self.now + 10 * MINUTE
        end = start + 40 * MINUTE
        self.noise(self.now, start)
        for minute in range(40):
            extra = 2 * NOISE_PER_MINUTE * (minute + 1) / 40
            self.noise(start + minute * MINUTE, start + (minute + 1) * MINUTE, 5 + extra)
        self.scenario.episodes.append(Episode(PatternType.DEGRADATION, start, end))
        self.now = end
        self.steady(12)

    def build(self) -> Scenario:
        self.scenario.samples.sort(key=lambda s: s.timestamp)
        self.scenario.end = self.now
        return self.scenario


def build_scenario(seed: int = 7) -> Scenario:
    """Twenty hours or so: every kind of episode several times, in a shuffled order."""
    gen = Generator(seed)
    gen.steady(30)
    steps = (
        [gen.burst] * 8
        + [gen.recurring] * 8
        + [gen.cascade] * 6
        + [gen.cross_cascade] * 6
        + [gen.step_degradation] * 4
        + [gen.slow_degradation] * 4
        + [gen.quiet_then_steady] * 4
    )
    gen.rng.shuffle(steps)
    for step in steps:
        step()
        gen.steady(5)
    return gen.build()


@dataclass
class Score:
    """Precision and recall of one detector."""

    reported: int = 0
    true_positives: int = 0
    episodes: int = 0
    found: int = 0

    @property
    def precision(self) -> float:
        return self.true_positives / self.reported if self.reported else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.episodes if self.episodes else 1.0


def run(scenario: Scenario) -> tuple[dict[PatternType, Score], list[tuple[float, Pattern]]]:
    """Feed the scenario a batch per second, as the recorder does; score what is reported."""
    detectors = DetectorSet()
    reports: list[tuple[float, Pattern]] = []
    samples = scenario.samples
    i = 0
    t = float(math.floor(samples[0].timestamp))
    while t < scenario.end + 30 * MINUTE:
        t += 1.0
        batch = []
        while i < len(samples) and samples[i].timestamp < t:
            batch.append(samples[i])
            i += 1
        changes = detectors.observe(batch) if batch else detectors.tick(t)
        reports.extend((t, c.pattern) for c in changes if c.change == "new")
    scores = {kind: Score() for kind in PatternType}
    for episode in scenario.episodes:
        scores[episode.type].episodes += 1
    for at, pattern in reports:
        score = scores[pattern.type]
        score.reported += 1
        for episode in scenario.episodes:
            if episode.type is not pattern.type:
                continue
            if not episode.start - 1 <= at <= episode.end + GRACE[episode.type]:
                continue
            if episode.key is not None and episode.key != pattern.fingerprints[0]:
                continue
            score.true_positives += 1
            episode.detected = True
            break
    for episode in scenario.episodes:
        scores[episode.type].found += episode.detected
    return scores, reports


SEEDS = (1, 2, 3, 4, 5, 6)


@functools.cache
def scenario_run(
    seed: int,
) -> tuple[Scenario, dict[PatternType, Score], list[tuple[float, Pattern]]]:
    """The scenario of ``seed``, the scores and the reports (computed once per session)."""
    scenario = build_scenario(seed)
    result, reports = run(scenario)
    return scenario, result, reports


@pytest.fixture(scope="module")
def scores() -> dict[PatternType, Score]:
    """The scores of the default detectors, pooled over the seeded scenarios."""
    pooled = {kind: Score() for kind in PatternType}
    for seed in SEEDS:
        _, result, _ = scenario_run(seed)
        for kind, score in result.items():
            total = pooled[kind]
            total.reported += score.reported
            total.true_positives += score.true_positives
            total.episodes += score.episodes
            total.found += score.found
    return pooled


def test_scenario_has_every_episode_kind() -> None:
    """The generator injects several episodes of every pattern type, and quiet periods."""
    scenario, _, _ = scenario_run(SEEDS[0])
    kinds = {e.type for e in scenario.episodes}
    assert kinds == set(PatternType)
    assert all(sum(e.type is k for e in scenario.episodes) >= 8 for k in PatternType)
    assert len(scenario.quiet) == 4
    assert scenario.end - T0 > 15 * 3600


@pytest.mark.parametrize("kind", list(PatternType), ids=lambda k: k.value)
def test_precision_and_recall(scores: dict[PatternType, Score], kind: PatternType) -> None:
    """Each detector finds at least 90 % of its episodes, and 90 % of what it reports is real."""
    score = scores[kind]
    assert score.episodes >= 8 * len(SEEDS)
    assert score.precision >= 0.9, (kind, score)
    assert score.recall >= 0.9, (kind, score)


def test_report_precision_and_recall(
    scores: dict[PatternType, Score], capsys: pytest.CaptureFixture[str]
) -> None:
    """The table of precision and recall is printed with the test results."""
    lines = [
        "",
        f"pattern detectors on the labelled scenarios (seeds {SEEDS[0]}-{SEEDS[-1]}):",
        f"  {'detector':<12} {'episodes':>8} {'reported':>8} {'precision':>9} {'recall':>6}",
    ]
    for kind, score in scores.items():
        lines.append(
            f"  {kind.value:<12} {score.episodes:>8} {score.reported:>8} "
            f"{score.precision:>9.3f} {score.recall:>6.3f}"
        )
    with capsys.disabled():
        print("\n".join(lines))
    assert len(lines) == 3 + len(PatternType)


def test_each_episode_is_reported_as_one_pattern() -> None:
    """No episode is reported twice: an ongoing pattern is updated, not created again.

    A slow degradation used to come out as two or three patterns (its rise paused
    just long enough for the first to end); bursts, recurring errors and cascades
    are one pattern per episode too.
    """
    repeated = []
    for seed in SEEDS:
        scenario, _, reports = scenario_run(seed)
        for episode in scenario.episodes:
            found = [
                at
                for at, pattern in reports
                if pattern.type is episode.type
                and episode.start - 1 <= at <= episode.end + GRACE[episode.type]
                and (episode.key is None or episode.key == pattern.fingerprints[0])
            ]
            if len(found) > 1:
                repeated.append((seed, episode.type.value, episode.start, found))
    assert repeated == []


def test_every_seed_finds_most_episodes() -> None:
    """No seed is carried by the others: each finds at least three quarters of each kind."""
    for seed in SEEDS:
        _, result, _ = scenario_run(seed)
        for kind, score in result.items():
            assert score.recall >= 0.75, (seed, kind, score)
            assert score.precision >= 0.75, (seed, kind, score)


def test_no_pattern_during_quiet_periods() -> None:
    """Nothing new is reported while no error arrives, nor right after the quiet ends."""
    for seed in SEEDS:
        scenario, _, reports = scenario_run(seed)
        for start, end in scenario.quiet:
            # The quiet, then 20 minutes of ordinary noise: a restart is no rise.
            late = [r for r in reports if start + MINUTE <= r[0] <= end + 20 * MINUTE]
            assert not late, (seed, start, end, late)
