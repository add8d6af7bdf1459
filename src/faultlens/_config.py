"""``faultlens.configure()`` and ``faultlens.shutdown()``: one call sets everything up."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any, Literal

from faultlens._metrics import counters
from faultlens.context import set_header_names
from faultlens.errors import ConfigurationError
from faultlens.errors._capture import CaptureSettings, set_capture_settings
from faultlens.errors._hooks import install_unhandled_hooks, uninstall_unhandled_hooks
from faultlens.logs import LogSettings, configure_logging
from faultlens.redaction import Redactor, set_redactor

if TYPE_CHECKING:
    from faultlens.recorder import EventWriter, Recorder, RecorderSettings

__all__ = ["Config", "configure", "get_config", "shutdown", "stats"]


def _recorder_module() -> Any:
    """``faultlens.recorder``, imported on first need (it is not needed to log)."""
    from faultlens import recorder

    return recorder


def _recorder_settings() -> RecorderSettings:
    settings: RecorderSettings = _recorder_module().RecorderSettings()
    return settings


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
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    capture_unhandled: bool = False
    store: str | EventWriter | None = None
    recorder: RecorderSettings = field(default_factory=_recorder_settings)


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
    capture: CaptureSettings | None = None,
    capture_unhandled: bool = False,
    store: str | EventWriter | None = None,
    recorder: RecorderSettings | None = None,
    detect_patterns: bool = False,
) -> Config:
    """Set faultlens up for this process and return the applied :class:`Config`.

    Installs the JSON (or console) log handler on the root logger (other
    handlers are kept), sets the redaction engine, and the names of the
    correlation and request-id headers.  ``service``/``environment`` are added
    to every log line.  Calling it again replaces the previous settings.
    ``install_log_handler=False`` leaves logging alone (for applications that
    install :class:`faultlens.logs.JSONFormatter` themselves).

    ``capture`` sets how error events are built (breadcrumbs, in-app frames,
    limits; see :class:`faultlens.errors.CaptureSettings`).  ``capture_unhandled=True``
    installs hooks that capture and log exceptions nothing caught
    (``sys.excepthook``, ``threading.excepthook``, and the asyncio handler of the
    running loop); without it, hooks a previous call installed are removed.

    ``store`` (a URL such as ``"sqlite:///faultlens.db"``, or a store object)
    starts the recorder, which writes every event to it from a background
    thread; ``recorder`` tunes its batching, queue bound and spool (see
    :class:`faultlens.recorder.RecorderSettings`).  Without ``store`` no
    events are recorded, and a recorder a previous call started is flushed and
    stopped.  ``detect_patterns=True`` (with a ``store``) runs the pattern
    detectors on the recorder's writer thread (a
    :class:`faultlens.analysis.PatternMonitor` attached to it), saving and
    publishing every pattern change.  It is off by default: it costs the writer
    a little under half of what writing each error to SQLite costs (never an
    application thread), and it sees only this process's share of the errors,
    so with several worker processes each would report its own bursts and miss
    the ones only their sum makes; ``faultlens.analysis.StoreAnalyzer`` watches
    the store across processes instead.
    """
    for name, header in (
        ("correlation_header", correlation_header),
        ("request_id_header", request_id_header),
    ):
        if not header or not header.isascii() or any(c in header for c in " :\r\n\t"):
            raise ConfigurationError(f"{name} must be an HTTP header name, not {header!r}")
    # Built before anything is applied: a bad store or setting leaves the old config.
    if detect_patterns and store is None:
        raise ConfigurationError("detect_patterns=True needs a store: pass store=... too")
    _recorder = _recorder_module()
    new_recorder = _recorder.Recorder(store, settings=recorder) if store is not None else None
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
        capture=capture or CaptureSettings(),
        capture_unhandled=capture_unhandled,
        store=store,
        recorder=recorder or _recorder.RecorderSettings(),
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
        set_capture_settings(config.capture)
        if capture_unhandled:
            install_unhandled_hooks()
        else:
            uninstall_unhandled_hooks()
        _recorder._install(new_recorder)
        if detect_patterns and new_recorder is not None:
            from faultlens.analysis import PatternMonitor

            PatternMonitor().attach(new_recorder)
        _config = config
    return config


def get_config() -> Config | None:
    """Return the settings of the last :func:`configure` call, or ``None``."""
    return _config


def shutdown() -> None:
    """Flush what faultlens buffers and stop its background work; safe to call twice.

    Also removes the unhandled-exception hooks ``configure(capture_unhandled=True)``
    installed, and flushes and stops the recorder (waiting at most its
    ``shutdown_timeout``; what is still queued then is dropped and counted).
    """
    uninstall_unhandled_hooks()
    _recorder = sys.modules.get("faultlens.recorder")  # never imported: none ran
    if _recorder is not None:
        _recorder._stop()
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
    until its counter first moves.  While a recorder runs, its current levels
    ``recorder.queue_depth`` and ``recorder.spool_bytes`` are included too.
    """
    snapshot = counters.snapshot()
    running = _running_recorder()
    if running is not None:
        snapshot.update(running.gauges())
        snapshot = dict(sorted(snapshot.items()))
    return snapshot


def _running_recorder() -> Recorder | None:
    module = sys.modules.get("faultlens.recorder")
    return None if module is None else module.get_recorder()
