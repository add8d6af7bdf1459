"""FaultlensLogger: stdlib records unchanged, and lines without records when nobody else looks."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faultlens
from faultlens import _metrics, logs
from faultlens.logs import FaultlensLogger, LogSettings, configure_logging, get_logger
from faultlens.redaction import Redactor

_TIME_ATTRS = {"created", "msecs", "relativeCreated"}
TS = re.compile(rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"')


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(1)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _comparable(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: (value[0] if key == "exc_info" and value else value)
        for key, value in record.__dict__.items()
        if key not in _TIME_ATTRS
    }


_NOT_A_STRING = object()


def _module_level_call(logger: logging.Logger) -> None:
    logger.info("from a helper", stacklevel=2)


def _every_call_shape(logger: logging.Logger) -> None:
    # One call per line, the same lines for both loggers.
    logger.debug("d %s %s", 1, "two", extra={"order_id": 7, "nested": {"a": [1]}})
    logger.info("mapping %(n)s", {"n": 3})
    logger.warning("w", stack_info=True)
    logger.warning("w", stacklevel=2)
    logger.error("e", stacklevel=3)
    logger.critical("c")
    logger.fatal("f")
    logger.log(25, "custom level")
    with pytest.warns(DeprecationWarning, match="warn"):
        logger.warn("deprecated")
    logging.LoggerAdapter(logger, {"tag": 1}).info("adapted")
    logging.LoggerAdapter(logger, {}).warning("adapted", stacklevel=2)
    _module_level_call(logger)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        logger.exception("caught")
        logger.error("with exc", exc_info=exc)
        logger.error("with tuple", exc_info=(type(exc), exc, exc.__traceback__))
    logger.info(_NOT_A_STRING)
    logger.info("", stacklevel=0)


def _records_of(logger: logging.Logger) -> list[dict[str, Any]]:
    handler = _Records()
    logger.addHandler(handler)
    logger.setLevel(1)
    logger.propagate = False
    _every_call_shape(logger)
    return [_comparable(record) for record in handler.records]


def test_records_equal_the_stdlib_loggers() -> None:
    """Every call shape gives the record logging.Logger gives, attribute by attribute."""
    ours, theirs = (_records_of(cls("same.name")) for cls in (FaultlensLogger, logging.Logger))
    assert len(ours) == len(theirs) == 17
    for mine, stdlib in zip(ours, theirs, strict=True):
        assert list(mine) == list(stdlib)
        assert mine == stdlib
    assert logs._logger_matches_stdlib()


def test_extra_that_overwrites_a_record_attribute_raises_like_the_stdlib() -> None:
    """extra={"msg": ...} is the stdlib's KeyError on both classes, with or without handlers."""
    for cls in (FaultlensLogger, logging.Logger):
        logger = cls("overwrite")
        with pytest.raises(KeyError, match="Attempt to overwrite 'msg'"):
            logger.error("m", extra={"msg": 1})


@pytest.fixture
def isolated() -> Iterator[Callable[[], tuple[logging.Logger, io.StringIO]]]:
    """Make, inside the test, a logger whose only handler is faultlens's.

    pytest's capture handlers sit on the root and, from the start of each test
    phase, on every logger that does not propagate: a test removes them first.
    """
    logger = logging.getLogger("isolated.app")
    stream = io.StringIO()

    def make() -> tuple[logging.Logger, io.StringIO]:
        logger.handlers.clear()
        logger.propagate = False
        configure_logging("DEBUG", stream=stream, logger=logger)
        return logger, stream

    try:
        yield make
    finally:
        logs.reset_logging(logger)
        logger.filters.clear()
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def test_configure_reclasses_plain_loggers_and_reset_undoes_it() -> None:
    """Existing and new plain loggers become FaultlensLogger; reset_logging restores them."""
    before = logging.getLogger("made.before")
    assert type(before) is logging.Logger
    configure_logging(stream=io.StringIO())
    after = logging.getLogger("made.after")
    assert type(before) is type(after) is FaultlensLogger
    assert logging.getLoggerClass() is FaultlensLogger
    assert logging.getLogger("made") is not before  # placeholders became loggers as usual
    logs.reset_logging()
    assert type(before) is type(after) is logging.Logger
    assert logging.getLoggerClass() is logging.Logger


def test_logger_class_opt_out_and_custom_classes_are_left_alone() -> None:
    """logger_class=False keeps the stdlib class; a class someone set is never replaced."""
    plain = logging.getLogger("opt.out")
    configure_logging(stream=io.StringIO(), logger_class=False)
    assert type(plain) is logging.Logger
    logs.reset_logging()

    class Custom(logging.Logger):
        pass

    logging.setLoggerClass(Custom)
    try:
        custom = logging.getLogger("custom.class")
        configure_logging(stream=io.StringIO())
        assert logging.getLoggerClass() is Custom
        assert type(custom) is Custom
        assert type(plain) is logging.Logger
        logs.reset_logging()
        assert logging.getLoggerClass() is Custom
    finally:
        logging.setLoggerClass(logging.Logger)


