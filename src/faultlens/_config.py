"""``faultlens.configure()`` and ``faultlens.shutdown()``: one call sets everything up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any, Literal

from faultlens._metrics import counters
from faultlens.context import set_header_names
from faultlens.errors import ConfigurationError
from faultlens.logs import LogSettings, configure_logging
from faultlens.redaction import Redactor, set_redactor

__all__ = ["Config", "configure", "get_config", "shutdown", "stats"]


@dataclass(frozen=True, slots=True)
class Config:
    """The settings :func:`configure` applied (read back with :func:`get_config`)."""

    service: str | None = None
    environment: str | None = None
    level: int | str = "INFO"
    log_format: Literal["json", "console"] = "json"
    correlation_header: str = "X-Correlation-ID"
    request_id_header: str = "X-Request-ID"
    rename_fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    redactor: Redactor = field(default_factory=Redactor)


_lock = threading.Lock()
_config: Config | None = None


def configure(
    *,
    service: str | None = None,
    environment: str | None = None,
    level: int | str = "INFO",
    log_format: Literal["json", "console"] = "json",
    log_stream: IO[str] | None = None,
    correlation_header: str = "X-Correlation-ID",
    request_id_header: str = "X-Request-ID",
    rename_fields: Mapping[str, str] | None = None,
    redactor: Redactor | None = None,
    install_log_handler: bool = True,
) -> Config:
    """Set faultlens up for this process and return the applied :class:`Config`.

    Installs the JSON (or console) log handler on the root logger (other
    handlers are kept), sets the redaction engine, and the names of the
    correlation and request-id headers.  ``service``/``environment`` are added
    to every log line.  Calling it again replaces the previous settings.
    ``install_log_handler=False`` leaves logging alone (for applications that
    install :class:`faultlens.logs.JSONFormatter` themselves).
    """
    for name, header in (
        ("correlation_header", correlation_header),
        ("request_id_header", request_id_header),
    ):
        if not header or not header.isascii() or any(c in header for c in " :\r\n\t"):
            raise ConfigurationError(f"{name} must be an HTTP header name, not {header!r}")
    static: dict[str, Any] = {}
    if service:
        static["service"] = service
    if environment:
        static["environment"] = environment
    config = Config(
        service=service,
        environment=environment,
        level=level,
        log_format=log_format,
        correlation_header=correlation_header,
        request_id_header=request_id_header,
        rename_fields=MappingProxyType(dict(rename_fields or {})),
        redactor=redactor or Redactor(),
    )
    global _config
    with _lock:
        set_redactor(config.redactor)
        set_header_names(correlation=correlation_header, request=request_id_header)
        if install_log_handler:
            configure_logging(
                level,
                fmt=log_format,
                stream=log_stream,
                settings=LogSettings(
                    rename=config.rename_fields,
                    static=MappingProxyType(static),
                ),
            )
        _config = config
    return config


def get_config() -> Config | None:
    """Return the settings of the last :func:`configure` call, or ``None``."""
    return _config


def shutdown() -> None:
    """Flush what faultlens buffers and stop its background work; safe to call twice."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "faultlens_installed", False):
            try:
                handler.flush()
            except Exception:
                counters.incr("logs.write_errors")


def stats() -> dict[str, int]:
    """Return faultlens's counters: what it replaced, dropped, truncated or failed to do.

    Keys are dotted names (``context.invalid_correlation_id``,
    ``logs.write_errors``, ``events.subscriber_errors``…); a key is absent
    until its counter first moves.
    """
    return counters.snapshot()
