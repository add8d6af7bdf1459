"""One process using a Redis-shared circuit breaker, driven by test_breaker_redis.py.

    python breaker_worker.py URL PREFIX NAME OPTIONS_JSON ACTION [ARG]

ACTION is ``fail N`` (N failing calls), ``call`` (one successful call) or
``probe`` (one call that prints ``probing`` when it runs, then waits for a line
on stdin before it returns).  The last line printed is a JSON summary.
"""

from __future__ import annotations

import json
import sys

from faultlens.recovery import CircuitBreaker, CircuitOpenError, RedisBreakerState


class Down(Exception):
    """The dependency failed."""


def failing() -> None:
    """A call that fails."""
    raise Down


def held() -> str:
    """A probe that holds until the test lets it go."""
    print("probing", flush=True)
    sys.stdin.readline()
    return "probed"


def main(argv: list[str]) -> int:
    """Run ACTION and print what happened as JSON."""
    url, prefix, name, options, action, *rest = argv
    store = RedisBreakerState(url, prefix=prefix, sync_interval=0)
    breaker = CircuitBreaker(name, state=store, **json.loads(options))
    counts = {"ok": 0, "failed": 0, "rejected": 0}
    summary: dict[str, object] = {"retry_after": None, "rejected_state": None}
    calls = int(rest[0]) if action == "fail" and rest else 1
    for _ in range(calls):
        try:
            if action == "fail":
                breaker.call(failing)
            elif action == "probe":
                breaker.call(held)
            else:
                breaker.call(lambda: "ok")
        except Down:
            counts["failed"] += 1
        except CircuitOpenError as exc:
            counts["rejected"] += 1
            summary["retry_after"] = exc.retry_after
            summary["rejected_state"] = exc.state
        else:
            counts["ok"] += 1
    summary.update(counts)
    summary["state"] = breaker.state.value
    print(json.dumps(summary), flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
