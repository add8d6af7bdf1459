"""Flask: install(), safe answers, correlation headers, capture once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, abort, redirect
from flask.testing import FlaskClient
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

import faultlens
import faultlens.errors
from faultlens.errors import ConfigurationError, MissingExtraError, ValidationError
from faultlens.integrations.flask import install
from faultlens.integrations.wsgi import FaultlensMiddleware
from faultlens.testing import CapturedEvents, capture_events

from ._hostile import CORRELATION_ID, HEX32, HOSTILE_MESSAGE, SECRET, assert_no_leak

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def make_app(**options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError(HOSTILE_MESSAGE)

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> str:
        abort(404, description=f"order {order_id}: {HOSTILE_MESSAGE}")

    @app.get("/private")
    def private() -> str:
        raise Unauthorized(description=HOSTILE_MESSAGE, www_authenticate=WWWAuthenticate("Bearer"))

    @app.post("/signup")
    def signup() -> str:
        raise ValidationError(HOSTILE_MESSAGE, field="email", value=SECRET)

    @app.get("/captured-then-raised")
    def captured_then_raised() -> str:
        try:
            raise ValueError(HOSTILE_MESSAGE)
        except ValueError as exc:
            faultlens.capture(exc, where="view")
            raise

    @app.get("/old")
    def old() -> Response:
        return redirect("/new")

    @app.get("/ok")
    def ok() -> dict[str, str | None]:
        return {"correlation_id": faultlens.correlation_id()}

    install(app, **options)
    return app


@pytest.fixture
def errors() -> Iterator[CapturedEvents]:
    """The error events captured during the test."""
    with capture_events("error") as captured:
        yield captured


def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_bug_answers_safe_json_500_with_matching_correlation_header(
    errors: CapturedEvents,
) -> None:
    """An unexpected exception gives faultlens's 500 JSON; body id equals X-Correlation-ID."""
    response = client(make_app()).get("/boom")
    assert response.status_code == 500
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["code"] == "internal_error"
    assert HEX32.fullmatch(body["correlation_id"])
    assert response.headers["X-Correlation-ID"] == body["correlation_id"]
    assert_no_leak(response.get_data(as_text=True), headers=response.headers.items())
    assert len(errors) == 1
    assert errors[0].correlation_id == body["correlation_id"]
    assert errors[0].payload["fields"]["route"] == "/boom"


def test_testing_mode_still_answers() -> None:
    """With app.testing (exceptions propagate by default) the bug is still answered safely."""
    app = make_app()
    app.testing = True
    response = client(app).get("/boom")
    assert response.status_code == 500
    assert response.get_json()["correlation_id"] == response.headers["X-Correlation-ID"]


def test_incoming_correlation_id_honoured(errors: CapturedEvents) -> None:
    """A valid incoming X-Correlation-ID is the body's, the header's and the event's id."""
    response = client(make_app()).get("/boom", headers={"X-Correlation-ID": CORRELATION_ID})
    assert response.get_json()["correlation_id"] == CORRELATION_ID
    assert response.headers["X-Correlation-ID"] == CORRELATION_ID
    assert errors[0].correlation_id == CORRELATION_ID


def test_captured_exactly_once_when_the_view_captured_it_first(errors: CapturedEvents) -> None:
    """An exception the view captured and re-raised is not recorded a second time."""
    response = client(make_app()).get("/captured-then-raised")
    assert response.status_code == 500
    assert len(errors) == 1
    assert errors[0].payload["fields"] == {"where": "view"}


