"""The floor under room events (live/poller.py's room heads, live.delivery.on_room_heads): a
message whose event never reached this process (a lost pub/sub message, a layer that dropped
it) still reaches its subscribers, read from the database once the poller has seen the room's
head ahead of the feed twice, and only once."""

import pytest
from channels.db import database_sync_to_async

from rooms.models import Message, Room
from tests.comm import frames_until, hello
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)


def post_without_an_event(room: Room, sender, body: str) -> Message:
    """What posting writes, with no event sent: as if the layer had lost it."""
    room.refresh_from_db()
    room.last_seq += 1
    room.save(update_fields=["last_seq"])
    return Message.objects.create(room=room, seq=room.last_seq, sender=sender, body=body)


async def test_a_message_whose_event_was_lost_arrives_from_the_room_heads_once(alice, bob, general):
    raw = await database_sync_to_async(bearer)(bob)
    socket, _ = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
    await socket.send_json_to({"type": "subscribe", "room": "general"})
    await frames_until(socket, "subscribed")

    lost = await database_sync_to_async(post_without_an_event)(general, alice, "its event was lost")

    (frame,) = await frames_until(socket, "message", timeout=10)  # two checks a second apart
    assert frame["message"]["id"] == lost.id and frame["message"]["body"] == "its event was lost"
    assert await socket.receive_nothing(timeout=2.5)  # and not again at the next checks
    await socket.disconnect()
