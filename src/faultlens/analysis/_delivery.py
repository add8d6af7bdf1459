"""Alert delivery: channels (the log, a JSON webhook, Slack) and the worker that retries them.

A :class:`Channel` sends one alert transition somewhere; it raises
:class:`DeliveryError` when it could not (``retryable`` says whether trying
again may help).  :class:`AlertDelivery` keeps sending off the caller's thread:
:meth:`AlertDelivery.submit` puts the alert on each channel's bounded queue and
returns; one worker thread per channel sends it, retrying retryable failures
with exponential backoff (``backoff_initial`` doubling up to ``backoff_max``,
or the server's ``Retry-After`` when longer) up to ``max_attempts`` attempts.

A delivery that failed for good, or that did not fit in a full queue, is never
silent: it is counted (``alerts.delivery_failed`` / ``alerts.delivery_dropped``
in :func:`faultlens.stats`, also per channel), kept in
:meth:`AlertDelivery.failures`, written to the store's audit log (action
``alert.delivery_failed``, target ``alert:<id>``) and logged as a warning.

Webhook URLs usually embed their secret (Slack's do), so a URL never appears in
a log line, an error message, a ``repr`` or the audit log: only
``scheme://host/[REDACTED]``.  HTTP goes through httpx when it is installed
(``pip install 'faultlens[httpx]'``) and through :mod:`urllib.request`
otherwise; redirects are not followed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import queue
import sys
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

import orjson

from faultlens._clock import SystemClock, get_clock
from faultlens._metrics import counters, report_once
from faultlens.errors import Category, ConfigurationError, FaultlensError, MissingExtraError
from faultlens.logs import get_logger
from faultlens.redaction import neutralize_newlines, redact_text
from faultlens.store import Store
from faultlens.store._protocol import Alert

__all__ = [
    "AlertDelivery",
    "Channel",
    "DeliveryError",
    "DeliveryFailure",
    "DeliverySettings",
    "LogChannel",
    "SlackChannel",
    "WebhookChannel",
    "alert_payload",
    "alert_text",
    "mask_url",
]

Transport = Literal["auto", "httpx", "urllib"]

_log = get_logger("faultlens.alerts")
_MAX_FAILURES_KEPT: Final = 100
_MAX_ERROR_CHARS: Final = 500
_USER_AGENT: Final = "faultlens-alerts"
_SEVERITY_ICONS: Final = {"low": "🔵", "medium": "🟡", "high": "🟠", "critical": "🔴"}


class DeliveryError(FaultlensError):
    """A channel could not deliver an alert; ``retryable`` says whether trying again may help.

    ``retry_after`` is the delay the server asked for (seconds), if any.  The
    message never contains the channel's URL.
    """

    category = Category.INTEGRATION
    code = "alert_delivery_failed"

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@runtime_checkable
class Channel(Protocol):
    """Somewhere alert transitions go.  ``send`` runs on a delivery worker thread.

    ``name`` identifies the channel in rules (``channels = ["slack"]``), in
    counters and in the audit log.  ``send`` raises :class:`DeliveryError` on
    failure; any other exception counts as a retryable failure.
    """

    name: str

    def send(self, alert: Alert) -> None:
        """Deliver one alert transition (``alert.status`` is ``firing`` or ``resolved``)."""
        ...


# --- what a notification says ------------------------------------------------------------


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_text(alert: Alert) -> str:
    """One line saying what fired or resolved: ``[HIGH] FIRING critical_errors: ...``."""
    state = "FIRING" if alert.status == "firing" else "RESOLVED"
    return neutralize_newlines(f"[{alert.severity.upper()}] {state} {alert.rule}: {alert.message}")


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The alert as the JSON object webhooks receive (and alert events carry)."""
    details = dict(alert.details)
    return {
        "id": alert.id,
        "rule": alert.rule,
        "status": alert.status,
        "severity": alert.severity,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
        "fired_at_iso": _when(alert.fired_at),
        "resolved_at_iso": _when(alert.resolved_at),
        "tenant_id": alert.tenant_id,
        "key": alert.key,
        "message": alert.message,
        "correlation_id": alert.correlation_id,
        "details": details,
    }


