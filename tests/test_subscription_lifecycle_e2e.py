"""After ``unsubscribed``, nothing of that room reaches the socket (API.md), whichever path was
writing: the backlog of a resume, its catch-up, or live delivery.

Found from outside: a member resuming with ``after=0`` in a room with a long history was removed
while the backlog was being sent; they got ``unsubscribed`` and then tens of thousands more
messages of the room. These tests run a real server. Under uvicorn the server's send waits when
the client stops reading, so a client that pauses holds the server in the middle of its backlog,
deterministically: the removal lands there.
"""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from rooms.models import Message, Room
from tests import ws
from tests.conftest import bearer
from tests.server import run_manage

pytestmark = pytest.mark.e2e

HISTORY = 30_000


@database_sync_to_async
def seed_history(room_slug: str, sender, count: int) -> None:
    with transaction.atomic():
        room = Room.objects.select_for_update().get(slug=room_slug)
        first = room.last_seq + 1
        Message.objects.bulk_create(
            [
                Message(room=room, seq=first + n, sender=sender, body=f"history {first + n}")
                for n in range(count)
            ],
            batch_size=2000,
        )
        room.last_seq = first + count - 1
        room.save(update_fields=["last_seq"])


async def frames_until_quiet(socket, quiet: float = 2.0) -> list[dict]:
    """Every frame until the socket stays silent for ``quiet`` seconds (or closes)."""
    received = []
    while True:
        try:
            received.append(json.loads(await asyncio.wait_for(socket.recv(), quiet)))
        except (TimeoutError, ws.websockets.ConnectionClosed):
            return received


@pytest.fixture
def uvicorn_server(server_factory):
    return server_factory(server="uvicorn", name="uvicorn-lifecycle")


async def test_a_member_removed_during_a_long_backlog_gets_nothing_of_the_room_after_unsubscribed(
    uvicorn_server, alice, bob, general
):
    await seed_history("general", alice, HISTORY)
    raw = await database_sync_to_async(bearer)(bob)
    # A small receive queue: once the client stops reading, the server's sends wait on it.
    socket = await ws.connect(
        uvicorn_server.ws_url, additional_headers={"Authorization": f"Bearer {raw}"}, max_queue=4
    )
    assert (await ws.recv_json(socket))["type"] == "hello"
    await ws.send_json(socket, {"type": "subscribe", "room": "general", "after": 0})
    first = [await ws.recv_json(socket) for _ in range(50)]
    assert all(frame["type"] == "message" for frame in first)
    await asyncio.sleep(1.0)  # the client is not reading: the server is paused inside the backlog

    removed = await asyncio.to_thread(run_manage, "remove_member", "general", "bob")
    assert removed.returncode == 0, removed.stderr
    await asyncio.sleep(1.5)  # the server applies it (the bound is 2 s) while still paused

    frames = first + await frames_until_quiet(socket)
    kinds = [frame["type"] for frame in frames]
    assert "unsubscribed" in kinds, kinds[-5:]
    end = kinds.index("unsubscribed")
    assert frames[end] == {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"}
    after_end = [frame for frame in frames[end + 1 :] if frame.get("room") == "general" or "message" in frame]
    assert after_end == []
    delivered = kinds[:end].count("message")
    assert delivered < HISTORY  # the removal did land inside the backlog (else this tests nothing)
    assert "subscribed" not in kinds  # the subscribe never completed: it ended first
    await socket.close()


async def test_a_client_that_unsubscribes_and_resubscribes_gets_each_message_once(
    uvicorn_server, alice, bob, general
):
    """The other side of the lifecycle: ending and starting again loses and repeats nothing."""
    await seed_history("general", alice, 500)
    raw = await database_sync_to_async(bearer)(bob)
    socket = await ws.connect(uvicorn_server.ws_url, additional_headers={"Authorization": f"Bearer {raw}"})
    assert (await ws.recv_json(socket))["type"] == "hello"
    await ws.send_json(socket, {"type": "subscribe", "room": "general", "after": 0})
    subscribed, backlog = await ws.recv_until(socket, "subscribed", timeout=15)
    ids = [frame["message"]["id"] for frame in backlog]
    await ws.send_json(socket, {"type": "unsubscribe", "room": "general"})
    assert (await ws.recv_json(socket))["type"] == "unsubscribed"
    await seed_history("general", alice, 10)  # committed while not subscribed
    await ws.send_json(socket, {"type": "subscribe", "room": "general", "after": ids[-1]})
    _, resumed = await ws.recv_until(socket, "subscribed", timeout=15)
    ids += [frame["message"]["id"] for frame in resumed]
    assert ids == sorted(set(ids)) and len(ids) == 510
    assert subscribed["last_message_id"] == ids[499]
    await socket.close()
