"""Races across two real server processes: single-use things are used once, retries make one
message, and a logout beats a ticket minted at the same moment.

Each race is fired at both processes at once, so the database (row locks, conditional UPDATEs,
unique constraints) is what decides, not a lock inside one process. These tests run in both
CI passes: on PostgreSQL (READ COMMITTED, row locks) and on the embedded SQLite file (where
IMMEDIATE transactions serialize writers).
"""

import asyncio
from collections import Counter

import httpx
import pytest
from channels.db import database_sync_to_async

from rooms.models import Message
from tests import ws
from tests.conftest import bearer
from tests.faults import mint_ticket
from tests.flows import signed_login_body
from tokens.models import NativeToken

pytestmark = [pytest.mark.e2e]

abearer = database_sync_to_async(bearer)


@pytest.fixture
def two_servers(server_factory):
    env = {"NATIVE_RATE_WS_FRAMES": "0"}
    return server_factory(env=env, name="a"), server_factory(env=env, name="b")


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def first_frame_or_close(ws_url: str) -> str:
    """ "hello", or the close code as a string."""
    socket = await ws.connect(ws_url, open_timeout=30)
    try:
        frame = await ws.recv_json(socket, timeout=30)
        return frame["type"]
    except Exception:
        code, _ = await ws.close_code(socket, timeout=30)
        return str(code)
    finally:
        await socket.close()


async def test_a_ticket_raced_by_100_connects_on_two_processes_says_hello_exactly_once(two_servers, alice):
    a, b = two_servers
    ticket = mint_ticket(a.url, await abearer(alice))
    urls = [f"{server.ws_url}?ticket={ticket}" for server in (a, b)] * 50
    outcomes = Counter(await asyncio.gather(*(first_frame_or_close(url) for url in urls)))
    assert outcomes == {"hello": 1, "4401": 99}


async def test_one_nonce_raced_by_50_token_requests_yields_exactly_one_token(two_servers, alice, keys):
    a, b = two_servers
    body = signed_login_body(a.url, keys["alice"])  # one challenge, one valid signature
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post(f"{server.url}/api/native/token", json=body) for server in (a, b) * 25)
        )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 401: 49}
    assert all(r.json()["error"] == "unauthorized" for r in responses if r.status_code == 401)
    assert await database_sync_to_async(NativeToken.objects.filter(user=alice).count)() == 1


async def test_concurrent_sends_with_one_client_id_over_rest_and_websockets_make_one_message(
    two_servers, alice, bob, general
):
    a, b = two_servers
    token = await abearer(alice)
    sockets = [await open_hello(server, token) for server in (a, b) * 5]
    frame = {"type": "send", "room": "general", "body": "only once", "client_id": "retry-storm"}

    async def over_websocket(socket):
        await ws.send_json(socket, frame)
        reply = await ws.recv_json(socket, timeout=30)
        assert reply["type"] == "ack", reply
        return reply["id"]

    async with httpx.AsyncClient(timeout=60, headers=auth(token)) as client:

        async def over_rest(server):
            response = await client.post(
                f"{server.url}/api/native/rooms/general/messages",
                json={"body": "only once", "client_id": "retry-storm"},
            )
            assert response.status_code in (200, 201), response.text
            return response.status_code, response.json()["id"]

        rest, websocket_ids = await asyncio.gather(
            asyncio.gather(*(over_rest(server) for server in (a, b) * 5)),
            asyncio.gather(*(over_websocket(socket) for socket in sockets)),
        )
    ids = {message_id for _, message_id in rest} | set(websocket_ids)
    assert len(ids) == 1, f"every answer must carry the one message's id, got {ids}"
    assert [status for status, _ in rest].count(201) <= 1  # the creator, if it was a REST call
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(client_id="retry-storm").values_list("id", flat=True))
    )()
    assert stored == list(ids)
    await asyncio.gather(*(socket.close() for socket in sockets))


async def open_hello(server, token):
    socket = await ws.connect(f"{server.ws_url}?ticket={mint_ticket(server.url, token)}")
    assert (await ws.recv_json(socket, timeout=10))["type"] == "hello"
    return socket


async def test_a_logout_racing_a_ticket_mint_never_leaves_a_usable_ticket(two_servers, alice):
    a, b = two_servers
    outcomes = Counter()
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(15):
            token = await abearer(alice)
            logout, minted = await asyncio.gather(
                client.delete(f"{a.url}/api/native/logout", headers=auth(token)),
                client.post(f"{b.url}/api/native/ws-ticket", headers=auth(token)),
            )
            assert logout.status_code == 204
            if minted.status_code == 401:
                outcomes["mint refused"] += 1
                continue
            assert minted.status_code == 201, minted.text
            # The logout has answered: whichever server the ticket is used on, it is dead.
            server = (a, b)[sum(outcomes.values()) % 2]
            result = await first_frame_or_close(f"{server.ws_url}?ticket={minted.json()['ticket']}")
            assert result == "4401", "a ticket minted by a logged-out token must not open a socket"
            outcomes["ticket refused at connect"] += 1
    assert sum(outcomes.values()) == 15