# --- URLs and error messages without secrets ---------------------------------------------


def mask_url(url: str) -> str:
    """``scheme://host[:port]/[REDACTED]``: the URL without credentials, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "[REDACTED URL]"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    tail = "/[REDACTED]" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def _safe_error(exc: BaseException, url: str | None) -> str:
    """``Type: message`` with the URL (and its path) masked, redacted and bounded."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        text = type(exc).__name__
    if url:
        text = text.replace(url, mask_url(url))
        path = urlsplit(url).path
        if len(path) > 1:
            text = text.replace(path, "/[REDACTED]")
    text = neutralize_newlines(redact_text(text))
    return text[:_MAX_ERROR_CHARS]


def _check_url(url: object, what: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{what} needs a URL (http:// or https://)")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError(f"{what}: {mask_url(url)} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{what}: the URL must start with http:// or https:// and name a host, "
            f"not {mask_url(url)}"
        )
    return url


# --- HTTP ----------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - get_clock().time())


def _status_error(status: int, retry_after: str | None) -> DeliveryError | None:
    if 200 <= status < 300:
        return None
    # 408/425/429 and 5xx are worth retrying; other answers will not change.
    retryable = status in (408, 425, 429) or status >= 500
    return DeliveryError(
        f"the server answered HTTP {status}",
        retryable=retryable,
        retry_after=_retry_after(retry_after) if retryable else None,
    )


def _has_httpx() -> bool:
    if "httpx" in sys.modules:  # imported, or hidden with sys.modules["httpx"] = None
        return sys.modules["httpx"] is not None
    try:
        return importlib.util.find_spec("httpx") is not None
    except (ImportError, ValueError):
        return False


class _HTTP:
    """A JSON POST through httpx (when installed) or urllib; one connection pool per channel."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float, transport: Transport):
        self.url = url
        self.headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            **headers,
        }
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: Any = None
        if transport == "auto":
            transport = "httpx" if _has_httpx() else "urllib"
        elif transport == "httpx":
            if not _has_httpx():
                raise MissingExtraError("httpx", "the webhook channels' httpx transport")
        elif transport != "urllib":
            raise ConfigurationError(
                f"transport must be 'auto', 'httpx' or 'urllib', not {transport!r}"
            )
        self.transport = transport

    def post(self, body: bytes) -> None:
        if self.transport == "httpx":
            self._post_httpx(body)
        else:
            self._post_urllib(body)

    def _post_httpx(self, body: bytes) -> None:
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
            client = self._client
        try:
            response = client.post(self.url, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(_safe_error(exc, self.url), retryable=True) from None
        error = _status_error(response.status_code, response.headers.get("Retry-After"))
        if error is not None:
            raise error

    def _post_urllib(self, body: bytes) -> None:
        import urllib.error
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None  # a webhook that redirects is misconfigured: report, do not follow

        opener = urllib.request.build_opener(NoRedirect)
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with opener.open(request, timeout=self.timeout) as response:
                status = int(response.status)
                retry_after = response.headers.get("Retry-After")
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            exc.close()
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
            raise DeliveryError(_safe_error(exc, self.url), retryable=True) from None
        error = _status_error(status, retry_after)
        if error is not None:
            raise error

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


# --- channels ------------------------------------------------------------------------------


class LogChannel:
    """Writes each transition as a log line (``faultlens.alerts``); never fails.

    Firing alerts log at WARNING (ERROR when ``critical``), resolutions at
    INFO.  The line carries the triggering event's correlation id, when the
    alert has one, so it shows in that correlation's logs.
    """

    def __init__(self, *, name: str = "log", logger: str = "faultlens.alerts") -> None:
        self.name = name
        self._log = get_logger(logger)

    def send(self, alert: Alert) -> None:
        """Log the transition."""
        from faultlens.context import correlate

        fields: dict[str, Any] = {
            "alert_id": alert.id,
            "rule": alert.rule,
            "alert_status": alert.status,
            "severity": alert.severity,
            "key": alert.key,
            "value": alert.details.get("value"),
            "threshold": alert.details.get("threshold"),
        }
        text = alert_text(alert)
        scope = (
            correlate(alert.correlation_id) if alert.correlation_id else contextlib.nullcontext()
        )
        with scope:
            if alert.status == "resolved":
                self._log.info(text, **fields)
            elif alert.severity == "critical":
                self._log.error(text, **fields)
            else:
                self._log.warning(text, **fields)

    def __repr__(self) -> str:
        return f"LogChannel(name={self.name!r})"


class WebhookChannel:
    """POSTs each transition as JSON: ``{"text": ..., "alert": alert_payload(alert)}``.

    ``headers`` are added to the request (keep secrets out of files: read them
    from the environment).  ``timeout`` bounds each attempt.  ``transport``
    picks httpx or urllib (``"auto"``: httpx when installed).  A 2xx answer is
    success; 408, 425, 429 and 5xx answers and network errors are retried;
    other answers are not.  A URL that is not http(s) raises
    :class:`~faultlens.errors.ConfigurationError`.
    """

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        headers: Mapping[str, str] | None = None,
        timeout: float | timedelta = 5.0,
        transport: Transport = "auto",
    ) -> None:
        from faultlens.analysis._insights import duration_seconds

        self.name = name
        self._http = _HTTP(
            _check_url(url, f"the {self.kind} channel {name!r}"),
            dict(headers or {}),
            duration_seconds(timeout, "timeout"),
            transport,
        )

    @property
    def shown_url(self) -> str:
        """The URL as it may be shown: ``scheme://host/[REDACTED]``."""
        return mask_url(self._http.url)

    @property
    def transport(self) -> str:
        """``"httpx"`` or ``"urllib"``."""
        return self._http.transport

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON body sent for ``alert``."""
        return {"text": alert_text(alert), "alert": alert_payload(alert)}

    def send(self, alert: Alert) -> None:
        """POST the payload; raise :class:`DeliveryError` unless the server answers 2xx."""
        self._http.post(orjson.dumps(self.payload(alert), default=str))

    def close(self) -> None:
        """Close the connection pool (the worker does it at shutdown)."""
        self._http.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={self.shown_url!r})"


def _mrkdwn(text: str) -> str:
    # Slack's mrkdwn gives &, < and > a meaning: escape them, as its docs ask.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SlackChannel(WebhookChannel):
    """POSTs to a Slack incoming webhook (or anything speaking its ``text``/``blocks`` format).

    The body has a ``text`` fallback (notifications, clients without blocks)
    and ``blocks``: a header, the message, the figures as fields and a context
    line with the alert id and times.  Text is escaped for Slack's mrkdwn.
    """

    kind = "slack"

    def __init__(
        self,
        url: str,
        *,
        name: str = "slack",
        timeout: float | timedelta = 5.0,
        transport: Transport = "auto",
    ) -> None:
        super().__init__(url, name=name, timeout=timeout, transport=transport)

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The Slack message for ``alert``."""
        firing = alert.status == "firing"
        icon = _SEVERITY_ICONS.get(alert.severity, "⚪") if firing else "✅"
        state = "FIRING" if firing else "RESOLVED"
        details = alert.details
        fields = [
            ("Severity", alert.severity),
            ("Condition", f"`{details.get('condition', '?')}`"),
            ("Value", str(details.get("value"))),
            ("Window", str(details.get("window", "?"))),
        ]
        if alert.key:
            fields.append(("Key", f"`{alert.key}`"))
        if alert.correlation_id:
            fields.append(("Correlation", f"`{alert.correlation_id}`"))
        action = details.get("action")
        context = f"faultlens alert `{alert.id}` · fired {_when(alert.fired_at)}"
        if alert.resolved_at is not None:
            context += f" · resolved {_when(alert.resolved_at)}"
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": _cut(f"{icon} {state}: {alert.rule}", 150),
                    "emoji": True,
                },
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(_mrkdwn(alert.message), 3000)},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": _cut(f"*{label}*\n{_mrkdwn(value)}", 2000)}
                    for label, value in fields
                ],
            },
        ]
        if isinstance(action, str) and action and firing:
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": _cut(f"*Action*: {_mrkdwn(action)}", 3000)},
                }
            )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(context)}]}
        )
        return {"text": _cut(f"{icon} {alert_text(alert)}", 3000), "blocks": blocks}