def test_no_record_is_built_when_only_faultlens_handlers_listen(
    isolated: Callable[[], tuple[logging.Logger, io.StringIO]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only faultlens's JSON handler listening: the line is written without a LogRecord."""
    logger, stream = isolated()
    assert type(logger) is FaultlensLogger

    def no_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        raise AssertionError("a record was built")

    monkeypatch.setattr(FaultlensLogger, "makeRecord", no_record)
    with faultlens.correlate() as ctx:
        logger.info("saved %s", "order", extra={"order_id": 7})
    line = orjson.loads(stream.getvalue())
    assert line["message"] == "saved order"
    assert line["order_id"] == 7
    assert line["correlation_id"] == ctx.correlation_id
    assert line["module"] == "test_logs_logger"
    assert line["function"] == "test_no_record_is_built_when_only_faultlens_handlers_listen"


def test_other_handlers_and_filters_get_the_full_record(
    isolated: Callable[[], tuple[logging.Logger, io.StringIO]],
) -> None:
    """A second handler, or a filter, anywhere on the way: the record is built as usual."""
    logger, stream = isolated()
    records = _Records()
    logger.addHandler(records)
    try:
        logger.info("to both", extra={"order_id": 7})
    finally:
        logger.removeHandler(records)
    (record,) = records.records
    assert record.order_id == 7  # type: ignore[attr-defined]
    logger.addFilter(lambda record: record.getMessage() != "dropped")
    logger.info("dropped")
    logger.info("kept")
    assert [orjson.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
        "to both",
        "kept",
    ]


FIELD_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["Bearer abcdefghijklmnop", "password=hunter2", "4111111111111111"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=6,
)
FIELD_KEYS = st.text(max_size=10) | st.sampled_from(
    ["password", "api_key", "user_id", "message", "level", "service", "op", "environment"]
)


def _settings_strategy() -> st.SearchStrategy[LogSettings]:
    return st.builds(
        LogSettings,
        rename=st.dictionaries(
            st.sampled_from(["timestamp", "message", "level", "order_id", "line"]),
            st.sampled_from(["@timestamp", "msg", "severity", "oid", "message"]),
            max_size=2,
        ),
        static=st.dictionaries(
            st.sampled_from(["service", "environment", "version"]), st.text(max_size=8), max_size=2
        ),
        max_value_chars=st.sampled_from([8192, 40]),
        max_line_bytes=st.sampled_from([65536, 300]),
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    message=st.text(max_size=40) | st.sampled_from(["login with Bearer abcdefghijklmnop"]),
    fields=st.dictionaries(FIELD_KEYS, FIELD_VALUES, max_size=5),
    log_settings=_settings_strategy(),
    user_id=st.none() | st.text(max_size=10),
    created=st.floats(min_value=0, max_value=4_102_444_800),
)
def test_render_line_is_render(
    message: str,
    fields: dict[str, Any],
    log_settings: LogSettings,
    user_id: str | None,
    created: float,
) -> None:
    """The spliced line is byte for byte the line the dict-based renderer writes."""
    with faultlens.correlate(user_id=user_id), faultlens.operation("checkout"):
        for _ in range(2):  # the second time from the memos
            ours = logs._render_line(
                log_settings,
                created,
                "INFO",
                "app.x",
                message,
                "mod",
                "fn",
                3,
                fields,
                logs._current_get(),
            )
            theirs = logs._render(
                log_settings,
                created,
                "INFO",
                "app.x",
                message,
                "mod",
                "fn",
                3,
                fields,
                None,
                None,
                None,
                None,
            )
            assert ours == theirs


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    message=st.text(max_size=30),
    args=st.lists(st.integers() | st.text(max_size=5), max_size=2),
    fields=st.dictionaries(
        FIELD_KEYS.filter(lambda key: key not in logs._RECORD_ATTRS), FIELD_VALUES, max_size=4
    ),
)
def test_a_line_without_record_equals_the_line_from_a_record(
    message: str, args: list[Any], fields: dict[str, Any]
) -> None:
    """Whether a record is built or not, the same JSON line comes out."""
    stream = io.StringIO()
    logger = logging.getLogger("compare.paths")
    logger.propagate = False
    configure_logging("DEBUG", stream=stream, logger=logger)
    assert logs._json_targets(logger, logging.INFO)  # nobody else listens: no record
    try:
        with faultlens.correlate(user_id="u-1"):
            for record_path in (False, True):
                if record_path:  # a filter that keeps everything forces a record
                    logger.addFilter(lambda record: True)
                logger.info(message, *args, extra=fields)
    finally:
        logger.filters.clear()
        logs.reset_logging(logger)
        logger.propagate = True
    without, with_record = (
        TS.sub(b'"T"', line.encode()) for line in stream.getvalue().split("\n")[:2]
    )
    assert without == with_record


SECRETS = ["hunter2hunter2", "abcdefghijklmnopqrstuvwxyz012345", "dXNlcjpwYXNzd29yZA"]


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(["password", "api_key", "authToken", "X-Auth", "db_pwd", "value"]),
    secret=st.sampled_from(SECRETS),
    wrap=st.sampled_from(["{}", "Bearer {}", "password={}", "https://u:{}@host/", "[{}]"]),
)
def test_secrets_never_reach_either_fast_path(key: str, secret: str, wrap: str) -> None:
    """Secrets in fields and messages are redacted on the record-free and native paths."""
    value = wrap.format(secret)
    if wrap in ("{}", "[{}]"):  # no pattern: only the key gives it away
        message = "login"
        if key == "value":
            value = message = f"Bearer {secret}"
    else:
        message = f"login {value}"
    stream = io.StringIO()
    logger = logging.getLogger("secrets.fast")
    logger.propagate = False
    configure_logging("DEBUG", stream=stream, logger=logger)
    try:
        for _ in range(2):
            logger.info(message, extra={key: value, "n": 1})
            logger.info("login", extra={"nested": {key: value}})
            get_logger("secrets.fast").info(message, **{key: value})
            get_logger("secrets.fast").info("login", nested=[{key: value}])
    finally:
        logs.reset_logging(logger)
        logger.propagate = True
    assert stream.getvalue().count("\n") == 8
    assert secret not in stream.getvalue()


