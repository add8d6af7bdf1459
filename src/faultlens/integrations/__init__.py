"""Integrations: faultlens at the boundaries of frameworks and libraries.

Each integration lives in its own module and imports its framework lazily, so
``import faultlens`` never imports one; importing an integration whose extra is
missing raises :class:`~faultlens.errors.MissingExtraError` naming the
``pip install 'faultlens[extra]'`` to run.

* :mod:`faultlens.integrations.asgi` — ``FaultlensMiddleware`` for any ASGI
  application (Starlette, FastAPI, Quart, Litestar…); pure ASGI, needs no extra.
* :mod:`faultlens.integrations.wsgi` — ``FaultlensMiddleware`` for any WSGI
  application (Flask, Django's WSGI handler, Bottle, Falcon…); pure WSGI, needs
  no extra.

Both open a correlation context per HTTP request (validated ids, W3C trace
context, client address behind trusted proxies), answer with the correlation
headers and write one structured access-log line.  See ``docs/middleware.md``.

The framework integrations add safe error answers (captured once, answered with
:func:`faultlens.handle`'s message as JSON, problem JSON or an escaped HTML
page) on top; see ``docs/integrations.md``:

* :mod:`faultlens.integrations.fastapi` — ``install(app)`` for FastAPI and
  Starlette (extra ``fastapi``).
* :mod:`faultlens.integrations.flask` — ``install(app)`` (extra ``flask``).
* :mod:`faultlens.integrations.django` — ``FaultlensMiddleware``, sync and
  async, and error views for ``handler404``/``handler500`` (extra ``django``).
* :mod:`faultlens.integrations.streamlit` — ``@handle_streamlit_exceptions``
  for page functions (extra ``streamlit``).
"""
