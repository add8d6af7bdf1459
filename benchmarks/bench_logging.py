"""Logging: faultlens against python-json-logger, structlog, loguru and the stdlib.

One record with a correlation id and 5 extra fields, rendered to JSON and written to a
discarding stream, by each library configured as its documentation recommends for speed.
Every call is written the way a user writes it: stdlib loggers get a literal
``extra={...}`` dict, keyword loggers literal keywords, so each side pays for building
its own arguments.

``configure_logging()`` installs faultlens's LogRecord factory and logger class
process-wide, so the stdlib-based peers measured here (python-json-logger, the plain
formatter) build their records with them too: their times are lower than in a process
without faultlens, which makes faultlens's ratios against them conservative.  The
below-level baseline is a genuine ``logging.Logger``.

"faultlens stdlib path" is a logger whose records reach faultlens's handler alone, so
no LogRecord is built; "... record built" adds a filter to the logger, which makes
the stdlib machinery run in full (what happens when another handler or a filter
wants the record).

    .venv/bin/python benchmarks/bench_logging.py
"""

from __future__ import annotations

import contextvars
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from loguru import logger as loguru_logger
from pythonjsonlogger.json import JsonFormatter

import faultlens
from _harness import Discard, measure, ratio, report, versions
from faultlens import logs as faultlens_logs

CID = "4bf92f3577b34da6a3ce929d0e0e4736"
_cid: contextvars.ContextVar[str | None] = contextvars.ContextVar("cid", default=None)


