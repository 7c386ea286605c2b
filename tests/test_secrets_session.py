"""A whole session at DEBUG log level leaves no raw secret in the database or in any log line.

Login (good, replayed, badly signed, unknown key), tickets (query string, auth frame), websockets
with every credential path, a service token, revocation by the owner, by an operator command
and by logout, then purge_tokens: afterwards the database dump, the server's log, the commands'
output and the test process's own log records are searched for every token, ticket, nonce and
signature, whole and by 8-character head and tail (tests/secrets_scan.py).
"""

import asyncio
import logging
import os
import subprocess
import sys

import httpx
import pytest
from django.core.management import call_command
from django.db import connection

from tests import ws
from tests.flows import signed_login_body
from tests.secrets_scan import database_bytes, leaks
from tests.server import ROOT, run_manage
from tests.ssh_helpers import make_key, public_key_line, sign
from tokens import verifier
from tokens.login import issue_challenge
from tokens.tickets import mint as mint_ticket

# The client libraries log their own request lines (a ticket in a websocket URL, say): that is
# the client's business, not the server's, so their records are left out of the scan.
CLIENT_LOGGERS = ("httpx", "httpcore", "websockets", "hpack")


def signature_secret(armored: str) -> str:
    """The tail of an SSHSIG's base64: the signature bytes (its head is a constant magic)."""
    return "".join(armored.strip().splitlines()[1:-1])[-64:]


