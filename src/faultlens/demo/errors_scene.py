"""The demo's error scene: three kinds of failure answered safely, in two languages.

A small Starlette "accounts" service, set up with
:func:`faultlens.integrations.fastapi.install`, fails in three ways a real service
does: the caller's input is invalid, a dependency (an exchange-rate service) is down,
and a bug (a ``KeyError`` whose message carries a token) escapes a handler.  Each
is requested once in English and once in Brazilian Portuguese.  The scene checks
what a user would see — the status, a catalog message, the correlation id in the
body equal to the response header — that nothing raw leaked, and that every
failure was captured exactly once as an error event with that correlation id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faultlens
from faultlens import events
from faultlens.errors import MissingExtraError, ValidationError

try:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise MissingExtraError("demo", "faultlens demo") from exc

__all__ = ["ErrorAnswer", "ErrorScene", "run_error_scene"]

# Planted in the bug's message: it must appear in no response and no event.
LEAKED_TOKEN = "sk_live_51DemoSecretToken0000"

log = faultlens.get_logger("demo.accounts")


def _build_rates() -> Any:
    async def rates(request: Request) -> JSONResponse:
        return JSONResponse({"error": "maintenance"}, status_code=503)

    return Starlette(routes=[Route("/rates", rates)])


def _build_accounts(rates_client: httpx.AsyncClient) -> Any:
    from faultlens.integrations.fastapi import install

    async def signup(request: Request) -> JSONResponse:
        body = await request.json()
        email = str(body.get("email", ""))
        if "@" not in email:
            raise ValidationError("signup without a usable e-mail", field="email", value=email)
        return JSONResponse({"ok": True})

    async def quote(request: Request) -> JSONResponse:
        with faultlens.operation("fetch_rates", layer="infrastructure"):
            response = await rates_client.get("/rates", headers=faultlens.outgoing_headers())
            response.raise_for_status()  # httpx.HTTPStatusError: classified as integration
        return JSONResponse(response.json())

    async def report(request: Request) -> JSONResponse:
        settings: dict[str, str] = {}
        log.info("building the monthly report")
        # A bug: the key is missing, and the message of the KeyError carries a secret.
        return JSONResponse({"value": settings[f"report token={LEAKED_TOKEN}"]})

    app = Starlette(
        routes=[
            Route("/signup", signup, methods=["POST"]),
            Route("/quote", quote),
            Route("/report", report),
        ]
    )
    install(app, access_log=False)
    return app


@dataclass(frozen=True)
class ErrorAnswer:
    """One failing request as the user saw it."""

    scenario: str
    locale: str
    status: int
    message: str
    correlation_id: str
    header_matches: bool
    captured: int
    leaked: bool


@dataclass
class ErrorScene:
    """The answers of the error scene and whether each one was right."""

    answers: list[ErrorAnswer] = field(default_factory=list)
    expected_status: dict[str, int] = field(
        default_factory=lambda: {"validation": 422, "dependency down": 503, "bug": 500}
    )

    @property
    def healthy(self) -> bool:
        """True when every answer had the right status, matching ids, one capture, no leak."""
        return bool(self.answers) and all(
            a.status == self.expected_status[a.scenario]
            and a.header_matches
            and a.captured == 1
            and not a.leaked
            for a in self.answers
        )

    def render(self) -> str:
        """The answers as an aligned table."""
        lines = ["error scene: what users saw (each failure captured once)"]
        for a in self.answers:
            lines.append(
                f"  {a.scenario:<16} {a.locale:<6} {a.status}  {a.message}"
                f"  [ref {a.correlation_id[:12]}… captured {a.captured}x"
                f"{', LEAKED' if a.leaked else ''}]"
            )
        return "\n".join(lines)


async def run_error_scene() -> ErrorScene:
    """Send each failing request in English and Portuguese; check the answers and captures."""
    captured: dict[str, int] = {}

    def count(event: events.Event) -> None:
        if event.correlation_id:
            captured[event.correlation_id] = captured.get(event.correlation_id, 0) + 1
        if LEAKED_TOKEN in repr(event.payload):
            captured["__leak__"] = captured.get("__leak__", 0) + 1

    rates = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_build_rates()), base_url="http://rates"
    )
    app = _build_accounts(rates)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://accounts",
    )
    requests = [
        ("validation", "POST", "/signup", {"email": "not-an-address <script>"}),
        ("dependency down", "GET", "/quote", None),
        ("bug", "GET", "/report", None),
    ]
    scene = ErrorScene()
    with events.subscribe(count, kinds=[events.ERROR]):
        try:
            for locale in ("en", "pt-BR"):
                for scenario, method, path, payload in requests:
                    response = await client.request(
                        method,
                        path,
                        json=payload,
                        headers={"Accept": "application/json", "Accept-Language": locale},
                    )
                    body = response.json()
                    cid = str(body.get("correlation_id", ""))
                    scene.answers.append(
                        ErrorAnswer(
                            scenario=scenario,
                            locale=locale,
                            status=response.status_code,
                            message=str(body.get("message", "")),
                            correlation_id=cid,
                            header_matches=bool(cid)
                            and response.headers.get("x-correlation-id") == cid,
                            captured=captured.get(cid, 0),
                            leaked=LEAKED_TOKEN in response.text
                            or "<script>" in response.text
                            or "KeyError" in response.text,
                        )
                    )
        finally:
            await client.aclose()
            await rates.aclose()
    if captured.get("__leak__"):
        scene.answers = [ErrorAnswer(**{**a.__dict__, "leaked": True}) for a in scene.answers]
    return scene
