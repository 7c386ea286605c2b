"""End-to-end: a real daphne process, real ssh-keygen signatures, a real websocket client."""

import httpx
import pytest

from tests import ws
from tests.flows import login, ticket

pytestmark = pytest.mark.e2e


async def test_a_user_logs_in_and_chats_through_a_real_server(server, keys, general, bob):
    alice_token = login(server.url, keys["alice"], device_name="laptop")["token"]
    bob_token = login(server.url, keys["bob"])["token"]

    bob_ws = await ws.connect(f"{server.ws_url}?ticket={ticket(server.url, bob_token)}")
    hello = await ws.recv_json(bob_ws)
    assert hello["type"] == "hello" and hello["user"]["username"] == "bob"
    await ws.send_json(bob_ws, {"type": "subscribe", "room": "general", "ref": "s1"})
    subscribed = await ws.recv_json(bob_ws)
    assert subscribed == {"type": "subscribed", "room": "general", "last_message_id": None, "ref": "s1"}

    posted = httpx.post(
        f"{server.url}/api/native/rooms/general/messages",
        json={"body": "hi bob"},
        headers={"Authorization": f"Bearer {alice_token}"},
    )
    assert posted.status_code == 201
    frame = await ws.recv_json(bob_ws)
    assert frame["type"] == "message"
    assert frame["message"]["body"] == "hi bob" and frame["message"]["id"] == posted.json()["id"]
    await bob_ws.close()
