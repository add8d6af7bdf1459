"""Alert delivery: webhooks against a local HTTP server, retries, failures, Slack, the log."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from faultlens._metrics import counters
from faultlens.analysis import (
    Alert,
    AlertDelivery,
    AlertEngine,
    AlertRule,
    DeliveryError,
    DeliverySettings,
    LogChannel,
    SlackChannel,
    WebhookChannel,
)
from faultlens.analysis._delivery import mask_url
from faultlens.errors import ConfigurationError, MissingExtraError
from faultlens.store import open as open_store
from faultlens.testing import FakeClock, capture_logs

from ._insight_data import error

T0 = 1_700_000_000.0
SECRET = "T000/B000/XXXXSECRETXXXX"
TRANSPORTS = ["httpx", "urllib"]


class Server:
    """A local HTTP server answering from a script of statuses (the last one repeats)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = [(200, {})]
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                status, headers = owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/services/{SECRET}"
        # A short poll interval: shutdown() waits for the serving loop to notice.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def answer(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        self.script = [s if isinstance(s, tuple) else (s, {}) for s in statuses]

    def bodies(self) -> list[Any]:
        return [orjson.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    """A local webhook receiver on 127.0.0.1, on a free port."""
    running = Server()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """A fake clock: backoff waits are recorded, not slept."""
    with FakeClock(T0) as fake:
        yield fake


def alert(status: str = "firing", **details: Any) -> Alert:
    """An alert as the engine makes them."""
    return Alert(
        id="a1",
        rule="critical_error_rate",
        status=status,  # type: ignore[arg-type]
        severity="critical",
        fired_at=T0,
        resolved_at=T0 + 60 if status == "resolved" else None,
        details={
            "metric": "critical_errors",
            "condition": "critical_errors > 3",
            "key": "",
            "value": 4.0,
            "threshold": 3.0,
            "window": "5m",
            "message": "4 critical errors in the last 5m (critical_errors > 3)",
            "correlation_id": "c3",
            "action": "look at <the> critical errors & fix",
            **details,
        },
    )


def closed_port() -> int:
    """A port nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_webhook_posts_json(server: Server, transport: str) -> None:
    """The webhook channel POSTs the alert as JSON."""
    channel = WebhookChannel(server.url, headers={"X-Token": "t"}, transport=transport)  # type: ignore[arg-type]
    assert channel.transport == transport
    channel.send(alert())
    channel.close()
    (request,) = server.requests
    assert request["path"] == f"/services/{SECRET}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Token"] == "t"
    body = orjson.loads(request["body"])
    assert body["text"] == (
        "[CRITICAL] FIRING critical_error_rate: 4 critical errors in the last 5m "
        "(critical_errors > 3)"
    )
    sent = body["alert"]
    assert (sent["id"], sent["status"], sent["severity"], sent["correlation_id"]) == (
        "a1",
        "firing",
        "critical",
        "c3",
    )
    assert sent["fired_at_iso"] == "2023-11-14T22:13:20Z"
    assert sent["details"]["value"] == 4.0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retries_with_backoff(server: Server, clock: FakeClock, transport: str) -> None:
    """500s are retried with doubling waits until the server accepts."""
    server.answer(500, 502, 200)
    channel = WebhookChannel(server.url, transport=transport)  # type: ignore[arg-type]
    with AlertDelivery([channel]) as delivery:
        delivery.submit(alert())
        assert delivery.flush(10)
        assert delivery.failures() == []
    assert len(server.requests) == 3
    assert clock.sleeps == [1.0, 2.0]
    assert counters.get("alerts.delivery_retries") == 2
    assert counters.get("alerts.delivered") == 1


def test_retry_after_is_honoured(server: Server, clock: FakeClock) -> None:
    """A 429 with Retry-After waits what the server asked (capped by backoff_max)."""
    server.answer((429, {"Retry-After": "7"}), (503, {"Retry-After": "900"}), 200)
    settings = DeliverySettings(backoff_max=60)
    with AlertDelivery([WebhookChannel(server.url)], settings=settings) as delivery:
        delivery.submit(alert())
        assert delivery.flush(10)
    assert clock.sleeps == [7.0, 60.0]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exhausted_retries_are_recorded(server: Server, clock: FakeClock, transport: str) -> None:
    """After max_attempts failures the delivery is counted, kept, audited and logged."""
    server.answer(503)
    with open_store("sqlite:///:memory:") as store, capture_logs() as logs:
        channel = WebhookChannel(server.url, name="ops", transport=transport)  # type: ignore[arg-type]
        delivery = AlertDelivery([channel], settings=DeliverySettings(max_attempts=3), store=store)
        delivery.submit(alert())
        assert delivery.flush(10)
        delivery.close()
        (failure,) = delivery.failures()
        assert (failure.channel, failure.alert_id, failure.reason, failure.attempts) == (
            "ops",
            "a1",
            "failed",
            3,
        )
        assert failure.error == "the server answered HTTP 503"
        (entry,) = store.audit_log(target="alert:a1").items
        assert (entry.action, entry.actor) == ("alert.delivery_failed", "faultlens")
        assert entry.details["channel"] == "ops"
        assert entry.details["attempts"] == 3
    assert len(server.requests) == 3
    assert clock.sleeps == [1.0, 2.0]
    assert counters.get("alerts.delivery_failed") == 1
    assert counters.get("alerts.delivery_failed.ops") == 1
    (line,) = [r for r in logs if r.get("alert_id") == "a1"]
    assert line["message"] == "alert delivery failed: channel 'ops', alert critical_error_rate"


def test_client_errors_are_not_retried(server: Server, clock: FakeClock) -> None:
    """A 400 will not change: one attempt, then the failure is recorded."""
    server.answer(400)
    with AlertDelivery([WebhookChannel(server.url)]) as delivery:
        delivery.submit(alert())
        assert delivery.flush(10)
        (failure,) = delivery.failures()
    assert (failure.attempts, failure.error) == (1, "the server answered HTTP 400")
    assert clock.sleeps == []


def test_redirects_are_not_followed(server: Server, clock: FakeClock) -> None:
    """A redirecting webhook is a failure, not a POST somewhere else."""
    server.answer((302, {"Location": "http://127.0.0.1:1/elsewhere"}))
    for transport in TRANSPORTS:
        channel = WebhookChannel(server.url, transport=transport)  # type: ignore[arg-type]
        with pytest.raises(DeliveryError, match="HTTP 302") as caught:
            channel.send(alert())
        assert caught.value.retryable is False


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_refused_is_retried_without_leaking_the_url(
    clock: FakeClock, transport: str
) -> None:
    """A refused connection is retried, and the failure never shows the secret URL."""
    port = closed_port()
    url = f"http://127.0.0.1:{port}/services/{SECRET}"
    channel = WebhookChannel(url, name="hook", transport=transport)  # type: ignore[arg-type]
    with open_store("sqlite:///:memory:") as store, capture_logs() as logs:
        delivery = AlertDelivery([channel], settings=DeliverySettings(max_attempts=2), store=store)
        delivery.submit(alert())
        assert delivery.flush(10)
        delivery.close()
        (failure,) = delivery.failures()
        audit = store.audit_log(target="alert:a1").items[0]
    assert failure.attempts == 2
    assert clock.sleeps == [1.0]
    assert "SECRET" not in failure.error
    assert "SECRET" not in orjson.dumps(dict(audit.details)).decode()
    assert all("SECRET" not in orjson.dumps(r).decode() for r in logs)
    assert "SECRET" not in repr(channel)
    assert channel.shown_url == f"http://127.0.0.1:{port}/[REDACTED]"


def test_url_masking() -> None:
    """Only scheme, host and port of a webhook URL are ever shown."""
    assert (
        mask_url("https://hooks.slack.com/services/T/B/X") == "https://hooks.slack.com/[REDACTED]"
    )
    assert mask_url("https://user:pw@example.com:8443/?token=x") == (
        "https://example.com:8443/[REDACTED]"
    )
    assert mask_url("https://example.com") == "https://example.com"
    assert mask_url("http://[::1]:80/x") == "http://[::1]:80/[REDACTED]"


def test_bad_urls_are_refused() -> None:
    """Only http(s) URLs with a host are accepted; the message hides the rest of the URL."""
    with pytest.raises(ConfigurationError, match="http:// or https://") as caught:
        WebhookChannel(f"file:///etc/{SECRET}")
    assert "SECRET" not in str(caught.value)
    with pytest.raises(ConfigurationError):
        SlackChannel("")


def test_slack_payload_shape(server: Server) -> None:
    """Slack gets a text fallback and blocks: header, message, fields, action, context."""
    channel = SlackChannel(server.url)
    channel.send(alert())
    channel.close()
    (body,) = server.bodies()
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("🔴 [CRITICAL] FIRING critical_error_rate: 4 critical")
    header, message, fields, action, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🔴 FIRING: critical_error_rate", "emoji": True},
    }
    assert message["type"] == "section"
    assert message["text"] == {
        "type": "mrkdwn",
        "text": "4 critical errors in the last 5m (critical_errors &gt; 3)",
    }
    assert [f["text"] for f in fields["fields"]] == [
        "*Severity*\ncritical",
        "*Condition*\n`critical_errors &gt; 3`",
        "*Value*\n4.0",
        "*Window*\n5m",
        "*Correlation*\n`c3`",
    ]
    assert action["text"]["text"] == "*Action*: look at &lt;the&gt; critical errors &amp; fix"
    assert context["type"] == "context"
    assert context["elements"][0]["text"] == ("faultlens alert `a1` · fired 2023-11-14T22:13:20Z")


def test_slack_resolved_payload() -> None:
    """A resolution says so, without the action."""
    payload = SlackChannel("https://hooks.slack.com/services/x").payload(alert("resolved"))
    assert payload["blocks"][0]["text"]["text"] == "✅ RESOLVED: critical_error_rate"
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "section", "context"]
    assert "resolved 2023-11-14T22:14:20Z" in payload["blocks"][-1]["elements"][0]["text"]


def test_full_queue_drops_and_records(clock: FakeClock) -> None:
    """When a channel's queue is full, the alert is dropped, counted and recorded."""
    release = threading.Event()
    started = threading.Event()

    class Slow:
        name = "slow"

        def send(self, alert: Alert) -> None:
            started.set()
            release.wait(10)

    delivery = AlertDelivery([Slow()], settings=DeliverySettings(queue_size=1))
    delivery.submit(alert())
    assert started.wait(10)  # the worker holds the first alert
    delivery.submit(alert())  # queued
    delivery.submit(alert())  # no room
    release.set()
    assert delivery.flush(10)
    delivery.close()
    (failure,) = delivery.failures()
    assert (failure.reason, failure.attempts, failure.channel) == ("dropped", 0, "slow")
    assert counters.get("alerts.delivery_dropped") == 1


def test_a_broken_channel_is_retried_then_recorded(clock: FakeClock) -> None:
    """A channel raising something else than DeliveryError is retried like a failure."""

    class Broken:
        name = "broken"

        def send(self, alert: Alert) -> None:
            raise KeyError("oops")

    with AlertDelivery([Broken()], settings=DeliverySettings(max_attempts=2)) as delivery:
        delivery.submit(alert())
        assert delivery.flush(10)
        (failure,) = delivery.failures()
    assert failure.error == "KeyError: 'oops'"
    assert failure.attempts == 2


def test_log_channel(clock: FakeClock) -> None:
    """The log channel writes a line in the triggering correlation, at a level by severity."""
    with capture_logs() as logs:
        channel = LogChannel()
        channel.send(alert())
        channel.send(alert("resolved"))
        channel.send(replace_severity(alert(), "medium"))
    assert [(r["level"], r["alert_status"], r["correlation_id"]) for r in logs] == [
        ("ERROR", "firing", "c3"),
        ("INFO", "resolved", "c3"),
        ("WARNING", "firing", "c3"),
    ]
    assert logs[0]["rule"] == "critical_error_rate"
    assert logs[0]["value"] == 4.0


def replace_severity(item: Alert, severity: str) -> Alert:
    """``item`` with another severity."""
    from dataclasses import replace

    return replace(item, severity=severity)


def test_without_httpx(monkeypatch: pytest.MonkeyPatch, server: Server) -> None:
    """Without httpx, webhooks use urllib; asking for httpx names the extra to install."""
    monkeypatch.setitem(sys.modules, "httpx", None)
    channel = WebhookChannel(server.url)
    assert channel.transport == "urllib"
    channel.send(alert())
    assert len(server.requests) == 1
    with pytest.raises(MissingExtraError, match=r"faultlens\[httpx\]"):
        WebhookChannel(server.url, transport="httpx")


def test_settings_are_checked() -> None:
    """Delivery settings and channel lists are validated."""
    with pytest.raises(ConfigurationError, match="max_attempts"):
        DeliverySettings(max_attempts=0)
    with pytest.raises(ConfigurationError, match="backoff_initial"):
        DeliverySettings(backoff_initial=-1)
    with pytest.raises(ConfigurationError, match="two alert channels"):
        AlertDelivery([LogChannel(), LogChannel()])
    with pytest.raises(ConfigurationError, match="not an alert channel"):
        AlertDelivery([object()])  # type: ignore[list-item]
    assert DeliverySettings().delay(1) == 1.0
    assert DeliverySettings().delay(10) == 60.0


def test_unknown_channel_names_and_closed_delivery(clock: FakeClock) -> None:
    """Alerts for unknown channels, or after close, are counted, not raised."""
    delivery = AlertDelivery([LogChannel()])
    delivery.submit(alert(), ["pager"])
    assert counters.get("alerts.unknown_channel") == 1
    delivery.close()
    delivery.close()
    delivery.submit(alert())
    assert counters.get("alerts.delivery_after_close") == 1


def test_engine_delivers_to_a_webhook(server: Server, clock: FakeClock) -> None:
    """End to end: an alert fired by the engine reaches the webhook, then its resolution."""
    rule = AlertRule(name="critical_error_rate", condition="critical_errors > 3", window="5m")
    with open_store("sqlite:///:memory:") as store:
        engine = AlertEngine(store, rules=[rule], channels=[WebhookChannel(server.url)])
        store.write_events(
            [
                error(
                    "db",
                    T0 - i,
                    category="system",
                    layer="infrastructure",
                    severity="critical",
                    correlation_id=f"c{i}",
                )
                for i in range(4)
            ]
        )
        (fired,) = engine.run_once()
        clock.advance(301)
        (resolved,) = engine.run_once()
        assert resolved.id == fired.id
        assert engine.delivery.flush(10)
        engine.stop()
    assert [(b["alert"]["id"], b["alert"]["status"]) for b in server.bodies()] == [
        (fired.id, "firing"),
        (fired.id, "resolved"),
    ]
    assert server.bodies()[0]["alert"]["correlation_id"] == "c0"
