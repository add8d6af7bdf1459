"""Retention: delete old events in small batches, so the store is never locked for long.

Each kind of event gets one threshold: events older than ``older_than`` go, and,
with ``max_rows_per_kind=N``, so do events older than the N-th newest of that
kind (events sharing that timestamp stay, so a kind may keep a few more than N).
Rows below the threshold are then deleted ``batch_size`` at a time, each batch in
its own short transaction: writers and readers interleave with the cleanup, and an
interrupted cleanup has deleted whole batches and can simply be run again.

What stays: issues and their counts (``count``, ``users``, ``sessions`` describe
everything ever seen, not what is still stored), the audit log (append-only),
patterns and alerts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from faultlens._clock import get_clock
from faultlens.errors import ValidationError
from faultlens.store._types import seconds

if TYPE_CHECKING:
    from faultlens.store._protocol import CleanupProgress
    from faultlens.store._sql import SQLStore

__all__ = ["parse_age", "run_cleanup"]

_AGE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MAX_BATCH: Final = 100_000


def parse_age(text: str) -> float:
    """Seconds in an age such as ``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` or ``3600``."""
    match = _AGE.fullmatch(text)
    if match is None:
        raise ValidationError(
            f"{text!r} is not an age: write a number and a unit, such as 30d, 12h, 90m, 3600s",
            field="older_than",
        )
    return seconds(float(match[1]) * _UNITS[match[2].lower()], "older_than")


def run_cleanup(
    store: SQLStore,
    *,
    older_than: float | timedelta | None,
    max_rows_per_kind: int | None,
    batch_size: int,
    progress: CleanupProgress | None,
) -> dict[str, int]:
    """Delete what the retention rules say; return rows deleted per kind."""
    age = None if older_than is None else seconds(older_than, "older_than")
    if max_rows_per_kind is not None and (
        isinstance(max_rows_per_kind, bool)
        or not isinstance(max_rows_per_kind, int)
        or max_rows_per_kind < 1
    ):
        raise ValidationError(
            f"max_rows_per_kind must be a positive int or None, not {max_rows_per_kind!r}",
            field="max_rows_per_kind",
        )
    if age is None and max_rows_per_kind is None:
        raise ValidationError(
            "say what to delete: older_than=..., max_rows_per_kind=..., or both",
            field="older_than",
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= _MAX_BATCH
    ):
        raise ValidationError(
            f"batch_size must be an int from 1 to {_MAX_BATCH}, not {batch_size!r}",
            field="batch_size",
        )
    cutoff = None if age is None else get_clock().time() - age
    plan: list[tuple[str, float, int]] = []
    for kind in store._kinds():
        threshold = cutoff
        if max_rows_per_kind is not None:
            nth = store._nth_newest(kind, max_rows_per_kind)
            if nth is not None and (threshold is None or nth > threshold):
                threshold = nth
        if threshold is None:
            continue
        expected = store._count_older(kind, threshold)
        if expected:
            plan.append((kind, threshold, expected))
    total = sum(expected for _, _, expected in plan)
    deleted: dict[str, int] = {}
    done = 0
    if progress is not None:
        progress(0, total)
    for kind, threshold, _ in plan:
        deleted[kind] = 0
        while True:
            count = store._delete_batch(kind, threshold, batch_size)
            deleted[kind] += count
            done += count
            if progress is not None and count:
                # Writers may add old events meanwhile (a spool replay): never report
                # more done than the total.
                total = max(total, done)
                progress(done, total)
            if count < batch_size:
                break
    return deleted
