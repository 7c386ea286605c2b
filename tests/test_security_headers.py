"""Browser-facing hardening headers, no caching of secrets, and the production configuration.

The API is for native clients, but its responses still travel through browsers, proxies and
caches: every answer says nosniff, no framing, same-origin referrers and opener policy; answers
that carry a token, a ticket or a nonce forbid caching; behind a TLS proxy with DEBUG=false
plain HTTP is redirected (except the health probe) and HTTPS answers carry HSTS.
"""

import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import auth_header, bearer
from tests.server import ROOT
from tests.ssh_helpers import public_key_line, sign

STRONG_KEY = "production-like-secret-" + "k3Y_9xQ-" * 6
HARDENING = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains; preload"


def hardening_of(response) -> dict:
    return {name: response.headers.get(name) for name in HARDENING}


@pytest.mark.django_db
def test_every_kind_of_api_answer_carries_the_hardening_headers(client, alice, general):
    headers = auth_header(bearer(alice))
    answers = [
        client.get("/api/native/health"),
        client.get("/api/native/challenge"),
        client.get("/api/native/rooms/general/history", **headers),
        client.get("/api/native/me"),  # 401
        client.get("/api/native/rooms/nope/history", **headers),  # 403
        client.delete("/api/native/tokens/nope", **headers),  # 404
        client.put("/api/native/me", **headers),  # 405
        client.get("/api/native/openapi.json"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 401, 403, 404, 405, 200]
    for answer in answers:
        assert hardening_of(answer) == HARDENING, answer.request["PATH_INFO"]


@pytest.mark.django_db
def test_answers_that_carry_a_token_ticket_or_nonce_are_never_cached(client, alice, keys):
    challenge = client.get("/api/native/challenge")
    nonce, namespace = challenge.json()["nonce"], challenge.json()["namespace"]
    body = {
        "public_key": public_key_line(keys["alice"]),
        "nonce": nonce,
        "signature": sign(keys["alice"], nonce.encode(), namespace),
    }
    login = client.post("/api/native/token", body, content_type="application/json")
    assert login.status_code == 201
    headers = auth_header(login.json()["token"])
    tickets = [
        client.post("/api/native/ws-ticket", **headers),
        client.get("/api/native/ws-ticket", **headers),
    ]
    assert [t.status_code for t in tickets] == [201, 200]
    for answer in [challenge, login, *tickets]:
        assert answer["Cache-Control"] == "no-store", answer.request["PATH_INFO"]


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": STRONG_KEY,
    "ALLOWED_HOSTS": "127.0.0.1,chat.example.com",
    "SECURE_PROXY_SSL_HEADER": "true",
    "NATIVE_TRUSTED_PROXIES": "127.0.0.1/32",
}


@pytest.mark.e2e
def test_behind_a_tls_proxy_with_debug_off_https_answers_carry_hsts_and_plain_http_is_redirected(
    server_factory, alice
):
    server = server_factory(env=PRODUCTION, name="production")
    token = bearer(alice)
    via_proxy = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}

    secure = httpx.get(f"{server.url}/api/native/me", headers=via_proxy)
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == HSTS
    assert hardening_of(secure) == HARDENING
    secure_error = httpx.get(f"{server.url}/api/native/nowhere", headers=via_proxy)
    assert secure_error.status_code == 404 and secure_error.json()["error"] == "not_found"  # no debug page
    assert secure_error.headers["Strict-Transport-Security"] == HSTS

    plain = httpx.get(f"{server.url}/api/native/me", headers={"Authorization": f"Bearer {token}"})
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://127.0.0.1:{server.port}/api/native/me"
    # The load balancer's health probe speaks plain HTTP on the private network.
    probe = httpx.get(f"{server.url}/api/native/health")
    assert probe.status_code == 200 and "Strict-Transport-Security" not in probe.headers


def check_deploy(**overrides) -> subprocess.CompletedProcess:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NATIVE_", "SECURE_"))},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/whatever",
        "REDIS_URL": "redis://127.0.0.1:6379/9",
        **PRODUCTION,
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )


def test_the_tls_proxy_production_configuration_passes_check_deploy():
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "overrides, check_id",
    [
        ({"DEBUG": "true"}, "security.W018"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
        ({"SESSION_COOKIE_SECURE": "false"}, "security.W012"),
        ({"NATIVE_AUTO_REGISTER": "true"}, "tokens.W001"),
        ({"REDIS_URL": ""}, "tokens.W002"),
    ],
)
def test_check_deploy_fails_on_each_weakened_production_setting(overrides, check_id):
    result = check_deploy(**overrides)
    assert result.returncode != 0 and check_id in result.stdout + result.stderr
