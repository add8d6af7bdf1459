"""Structured logging: schema, context, redaction, robustness."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faultlens
from faultlens import logs
from faultlens._metrics import counters
from faultlens.logs import (
    ConsoleFormatter,
    JSONFormatter,
    LogSettings,
    configure_logging,
    get_logger,
)
from faultlens.testing import capture_logs

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_stdlib_record_schema_with_context_and_extra() -> None:
    """A stdlib record becomes one JSON line with context and extra fields."""
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    with faultlens.correlate(user_id="u1", session_id="s1", tenant_id="t1") as ctx:
        logging.getLogger("app.orders").info("saved %s", "order", extra={"order_id": 7})
    (line,) = _lines(stream)
    assert TS.fullmatch(line["timestamp"])
    assert line["level"] == "INFO"
    assert line["logger"] == "app.orders"
    assert line["message"] == "saved order"
    assert line["module"] == "test_logs"
    assert line["function"] == "test_stdlib_record_schema_with_context_and_extra"
    assert isinstance(line["line"], int)
    assert line["correlation_id"] == ctx.correlation_id
    assert line["trace_id"] == ctx.trace_id
    assert line["span_id"] == ctx.span_id
    assert (line["user_id"], line["session_id"], line["tenant_id"]) == ("u1", "s1", "t1")
    assert line["order_id"] == 7


def test_native_logger_same_schema() -> None:
    """get_logger writes the same schema, with bound and keyword fields."""
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    log = get_logger("app.native").bind(component="billing")
    with faultlens.correlate() as ctx, faultlens.operation("charge", level=logging.DEBUG):
        log.info("charged", amount=12.5)
    (line,) = _lines(stream)
    assert line["message"] == "charged"
    assert line["logger"] == "app.native"
    assert line["function"] == "test_native_logger_same_schema"
    assert line["module"] == "test_logs"
    assert line["component"] == "billing"
    assert line["amount"] == 12.5
    assert line["operation"] == "charge"
    assert line["correlation_id"] == ctx.correlation_id


def test_native_logger_before_configure_goes_through_stdlib(caplog) -> None:  # type: ignore[no-untyped-def]
    """Without configure_logging, native lines reach the user's stdlib handlers."""
    with caplog.at_level(logging.INFO, logger="app.early"):
        get_logger("app.early").info("hello", message_id=1, name="x")
    record = caplog.records[-1]
    assert record.getMessage() == "hello"
    assert record.message_id == 1  # type: ignore[attr-defined]
    assert record.field_name == "x"  # type: ignore[attr-defined]
    assert record.funcName == "test_native_logger_before_configure_goes_through_stdlib"


def test_below_level_writes_nothing() -> None:
    """Calls below the level produce no output."""
    stream = io.StringIO()
    configure_logging("WARNING", stream=stream)
    get_logger("x").info("no")
    logging.getLogger("x").info("no")
    assert stream.getvalue() == ""


def test_exception_and_stack_info() -> None:
    """logger.exception and stack_info produce error {type, message, stack} and stack_info."""
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("x").exception("failed")
        get_logger("x").exception("failed natively")
    logging.getLogger("x").info("here", stack_info=True)
    first, second, third = _lines(stream)
    for line in (first, second):
        assert line["error"]["type"] == "ValueError"
        assert line["error"]["message"] == "bad value"
        assert "Traceback" in line["error"]["stack"]
    assert "test_exception_and_stack_info" in third["stack_info"]


def test_rename_and_static_fields() -> None:
    """Field names can be renamed and static fields added."""
    stream = io.StringIO()
    configure_logging(
        "INFO",
        stream=stream,
        settings=LogSettings(
            rename={"timestamp": "@timestamp", "message": "msg"}, static={"service": "shop"}
        ),
    )
    logging.getLogger("x").info("hi")
    get_logger("x").info("hi2")
    first, second = _lines(stream)
    for line in (first, second):
        assert "@timestamp" in line
        assert "timestamp" not in line
        assert line["service"] == "shop"
    assert (first["msg"], second["msg"]) == ("hi", "hi2")


def test_configure_keeps_other_handlers_and_replaces_own() -> None:
    """configure_logging adds one handler, replaces its own, and keeps the user's."""
    root = logging.getLogger()
    mine = logging.StreamHandler(io.StringIO())
    root.addHandler(mine)
    try:
        configure_logging(stream=io.StringIO())
        configure_logging(stream=io.StringIO())
        ours = [h for h in root.handlers if getattr(h, "faultlens_installed", False)]
        assert len(ours) == 1
        assert mine in root.handlers
    finally:
        root.removeHandler(mine)


