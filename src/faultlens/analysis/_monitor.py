"""Pattern detection inside the process: the detectors on the recorder's writer thread.

``PatternMonitor().attach()`` registers a batch observer on the process's
recorder (:meth:`faultlens.recorder.Recorder.add_observer`).  After each batch
the writer thread turns the batch's ``error`` events into samples, runs the
detectors, and for every pattern change:

1. saves the pattern snapshot (``store.save_patterns``: the recorder's store,
   unless another is given), so the dashboard and the insights read it;
2. publishes a ``pattern`` event (:func:`faultlens.analysis.pattern_event`),
   which the recorder then writes to the store like any other event;
3. feeds the escalation tracker.

Nothing of this runs on an application thread.  A failure to save is counted
(``analysis.save_failures``) and reported once; detection goes on.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from faultlens import events as _events
from faultlens._metrics import counters, report_once
from faultlens.analysis._detectors import DetectorSet, ErrorSample
from faultlens.analysis._escalation import EscalationTracker
from faultlens.analysis._patterns import Pattern, PatternChange, pattern_event
from faultlens.errors import ConfigurationError
from faultlens.events import ERROR, Event, EventBus

__all__ = ["PatternMonitor"]


class PatternMonitor:
    """Runs a :class:`DetectorSet` on the recorder's writer thread; saves and publishes changes.

    ``detectors`` defaults to the four built-in detectors.  ``store`` (an object
    with ``save_patterns``) defaults to the store of the recorder it is attached
    to; ``publish=False`` publishes no ``pattern`` events; ``escalation`` is the
    :class:`EscalationTracker` fed with every error and pattern (one is made by
    default).  The last ``history`` changes are kept in :attr:`changes`.
    Calling the monitor with a batch is thread-safe (one batch at a time).
    """

    def __init__(
        self,
        detectors: DetectorSet | None = None,
        *,
        store: Any = None,
        publish: bool = True,
        escalation: EscalationTracker | None = None,
        bus: EventBus | None = None,
        history: int = 1_000,
    ) -> None:
        if detectors is not None and not isinstance(detectors, DetectorSet):
            raise ConfigurationError("PatternMonitor(detectors=...) takes a DetectorSet")
        self.detectors = detectors if detectors is not None else DetectorSet()
        self.escalation = escalation if escalation is not None else EscalationTracker()
        self.publish = publish
        self.changes: deque[PatternChange] = deque(maxlen=history)
        """The latest pattern changes, oldest first."""
        self._store = store
        self._bus = bus
        self._recorder: Any = None
        self._lock = threading.Lock()

    # -- the batch observer --------------------------------------------------------------

    def __call__(self, batch: Sequence[Event]) -> None:
        """Observe one batch (the recorder calls this on its writer thread)."""
        samples: list[ErrorSample] = []
        for event in batch:
            if event.kind == ERROR:
                sample = ErrorSample.from_event(event)
                if sample is not None:
                    samples.append(sample)
        with self._lock:
            escalation = self.escalation
            for sample in samples:
                escalation.observe(sample)
            changes = self.detectors.observe(samples) if samples else self.detectors.tick()
            if changes:
                self._handle(changes)

    def _handle(self, changes: list[PatternChange]) -> None:
        for change in changes:
            self.escalation.observe_pattern(change.pattern)
        self.changes.extend(changes)
        self._save([c.pattern for c in changes])
        if self.publish:
            bus = self._bus if self._bus is not None else _events.get_bus()
            for change in changes:
                bus.publish(pattern_event(change))

    def _save(self, patterns: list[Pattern]) -> None:
        store = self._store
        if store is None and self._recorder is not None:
            store = self._recorder.store
        save = getattr(store, "save_patterns", None)
        if save is None:
            return
        try:
            save(patterns)
        except Exception as failure:
            counters.incr("analysis.save_failures")
            report_once(
                "analysis.save_patterns",
                f"pattern snapshots could not be saved ({type(failure).__name__}: "
                f"{failure!s:.200}); detection goes on, failures are counted in "
                "faultlens.stats()['analysis.save_failures']",
            )

    # -- attaching ---------------------------------------------------------------------------

    def attach(self, recorder: Any = None) -> PatternMonitor:
        """Observe ``recorder``'s batches (default: the one ``faultlens.configure`` started).

        Raises :class:`~faultlens.errors.ConfigurationError` when there is no
        recorder: configure a store first (``faultlens.configure(store=...)``).
        """
        if recorder is None:
            from faultlens.recorder import get_recorder

            recorder = get_recorder()
        if recorder is None:
            raise ConfigurationError(
                "no recorder is running: call faultlens.configure(store=...) first, "
                "or pass PatternMonitor().attach(recorder)"
            )
        self.detach()
        recorder.add_observer(self)
        self._recorder = recorder
        return self

    def detach(self) -> None:
        """Stop observing the recorder (idempotent)."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.remove_observer(self)

    def ongoing(self) -> list[Pattern]:
        """Snapshots of the ongoing patterns."""
        with self._lock:
            return self.detectors.ongoing()