def test_browser_gets_escaped_html_page() -> None:
    """A browser's Accept gets a small HTML page quoting the correlation id, nothing raw."""
    response = client(make_app()).get("/boom", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 500
    assert response.content_type == "text/html; charset=utf-8"
    text = response.get_data(as_text=True)
    assert f"<code>{response.headers['X-Correlation-ID']}</code>" in text
    assert_no_leak(text)


def test_problem_json_requested_and_configured() -> None:
    """problem+json when the client asks for it, and for every JSON client when configured."""
    response = client(make_app()).get("/boom", headers={"Accept": "application/problem+json"})
    assert response.content_type == "application/problem+json"
    assert response.get_json()["status"] == 500
    configured = client(make_app(problem_json=True)).get("/orders/3")
    assert configured.content_type == "application/problem+json"
    assert configured.get_json()["status"] == 404


def test_portuguese_by_accept_language() -> None:
    """``Accept-Language: pt-BR`` answers with the pt-BR catalog message."""
    headers = {"X-Correlation-ID": CORRELATION_ID, "Accept-Language": "pt-BR"}
    response = client(make_app()).get("/boom", headers=headers)
    with faultlens.correlate(CORRELATION_ID):
        expected = faultlens.handle(RuntimeError(), locale="pt-BR").message
    assert response.get_json()["message"] == expected
    assert response.headers["Content-Language"] == "pt-BR"


def test_http_exception_keeps_status_with_safe_message(errors: CapturedEvents) -> None:
    """abort(404, description=...) answers 404 with the catalog's message, not the text."""
    response = client(make_app()).get("/orders/9", headers={"X-Correlation-ID": CORRELATION_ID})
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == "not_found"
    assert body["correlation_id"] == CORRELATION_ID == response.headers["X-Correlation-ID"]
    assert_no_leak(response.get_data(as_text=True))
    assert errors[0].payload["fields"]["route"] == "/orders/<int:order_id>"


def test_http_exception_headers_kept() -> None:
    """WWW-Authenticate and Allow survive; the description does not."""
    test_client = client(make_app())
    response = test_client.get("/private")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_no_leak(response.get_data(as_text=True))
    not_allowed = test_client.delete("/boom")
    assert not_allowed.status_code == 405
    assert "GET" in not_allowed.headers["Allow"]
    assert not_allowed.get_json()["code"] == "method_not_allowed"


def test_unknown_url_and_redirects() -> None:
    """Routing's 404 is faultlens's JSON; a redirect is left alone."""
    test_client = client(make_app())
    missing = test_client.get("/no/such/page")
    assert missing.status_code == 404
    assert missing.get_json()["correlation_id"] == missing.headers["X-Correlation-ID"]
    assert test_client.get("/old").status_code == 302


def test_faultlens_validation_error_names_the_field_not_the_value() -> None:
    """A faultlens ValidationError answers 422 naming the field, never its value."""
    response = client(make_app()).post("/signup")
    assert response.status_code == 422
    body = response.get_json()
    assert body["details"]["errors"][0]["field"] == "email"
    assert_no_leak(response.get_data(as_text=True))


def test_error_in_after_request_answered_once(errors: CapturedEvents) -> None:
    """A bug in after_request reaches Flask's last resort; faultlens answers it, once."""
    app = make_app()

    @app.after_request
    def broken(response: Response) -> Response:
        raise LookupError(HOSTILE_MESSAGE)

    response = client(app).get("/ok")
    assert response.status_code == 500
    assert response.get_json()["correlation_id"] == response.headers["X-Correlation-ID"]
    assert_no_leak(response.get_data(as_text=True))
    assert [event.name for event in errors] == ["LookupError"]


def test_client_errors_not_captured_when_disabled(errors: CapturedEvents) -> None:
    """``capture_client_errors=False`` records only 5xx answers."""
    test_client = client(make_app(capture_client_errors=False))
    assert test_client.get("/orders/1").status_code == 404
    assert errors == []
    assert test_client.get("/boom").status_code == 500
    assert len(errors) == 1


def test_handle_failure_still_answers_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    """When handle() itself fails the answer is a fixed safe 500 with the correlation id."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(HOSTILE_MESSAGE)

    monkeypatch.setattr(faultlens.errors, "handle", broken)
    response = client(make_app()).get("/boom", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 500
    assert response.headers["X-Correlation-ID"] in response.get_data(as_text=True)
    assert_no_leak(response.get_data(as_text=True))


def test_install_reuses_existing_middleware_and_refuses_misuse() -> None:
    """An existing FaultlensMiddleware is kept; a second install or stray options fail."""
    app = Flask(__name__)
    app.wsgi_app = FaultlensMiddleware(app.wsgi_app, correlation_header="X-Trace-Ref")  # type: ignore[method-assign]
    install(app)
    response = client(app).get("/nothing", headers={"X-Trace-Ref": CORRELATION_ID})
    assert response.headers["X-Trace-Ref"] == CORRELATION_ID
    assert response.get_json()["correlation_id"] == CORRELATION_ID
    with pytest.raises(ConfigurationError, match="already installed"):
        install(app)
    other = Flask(__name__)
    other.wsgi_app = FaultlensMiddleware(other.wsgi_app)  # type: ignore[method-assign]
    with pytest.raises(ConfigurationError, match="already has FaultlensMiddleware"):
        install(other, access_log=False)
    with pytest.raises(ConfigurationError, match="unknown middleware option"):
        install(Flask(__name__), acess_log=False)
    with pytest.raises(ConfigurationError, match="locale"):
        install(Flask(__name__), locale="klingon")


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Flask the module raises MissingExtraError naming faultlens[flask]."""
    monkeypatch.delitem(sys.modules, "faultlens.integrations.flask")
    monkeypatch.setitem(sys.modules, "flask", None)
    with pytest.raises(MissingExtraError, match=r"faultlens\[flask\]"):
        import faultlens.integrations.flask  # noqa: F401