def api(server, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{server.url}/api/native/{path}", headers=headers, **kwargs)


def manage(*args: str) -> subprocess.CompletedProcess:
    """Run a management command in its own process against the test database, at DEBUG."""
    result = run_manage(*args, env={"LOG_LEVEL": "DEBUG", "DEBUG": "true"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def login(server, key, secrets: dict, name: str, **kwargs) -> httpx.Response:
    body = signed_login_body(server.url, key, **kwargs)
    secrets[f"{name} nonce"], secrets[f"{name} signature"] = (
        body["nonce"],
        signature_secret(body["signature"]),
    )
    return api(server, "POST", "token", json=body)


async def websocket_session(server, secrets: dict) -> dict:
    """Every websocket credential path; returns what each socket saw at the end."""
    results = {}
    by_ticket = await ws.connect(f"{server.ws_url}?ticket={secrets['ticket (query)']}")
    await ws.recv_until(by_ticket, "hello")
    await ws.send_json(by_ticket, {"type": "subscribe", "room": "general"})
    await ws.recv_until(by_ticket, "subscribed")
    await ws.send_json(by_ticket, {"type": "send", "room": "general", "body": "hello", "client_id": "c1"})
    await ws.recv_until(by_ticket, "ack")

    by_frame = await ws.connect(server.ws_url)
    await ws.send_json(by_frame, {"type": "auth", "ticket": secrets["ticket (auth frame)"]})
    await ws.recv_until(by_frame, "hello")
    by_header = await ws.connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {secrets['phone token']}"}
    )
    await ws.recv_until(by_header, "hello")
    by_query_token = await ws.connect(f"{server.ws_url}?token={secrets['laptop token']}")
    await ws.recv_until(by_query_token, "hello")
    by_service = await ws.connect(f"{server.ws_url}?token={secrets['service token']}")
    await ws.recv_until(by_service, "hello")

    replayed = await ws.connect(f"{server.ws_url}?ticket={secrets['ticket (query)']}")
    results["replayed ticket"] = await ws.close_code(replayed)
    mistyped = secrets["laptop token"][:-1] + ("A" if secrets["laptop token"][-1] != "A" else "B")
    results["mistyped token"] = await ws.close_code(await ws.connect(f"{server.ws_url}?token={mistyped}"))

    # Revocations reach live sockets: the service token logs out (deny-listed), then the laptop.
    assert api(server, "DELETE", "logout", secrets["service token"]).status_code == 204
    results["service socket"] = await ws.close_code(by_service)
    assert api(server, "DELETE", "logout", secrets["laptop token"]).status_code == 204
    results["laptop sockets"] = {await ws.close_code(s) for s in (by_ticket, by_frame, by_query_token)}
    await by_header.close()
    return results


@pytest.mark.e2e
def test_a_full_session_at_debug_level_leaves_no_secret_in_the_database_or_any_log(
    server_factory, keys, alice, bob, general, key_dir, caplog
):
    caplog.set_level(logging.DEBUG)
    server = server_factory(env={"LOG_LEVEL": "DEBUG"}, name="secrets")
    secrets: dict[str, str] = {}

    laptop = login(server, keys["alice"], secrets, "laptop", device_name="laptop")
    phone = login(server, keys["alice"], secrets, "phone", device_name="phone")
    assert laptop.status_code == phone.status_code == 201
    secrets["laptop token"], secrets["phone token"] = laptop.json()["token"], phone.json()["token"]
    # Failed logins: a replayed nonce, a signature over something else, a key nobody registered.
    replay = signed_login_body(server.url, keys["alice"])
    assert api(server, "POST", "token", json=replay).status_code == 201
    secrets["replayed nonce"], secrets["replayed signature"] = (
        replay["nonce"],
        signature_secret(replay["signature"]),
    )
    assert api(server, "POST", "token", json=replay).status_code == 401
    wrong = signed_login_body(server.url, keys["alice"])
    wrong["signature"] = sign(keys["alice"], b"something else", "native-api-login")
    secrets["wrong nonce"], secrets["wrong signature"] = wrong["nonce"], signature_secret(wrong["signature"])
    assert api(server, "POST", "token", json=wrong).status_code == 401
    stranger = make_key(key_dir, "ed25519", comment="stranger")
    unknown = signed_login_body(server.url, stranger)
    assert public_key_line(stranger) == unknown["public_key"]
    secrets["stranger nonce"], secrets["stranger signature"] = (
        unknown["nonce"],
        signature_secret(unknown["signature"]),
    )
    assert api(server, "POST", "token", json=unknown).status_code == 401

    token = secrets["laptop token"]
    assert api(server, "GET", "me", token).status_code == 200
    secrets["ticket (query)"] = api(server, "POST", "ws-ticket", token).json()["ticket"]
    secrets["ticket (auth frame)"] = api(server, "GET", "ws-ticket", token).json()["ticket"]
    secrets["ticket (never used)"] = api(server, "POST", "ws-ticket", token).json()["ticket"]

    minted = manage("mint_service_token", "alice", "--ttl", "600", "--name", "ci")
    secrets["service token"] = minted.stdout.strip()
    assert api(server, "GET", "me", secrets["service token"]).status_code == 200

    outcome = asyncio.run(websocket_session(server, secrets))
    assert outcome == {
        "replayed ticket": (4401, "unauthorized"),
        "mistyped token": (4401, "unauthorized"),
        "service socket": (4401, "revoked"),
        "laptop sockets": {(4401, "revoked")},
    }

    # An operator revokes the phone from another process; the owner is told on the next call.
    phone_id = phone.json()["token_id"]
    revoked = manage("revoke_token", phone_id, "--reason", "lost phone")
    assert api(server, "GET", "me", secrets["phone token"]).status_code == 401
    call_command("revoke_user_tokens", "alice")  # in this process: its log records are captured
    purged = manage("purge_tokens")

    outputs = {
        "mint_service_token stderr": minted.stderr,  # its stdout is the token, by design
        "revoke_token": revoked.stdout + revoked.stderr,
        "purge_tokens": purged.stdout + purged.stderr,
    }
    records = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith(CLIENT_LOGGERS)
    )
    log = server.log()
    assert "django.db.backends" not in log, "SQL with parameters must stay out of the log"
    assert leaks(database_bytes(), secrets) == []
    assert leaks(log, secrets) == []
    assert {name: leaks(text, secrets) for name, text in outputs.items()} == dict.fromkeys(outputs, [])
    assert leaks(records, secrets) == []


def test_at_log_level_debug_everything_logs_at_debug_except_sql():
    """LOG_LEVEL=DEBUG opens our loggers, while django.db.backends stays pinned at INFO."""
    code = (
        "import logging, django; django.setup();"
        "print(logging.getLogger('native_api').getEffectiveLevel(),"
        " logging.getLogger('django.db.backends').getEffectiveLevel())"
    )
    env = {**os.environ, "LOG_LEVEL": "DEBUG", "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.split() == [str(logging.DEBUG), str(logging.INFO)], result.stderr


@pytest.mark.django_db
def test_sql_logged_at_debug_carries_digests_never_raw_secrets(client, alice, caplog, monkeypatch):
    """Even with django.db.backends at DEBUG, no query parameter is a raw credential."""
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    monkeypatch.setattr(connection, "force_debug_cursor", True)
    nonce = issue_challenge()
    from tests.conftest import bearer

    raw = bearer(alice)
    response = client.get("/api/native/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    ticket = mint_ticket(verifier.verify_bearer(raw))
    assert verifier.consume_ticket(ticket).user == alice
    assert client.delete("/api/native/logout", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 204
    sql = "\n".join(r.getMessage() for r in caplog.records if r.name == "django.db.backends")
    assert "SELECT" in sql and "INSERT" in sql  # the queries were logged
    assert leaks(sql, {"token": raw, "ticket": ticket, "nonce": nonce}) == []
