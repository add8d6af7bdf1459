"""Streamlit: a correlation per script run and a friendly answer when a page fails.

    import streamlit as st
    from faultlens.integrations.streamlit import handle_streamlit_exceptions

    @handle_streamlit_exceptions(attempt_recovery=True, reset_keys=("cart",))
    def orders_page() -> None:
        st.title("Orders")
        ...

    orders_page()

Each run of a decorated page opens a fresh correlation (:func:`faultlens.correlate`)
bound to the browser session's id, so every log line, operation and error
event of the run carries both.  When the page raises, the error is captured
once, and the user sees :func:`faultlens.handle`'s safe message with the
correlation id to quote and a *Try again* button instead of a traceback;
``attempt_recovery=True`` first resets the page's state and reruns it once.
See ``docs/integrations.md``.

Importing this module without Streamlit installed raises
:class:`~faultlens.errors.MissingExtraError`.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, Final, ParamSpec, TypeVar, cast, overload

from faultlens.errors import MissingExtraError

try:
    import streamlit as st
    from streamlit.errors import FragmentHandledException
    from streamlit.runtime.scriptrunner import get_script_run_ctx
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise MissingExtraError("streamlit", "faultlens.integrations.streamlit") from exc

from faultlens import events as _events
from faultlens._ids import new_id
from faultlens.context import correlate, current_context
from faultlens.integrations._errors import (
    ErrorSettings,
    capture_once,
    choose_locale,
    fallback_message,
    page_text,
    safe_response,
)

__all__ = [
    "CORRELATION_KEY",
    "SESSION_KEY",
    "handle_streamlit_exceptions",
    "session_id",
]

P = ParamSpec("P")
R = TypeVar("R")

SESSION_KEY: Final = "faultlens.session_id"
"""``st.session_state`` key of the session id when Streamlit's runtime has none."""
CORRELATION_KEY: Final = "faultlens.correlation_id"
"""``st.session_state`` key of the correlation id of the page's latest run."""
_RECOVERY_KEY: Final = "faultlens.recovery"  # page -> {"failed": id, "pending": bool}
_RETRY_KEY: Final = "faultlens.retry"  # page -> correlation id of the failed run
_POLICY_NAME: Final = "streamlit.page_recovery"

# Set while a decorated page runs: a decorated function called from it joins its run.
_in_page: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "faultlens_streamlit_page", default=False
)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def _state() -> MutableMapping[str, Any] | None:
    """``st.session_state``, or ``None`` outside a Streamlit session."""
    try:
        state = st.session_state
        state.get(SESSION_KEY)  # raises outside a session on some versions
    except Exception:
        return None
    return cast("MutableMapping[str, Any]", state)


def session_id() -> str:
    """The browser session's id: Streamlit's own, else one kept in ``st.session_state``.

    Streamlit's runtime gives each browser tab a session id
    (``get_script_run_ctx().session_id``).  Without a runtime (a bare
    ``python page.py``) a generated id is kept in ``st.session_state`` under
    :data:`SESSION_KEY`, so every run of the session shares it.
    """
    ctx = get_script_run_ctx(suppress_warning=True)
    runtime_id = getattr(ctx, "session_id", None)
    if isinstance(runtime_id, str) and runtime_id:
        return runtime_id
    state = _state()
    if state is None:
        return new_id()
    found = state.get(SESSION_KEY)
    if not isinstance(found, str):
        found = new_id()
        state[SESSION_KEY] = found
    return found


def _negotiated_locale(settings: ErrorSettings) -> str:
    """The fixed locale, else the browser's (``st.context.locale``, ``Accept-Language``)."""
    if settings.locale is not None:
        return settings.locale
    preference: str | None = None
    try:
        preference = st.context.locale
        if not preference:
            preference = st.context.headers.get("Accept-Language")
    except Exception:  # no runtime context (bare mode) or an older Streamlit
        preference = None
    return choose_locale(preference if isinstance(preference, str) else None, settings)