def _isolated(name: str, handler: logging.Handler, level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(level)
    return logger


class CorrelationFilter(logging.Filter):
    """The usual way to add a correlation id with python-json-logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _cid.get()
        return True


class NullHandler(logging.Handler):
    """Accepts records and does nothing: what the stdlib machinery alone costs."""

    def emit(self, record: logging.LogRecord) -> None:
        pass


def setup() -> dict[str, object]:
    # python-json-logger with a correlation filter
    pjl_handler = logging.StreamHandler(Discard())
    pjl_handler.setFormatter(
        JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=True)
    )
    pjl_handler.addFilter(CorrelationFilter())
    pjl = _isolated("bench.pjl", pjl_handler)

    # stdlib plain text formatter
    plain_handler = logging.StreamHandler(Discard())
    plain_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    plain = _isolated("bench.plain", plain_handler)

    # the stdlib machinery with a handler that does nothing
    null = _isolated("bench.null", NullHandler())

    # structlog configured for speed (its performance guide): filtering bound logger,
    # orjson renderer, bytes logger, cached on first use.
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.BytesLoggerFactory(file=Discard()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    slog = structlog.get_logger("bench.structlog")

    # loguru with serialize=True
    loguru_logger.remove()
    loguru_logger.add(Discard(), serialize=True, level="INFO")  # type: ignore[call-overload]

    # faultlens: stdlib path and native path share the handler configure_logging installs
    faultlens_logs.configure_logging("INFO", stream=Discard())  # type: ignore[arg-type]
    fl_std = logging.getLogger("bench.faultlens")
    fl_native = faultlens.get_logger("bench.faultlens")
    fl_record = logging.getLogger("bench.faultlens.record")
    fl_record.addFilter(lambda record: True)

    # a logger of the stdlib's own class, as a process without faultlens has
    stdlib = logging.Logger("bench.stdlib-class", logging.INFO)
    stdlib.addHandler(plain_handler)
    return {
        "pjl": pjl,
        "plain": plain,
        "null": null,
        "slog": slog,
        "fl_std": fl_std,
        "fl_native": fl_native,
        "fl_record": fl_record,
        "stdlib": stdlib,
    }


def floor() -> None:
    """The least any JSON logger can do: build the dict, serialise it with a timestamp."""
    data = {
        "timestamp": datetime.now(UTC).isoformat(),
        "level": "INFO",
        "message": "order placed",
        "correlation_id": _cid.get(),
        "order_id": 1234,
        "user": "u-42",
        "amount": 12.5,
        "currency": "EUR",
        "retry": False,
    }
    Discard().write(orjson.dumps(data))


def below_level(loggers: dict[str, object]) -> None:
    """A call below the level: faultlens's loggers against the stdlib's own class."""
    stdlib: logging.Logger = loggers["stdlib"]  # type: ignore[assignment]
    slog: Any = loggers["slog"]
    fl_std: logging.Logger = loggers["fl_std"]  # type: ignore[assignment]
    fl_native: Any = loggers["fl_native"]

    def stdlib_debug() -> None:
        stdlib.debug(
            "order placed",
            extra={
                "order_id": 1234,
                "user": "u-42",
                "amount": 12.5,
                "currency": "EUR",
                "retry": False,
            },
        )

    def faultlens_std_debug() -> None:
        fl_std.debug(
            "order placed",
            extra={
                "order_id": 1234,
                "user": "u-42",
                "amount": 12.5,
                "currency": "EUR",
                "retry": False,
            },
        )

    def structlog_debug() -> None:
        slog.debug(
            "order placed", order_id=1234, user="u-42", amount=12.5, currency="EUR", retry=False
        )

    def faultlens_debug() -> None:
        fl_native.debug(
            "order placed", order_id=1234, user="u-42", amount=12.5, currency="EUR", retry=False
        )

    below = measure(
        {
            "stdlib logger.debug": stdlib_debug,
            "structlog debug (filtered)": structlog_debug,
            "faultlens get_logger debug": faultlens_debug,
            "faultlens stdlib path debug": faultlens_std_debug,
        },
        number=10_000,
        rounds=51,
    )
    report("a call below the level", below, "stdlib logger.debug")
    below_ratio = ratio(below, "faultlens get_logger debug", "stdlib logger.debug")
    below_std = ratio(below, "faultlens stdlib path debug", "stdlib logger.debug")
    print(f"  faultlens below-level / stdlib: {below_ratio:.2f}  (goal <= 1.00)")
    print(f"  FaultlensLogger below-level / stdlib: {below_std:.2f}")


def main() -> None:
    loggers = setup()
    pjl: logging.Logger = loggers["pjl"]  # type: ignore[assignment]
    plain: logging.Logger = loggers["plain"]  # type: ignore[assignment]
    null: logging.Logger = loggers["null"]  # type: ignore[assignment]
    slog: Any = loggers["slog"]
    fl_std: logging.Logger = loggers["fl_std"]  # type: ignore[assignment]
    fl_native: Any = loggers["fl_native"]
    fl_record: logging.Logger = loggers["fl_record"]  # type: ignore[assignment]
    _cid.set(CID)
    structlog.contextvars.bind_contextvars(correlation_id=CID)
    scope = faultlens.correlate(CID)
    scope.__enter__()
    loguru_bound = loguru_logger.bind(correlation_id=CID)

    def pjl_info() -> None:
        pjl.info(
            "order placed",
            extra={
                "order_id": 1234,
                "user": "u-42",
                "amount": 12.5,
                "currency": "EUR",
                "retry": False,
            },
        )

    def structlog_info() -> None:
        slog.info(
            "order placed", order_id=1234, user="u-42", amount=12.5, currency="EUR", retry=False
        )

    def loguru_info() -> None:
        loguru_bound.info(
            "order placed", order_id=1234, user="u-42", amount=12.5, currency="EUR", retry=False
        )

    def plain_info() -> None:
        plain.info(
            "order placed",
            extra={
                "order_id": 1234,
                "user": "u-42",
                "amount": 12.5,
                "currency": "EUR",
                "retry": False,
            },
        )

    def null_info() -> None:
        null.info(
            "order placed",
            extra={
                "order_id": 1234,
                "user": "u-42",
                "amount": 12.5,
                "currency": "EUR",
                "retry": False,
            },
        )

    def faultlens_std_info() -> None:
        fl_std.info(
            "order placed",
            extra={
                "order_id": 1234,
                "user": "u-42",
                "amount": 12.5,
                "currency": "EUR",
                "retry": False,
            },
        )

    def faultlens_record_info() -> None:
        fl_record.info(
            "order placed",
            extra={
                "order_id": 1234,
                "user": "u-42",
                "amount": 12.5,
                "currency": "EUR",
                "retry": False,
            },
        )

    def faultlens_native_info() -> None:
        fl_native.info(
            "order placed", order_id=1234, user="u-42", amount=12.5, currency="EUR", retry=False
        )

    print(versions("faultlens", "python-json-logger", "structlog", "loguru", "orjson"))
    emitted = measure(
        {
            "python-json-logger + filter": pjl_info,
            "structlog (fast config)": structlog_info,
            "loguru serialize": loguru_info,
            "stdlib plain formatter": plain_info,
            "stdlib, do-nothing handler": null_info,
            "floor: dict + orjson": floor,
            "faultlens stdlib path": faultlens_std_info,
            "faultlens stdlib path, record built": faultlens_record_info,
            "faultlens get_logger": faultlens_native_info,
        },
        # Short batches, many rounds: on a busy machine a burst of noise then spoils
        # one batch of one candidate, which the median over the rounds discards.
        number=1_000,
        rounds=51,
    )
    report(
        "one JSON record, correlation id + 5 extra fields", emitted, "python-json-logger + filter"
    )
    pjl_ratio = ratio(emitted, "faultlens stdlib path", "python-json-logger + filter")
    std_ratio = ratio(emitted, "faultlens stdlib path", "structlog (fast config)")
    native_ratio = ratio(emitted, "faultlens get_logger", "structlog (fast config)")
    print(f"  faultlens stdlib / python-json-logger: {pjl_ratio:.2f}  (goal <= 0.40)")
    print(f"  faultlens stdlib / structlog:          {std_ratio:.2f}  (goal <= 1.00)")
    print(f"  faultlens get_logger / structlog:      {native_ratio:.2f}  (goal <= 0.50)")

    below_level(loggers)
    scope.__exit__(None, None, None)


if __name__ == "__main__":
    main()
