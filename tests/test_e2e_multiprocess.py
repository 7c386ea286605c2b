"""Two real server processes sharing PostgreSQL (or the SQLite file) and Redis.

Everything here crosses a process boundary: fan-out, tickets, revocation and the deny-list must
hold in every process, not just the one that did the work.
"""

import asyncio
import time

import httpx
import pytest
from channels.db import database_sync_to_async

from tests import ws
from tests.conftest import bearer
from tokens.models import NativeToken
from tokens.revocation import revoke_by_id, revoke_user

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


abearer = database_sync_to_async(bearer)


@pytest.fixture
def two_servers(server_factory):
    # Senders here stream as fast as acks come back, above the 20 frames/s a client may send.
    env = {"NATIVE_RATE_WS_FRAMES": "0"}
    return server_factory(env=env, name="a"), server_factory(env=env, name="b")


def mint_ticket(server, token) -> str:
    response = httpx.post(f"{server.url}/api/native/ws-ticket", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


async def open_hello(server, token):
    socket = await ws.connect(f"{server.ws_url}?ticket={mint_ticket(server, token)}")
    assert (await ws.recv_json(socket))["type"] == "hello"
    return socket


async def test_a_message_sent_on_one_process_reaches_a_subscriber_on_the_other(
    two_servers, alice, bob, general
):
    a, b = two_servers
    bob_socket = await open_hello(b, await abearer(bob))
    await ws.send_json(bob_socket, {"type": "subscribe", "room": "general"})
    await ws.recv_until(bob_socket, "subscribed")
    alice_socket = await open_hello(a, await abearer(alice))
    await ws.send_json(alice_socket, {"type": "send", "room": "general", "body": "across", "ref": "1"})
    ack = await ws.recv_json(alice_socket)
    frame = await ws.recv_json(bob_socket)
    assert frame["message"]["id"] == ack["id"] and frame["message"]["body"] == "across"
    await asyncio.gather(alice_socket.close(), bob_socket.close())


async def test_a_ticket_minted_on_one_process_is_consumed_once_on_the_other(two_servers, alice):
    a, b = two_servers
    ticket = mint_ticket(a, await abearer(alice))
    results = await asyncio.gather(*(first_frame_or_close(s.ws_url, ticket) for s in (b, a, b, a)))
    assert sorted(map(str, results)) == ["4401", "4401", "4401", "hello"]


async def first_frame_or_close(ws_url, ticket):
    socket = await ws.connect(f"{ws_url}?ticket={ticket}")
    try:
        frame = await ws.recv_json(socket)
        return frame["type"]
    except Exception:
        return socket.close_code
    finally:
        await socket.close()


async def test_concurrent_senders_on_two_processes_lose_and_duplicate_nothing(
    two_servers, alice, bob, general
):
    """4 senders × 200 messages; a subscriber drops mid-way and resumes with after=last seen id."""
    a, b = two_servers
    token = await abearer(alice)
    per_sender = 200

    async def sender(index):
        socket = await open_hello((a, b)[index % 2], token)
        acked = []
        for n in range(per_sender):
            await ws.send_json(
                socket,
                {"type": "send", "room": "general", "body": f"{index}-{n}", "client_id": f"{index}-{n}"},
            )
            frame = await ws.recv_json(socket, timeout=10)
            assert frame["type"] == "ack", frame
            acked.append(frame["id"])
        await socket.close()
        return acked

    async def subscriber():
        received = []
        bob_token = await abearer(bob)
        socket = await open_hello(b, bob_token)
        # after=0: the senders may already have posted before this subscribe lands.
        await ws.send_json(socket, {"type": "subscribe", "room": "general", "after": 0})
        _, backlog = await ws.recv_until(socket, "subscribed", timeout=10)
        received.extend(frame["message"]["id"] for frame in backlog)
        while len(received) < 150:
            received.append((await ws.recv_json(socket, timeout=10))["message"]["id"])
        await socket.close()  # drop mid-stream
        await asyncio.sleep(0.3)
        socket = await open_hello(a, bob_token)
        await ws.send_json(socket, {"type": "subscribe", "room": "general", "after": received[-1]})
        while len(received) < 4 * per_sender:
            frame = await ws.recv_json(socket, timeout=15)
            if frame["type"] == "message":
                received.append(frame["message"]["id"])
        await socket.close()
        return received

    results = await asyncio.gather(subscriber(), *(sender(i) for i in range(4)))
    received, acked = results[0], [i for ids in results[1:] for i in ids]
    assert len(acked) == 4 * per_sender == len(set(acked))
    assert received == sorted(received), "ids must arrive in increasing order"
    assert len(received) == len(set(received)), "no duplicates"
    assert set(received) == set(acked), "nothing lost"


async def wait_close(socket, timeout=1.0):
    started = time.monotonic()
    code, _ = await ws.close_code(socket, timeout=timeout + 1)
    return code, time.monotonic() - started


async def test_a_revocation_on_one_process_closes_the_socket_on_the_other_within_a_second(two_servers, alice):
    a, b = two_servers
    token = await abearer(alice)
    socket = await open_hello(b, token)
    token_id = await database_sync_to_async(lambda: NativeToken.objects.get().public_id)()
    httpx.delete(f"{a.url}/api/native/logout", headers={"Authorization": f"Bearer {token}"})
    code, elapsed = await wait_close(socket)
    assert code == 4401 and elapsed < 1.0
    assert (
        httpx.get(f"{b.url}/api/native/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )
    assert token_id


async def test_revoke_token_by_an_operator_closes_live_sockets_everywhere(two_servers, alice):
    a, b = two_servers
    token = await abearer(alice)
    other = await abearer(alice)
    sockets = [await open_hello(a, token), await open_hello(b, token)]
    survivor = await open_hello(b, other)
    token_id = await database_sync_to_async(
        lambda: NativeToken.objects.order_by("created_at", "id").first().public_id
    )()
    await database_sync_to_async(revoke_by_id)(token_id, reason="test")
    for socket in sockets:
        code, elapsed = await wait_close(socket)
        assert code == 4401 and elapsed < 1.0
    await ws.send_json(survivor, {"type": "ping"})
    assert (await ws.recv_json(survivor))["type"] == "pong"
    await survivor.close()


async def test_revoke_user_tokens_closes_all_of_that_users_sockets(two_servers, alice, bob):
    a, b = two_servers
    alice_sockets = [await open_hello(a, await abearer(alice)), await open_hello(b, await abearer(alice))]
    bob_socket = await open_hello(a, await abearer(bob))
    await database_sync_to_async(revoke_user)(alice, reason="test")
    for socket in alice_sockets:
        assert (await wait_close(socket))[0] == 4401
    await ws.send_json(bob_socket, {"type": "ping"})
    assert (await ws.recv_json(bob_socket))["type"] == "pong"
    await bob_socket.close()


async def test_a_revoked_service_token_is_refused_everywhere_and_its_socket_closed(two_servers, alice):
    from tokens.service_tokens import mint

    a, b = two_servers
    raw, claims = await database_sync_to_async(mint)(alice, name="bot")
    headers = {"Authorization": f"Bearer {raw}"}
    for server in (a, b):  # warm both processes' deny-list copies
        assert httpx.get(f"{server.url}/api/native/me", headers=headers).status_code == 200
    socket = await ws.connect(b.ws_url, additional_headers=headers)
    assert (await ws.recv_json(socket))["type"] == "hello"
    unused_ticket = mint_ticket(a, raw)
    await database_sync_to_async(revoke_by_id)(claims.jti, expires_at=claims.expires_at, reason="test")
    assert (await wait_close(socket))[0] == 4401
    for server in (a, b):
        assert httpx.get(f"{server.url}/api/native/me", headers=headers).status_code == 401
        assert httpx.post(f"{server.url}/api/native/ws-ticket", headers=headers).status_code == 401
        refused = await ws.connect(server.ws_url, additional_headers=headers)
        assert (await ws.close_code(refused))[0] == 4401
    refused = await ws.connect(f"{b.ws_url}?ticket={unused_ticket}")
    assert (await ws.close_code(refused))[0] == 4401


async def test_removal_from_a_room_unsubscribes_sockets_on_every_process(two_servers, alice, bob, general):
    from rooms.membership import remove_member

    a, b = two_servers
    sockets = [await open_hello(a, await abearer(bob)), await open_hello(b, await abearer(bob))]
    for socket in sockets:
        await ws.send_json(socket, {"type": "subscribe", "room": "general"})
        await ws.recv_until(socket, "subscribed")
    started = time.monotonic()
    await database_sync_to_async(remove_member)(general, bob)
    for socket in sockets:
        frame = await ws.recv_json(socket, timeout=1)
        assert frame == {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"}
        await socket.close()
    assert time.monotonic() - started < 1.0
