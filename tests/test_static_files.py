"""Static files (the admin's CSS and JS) are served by the application under WSGI and ASGI.

The browser tests cover the production mode end to end (collectstatic, hashed names, daphne);
these check the middleware's two paths in-process.
"""

import pytest
from asgiref.sync import iscoroutinefunction
from django.test import AsyncClient

from native_api.static_files import StaticFilesMiddleware

CSS = "/static/admin/css/base.css"


@pytest.fixture(autouse=True)
def _from_the_apps(settings):
    """As with DEBUG on (the embedded default): files come from the apps' static folders.
    pytest-django turns DEBUG off, and no collectstatic ran for these tests."""
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True


def test_wsgi_serves_an_admin_stylesheet(client):
    response = client.get(CSS)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"".join(response.streaming_content).startswith(b"/*")


async def test_asgi_serves_it_in_one_piece_with_the_same_headers():
    response = await AsyncClient().get(CSS)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert int(response["Content-Length"]) == len(response.content) > 1000
    assert "Last-Modified" in response and "ETag" in response


async def test_asgi_answers_a_conditional_request_with_304():
    first = await AsyncClient().get(CSS)

    again = await AsyncClient().get(CSS, headers={"If-None-Match": first["ETag"]})

    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", ["/static/admin/css/nope.css", "/static/../config/settings.py"])
async def test_an_unknown_static_path_falls_through_to_a_404(path):
    response = await AsyncClient().get(path)

    assert response.status_code == 404


def test_the_middleware_is_async_capable_so_api_requests_pass_without_a_thread_hop():
    async def downstream(request):
        return None

    assert StaticFilesMiddleware.async_capable and StaticFilesMiddleware.sync_capable
    assert iscoroutinefunction(StaticFilesMiddleware(downstream))
    assert not iscoroutinefunction(StaticFilesMiddleware(lambda request: None))
