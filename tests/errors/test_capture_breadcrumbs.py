"""Breadcrumbs: each correlation's last log lines, attached to its error events."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import orjson
import pytest

import faultlens
from faultlens import events, logs
from faultlens.errors._breadcrumbs import BreadcrumbBuffer, get_buffer
from faultlens.errors._capture import CaptureSettings, set_capture_settings
from faultlens.testing import capture_events, capture_logs


@pytest.fixture(autouse=True)
def _capture_defaults() -> Iterator[None]:
    """Default capture settings and empty breadcrumbs around each test."""
    set_capture_settings(CaptureSettings())
    buffer = get_buffer()
    if buffer is not None:
        buffer.clear()
    yield
    set_capture_settings(CaptureSettings())


def _error_event() -> events.Event:
    with capture_events(events.ERROR) as captured:
        try:
            raise ValueError("boom")
        except ValueError as exc:
            faultlens.capture(exc)
    return captured[0]


def test_native_and_stdlib_lines_become_breadcrumbs() -> None:
    """Lines written by get_logger and by stdlib loggers are the event's breadcrumbs."""
    with capture_logs("INFO"), faultlens.correlate():
        faultlens.get_logger("app").info("cart loaded", items=3)
        logging.getLogger("app.std").warning("slow query %s", "orders")
        logging.getLogger("app.std").debug("below the level: not written, not kept")
        event = _error_event()
    crumbs = event.payload["breadcrumbs"]
    assert [(c["level"], c["logger"], c["message"]) for c in crumbs] == [
        ("INFO", "app", "cart loaded"),
        ("WARNING", "app.std", "slow query orders"),
    ]
    assert crumbs[0]["items"] == 3
    assert "correlation_id" not in crumbs[0]
    assert "timestamp" in crumbs[0]


def test_breadcrumbs_are_per_correlation() -> None:
    """An event gets the lines of its own correlation only."""
    log = faultlens.get_logger("app")
    with capture_logs("INFO"):
        with faultlens.correlate():
            log.info("request one")
        with faultlens.correlate():
            log.info("request two")
            event = _error_event()
        log.info("outside any request")
    assert [c["message"] for c in event.payload["breadcrumbs"]] == ["request two"]


def test_uncorrelated_lines_go_to_uncorrelated_errors() -> None:
    """Lines logged outside any correlation are the breadcrumbs of errors outside one."""
    with capture_logs("INFO"):
        faultlens.get_logger("app").info("starting up")
        event = _error_event()
    assert [c["message"] for c in event.payload["breadcrumbs"]] == ["starting up"]


def test_breadcrumbs_are_bounded_per_correlation() -> None:
    """Only the last N lines of a correlation are kept."""
    set_capture_settings(CaptureSettings(breadcrumbs=3))
    log = faultlens.get_logger("app")
    with capture_logs("INFO"), faultlens.correlate():
        for i in range(10):
            log.info("step", n=i)
        event = _error_event()
    assert [c["n"] for c in event.payload["breadcrumbs"]] == [7, 8, 9]


def test_least_recently_logging_correlation_is_evicted() -> None:
    """Beyond breadcrumb_correlations, the correlation that logged longest ago is dropped."""
    set_capture_settings(CaptureSettings(breadcrumb_correlations=2))
    log = faultlens.get_logger("app")
    scopes = [faultlens.correlate() for _ in range(3)]
    with capture_logs("INFO"):
        with faultlens.correlate(scopes[0].context.correlation_id):
            log.info("a1")
        with faultlens.correlate(scopes[1].context.correlation_id):
            log.info("b1")
        with faultlens.correlate(scopes[0].context.correlation_id):
            log.info("a2")  # a is now the most recent
        with faultlens.correlate(scopes[2].context.correlation_id):
            log.info("c1")  # evicts b
        buffer = get_buffer()
        assert buffer is not None
        assert buffer.lines(scopes[1].context.correlation_id) == []
        assert len(buffer.lines(scopes[0].context.correlation_id)) == 2
        with faultlens.correlate(scopes[0].context.correlation_id):
            event = _error_event()
    assert [c["message"] for c in event.payload["breadcrumbs"]] == ["a1", "a2"]