def test_third_party_loggers_flow_through() -> None:
    """A library's logger with no handlers of its own is formatted as JSON too."""
    with capture_logs() as lines:
        logging.getLogger("somelib.internal").warning("retrying")
    assert lines[0]["logger"] == "somelib.internal"


def test_secrets_redacted_in_message_extra_and_exception() -> None:
    """Secrets in messages, extra fields and exception text never reach the output."""
    with capture_logs() as lines:
        logging.getLogger("x").info(
            "login with Bearer abcdefghijklmnopqrstuvwxyz012345",
            extra={
                "password": "hunter2hunter2",
                "headers": {"Authorization": "Basic dXNlcjpwYXNz"},
            },
        )
        try:
            raise RuntimeError("db url postgresql://app:s3cr3tpw@db:5432/x failed")
        except RuntimeError:
            get_logger("x").exception("boom", api_key="AKIAIOSFODNN7EXAMPLE")
    text = orjson.dumps(list(lines)).decode()
    for secret in (
        "abcdefghijklmnopqrstuvwxyz012345",
        "hunter2hunter2",
        "dXNlcjpwYXNz",
        "s3cr3tpw",
        "AKIAIOSFODNN7EXAMPLE",
    ):
        assert secret not in text, secret


SECRET = st.from_regex(r"[A-Za-z0-9]{16,32}", fullmatch=True)
NESTED = st.recursive(
    st.none() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(secret=SECRET, noise=NESTED, path=st.lists(st.sampled_from(["a", "b", "c"]), max_size=4))
def test_secret_under_sensitive_key_anywhere_never_logged(
    secret: str, noise: Any, path: list[str]
) -> None:
    """A secret nested at any depth under a sensitive key never appears in the line."""
    value: Any = {"api_token": secret}
    for key in reversed(path):
        value = {key: [noise, value]}
    with capture_logs() as lines:
        get_logger("x").info("payload", payload=value, noise=noise)
        logging.getLogger("x").info("payload", extra={"payload": value})
    assert secret not in orjson.dumps(list(lines)).decode()


def test_never_raises_on_hostile_values() -> None:
    """Unserializable, recursive, huge and 65-bit values still produce a line."""

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    recursive: dict[str, Any] = {}
    recursive["self"] = recursive
    with capture_logs() as lines:
        get_logger("x").info(
            "odd",
            obj=object(),
            bad=Unprintable(),
            rec=recursive,
            huge="x" * 1_000_000,
            big=2**70,
            raw=b"\xff\x00bytes",
        )
        logging.getLogger("x").info("odd", extra={"rec": recursive, "big": 2**70})
    first, second = lines
    assert first["message"] == "odd"
    assert len(orjson.dumps(first)) < 70_000
    assert "truncated" in first["huge"]
    assert second["message"] == "odd"


def test_bad_format_args_keep_the_line() -> None:
    """A %-format mismatch keeps the template and counts it."""
    stream = io.StringIO()
    logger = logging.getLogger("badfmt")
    logger.propagate = False  # keep pytest's own capture handler (which raises) out of it
    configure_logging("INFO", stream=stream, logger=logger)
    try:
        logger.info("value %d %d", "not-a-number")  # noqa: PLE1206 (the point of the test)
    finally:
        logs.reset_logging(logger)
        logger.propagate = True
    assert _lines(stream)[0]["message"].startswith("value %d %d")
    assert counters.get("logs.bad_format_args") == 1


class _BrokenStream(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError("disk full")


def test_failing_stream_is_counted_not_raised(capsys) -> None:  # type: ignore[no-untyped-def]
    """A stream that raises is counted and reported once; the app goes on."""
    configure_logging(stream=_BrokenStream())
    for _ in range(3):
        logging.getLogger("x").error("lost")
        get_logger("x").error("lost")
    assert counters.get("logs.write_errors") == 6
    assert capsys.readouterr().err.count("writing a log line failed") == 1


def test_formatter_bug_degrades_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside rendering still yields a minimal line and a counter."""

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise ZeroDivisionError

    monkeypatch.setattr(logs, "_render", broken)
    monkeypatch.setattr(logs, "_dumps", broken)  # the spliced renderer falls back to _render
    with capture_logs() as lines:
        logging.getLogger("x").info("still here")
    assert lines[0]["message"] == "still here"
    assert counters.get("logs.degraded_lines") == 1


def test_console_formatter_neutralises_newlines() -> None:
    """Console output escapes CR/LF so a value cannot forge a line."""
    formatter = ConsoleFormatter(colors=False)
    record = logging.LogRecord(
        "app", logging.INFO, __file__, 1, "user %s", ("a\r\nINFO fake",), None
    )
    record.evil = "x\ny"
    with faultlens.correlate("abcdef1234"):
        text = formatter.format(record)
    assert "\n" not in text
    assert "\\n" in text
    assert "[abcdef12]" in text


def test_console_formatter_shows_traceback() -> None:
    """Console output appends the indented traceback of an exception."""
    try:
        raise ValueError("nope")
    except ValueError:
        import sys

        record = logging.LogRecord("app", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = ConsoleFormatter(colors=False).format(record)
    assert "    Traceback" in text
    assert "ValueError: nope" in text


def test_json_formatter_usable_standalone() -> None:
    """JSONFormatter works on any handler, including format() returning str."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("standalone")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("w")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert _lines(stream)[0]["message"] == "w"


def test_context_filter_for_queue_handlers() -> None:
    """With ContextFilter, a record formatted on another thread keeps its context."""
    import logging.handlers
    import queue

    q: queue.Queue[logging.LogRecord] = queue.Queue()
    qh = logging.handlers.QueueHandler(q)
    qh.addFilter(logs.ContextFilter())
    logger = logging.getLogger("queued")
    logger.addHandler(qh)
    logger.propagate = False
    try:
        with faultlens.correlate() as ctx:
            logger.warning("queued line")
    finally:
        logger.removeHandler(qh)
        logger.propagate = True
    record = q.get_nowait()
    line = orjson.loads(JSONFormatter().format(record))
    assert line["correlation_id"] == ctx.correlation_id


# --- the fast paths keep the behaviour ------------------------------------------------------

_TIME_ATTRS = {"created", "msecs", "relativeCreated"}


@pytest.mark.parametrize(
    "args",
    [
        ("app", logging.INFO, __file__, 10, "saved %s", ("x",), None, "save", None),
        ("app", 25, "/srv/app/orders.py", 3, "n=%(n)d", ({"n": 1},), None, None, "Stack..."),
        ("app", logging.ERROR, "no-directory", 1, "m", (), (None, None, None)),
        ("app", logging.DEBUG, None, 0, 42, None, None),
    ],
)
def test_fast_record_factory_matches_stdlib_record(args: tuple[Any, ...]) -> None:
    """fast_log_record builds a LogRecord with the stdlib's attributes, order and values."""
    ours = logs.fast_log_record(*args)
    theirs = logging.LogRecord(*args)
    assert type(ours) is logging.LogRecord
    assert list(ours.__dict__) == list(theirs.__dict__)
    for key, value in theirs.__dict__.items():
        if key not in _TIME_ATTRS:
            assert ours.__dict__[key] == value, key
    assert abs(ours.created - theirs.created) < 1
    assert ours.getMessage() == theirs.getMessage()


def test_fast_record_factory_reads_renamed_thread_and_fresh_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thread names are read per record; the cached pid is dropped after a fork."""
    import os
    import threading

    thread = threading.current_thread()
    monkeypatch.setattr(thread, "name", "renamed-worker")
    assert logs.fast_log_record("a", 20, "f.py", 1, "m", (), None).threadName == "renamed-worker"
    monkeypatch.setattr(logs, "_pid", -1)  # as if inherited from a parent process
    logs._forget_pid()  # what the after-fork hook runs in the child
    assert logs.fast_log_record("a", 20, "f.py", 1, "m", (), None).process == os.getpid()


def test_configure_installs_fast_factory_only_over_the_stdlib_one() -> None:
    """configure_logging swaps only the default record factory; reset_logging restores it."""
    assert logging.getLogRecordFactory() is logging.LogRecord
    configure_logging(stream=io.StringIO())
    assert logging.getLogRecordFactory() is logs.fast_log_record
    logs.reset_logging()
    assert logging.getLogRecordFactory() is logging.LogRecord

    def custom(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return logging.LogRecord(*args, **kwargs)

    logging.setLogRecordFactory(custom)
    try:
        configure_logging(stream=io.StringIO())
        assert logging.getLogRecordFactory() is custom
        logs.reset_logging()
        assert logging.getLogRecordFactory() is custom
    finally:
        logging.setLogRecordFactory(logging.LogRecord)


def test_other_formatters_see_full_records_from_fast_factory() -> None:
    """A user's %-style formatter on another handler still gets every attribute."""
    import threading

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("%(threadName)s|%(processName)s|%(module)s|%(filename)s|%(levelname)s")
    )
    logger = logging.getLogger("theirs")
    logger.addHandler(handler)
    try:
        configure_logging(stream=io.StringIO())
        logger.warning("w")
    finally:
        logger.removeHandler(handler)
    name = threading.current_thread().name
    assert stream.getvalue() == f"{name}|MainProcess|test_logs|test_logs.py|WARNING\n"


def test_native_level_check_follows_set_level_and_disabled() -> None:
    """The native logger's cached level check sees setLevel() and `disabled`."""
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    log = get_logger("levels")
    std = logging.getLogger("levels")
    log.debug("hidden")
    log.info("shown 1")
    std.setLevel(logging.DEBUG)
    log.debug("shown 2")
    std.disabled = True
    try:
        log.info("hidden")
        log.debug("hidden")
    finally:
        std.disabled = False
        std.setLevel(logging.NOTSET)
    log.warning("shown 3")
    assert [line["message"] for line in _lines(stream)] == ["shown 1", "shown 2", "shown 3"]


def test_native_lines_report_their_own_call_site() -> None:
    """Each native call reports its own line, also from the same function."""
    import inspect

    with capture_logs() as lines:
        for _ in range(2):
            get_logger("x").info("first")
            first_line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
            get_logger("x").info("second")
    assert [line["line"] for line in lines] == [first_line, first_line + 2] * 2
    assert {line["function"] for line in lines} == {"test_native_lines_report_their_own_call_site"}


def test_unicode_line_separators_cannot_split_a_line() -> None:
    """U+0085, U+2028 and U+2029 are escaped, so every record stays one line."""
    stream = io.StringIO()
    configure_logging(stream=stream)
    evil = "a\x85b\u2028c\u2029d"
    logging.getLogger("x").info(evil, extra={"value": evil})
    get_logger("x").info(evil, **{evil: evil})
    text = stream.getvalue()
    assert len(text.splitlines()) == 2
    for line in _lines(stream):
        assert line["message"] == evil
    assert "\\u2028" in text


def test_long_values_are_cut_on_both_paths() -> None:
    """Extra values over max_value_chars are cut; a long line of short values is not."""
    with capture_logs(max_value_chars=100) as lines:
        logging.getLogger("x").info("m", extra={"big": "y" * 500, "small": "z" * 50})
        get_logger("x").info("m", big="y" * 500, small="z" * 50)
        get_logger("x").info("m", **{f"k{i}": "z" * 90 for i in range(5)})
    for line in lines[:2]:
        assert line["big"].startswith("y" * 100)
        assert "truncated 400 chars" in line["big"]
        assert line["small"] == "z" * 50
    assert all(lines[2][f"k{i}"] == "z" * 90 for i in range(5))


def test_context_changes_between_lines_are_seen() -> None:
    """Each line carries the context current when it was logged."""
    with capture_logs() as lines, faultlens.correlate() as ctx:
        get_logger("x").info("before")
        faultlens.bind(user_id="u-7")
        get_logger("x").info("after")
        logging.getLogger("x").info("after, stdlib")
    assert "user_id" not in lines[0]
    assert lines[1]["user_id"] == lines[2]["user_id"] == "u-7"
    assert {line["correlation_id"] for line in lines} == {ctx.correlation_id}


def test_handler_filters_still_apply() -> None:
    """Filters on faultlens's handler decide, as on any handler."""
    stream = io.StringIO()
    handler = configure_logging(stream=stream)
    handler.addFilter(lambda record: "keep" in record.getMessage())
    logging.getLogger("x").info("keep me")
    logging.getLogger("x").info("drop me")
    assert [line["message"] for line in _lines(stream)] == ["keep me"]


def test_console_format_through_the_handler() -> None:
    """The console format still goes through faultlens's handler."""
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream)
    logging.getLogger("x").info("hello", extra={"order_id": 7})
    assert "hello" in stream.getvalue()
    assert "order_id=7" in stream.getvalue()


def test_record_subclass_attributes_are_fields() -> None:
    """Attributes a LogRecord subclass sets before the standard ones still become fields."""

    class Tagged(logging.LogRecord):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.tenant_tag = "acme"
            super().__init__(*args, **kwargs)

    record = Tagged("x", logging.INFO, __file__, 1, "m", (), None)
    line = orjson.loads(JSONFormatter().format(record))
    assert line["tenant_tag"] == "acme"


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_timestamp_matches_datetime(created: float) -> None:
    """rfc3339 (and its millisecond memo) agrees with datetime, to the millisecond."""
    from datetime import UTC, datetime

    ms = int(created * 1000)
    expected = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert logs._format_ms(created) == f"{expected}.{ms % 1000:03d}Z"
    assert logs.rfc3339(created) == f"{expected}.{ms % 1000:03d}Z"  # now from the memo


def test_extra_fields_found_when_a_filter_deleted_an_attribute() -> None:
    """A record missing a standard attribute still yields all of its extra fields."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    del record.exc_text
    record.order_id = 7
    line = orjson.loads(JSONFormatter().format(record))
    assert line["order_id"] == 7