def _escape_markdown(text: str) -> str:
    """``text`` shown literally by ``st.error`` (which renders Markdown)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\r", " ").replace("\n", " "))


def _emit_recovery(page: str, attempt: int, outcome: str, error: BaseException | None) -> None:
    """One ``recovery`` event of the page-recovery strategy (same shape as the policies')."""
    error_type = None
    if error is not None:
        kind = type(error)
        error_type = f"{kind.__module__}.{kind.__qualname__}"
    _events.emit(
        _events.RECOVERY,
        _POLICY_NAME,
        {
            "policy": "strategy",
            "name": _POLICY_NAME,
            "page": page,
            "attempt": attempt,
            "outcome": outcome,
            "delay_s": 0.0,
            "duration_ms": 0.0,
            "error_type": error_type,
        },
    )


def _request_retry(page: str, failed_id: str | None) -> None:
    """``on_click`` of *Try again*: the rerun the click causes is the retry."""
    state = _state()
    if state is not None:
        retries = dict(state.get(_RETRY_KEY) or {})
        retries[page] = failed_id
        state[_RETRY_KEY] = retries


class _PageRunner:
    """What one decorated page does around each run (options checked once)."""

    __slots__ = (
        "attempt_recovery",
        "clear_cache",
        "page",
        "reset_keys",
        "settings",
        "show_error",
    )

    def __init__(
        self,
        page: str,
        *,
        show_error: bool,
        attempt_recovery: bool,
        reset_keys: Iterable[str],
        clear_cache: bool,
        settings: ErrorSettings,
    ) -> None:
        self.page = page
        self.show_error = bool(show_error)
        self.attempt_recovery = bool(attempt_recovery)
        if isinstance(reset_keys, str):
            reset_keys = (reset_keys,)
        self.reset_keys = tuple(str(key) for key in reset_keys)
        self.clear_cache = bool(clear_cache)
        self.settings = settings

    def _parent(self, state: MutableMapping[str, Any] | None) -> tuple[str | None, bool]:
        """The failed run this run retries (its correlation id) and whether it recovers."""
        if state is None:
            return None, False
        retries = state.get(_RETRY_KEY) or {}
        if self.page in retries:
            remaining = dict(retries)
            failed = remaining.pop(self.page)
            state[_RETRY_KEY] = remaining
            return (failed if isinstance(failed, str) else None), False
        recoveries = state.get(_RECOVERY_KEY) or {}
        recovery = recoveries.get(self.page)
        if isinstance(recovery, dict) and recovery.get("pending"):
            # This run is the one recovery attempt: whatever interrupts it, the next
            # run is not another attempt.
            state[_RECOVERY_KEY] = {**recoveries, self.page: {**recovery, "pending": False}}
            return recovery.get("failed"), True
        return None, False

    def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
        if _in_page.get():
            return self._guarded(fn, None, False, *args, **kwargs)
        state = _state()
        parent, recovering = self._parent(state)
        fields: dict[str, Any] = {"session_id": session_id(), "page": self.page}
        if parent is not None:
            fields["parent_correlation_id"] = parent
        page_token = _in_page.set(True)
        try:
            with correlate(**fields) as ctx:
                if state is not None:
                    state[CORRELATION_KEY] = ctx.correlation_id
                return self._guarded(fn, state, recovering, *args, **kwargs)
        finally:
            _in_page.reset(page_token)

    def _guarded(
        self,
        fn: Callable[P, R],
        state: MutableMapping[str, Any] | None,
        recovering: bool,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R | None:
        try:
            result = fn(*args, **kwargs)
        except FragmentHandledException:
            raise  # a fragment already showed this error
        except Exception as exc:
            self._failed(exc, state, recovering)
            return None
        if state is not None and self.attempt_recovery:
            self._end_recovery(state)
            if recovering:
                _emit_recovery(self.page, 2, "recovered", None)
        return result

    def _end_recovery(self, state: MutableMapping[str, Any]) -> None:
        """The page works again: its next failure may be recovered automatically."""
        recoveries = state.get(_RECOVERY_KEY)
        if recoveries and self.page in recoveries:
            remaining = dict(recoveries)
            del remaining[self.page]
            state[_RECOVERY_KEY] = remaining

    def _failed(
        self, exc: Exception, state: MutableMapping[str, Any] | None, recovering: bool
    ) -> None:
        capture_once(exc, {"integration": "streamlit", "page": self.page})
        ctx = current_context()
        failed_id = ctx.correlation_id if ctx is not None else None
        # Without Streamlit's runtime (a bare ``python page.py``) there is no rerun.
        can_rerun = get_script_run_ctx(suppress_warning=True) is not None
        if state is not None and self.attempt_recovery and can_rerun:
            recoveries = dict(state.get(_RECOVERY_KEY) or {})
            if recovering:
                # The recovery rerun failed too: no second automatic attempt until the
                # page succeeds again (the marker stays, no longer pending).
                _emit_recovery(self.page, 2, "not_recovered", exc)
            elif self.page not in recoveries:
                recoveries[self.page] = {"failed": failed_id, "pending": True}
                state[_RECOVERY_KEY] = recoveries
                self._reset(state)
                _emit_recovery(self.page, 1, "retrying", exc)
                st.rerun()  # raises RerunException: the page runs again, once
        if not self.show_error:
            raise exc
        self._show(exc, failed_id)

    def _reset(self, state: MutableMapping[str, Any]) -> None:
        """Drop the page's own state (``reset_keys``) and cached data before the rerun."""
        for key in self.reset_keys:
            if key in state:
                del state[key]
        if self.clear_cache:
            st.cache_data.clear()

    def _show(self, exc: Exception, failed_id: str | None) -> None:
        locale = "en"
        debug: Mapping[str, Any] | None = None
        try:
            locale = _negotiated_locale(self.settings)
            response = safe_response(exc, locale=locale, debug=self.settings.debug)
            message, debug = response.message, response.debug
        except Exception:  # handle() failing must still leave the user an answer
            message = fallback_message(locale)
        text = page_text(locale)
        body = _escape_markdown(message)
        if failed_id:
            body += f"\n\n{_escape_markdown(text['reference'])}: `{failed_id}`"
        st.error(body)
        if debug:  # set by handle(debug=True) only in a development environment
            with st.expander(text["details"]):
                st.json(dict(debug))
        st.button(
            text["try_again"],
            key=f"faultlens-try-again-{self.page}",
            on_click=_request_retry,
            args=(self.page, failed_id),
        )


@overload
def handle_streamlit_exceptions(fn: Callable[P, R], /) -> Callable[P, R | None]: ...


@overload
def handle_streamlit_exceptions(
    *,
    show_error: bool = True,
    attempt_recovery: bool = False,
    reset_keys: Iterable[str] = (),
    clear_cache: bool = True,
    locale: str | None = None,
    debug: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R | None]]: ...


def handle_streamlit_exceptions(
    fn: Callable[P, R] | None = None,
    /,
    *,
    show_error: bool = True,
    attempt_recovery: bool = False,
    reset_keys: Iterable[str] = (),
    clear_cache: bool = True,
    locale: str | None = None,
    debug: bool = False,
) -> Callable[P, R | None] | Callable[[Callable[P, R]], Callable[P, R | None]]:
    """Decorate a Streamlit page function: correlation per run, friendly errors.

    Each call of the page (one per script run) opens a new correlation bound to
    the session id (:func:`session_id`) and the page's name; the id is also
    kept in ``st.session_state[CORRELATION_KEY]``.  A decorated function called
    from a decorated page joins the page's run instead of opening its own.
    ``st.rerun()`` and ``st.stop()`` pass through untouched.

    When the page raises an ``Exception``:

    * it is captured once (:func:`faultlens.capture`);
    * with ``attempt_recovery=True``, the first failure since the page last
      succeeded deletes the ``st.session_state`` keys in ``reset_keys``, clears
      ``st.cache_data`` (unless ``clear_cache=False``; note that it is shared
      by every session) and reruns the script once; the rerun's correlation
      records the failed one as ``parent_correlation_id``, and ``recovery``
      events record the attempt and its outcome (``retrying``, then
      ``recovered`` or ``not_recovered``);
    * with ``show_error=True`` (the default) ``st.error`` shows
      :func:`faultlens.handle`'s safe message (in ``locale``, else the
      browser's) and the correlation id to quote, then a *Try again* button
      whose click reruns the page (the retry's correlation records the failed
      one as its parent); the decorated function returns ``None``.  With
      ``show_error=False`` the exception is re-raised after capture, for
      Streamlit or an outer handler to show.
    """
    settings = ErrorSettings.create(locale=locale, debug=debug)

    def decorate(page: Callable[P, R]) -> Callable[P, R | None]:
        runner = _PageRunner(
            str(getattr(page, "__qualname__", None) or getattr(page, "__name__", "page")),
            show_error=show_error,
            attempt_recovery=attempt_recovery,
            reset_keys=reset_keys,
            clear_cache=clear_cache,
            settings=settings,
        )

        @functools.wraps(page)
        def run_page(*args: P.args, **kwargs: P.kwargs) -> R | None:
            return runner.run(page, *args, **kwargs)

        return run_page

    if fn is not None:
        return decorate(fn)
    return decorate
