"""SSH-key login and token management against a real daphne process."""

import httpx
import pytest

from tests.flows import login, signed_login_body
from tests.secrets_scan import database_bytes, leaks
from tests.ssh_helpers import make_key, pub_path, public_key_line, sign, sign_with_agent, ssh_agent

pytestmark = pytest.mark.e2e


def api(server, method, path, token=None, headers=None, **kwargs):
    headers = dict(headers or {}, **({"Authorization": f"Bearer {token}"} if token else {}))
    return httpx.request(method, f"{server.url}/api/native/{path}", headers=headers, timeout=10, **kwargs)


@pytest.fixture
def registered(alice, key_dir):
    """Alice also holds an ecdsa-384 key and a passphrase-protected ed25519 key kept in an agent."""
    from tokens.login import register_key
    from tokens.ssh_signatures import parse_public_key

    extra = {
        "ecdsa384": make_key(key_dir, "ecdsa384"),
        "agent": make_key(key_dir, "ed25519", passphrase="correct horse"),
    }
    for path in extra.values():
        register_key(alice, parse_public_key(public_key_line(path)))
    return extra


def test_all_key_types_and_an_ssh_agent_log_in(server, keys, bob, mallory, registered):
    for person in ("alice", "bob", "mallory"):
        assert login(server.url, keys[person])["user"]["username"] == person
    assert login(server.url, registered["ecdsa384"])["user"]["username"] == "alice"
    with ssh_agent(registered["agent"], passphrase="correct horse") as agent_env:
        challenge = api(server, "GET", "challenge").json()
        body = {
            "public_key": public_key_line(registered["agent"]),
            "nonce": challenge["nonce"],
            "signature": sign_with_agent(
                pub_path(registered["agent"]), challenge["nonce"].encode(), challenge["namespace"], agent_env
            ),
        }
    assert api(server, "POST", "token", json=body).status_code == 201


def test_login_failures_are_401_and_malformed_bodies_400(server, keys, alice, bob, key_dir):
    body = signed_login_body(server.url, keys["alice"])
    assert api(server, "POST", "token", json=body).status_code == 201
    assert api(server, "POST", "token", json=body).status_code == 401  # replayed nonce

    foreign = signed_login_body(server.url, keys["alice"])
    foreign["signature"] = sign(keys["bob"], foreign["nonce"].encode(), "native-api-login")
    wrong_ns = signed_login_body(server.url, keys["alice"], namespace="file")
    unknown = signed_login_body(server.url, make_key(key_dir, "ed25519"))
    mismatch = signed_login_body(server.url, keys["alice"])
    mismatch["public_key_fingerprint"] = "SHA256:" + "A" * 43
    for bad in (foreign, wrong_ns, unknown, mismatch):
        response = api(server, "POST", "token", json=bad)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"

    for malformed in ({"nonce": "x"}, {"public_key": 5, "nonce": "x", "signature": "y"}):
        response = api(server, "POST", "token", json=malformed)
        assert response.status_code == 400 and set(response.json()) == {"error", "detail"}
    raw = api(server, "POST", "token", content=b"{oops", headers={"Content-Type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"] == "invalid_request"


def test_tampered_truncated_and_non_ascii_tokens_are_401(server, keys, alice):
    token = login(server.url, keys["alice"])["token"]
    for bad in (token[:-1], token[:-1] + ("x" if token[-1] != "x" else "y"), token[:20]):
        assert api(server, "GET", "me", bad).status_code == 401
    response = httpx.get(
        f"{server.url}/api/native/me",
        headers={"Authorization": "Bearer nat_\u00e9\u00e9".encode()},
        timeout=10,
    )
    assert response.status_code == 401


def test_sessions_logout_and_logout_everywhere_take_effect_at_once(server, keys, alice, bob):
    laptop = login(server.url, keys["alice"], device_name="laptop")
    phone = login(server.url, keys["alice"], device_name="phone")
    bobs = login(server.url, keys["bob"])
    listed = api(server, "GET", "tokens", laptop["token"]).json()["tokens"]
    assert [(t["device_name"], t["current"]) for t in listed] == [("phone", False), ("laptop", True)]
    assert listed[1]["created_ip"] == "127.0.0.1" and listed[1]["user_agent"].startswith("python-httpx")

    assert api(server, "DELETE", f"tokens/{bobs['token_id']}", laptop["token"]).status_code == 404
    assert api(server, "GET", "me", bobs["token"]).status_code == 200

    assert api(server, "DELETE", "logout", phone["token"]).status_code == 204
    assert api(server, "GET", "me", phone["token"]).status_code == 401
    assert api(server, "GET", "me", laptop["token"]).status_code == 200

    extra = login(server.url, keys["alice"])
    assert api(server, "DELETE", "tokens", laptop["token"]).status_code == 204
    assert api(server, "GET", "me", laptop["token"]).status_code == 401
    assert api(server, "GET", "me", extra["token"]).status_code == 401
    assert api(server, "GET", "me", bobs["token"]).status_code == 200


def test_no_raw_token_nonce_or_signature_reaches_the_database_or_the_log(server, keys, alice):
    body = signed_login_body(server.url, keys["alice"])
    token = api(server, "POST", "token", json=body).json()["token"]
    ticket = api(server, "POST", "ws-ticket", token).json()["ticket"]
    api(server, "GET", "me", token)
    # A careless client that puts secrets in URLs must not get them logged either.
    api(server, "GET", f"me?token={token}&ticket={ticket}", token)
    secrets = {
        "token": token,
        "ticket": ticket,
        "nonce": body["nonce"],
        "signature": body["signature"][40:120],
    }
    assert leaks(database_bytes(), secrets) == []
    assert leaks(server.log(), secrets) == []