def test_record_free_path_never_raises(
    isolated: Callable[[], tuple[logging.Logger, io.StringIO]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hostile values, bad format arguments and odd messages still produce lines."""
    monkeypatch.setattr(_metrics, "_reported", set())  # its report_once stays in this test
    logger, stream = isolated()

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        __str__ = __repr__

    recursive: dict[str, Any] = {}
    recursive["self"] = recursive
    logger.info("odd", extra={"obj": Unprintable(), "rec": recursive, "big": 2**70})
    logger.info("value %d", "not-a-number")
    logger.info(Unprintable())
    logger.info("sep\u2028arated", extra={"huge": "x" * 100_000})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # str() of the message failing is a counted write error
    assert faultlens.stats()["logs.write_errors"] == 1
    first, second, third = (orjson.loads(line) for line in lines)
    assert first["big"] == str(2**70)
    assert second["message"].startswith("value %d")
    assert third["message"] == "sep\u2028arated"
    assert "truncated" in third["huge"]


def test_rename_static_and_custom_redactor_on_the_record_free_path() -> None:
    """Renamed keys, static fields and the settings' own redactor apply as on every path."""
    stream = io.StringIO()
    logger = logging.getLogger("renamed.fast")
    logger.propagate = False
    configure_logging(
        "INFO",
        stream=stream,
        logger=logger,
        settings=LogSettings(
            rename={"timestamp": "@timestamp", "message": "msg"},
            static={"service": "shop"},
            redactor=Redactor(extra_keys=("order_id",)),
        ),
    )
    try:
        logger.info("saved", extra={"order_id": 7, "items": 2})
        logger.info("saved", extra={"@timestamp": "collides with a renamed field"})
    finally:
        logs.reset_logging(logger)
        logger.propagate = True
    first, second = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert list(first)[:2] == ["@timestamp", "level"]
    assert (first["msg"], first["service"], first["order_id"], first["items"]) == (
        "saved",
        "shop",
        "[REDACTED]",
        2,
    )
    assert second["@timestamp"] == "collides with a renamed field"


def test_capture_logs_keeps_the_logger_class_configure_logging_installed() -> None:
    """After a capture_logs() block the faster logger class and record factory stay installed."""
    from faultlens import testing

    handler = faultlens.logs.configure_logging(stream=io.StringIO())
    try:
        assert logging.getLoggerClass() is faultlens.logs.FaultlensLogger
        factory = logging.getLogRecordFactory()
        with testing.capture_logs() as logs:
            logging.getLogger("faultlens.test.capture").warning("inside")
        assert logs.messages() == ["inside"]
        assert logging.getLoggerClass() is faultlens.logs.FaultlensLogger
        assert logging.getLogRecordFactory() is factory
        assert type(logging.getLogger("faultlens.test.capture")) is faultlens.logs.FaultlensLogger
    finally:
        logging.getLogger().removeHandler(handler)
        faultlens.logs.reset_logging()
