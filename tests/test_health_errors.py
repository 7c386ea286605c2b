"""GET health probes each dependency for real; every error under /api/ is the contract's JSON."""

import pytest
from django.test import Client

from native_api.views import health as health_module
from tests.conftest import auth_header, bearer

pytestmark = pytest.mark.django_db


def test_health_is_ok_when_everything_answers(client):
    response = client.get("/api/native/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok", "cache": "ok"}


@pytest.mark.parametrize(
    "probe, part",
    [("_probe_database", "database"), ("_probe_cache", "cache"), ("_probe_channel_layer", "channel_layer")],
)
def test_health_is_503_and_marks_the_part_that_is_down(client, monkeypatch, probe, part):
    def broken(*args, **kwargs):
        raise ConnectionError("down")

    async def broken_async(*args, **kwargs):
        raise ConnectionError("down")

    monkeypatch.setattr(health_module, probe, broken_async if probe == "_probe_channel_layer" else broken)
    response = client.get("/api/native/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down" and body[part] == "down"
    assert [k for k, v in body.items() if v == "down" and k != "status"] == [part]


def test_health_really_reaches_the_database(client, monkeypatch):
    from django.db import connection

    executed = []
    with connection.execute_wrapper(lambda execute, sql, *a: executed.append(sql) or execute(sql, *a)):
        client.get("/api/native/health")
    assert any("SELECT 1" in sql for sql in executed)


def test_an_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/native/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not found."}


def test_a_wrong_method_is_a_json_405_with_allow(client):
    response = client.put("/api/native/challenge")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed" and response["Allow"] == "GET"


def test_a_body_over_64_kib_is_a_json_413(client, alice):
    big = '{"body": "' + "x" * (64 * 1024) + '"}'
    response = client.post(
        "/api/native/rooms/general/messages",
        big,
        content_type="application/json",
        **auth_header(bearer(alice)),
    )
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_an_unhandled_exception_is_a_json_500_without_a_traceback(alice, monkeypatch):
    from native_api.views import rooms

    def explode(user):
        raise RuntimeError("kaboom secret detail")

    monkeypatch.setattr(rooms, "rooms_with_last_visible_id", explode)
    client = Client(raise_request_exception=False)
    response = client.get("/api/native/rooms", **auth_header(bearer(alice)))
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "The server failed to handle this request.",
    }
    assert b"kaboom" not in response.content


def test_a_database_outage_during_a_request_is_a_json_503(alice, monkeypatch):
    from django.db import OperationalError

    from native_api.views import rooms

    def unavailable(user):
        raise OperationalError("connection refused")

    monkeypatch.setattr(rooms, "rooms_with_last_visible_id", unavailable)
    response = Client(raise_request_exception=False).get("/api/native/rooms", **auth_header(bearer(alice)))
    assert response.status_code == 503 and response.json()["error"] == "unavailable"


def test_api_responses_carry_the_security_headers(client):
    response = client.get("/api/native/health")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_pages_outside_the_api_keep_djangos_own_errors(client):
    response = client.get("/not-api/")
    assert response.status_code == 404 and not response["Content-Type"].startswith("application/json")


def test_a_constraint_violation_is_a_500_not_a_retry_later_503(alice, monkeypatch):
    from django.db import IntegrityError

    from native_api.views import rooms

    def violates(user):
        raise IntegrityError("duplicate key")

    monkeypatch.setattr(rooms, "rooms_with_last_visible_id", violates)
    response = Client(raise_request_exception=False).get("/api/native/rooms", **auth_header(bearer(alice)))
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
