"""The production layout end to end: HTTP through gunicorn (config.wsgi), websockets through
daphne (config.asgi), sharing PostgreSQL and Redis, each server with its default options.

A client logs in with its SSH key and mints a ticket over gunicorn, connects to daphne with it,
and messages flow both ways: posted over REST (gunicorn) → pushed on the socket (daphne); sent
on the socket → read back from the history over REST. A logout over gunicorn closes the
daphne socket (revocation crosses the process boundary through Redis).
"""

import asyncio

import httpx
import pytest

from tests import ws
from tests.flows import login, ticket

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def layout(server_factory):
    return server_factory(server="gunicorn", name="http"), server_factory(server="daphne", name="ws")


async def test_http_through_gunicorn_and_websockets_through_daphne_make_one_service(
    layout, keys, general, bob
):
    http, sockets = layout
    alice_token = login(http.url, keys["alice"], device_name="laptop")["token"]
    bob_token = login(http.url, keys["bob"])["token"]
    auth = {"Authorization": f"Bearer {alice_token}"}

    bob_ws = await ws.connect(f"{sockets.ws_url}?ticket={ticket(http.url, bob_token)}")
    assert (await ws.recv_json(bob_ws))["user"]["username"] == "bob"
    await ws.send_json(bob_ws, {"type": "subscribe", "room": "general"})
    await ws.recv_until(bob_ws, "subscribed")

    messages = f"{http.url}/api/native/rooms/general/messages"
    posted = httpx.post(messages, json={"body": "via gunicorn"}, headers=auth)
    assert posted.status_code == 201
    pushed = await ws.recv_until(bob_ws, "message")
    assert pushed[0]["message"]["id"] == posted.json()["id"]

    await ws.send_json(bob_ws, {"type": "send", "room": "general", "body": "via daphne", "ref": "s"})
    ack, _ = await ws.recv_until(bob_ws, "ack")
    history = httpx.get(f"{http.url}/api/native/rooms/general/history", headers=auth).json()
    assert ack["id"] in [message["id"] for message in history["messages"]]

    assert httpx.get(f"{http.url}/admin/login/").status_code == 200  # the admin is served too
    logout = httpx.delete(f"{http.url}/api/native/logout", headers={"Authorization": f"Bearer {bob_token}"})
    assert logout.status_code == 204
    assert await asyncio.wait_for(ws.close_code(bob_ws), 10) == (4401, "revoked")
