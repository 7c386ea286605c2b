"""End-to-end: a real daphne process, real ssh-keygen signatures, a real websocket client."""

import asyncio

import httpx
import pytest

from tests import ws
from tests.flows import login, ticket
from tests.secrets_scan import leaks

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


@pytest.mark.parametrize("server_kind", ["daphne", "uvicorn"])
async def test_close_codes_and_reasons_reach_real_clients_under_each_server(
    server_factory, keys, alice, server_kind
):
    """Default server options: the app itself enforces 64 KiB frames and sends its reason words."""
    proc = server_factory(env={"NATIVE_WS_AUTH_TIMEOUT": "0.5"}, server=server_kind, name=server_kind)
    token = login(proc.url, keys["alice"])["token"]
    one_ticket = ticket(proc.url, token)

    first = await ws.connect(f"{proc.ws_url}?ticket={one_ticket}")
    assert (await ws.recv_json(first))["type"] == "hello"
    await first.send("x" * 70_000)
    assert await ws.close_code(first) == (1009, "too_big")

    replay = await ws.connect(f"{proc.ws_url}?ticket={one_ticket}")
    assert await ws.close_code(replay) == (4401, "unauthorized")

    silent = await ws.connect(proc.ws_url)
    assert await ws.close_code(silent) == (4408, "auth_timeout")

    browser = await ws.connect(
        f"{proc.ws_url}?ticket={ticket(proc.url, token)}", origin="https://evil.example"
    )
    assert await ws.close_code(browser) == (4403, "origin")

    token_in_query = await ws.connect(f"{proc.ws_url}?token={token}")
    assert (await ws.recv_json(token_in_query))["type"] == "hello"
    await token_in_query.close()
    await asyncio.sleep(0.2)  # let the server write its log lines
    assert "/api/ws/native" in proc.log(), "the server logs websocket connects"
    assert leaks(proc.log(), {"ticket": one_ticket, "token": token}) == []