# --- the worker ----------------------------------------------------------------------------


def _seconds(value: float | timedelta, name: str, minimum: float = 0.0) -> float:
    result = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(result, bool) or not isinstance(result, int | float) or not result >= minimum:
        raise ConfigurationError(f"DeliverySettings({name}={value!r}) must be >= {minimum}")
    return float(result)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySettings:
    """How :class:`AlertDelivery` queues and retries.

    Each channel's queue holds ``queue_size`` alerts at most (more are dropped,
    counted and recorded).  A retryable failure is tried again after
    ``backoff_initial`` seconds, doubling up to ``backoff_max`` (or the server's
    ``Retry-After``, capped the same way), for ``max_attempts`` attempts in all.
    :meth:`AlertDelivery.close` waits ``shutdown_timeout`` at most.
    """

    queue_size: int = 1000
    max_attempts: int = 5
    backoff_initial: float | timedelta = 1.0
    backoff_max: float | timedelta = 60.0
    shutdown_timeout: float | timedelta = 5.0

    def __post_init__(self) -> None:
        for name in ("queue_size", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"DeliverySettings({name}={value!r}) must be an int >= 1")
        _seconds(self.backoff_initial, "backoff_initial")
        _seconds(self.backoff_max, "backoff_max")
        _seconds(self.shutdown_timeout, "shutdown_timeout")

    def delay(self, attempt: int, asked: float | None = None) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        cap = _seconds(self.backoff_max, "backoff_max")
        wait = _seconds(self.backoff_initial, "backoff_initial") * 2.0 ** (attempt - 1)
        if asked is not None:
            wait = max(wait, asked)
        return min(cap, wait)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryFailure:
    """A delivery that did not happen: ``failed`` after its attempts, or ``dropped``."""

    channel: str
    alert_id: str
    rule: str
    status: str
    reason: Literal["failed", "dropped"]
    attempts: int
    error: str
    at: float


