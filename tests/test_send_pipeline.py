"""A socket's send frames are pipelined (native_api/send_pipeline.py): several in flight, one
thread hop for all that are queued, and yet every reply comes in the order of the frames that
caused it, and the room stores the messages in the order they were sent.

The cast of tests/conftest.py: alice and bob in "general", alice alone in "alice-only"; mallory
belongs nowhere.
"""

import asyncio

import pytest
from channels.db import database_sync_to_async

from rooms.models import Message
from tests.comm import hello
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)

BURST = 30  # under the frame limit's burst of 40


async def socket_of(user):
    raw = await database_sync_to_async(bearer)(user)
    return (await hello(headers=[(b"authorization", f"Bearer {raw}".encode())]))[0]


def send(n: int, room: str = "general", body: str | None = None, prefix: str = "b") -> dict:
    return {
        "type": "send",
        "room": room,
        "body": body or f"{prefix} {n}",
        "client_id": f"{prefix}-{n}",
        "ref": f"{prefix}{n}",
    }


@database_sync_to_async
def stored_bodies(room: str = "general") -> list[str]:
    return list(Message.objects.filter(room__slug=room).order_by("id").values_list("body", flat=True))


async def test_a_burst_of_sends_is_acked_in_frame_order_and_stored_in_that_order(alice, general):
    socket = await socket_of(alice)
    for n in range(BURST):
        await socket.send_json_to(send(n))
    await socket.send_json_to({"type": "ping", "ref": "after"})

    replies = [await socket.receive_json_from(timeout=10) for _ in range(BURST + 1)]

    assert [r["ref"] for r in replies] == [f"b{n}" for n in range(BURST)] + ["after"]
    assert [r["type"] for r in replies[:-1]] == ["ack"] * BURST and replies[-1]["type"] == "pong"
    ids = [r["id"] for r in replies[:-1]]
    assert ids == sorted(ids) and len(set(ids)) == BURST
    assert await stored_bodies() == [f"b {n}" for n in range(BURST)]
    await socket.disconnect()


async def test_refused_sends_in_a_burst_are_answered_in_their_place(alice, general):
    socket = await socket_of(alice)
    frames = [send(n) for n in range(10)]
    frames[3] = send(3, body="x" * 4001)  # too long: invalid_request
    frames[6] = send(6, room="nowhere")  # not a member: forbidden
    for frame in frames:
        await socket.send_json_to(frame)

    replies = [await socket.receive_json_from(timeout=10) for _ in frames]

    assert [r["ref"] for r in replies] == [f["ref"] for f in frames]
    assert [r["type"] for r in replies] == ["ack"] * 3 + ["error"] + ["ack"] * 2 + ["error"] + ["ack"] * 3
    assert replies[3]["code"] == "invalid_request" and replies[6]["code"] == "forbidden"
    assert await stored_bodies() == [f"b {n}" for n in range(10) if n not in (3, 6)]
    await socket.disconnect()


async def test_a_repeated_client_id_inside_one_burst_is_stored_once(alice, general):
    socket = await socket_of(alice)
    for frame in (send(1), send(2), send(1) | {"ref": "again"}):
        await socket.send_json_to(frame)
    first, second, again = [await socket.receive_json_from(timeout=10) for _ in range(3)]
    assert again["type"] == "ack" and again["id"] == first["id"] and again["ref"] == "again"
    assert await stored_bodies() == ["b 1", "b 2"]
    await socket.disconnect()


async def test_two_sockets_bursting_into_one_room_each_keep_their_order_and_a_reader_sees_room_order(
    alice, bob, general
):
    reader = await socket_of(bob)
    await reader.send_json_to({"type": "subscribe", "room": "general"})
    assert (await reader.receive_json_from())["type"] == "subscribed"
    senders = [await socket_of(alice), await socket_of(bob)]

    async def burst(socket, prefix):
        for n in range(BURST):
            await socket.send_json_to(send(n, prefix=prefix))
        replies = [await socket.receive_json_from(timeout=10) for _ in range(BURST)]
        return [(r["ref"], r["id"]) for r in replies if r["type"] == "ack"]

    acked_a, acked_b = await asyncio.gather(burst(senders[0], "a"), burst(senders[1], "b"))

    for acked, prefix in ((acked_a, "a"), (acked_b, "b")):
        assert [ref for ref, _ in acked] == [f"{prefix}{n}" for n in range(BURST)]
        assert [i for _, i in acked] == sorted(i for _, i in acked)
    seen = []
    while len(seen) < 2 * BURST:
        frame = await reader.receive_json_from(timeout=10)
        if frame["type"] == "message":
            seen.append(frame["message"]["id"])
    assert seen == sorted(seen) == sorted(i for _, i in acked_a + acked_b)
    bodies = await stored_bodies()
    for prefix in ("a", "b"):
        assert [b for b in bodies if b.startswith(prefix)] == [f"{prefix} {n}" for n in range(BURST)]
    for socket in (reader, *senders):
        await socket.disconnect()


async def test_a_subscribe_after_a_burst_is_answered_after_the_burst_and_sees_it(alice, general):
    socket = await socket_of(alice)
    for n in range(20):
        await socket.send_json_to(send(n))
    await socket.send_json_to({"type": "subscribe", "room": "general", "after": 0, "ref": "sub"})

    replies = [await socket.receive_json_from(timeout=10) for _ in range(20)]
    assert [r["type"] for r in replies] == ["ack"] * 20
    backlog = [await socket.receive_json_from(timeout=10) for _ in range(21)]
    assert [f["type"] for f in backlog] == ["message"] * 20 + ["subscribed"]
    assert [f["message"]["id"] for f in backlog[:20]] == [r["id"] for r in replies]
    await socket.disconnect()
