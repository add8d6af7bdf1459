"""The demo's recovery scene: a flaky dependency, a breaker that opens and closes, a fallback.

Three dependencies misbehave the way real ones do, and each is called through a
faultlens policy inside its own correlation:

* a *flaky* price service fails twice with a transient error, then answers:
  ``retry`` recovers it;
* a *payments* service is down for a while: the ``CircuitBreaker`` opens after
  three failures, rejects calls at once while open (no load on the dead service),
  lets one probe through after its open duration and closes when it succeeds;
* a *recommendations* service is down: ``fallback`` serves a cached list, and the
  answer is marked degraded.

Every attempt is a recovery event; the scene counts them by outcome and checks
each story ended as it should.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import faultlens
from faultlens import events
from faultlens.errors import IntegrationError, TransientError
from faultlens.recovery import CircuitBreaker, CircuitOpenError, fallback, retry

__all__ = ["RecoveryScene", "run_recovery_scene"]

log = faultlens.get_logger("demo.recovery")

# The breaker's open duration: short, so the demo sees it close, yet far longer than
# the three calls it rejects take.  (At 0.05 s a process held up for as long on a
# loaded machine let one of them through as a failing probe: the story, the scene's
# verdict and the test of the demo broke.)
OPEN_SECONDS = 1.0


@dataclass
class RecoveryScene:
    """What the recovery scene saw."""

    price: float | None = None
    price_calls: int = 0
    breaker_states: list[str] = field(default_factory=list)
    rejected_fast: int = 0
    payments_calls: int = 0
    recommendations: list[str] = field(default_factory=list)
    degraded: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def healthy(self) -> bool:
        """True when retry recovered, the breaker opened and closed, and the fallback served."""
        return (
            self.price is not None
            and self.price_calls == 3
            and self.breaker_states[:3] == ["open", "half_open", "closed"]
            and self.rejected_fast > 0
            and self.degraded
            and self.recommendations == ["cached-bestseller"]
            and self.outcomes["succeeded_after_retry"] >= 1
            and self.outcomes["rejected_open"] == self.rejected_fast
            and self.outcomes["fell_back"] >= 1
        )

    def render(self) -> str:
        """The scene's story and its event counts."""
        rows = [
            f"  flaky price service: recovered by retry after {self.price_calls} calls",
            f"  payments breaker: {' -> '.join(['closed', *self.breaker_states])}; "
            f"{self.rejected_fast} calls rejected at once while open, "
            f"{self.payments_calls} reached the service",
            f"  recommendations: served {self.recommendations} from the fallback"
            f" (degraded={self.degraded})",
            "  recovery events by outcome: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items())),
        ]
        return "recovery scene\n" + "\n".join(rows)


def run_recovery_scene() -> RecoveryScene:
    """Run the three stories and return what happened."""
    scene = RecoveryScene()

    def count(event: events.Event) -> None:
        outcome = event.payload.get("outcome")
        if outcome:
            scene.outcomes[str(outcome)] += 1

    @retry(attempts=5, wait_initial=0.001, wait_max=0.01, name="price_service")
    def fetch_price(sku: str) -> float:
        scene.price_calls += 1
        if scene.price_calls < 3:
            raise TransientError(f"price service busy for {sku}")
        return 9.99

    payments_up = False

    def charge(amount: float) -> str:
        scene.payments_calls += 1
        if not payments_up:
            raise IntegrationError("payments timed out", system="payments", operation="charge")
        return f"charged {amount}"

    breaker = CircuitBreaker(
        "payments",
        failure_threshold=3,
        open_duration=OPEN_SECONDS,
        listeners=[lambda change: scene.breaker_states.append(str(change.to_state))],
    )
    guarded_charge = breaker(charge)

    def recommendations_down(user: str) -> list[str]:
        raise IntegrationError("recommendations unavailable", system="recommendations")

    recommend = fallback(["cached-bestseller"], name="recommendations")(recommendations_down)

    with events.subscribe(count, kinds=[events.RECOVERY]):
        with faultlens.correlate(story="flaky dependency"):
            scene.price = fetch_price("sku-1")
            log.info("price fetched after retries", calls=scene.price_calls)
        with faultlens.correlate(story="circuit breaker"):
            for _ in range(6):
                try:
                    guarded_charge(10.0)
                except CircuitOpenError:
                    scene.rejected_fast += 1
                except IntegrationError:
                    pass
            time.sleep(OPEN_SECONDS * 1.5)  # the dependency comes back meanwhile
            payments_up = True
            log.info("payments answered again", result=guarded_charge(10.0))
        with faultlens.correlate(story="fallback") as ctx:
            scene.recommendations = recommend("user-1")
            current = faultlens.current_context() or ctx
            scene.degraded = bool(current.fields.get("degraded"))
    return scene
