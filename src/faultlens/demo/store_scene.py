"""The demo's store scene: what the recorder wrote, read back as issues and a timeline.

The demo runs with ``faultlens.configure(store=...)``, so every operation, error
and recovery event of the other scenes went through the recorder into the store
(SQLite by default).  After ``faultlens.shutdown()`` has flushed it, this scene
opens the store, lists the top issues (errors grouped by fingerprint) and prints
one correlation's full timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from faultlens import store as _store
from faultlens.store import Issue, StoredEvent

__all__ = ["StoreScene", "read_store_scene"]


@dataclass
class StoreScene:
    """What the store holds after the demo."""

    url: str
    issues: list[Issue] = field(default_factory=list)
    correlation_id: str = ""
    timeline: list[StoredEvent] = field(default_factory=list)
    dropped: int = 0

    @property
    def healthy(self) -> bool:
        """True when issues were grouped, the timeline has an error, and nothing was dropped."""
        kinds = {stored.event.kind for stored in self.timeline}
        return len(self.issues) >= 3 and {"error", "operation"} <= kinds and self.dropped == 0

    def render(self) -> str:
        """Top issues and the timeline as aligned text."""
        lines = [f"store scene ({self.url})", "  top issues:"]
        for issue in self.issues:
            lines.append(
                f"    #{issue.id:<3} {issue.count:>3}x  {issue.category or '-':<12} "
                f"{issue.title[:60]}  [{issue.culprit or '-'}]"
            )
        lines.append(f"  timeline of correlation {self.correlation_id}:")
        start = self.timeline[0].event.timestamp if self.timeline else 0.0
        for stored in self.timeline:
            event = stored.event
            payload = event.payload
            detail = str(
                payload.get("phase") or payload.get("outcome") or payload.get("type") or ""
            )
            grouped = f"  issue #{stored.issue_id}" if stored.issue_id else ""
            lines.append(
                f"    +{(event.timestamp - start) * 1000:7.1f} ms  {event.kind:<9} "
                f"{event.name:<24} {detail}{grouped}"
            )
        if self.dropped:
            lines.append(f"  events dropped by the recorder: {self.dropped}")
        return "\n".join(lines)


def read_store_scene(url: str, correlation_id: str, *, dropped: int = 0) -> StoreScene:
    """Open the store at ``url`` and read the top issues and one correlation's timeline."""
    scene = StoreScene(url=url, correlation_id=correlation_id, dropped=dropped)
    store = _store.open(url)
    try:
        scene.issues = list(store.issues(sort="count", limit=5).items)
        scene.timeline = store.timeline(correlation_id)
    finally:
        store.close()
    return scene