_STOP: Final = object()


class _Worker:
    """One channel's queue and thread."""

    def __init__(self, owner: AlertDelivery, channel: Channel) -> None:
        self.owner = owner
        self.channel = channel
        self.queue: queue.Queue[Any] = queue.Queue(owner.settings.queue_size)
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def put(self, alert: Alert) -> bool:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.run, name=f"faultlens-alerts-{self.channel.name}", daemon=True
                )
                self.thread.start()
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            return False
        return True

    def run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                self.owner._deliver(self.channel, item)
            except Exception as exc:  # the worker survives anything
                counters.incr("alerts.delivery_worker_errors")
                report_once(
                    f"alerts.worker.{self.channel.name}",
                    f"the alert delivery worker of channel {self.channel.name!r} failed "
                    f"({type(exc).__name__}); it goes on",
                )
            finally:
                self.queue.task_done()


class AlertDelivery:
    """Sends alert transitions to channels from worker threads, with retries; never blocks.

    ``store`` (optional) receives an audit entry per failed delivery.  Start
    nothing yourself: a channel's thread starts with its first alert.  Call
    :meth:`close` (or use ``with``) to flush and stop.
    """

    def __init__(
        self,
        channels: Iterable[Channel],
        *,
        settings: DeliverySettings | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings or DeliverySettings()
        self.store = store
        self._workers: dict[str, _Worker] = {}
        for channel in channels:
            if not isinstance(channel, Channel):
                raise ConfigurationError(
                    f"{channel!r} is not an alert channel: give it a name and a send(alert) method"
                )
            if channel.name in self._workers:
                raise ConfigurationError(f"two alert channels are called {channel.name!r}")
            self._workers[channel.name] = _Worker(self, channel)
        self._failures: deque[DeliveryFailure] = deque(maxlen=_MAX_FAILURES_KEPT)
        self._failures_lock = threading.Lock()
        self._closing = threading.Event()
        self._closed = False

    @property
    def channels(self) -> Mapping[str, Channel]:
        """The channels by name."""
        return {name: worker.channel for name, worker in self._workers.items()}

    def submit(self, alert: Alert, channels: Sequence[str] | None = None) -> None:
        """Queue ``alert`` for ``channels`` (names; ``None``: all); never blocks or raises.

        Unknown channel names are ignored (counted in ``alerts.unknown_channel``).
        """
        if self._closed:
            counters.incr("alerts.delivery_after_close")
            return
        names = list(self._workers) if channels is None else list(channels)
        for name in names:
            worker = self._workers.get(name)
            if worker is None:
                counters.incr("alerts.unknown_channel")
                continue
            if not worker.put(alert):
                self._failed(worker.channel, alert, "dropped", 0, "the delivery queue was full")

    def flush(self, timeout: float | timedelta = 5.0) -> bool:
        """Wait until every queued alert was delivered or given up; False on timeout."""
        deadline = _seconds(timeout, "timeout")
        done = threading.Event()

        def wait_all() -> None:
            for worker in self._workers.values():
                worker.queue.join()
            done.set()

        threading.Thread(target=wait_all, name="faultlens-alerts-flush", daemon=True).start()
        return done.wait(deadline)

    def failures(self) -> list[DeliveryFailure]:
        """The most recent failed or dropped deliveries (at most 100), oldest first."""
        with self._failures_lock:
            return list(self._failures)

    def close(self, timeout: float | timedelta | None = None) -> None:
        """Deliver what is queued (without waiting out backoffs), then stop; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        wait = _seconds(self.settings.shutdown_timeout if timeout is None else timeout, "timeout")
        for worker in self._workers.values():
            if worker.thread is not None:
                with contextlib.suppress(queue.Full):
                    worker.queue.put(_STOP, timeout=wait)
        for worker in self._workers.values():
            if worker.thread is not None:
                worker.thread.join(wait)
        for worker in self._workers.values():
            close = getattr(worker.channel, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    counters.incr("alerts.channel_close_errors")

    def __enter__(self) -> AlertDelivery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- on a worker thread ---------------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        clock = get_clock()
        if isinstance(clock, SystemClock):
            self._closing.wait(seconds)  # close() cuts a backoff short
        elif not self._closing.is_set():
            clock.sleep(seconds)  # a test's fake clock: recorded, not waited

    def _deliver(self, channel: Channel, alert: Alert) -> None:
        settings = self.settings
        attempt = 0
        while True:
            attempt += 1
            try:
                channel.send(alert)
            except DeliveryError as exc:
                error: DeliveryError = exc
            except Exception as exc:  # a channel's own bug: retried, then recorded
                error = DeliveryError(_safe_error(exc, None))
            else:
                counters.incr("alerts.delivered")
                return
            if not error.retryable or attempt >= settings.max_attempts:
                self._failed(channel, alert, "failed", attempt, str(error))
                return
            counters.incr("alerts.delivery_retries")
            self._pause(settings.delay(attempt, error.retry_after))

    def _failed(
        self,
        channel: Channel,
        alert: Alert,
        reason: Literal["failed", "dropped"],
        attempts: int,
        error: str,
    ) -> None:
        counters.incr(f"alerts.delivery_{reason}")
        counters.incr(f"alerts.delivery_{reason}.{channel.name}")
        failure = DeliveryFailure(
            channel=channel.name,
            alert_id=alert.id,
            rule=alert.rule,
            status=alert.status,
            reason=reason,
            attempts=attempts,
            error=error,
            at=get_clock().time(),
        )
        with self._failures_lock:
            self._failures.append(failure)
        _log.warning(
            f"alert delivery {reason}: channel {channel.name!r}, alert {alert.rule}",
            channel=channel.name,
            alert_id=alert.id,
            rule=alert.rule,
            attempts=attempts,
            error=error,
        )
        store = self.store
        if store is None:
            return
        try:
            store.append_audit(
                actor="faultlens",
                action="alert.delivery_failed",
                target=f"alert:{alert.id}",
                tenant_id=alert.tenant_id,
                details={
                    "channel": channel.name,
                    "reason": reason,
                    "attempts": attempts,
                    "error": error,
                    "rule": alert.rule,
                    "status": alert.status,
                },
            )
        except Exception as exc:
            counters.incr("alerts.audit_failures")
            report_once(
                "alerts.audit",
                f"recording a failed alert delivery in the audit log failed "
                f"({type(exc).__name__}); failures are counted in faultlens.stats()",
            )
