"""Streamlit: handle_streamlit_exceptions with Streamlit's own AppTest runner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import faultlens
from faultlens.errors import MissingExtraError
from faultlens.integrations.streamlit import CORRELATION_KEY
from faultlens.testing import CapturedEvents, capture_events

from ._hostile import HEX32, HOSTILE_MESSAGE, assert_no_leak

TIMEOUT = 20.0  # seconds per script run; a run takes milliseconds


@pytest.fixture
def events() -> Iterator[CapturedEvents]:
    """The error and recovery events published during the test."""
    with capture_events("error", "recovery") as captured:
        yield captured


def failing_script(message: str, options: dict[str, object]) -> None:
    import streamlit as st

    from faultlens.integrations.streamlit import handle_streamlit_exceptions

    @handle_streamlit_exceptions(**options)  # type: ignore[arg-type]
    def orders_page() -> None:
        st.write("orders")
        runs = st.session_state.get("runs", 0) + 1
        st.session_state["runs"] = runs
        if runs <= st.session_state.get("fail_runs", 99):
            raise RuntimeError(message)
        import faultlens

        ctx = faultlens.current_context()
        st.session_state["seen"] = ctx.parent_correlation_id if ctx else None
        st.write("loaded")

    orders_page()


def recovering_script(message: str) -> None:
    import streamlit as st

    from faultlens.integrations.streamlit import handle_streamlit_exceptions

    if "started" not in st.session_state:
        st.session_state["started"] = True
        st.session_state["cart"] = "corrupt"

    @handle_streamlit_exceptions(attempt_recovery=True, reset_keys=("cart",))
    def cart_page() -> None:
        if st.session_state.get("cart") == "corrupt":
            raise ValueError(message)
        st.write("cart recovered")

    cart_page()


def app(script: Any, **kwargs: Any) -> AppTest:
    return AppTest.from_function(script, default_timeout=TIMEOUT, kwargs=kwargs)


def texts(at: AppTest) -> list[str]:
    return [str(element.value) for element in at.markdown]


def test_failure_shows_safe_message_reference_and_try_again(events: CapturedEvents) -> None:
    """A failing page shows the catalog message, the correlation id and a Try again button."""
    at = app(failing_script, message=HOSTILE_MESSAGE, options={}).run()
    assert not at.exception
    [error] = at.error
    cid = at.session_state[CORRELATION_KEY]
    assert HEX32.fullmatch(cid)
    assert cid in error.value
    assert_no_leak(error.value, *texts(at))
    assert [button.label for button in at.button] == ["Try again"]
    assert "orders" in texts(at)  # what the page drew before failing stays
    [captured] = events.of_kind("error")
    assert captured.correlation_id == cid
    assert captured.payload["context"]["session_id"] == "test session id"
    assert captured.payload["fields"]["page"].endswith("orders_page")


def test_try_again_reruns_the_page_linked_to_the_failed_run(events: CapturedEvents) -> None:
    """Clicking Try again reruns the page; the retry's parent is the failed run's id."""
    at = app(failing_script, message="boom", options={})
    at.session_state["fail_runs"] = 1
    at.run()
    failed_id = at.session_state[CORRELATION_KEY]
    at.button[0].click().run()
    assert not at.error
    assert "loaded" in texts(at)
    assert at.session_state["seen"] == failed_id
    assert at.session_state[CORRELATION_KEY] != failed_id  # a fresh id per script run
    assert len(events.of_kind("error")) == 1


def test_recovery_resets_state_and_reruns_once(events: CapturedEvents) -> None:
    """attempt_recovery drops the page's keys, reruns, and records retrying then recovered."""
    at = app(recovering_script, message=HOSTILE_MESSAGE).run()
    assert not at.error
    assert "cart recovered" in texts(at)
    assert "cart" not in at.session_state
    outcomes = [event.payload["outcome"] for event in events.of_kind("recovery")]
    assert outcomes == ["retrying", "recovered"]
    [error] = events.of_kind("error")
    [_, recovered] = events.of_kind("recovery")
    assert recovered.correlation_id != error.correlation_id


def test_recovery_is_attempted_once_then_the_error_shows(events: CapturedEvents) -> None:
    """A page that fails again after recovery shows the error; no endless reruns."""
    at = app(failing_script, message="still broken", options={"attempt_recovery": True}).run()
    assert len(at.error) == 1
    assert at.session_state["runs"] == 2
    outcomes = [event.payload["outcome"] for event in events.of_kind("recovery")]
    assert outcomes == ["retrying", "not_recovered"]
    assert len(events.of_kind("error")) == 2  # one per failed run


def test_portuguese_from_the_browser_locale() -> None:
    """The browser's locale (st.context.locale) picks the pt-BR message and labels."""
    at = app(failing_script, message="boom", options={})
    at.context = {"locale": "pt-BR"}
    at.run()
    cid = at.session_state[CORRELATION_KEY]
    with faultlens.correlate(cid):
        expected = faultlens.handle(RuntimeError(), locale="pt-BR").message
    assert expected.split(".")[0] in at.error[0].value
    assert "Referência" in at.error[0].value
    assert at.button[0].label == "Tentar novamente"


def test_show_error_false_reraises_after_capture(events: CapturedEvents) -> None:
    """show_error=False leaves the exception to Streamlit, captured once."""
    at = app(failing_script, message="boom", options={"show_error": False}).run()
    assert not at.error
    assert len(at.exception) == 1
    assert len(events.of_kind("error")) == 1


def test_threads_started_with_wrap_keep_the_run_correlation() -> None:
    """A thread started through faultlens.wrap logs under the page run's correlation id."""

    def script() -> None:
        import threading

        import streamlit as st

        import faultlens
        from faultlens.integrations.streamlit import handle_streamlit_exceptions

        @handle_streamlit_exceptions
        def page() -> None:
            seen: list[str | None] = []

            def work() -> None:
                seen.append(faultlens.correlation_id())

            worker = threading.Thread(target=faultlens.wrap(work))
            worker.start()
            worker.join()
            st.session_state["thread_saw"] = seen[0]

        page()

    at = AppTest.from_function(script, default_timeout=TIMEOUT).run()
    assert at.session_state["thread_saw"] == at.session_state[CORRELATION_KEY]


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Streamlit the module raises MissingExtraError naming faultlens[streamlit]."""
    monkeypatch.delitem(sys.modules, "faultlens.integrations.streamlit")
    monkeypatch.setitem(sys.modules, "streamlit", None)
    with pytest.raises(MissingExtraError, match=r"faultlens\[streamlit\]"):
        import faultlens.integrations.streamlit  # noqa: F401
