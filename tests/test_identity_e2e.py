"""Certificates and security keys against a real daphne server process: carol logs in with a
certificate from the trusted CA (no key of hers is registered) and opens a websocket; an
operator's `manage.py load_krl` naming her certificate's serial, run in its own process,
closes that socket 4401 within the enforcement bound and refuses her next login. alice logs in
with a software-built security key the same way a real client would, over HTTP."""

import asyncio
import subprocess
import time

import httpx
import pytest
from channels.db import database_sync_to_async

from foundation.models import Change
from tests import ws
from tests.server import run_manage
from tests.ssh_helpers import SoftwareSecurityKey, certify, make_key, pub_path, sign

pytestmark = pytest.mark.e2e
BOUND = 2.0  # API.md: at worst, from commit to effect
NAMESPACE = "native-api-login"


def login(server, public_key: str, signer) -> httpx.Response:
    nonce = httpx.get(f"{server.url}/api/native/challenge").json()["nonce"]
    body = {"public_key": public_key, "nonce": nonce, "signature": signer(nonce.encode())}
    return httpx.post(f"{server.url}/api/native/token", json=body)


@pytest.fixture
def corp(server, tmp_path, django_user_model):
    """The trusted CA (added with the real command), and carol with a certificate from it."""
    django_user_model.objects.create_user(username="carol")
    ca = make_key(tmp_path, "ed25519", comment="corp-ca")
    added = run_manage("add_ssh_ca", "corp", str(pub_path(ca)))
    assert added.returncode == 0, added.stderr
    (tmp_path / "carol").mkdir()
    carol = make_key(tmp_path / "carol", "ed25519")
    cert = certify(ca, pub_path(carol), principals=["carol"], serial=4242, validity="-1m:+1h")
    return {"ca": ca, "cert": cert, "dir": tmp_path}


async def test_load_krl_with_her_serial_closes_her_live_socket_and_refuses_her_next_login(server, corp):
    cert = corp["cert"]
    response = await asyncio.to_thread(
        login, server, cert.read_text().strip(), lambda n: sign(cert, n, NAMESPACE)
    )
    assert response.status_code == 201, response.text
    raw = response.json()["token"]
    socket = await ws.connect(server.ws_url, additional_headers={"Authorization": f"Bearer {raw}"})
    assert (await ws.recv_json(socket))["type"] == "hello"
    watching = asyncio.create_task(ws.close_code(socket, timeout=15))

    spec, krl = corp["dir"] / "spec", corp["dir"] / "revoked.krl"
    spec.write_text("serial: 4242\n")
    subprocess.run(
        ["ssh-keygen", "-k", "-f", str(krl), "-s", str(pub_path(corp["ca"])), str(spec)], check=True
    )
    result = await asyncio.to_thread(run_manage, "load_krl", str(krl))
    assert result.returncode == 0, result.stderr

    code, reason = await watching
    closed = time.time()
    commit = await database_sync_to_async(
        lambda: Change.objects.filter(kind="tokens_revoked").latest("seq").created_at.timestamp()
    )()
    assert (code, reason) == (4401, "revoked")
    assert closed - commit < BOUND
    assert "revoked 1 certificate that logged in" in result.stdout and "revoked 1 token" in result.stdout
    again = await asyncio.to_thread(
        login, server, cert.read_text().strip(), lambda n: sign(cert, n, NAMESPACE)
    )
    assert again.status_code == 401 and "revoked" in again.json()["detail"]
    me = httpx.get(f"{server.url}/api/native/me", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == 401


def test_a_security_key_logs_in_over_http_and_a_replayed_counter_does_not(server, django_user_model):
    key = SoftwareSecurityKey("ed25519")
    django_user_model.objects.create_user(username="alice")
    added = run_manage("add_ssh_key", "alice", key.line())
    assert added.returncode == 0, added.stderr
    first = login(server, key.line(), lambda nonce: key.sign(nonce, NAMESPACE, counter=7))
    assert first.status_code == 201, first.text
    replayed = login(server, key.line(), lambda nonce: key.sign(nonce, NAMESPACE, counter=7))
    assert replayed.status_code == 401 and "counter" in replayed.json()["detail"]
    untouched = login(server, key.line(), lambda nonce: key.sign(nonce, NAMESPACE, counter=8, flags=0))
    assert untouched.status_code == 401 and "touched" in untouched.json()["detail"]


def test_remove_ssh_ca_closes_the_sockets_of_its_certificates(server, corp):
    cert = corp["cert"]
    raw = login(server, cert.read_text().strip(), lambda n: sign(cert, n, NAMESPACE)).json()["token"]

    async def scenario():
        socket = await ws.connect(server.ws_url, additional_headers={"Authorization": f"Bearer {raw}"})
        assert (await ws.recv_json(socket))["type"] == "hello"
        watching = asyncio.create_task(ws.close_code(socket, timeout=15))
        result = await asyncio.to_thread(run_manage, "remove_ssh_ca", "corp")
        assert result.returncode == 0, result.stderr
        assert "revoked 1 token" in result.stdout
        return await watching

    assert asyncio.run(scenario()) == (4401, "revoked")
    again = login(server, cert.read_text().strip(), lambda n: sign(cert, n, NAMESPACE))
    assert again.status_code == 401 and "not trusted" in again.json()["detail"]
