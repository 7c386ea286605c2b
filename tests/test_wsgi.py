"""The entry points' lean /api/ chain (config/handlers.py): config.wsgi serves every endpoint,
the bearer API skips the admin's middleware, and under ASGI it never hops threads to get
through its middleware."""

import json
from unittest import mock
from wsgiref.util import setup_testing_defaults

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_started
from django.db import close_old_connections

from config.handlers import PathDispatchASGI, PathDispatchWSGI
from tests.conftest import bearer
from tests.test_security_headers import HARDENING


def call_wsgi(app, path: str, method: str = "GET", token: str | None = None):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "SERVER_NAME": "127.0.0.1"}
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    setup_testing_defaults(environ)
    captured = {}

    def start_response(status, headers):
        captured["status"] = int(status.split()[0])
        captured["headers"] = headers

    # As Django's test client does: a request must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    try:
        body = b"".join(app(environ, start_response))
    finally:
        request_started.connect(close_old_connections)
    headers = {}
    for name, value in captured["headers"]:
        headers.setdefault(name, value)
    return captured["status"], headers, body, [v for n, v in captured["headers"] if n == "Set-Cookie"]


@pytest.fixture(scope="module")
def wsgi():
    return PathDispatchWSGI()


@pytest.mark.django_db
def test_the_wsgi_application_serves_the_api_and_the_admin(wsgi, alice):
    status, headers, body, cookies = call_wsgi(wsgi, "/api/native/me", token=bearer(alice))
    assert status == 200 and json.loads(body)["user"]["username"] == "alice"
    # No session, CSRF or auth middleware ran: nothing varies on cookies, no cookie is set.
    assert "Cookie" not in headers.get("Vary", "") and cookies == []
    assert {name: headers.get(name) for name in HARDENING} == HARDENING

    status, headers, _, cookies = call_wsgi(wsgi, "/admin/login/")
    assert status == 200 and any(cookie.startswith(" csrftoken=") for cookie in cookies)


@pytest.mark.django_db
def test_api_errors_stay_json_on_the_lean_chain(wsgi, alice):
    status, headers, body, _ = call_wsgi(wsgi, "/api/native/nope")
    assert status == 404 and headers["Content-Type"] == "application/json"
    status, headers, body, _ = call_wsgi(wsgi, "/api/native/me", method="PUT", token=bearer(alice))
    assert status == 405 and b"method_not_allowed" in body and headers["Allow"] == "GET"
    status, _, body, _ = call_wsgi(wsgi, "/api/native/me")
    assert status == 401 and b"unauthorized" in body


async def asgi_get(app, path: str) -> int:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(5)
    await communicator.receive_output(5)
    await communicator.wait(5)
    return start["status"]


async def test_under_asgi_api_requests_cross_no_thread_for_their_middleware(settings):
    """Django's MiddlewareMixin hops to a thread for each hook under ASGI; the API chain must not
    (the admin chain still does: the counter works)."""
    import django.utils.deprecation as deprecation

    real = deprecation.sync_to_async
    hops = []

    def counting(func, **kwargs):
        hops.append(func)
        return real(func, **kwargs)

    app = PathDispatchASGI(threads=1)
    with mock.patch.object(deprecation, "sync_to_async", counting):
        assert await asgi_get(app, "/api/native/nope") == 404
        api_hops = len(hops)
        assert await asgi_get(app, "/admin/nope") in (302, 404)  # admin: login redirect
    assert api_hops == 0
    assert len(hops) > 0


async def test_under_asgi_an_api_request_crosses_to_its_thread_once():
    """Signals, the chain, the view and the response's close: one hop (config.handlers), where
    Django's ASGIHandler makes three for a sync view."""
    from asgiref.sync import SyncToAsync

    real = SyncToAsync.__call__
    hops = []

    async def counting(self, *args, **kwargs):
        hops.append(self.func)
        return await real(self, *args, **kwargs)

    app = PathDispatchASGI(threads=1)
    with mock.patch.object(SyncToAsync, "__call__", counting):
        assert await asgi_get(app, "/api/native/nope") == 404
    assert len(hops) == 1, hops


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_an_async_api_view_still_answers(settings):
    """health is an async view: the sync chain runs it on the process's loop (async_to_sync)."""
    assert await asgi_get(PathDispatchASGI(threads=1), "/api/native/health") == 200


def test_every_api_middleware_is_async_capable():
    from django.conf import settings
    from django.utils.module_loading import import_string

    for path in settings.NATIVE_API_MIDDLEWARE:
        middleware = import_string(path)
        assert getattr(middleware, "async_capable", False), path