def test_buffer_bounds_hold_under_concurrency() -> None:
    """Many threads logging into many correlations stay within both bounds."""
    buffer = BreadcrumbBuffer(per_correlation=4, max_correlations=8)

    class Ctx:
        def __init__(self, cid: str) -> None:
            self.correlation_id = cid

    def work(n: int) -> None:
        for i in range(200):
            buffer.add(Ctx(f"c{(n * 7 + i) % 20}"), f"line {i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert buffer.correlations() <= 9
    assert all(len(buffer.lines(f"c{i}")) <= 4 for i in range(20))


def test_breadcrumbs_are_redacted() -> None:
    """Secrets in logged messages and fields never reach the event's breadcrumbs."""
    with capture_logs("INFO"), faultlens.correlate():
        faultlens.get_logger("app").info("login password=hunter2", api_key="sk-123")
        logging.getLogger("app.std").info("header Authorization: Bearer abc.def")
        event = _error_event()
    text = orjson.dumps(event.payload["breadcrumbs"]).decode()
    assert "hunter2" not in text
    assert "sk-123" not in text
    assert "abc.def" not in text
    assert "[REDACTED]" in text


def test_breadcrumbs_are_redacted_even_if_the_log_redactor_was_off() -> None:
    """Lines rendered with redaction disabled are redacted again for the event."""
    from faultlens.redaction import Redactor

    with capture_logs("INFO", redactor=Redactor(enabled=False)), faultlens.correlate():
        faultlens.get_logger("app").info("login password=hunter2")
        event = _error_event()
    assert event.payload["breadcrumbs"][0]["message"] == "login password=[REDACTED]"


def test_logged_error_keeps_type_and_message_only() -> None:
    """A breadcrumb of a line with an exception drops the stack."""
    with capture_logs("INFO"), faultlens.correlate():
        try:
            raise KeyError("k")
        except KeyError:
            faultlens.get_logger("app").exception("lookup failed")
        event = _error_event()
    assert event.payload["breadcrumbs"][0]["error"] == {"type": "KeyError", "message": "'k'"}


def test_long_and_console_lines_are_kept_as_text() -> None:
    """A line cut to the size limit, or not JSON, is kept under "line"."""
    buffer = get_buffer()
    assert buffer is not None
    with faultlens.correlate() as ctx:
        buffer.add(ctx, "12:00:00.000 INFO app hello\n")
        buffer.add(ctx, '{"message": "' + "x" * 5000 + '"}\n')
        event = _error_event()
    crumbs = event.payload["breadcrumbs"]
    assert crumbs[0] == {"line": "12:00:00.000 INFO app hello"}
    assert len(crumbs[1]["line"]) == 2048


def test_console_format_lines_become_text_breadcrumbs() -> None:
    """With the console format, breadcrumbs keep the readable line."""
    faultlens.configure(log_format="console", log_stream=io.StringIO())
    with faultlens.correlate():
        logging.getLogger("app.console").warning("disk almost full")
        event = _error_event()
    (crumb,) = event.payload["breadcrumbs"]
    assert "disk almost full" in crumb["line"]


def test_zero_turns_breadcrumbs_off() -> None:
    """breadcrumbs=0 removes the logging hook; events carry an empty list."""
    faultlens.configure(log_stream=io.StringIO(), capture=CaptureSettings(breadcrumbs=0))
    assert logs._breadcrumbs is None
    with faultlens.correlate():
        faultlens.get_logger("app").info("not kept")
        event = _error_event()
    assert event.payload["breadcrumbs"] == []
    faultlens.configure(log_stream=io.StringIO())
    assert logs._breadcrumbs is get_buffer() is not None


def test_a_broken_buffer_never_costs_the_log_line() -> None:
    """A failing breadcrumb hook is counted and the line is still written."""
    from faultlens._metrics import counters

    class Hostile:
        @property
        def correlation_id(self) -> str:
            raise RuntimeError("broken context")

    buffer = get_buffer()
    assert buffer is not None
    buffer.add(Hostile(), "line")
    assert counters.get("errors.breadcrumb_failures") == 1


# --- logs: repr of unknown objects ------------------------------------------------------------


def test_repr_of_unknown_log_values_is_redacted() -> None:
    """A secret inside an object's repr is redacted before the line is written."""

    class Client:
        def __repr__(self) -> str:
            return "Client(dsn='postgres://app:s3cret@db/x', api_key='sk-live-42')"

    with capture_logs("INFO") as lines:
        faultlens.get_logger("app").info("connected", client=Client())
        logging.getLogger("app.std").info("connected", extra={"client": Client()})
    for line in lines.refresh():
        assert "s3cret" not in line["client"]
        assert "sk-live-42" not in line["client"]
        assert line["client"].startswith("Client(dsn='postgres://app:[REDACTED]@db/x'")
