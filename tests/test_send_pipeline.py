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
from rooms.posting import InvalidMessage, post_messages
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


# --- one transaction per run of sends to one room (rooms.posting.post_messages) ----------------


@pytest.fixture
def commits(monkeypatch):
    """How many times the database connection commits."""
    from django.db import connection

    counted = []
    real = connection.commit
    monkeypatch.setattr(connection, "commit", lambda: counted.append(1) or real())
    return counted


def test_a_burst_to_one_room_is_one_commit_and_a_change_of_room_starts_another(
    alice, general, alice_only, commits
):
    items = [("general", f"g {n}", f"g-{n}", None) for n in range(5)]
    items += [
        ("alice-only", "a 0", "a-0", None),
        ("alice-only", "a 1", "a-1", None),
        ("general", "g 5", "g-5", None),
    ]

    results = post_messages(alice, items)

    assert len(commits) == 3  # general ×5, alice-only ×2, general ×1: one commit each
    assert [r.message["body"] for r in results] == [body for _, body, _, _ in items]
    general_ids = [r.message["id"] for r in results if r.message["room"] == "general"]
    assert general_ids == sorted(general_ids)
    assert Message.objects.filter(room__slug="general").count() == 6


def test_a_refused_post_inside_a_run_takes_nothing_back_and_takes_no_seq(alice, bob, mallory, general):
    items = [
        ("general", "first", "c-1", None),
        ("general", "to a stranger", "c-2", [mallory.pk]),  # refused: not a member
        ("general", "x" * 4001, "c-3", None),  # refused: too long
        ("general", "second", "c-4", [bob.pk]),
    ]

    first, stranger, too_long, second = post_messages(alice, items)

    assert isinstance(stranger, InvalidMessage) and isinstance(too_long, InvalidMessage)
    stored = list(Message.objects.filter(room__slug="general").order_by("seq").values_list("body", "seq"))
    assert [body for body, _ in stored] == ["first", "second"]
    assert stored[1][1] == stored[0][1] + 1  # no seq was spent on the refused ones
    assert second.message["id"] > first.message["id"]


def test_a_database_failure_fails_its_run_and_everything_after_it(alice, general, alice_only, monkeypatch):
    from django.db import OperationalError

    from rooms import posting

    real = posting._post_to_one_room

    def failing_on_alice_only(user, items):
        if items[0][0] == "alice-only":
            raise OperationalError("the database went away")
        return real(user, items)

    monkeypatch.setattr(posting, "_post_to_one_room", failing_on_alice_only)
    items = [
        ("general", "kept", "k-1", None),
        ("alice-only", "lost", "l-1", None),
        ("general", "after", "l-2", None),
    ]

    kept, lost, after = post_messages(alice, items)

    assert kept.created and isinstance(lost, OperationalError) and isinstance(after, OperationalError)
    assert list(Message.objects.values_list("body", flat=True)) == ["kept"]
