"""A minimal Django project for the middleware tests: settings, views and URLs in one module.

Importing it configures Django once per process (``settings.configure``), with
this module as ``ROOT_URLCONF`` and faultlens's middleware installed.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import django
from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    SuspiciousOperation,
    ValidationError,
)
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import path

import faultlens

from ._hostile import HOSTILE_MESSAGE, SECRET

MIDDLEWARE = "faultlens.integrations.django.FaultlensMiddleware"

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="faultlens-tests-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[MIDDLEWARE],
        INSTALLED_APPS=[],
        USE_TZ=True,
        FAULTLENS_MIDDLEWARE={},
    )
    django.setup()


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(HOSTILE_MESSAGE)


async def async_boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(HOSTILE_MESSAGE)


def order(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404(f"order {pk}: {HOSTILE_MESSAGE}")


def denied(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied(HOSTILE_MESSAGE)


def suspicious(request: HttpRequest) -> HttpResponse:
    raise SuspiciousOperation(HOSTILE_MESSAGE)


def bad(request: HttpRequest) -> HttpResponse:
    raise BadRequest(HOSTILE_MESSAGE)


def invalid(request: HttpRequest) -> HttpResponse:
    raise ValidationError(
        {"email": [ValidationError(f"'{SECRET}' is not an e-mail address", code="invalid")]}
    )


def captured_then_raised(request: HttpRequest) -> HttpResponse:
    try:
        raise ValueError(HOSTILE_MESSAGE)
    except ValueError as exc:
        faultlens.capture(exc, where="view")
        raise


def ok(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"correlation_id": faultlens.correlation_id()})


async def async_ok(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"correlation_id": faultlens.correlation_id()})


class BrokenMiddleware:
    """A middleware (inside faultlens's) that fails: Django answers it, not process_exception."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raise LookupError(HOSTILE_MESSAGE)


class DenyingMiddleware:
    """A middleware inside faultlens's that refuses: Django answers via handler403."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raise PermissionDenied(HOSTILE_MESSAGE)


class AsyncBrokenMiddleware:
    """An async-only middleware inside faultlens's that fails (Django adapts nothing)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        raise LookupError(HOSTILE_MESSAGE)


urlpatterns = [
    path("boom", boom),
    path("async-boom", async_boom),
    path("orders/<int:pk>/", order),
    path("denied", denied),
    path("suspicious", suspicious),
    path("bad", bad),
    path("invalid", invalid),
    path("captured-then-raised", captured_then_raised),
    path("ok", ok),
    path("async-ok", async_ok),
]

# Without handler500 below, Django answers with its own 500 page and only faultlens's
# got_request_exception receiver captures: tests use it as ROOT_URLCONF.
without_error_views = types.ModuleType(f"{__name__}.without_error_views")
without_error_views.urlpatterns = urlpatterns  # type: ignore[attr-defined]

handler403 = "faultlens.integrations.django.permission_denied"
handler404 = "faultlens.integrations.django.page_not_found"
handler500 = "faultlens.integrations.django.server_error"
