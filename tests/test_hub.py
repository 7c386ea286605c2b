"""The per-process delivery hub (live.hub), in-process: one subscription per room per process,
each frame encoded once, visibility decided once, gaps read once, changes applied from the log.

The cast of tests/conftest.py: alice and bob in "general"; carol joins it here, so that a message
targeted at bob has someone to hide from; mallory belongs nowhere.
"""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

import live.delivery
import live.hub
from foundation import changelog as live_changes
from live.hub import current_hub
from native_api.schemas import frames
from rooms import room_events
from rooms.membership import add_member
from rooms.models import Room
from rooms.posting import post_message
from rooms.room_events import room_group
from tests.comm import closed_with, frames_until, hello
from tests.conftest import bearer
from tokens.models import NativeToken
from tokens.revocation import revoke_native_tokens

pytestmark = pytest.mark.django_db(transaction=True)

post = database_sync_to_async(post_message)


@pytest.fixture
def carol(db, django_user_model, general):
    user = django_user_model.objects.create_user(username="carol")
    add_member(general, user)
    return user


async def subscribed(user, room="general"):
    raw = await database_sync_to_async(bearer)(user)
    communicator, _ = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
    await communicator.send_json_to({"type": "subscribe", "room": room})
    await frames_until(communicator, "subscribed")
    return communicator


async def test_many_local_sockets_make_one_group_membership_per_room(alice, bob, general):
    sockets = [await subscribed(alice) for _ in range(3)] + [await subscribed(bob) for _ in range(3)]

    members = get_channel_layer().groups[room_group(general.pk)]

    assert list(members) == [current_hub().channel]  # the hub's channel, not one per socket
    for socket in sockets:
        await socket.disconnect()


async def test_a_message_is_encoded_once_for_all_its_recipients(alice, bob, general, monkeypatch):
    sockets = [await subscribed(alice), await subscribed(bob), await subscribed(bob)]
    encoded = []
    real_encode = frames.encode_message_frame
    monkeypatch.setattr(
        frames.EngineEncoder,
        "message",
        staticmethod(lambda message: encoded.append(message["id"]) or real_encode(message)),
    )

    posted = await post(alice, "general", "once")

    for socket in sockets:
        assert await socket.receive_json_from() == {"type": "message", "message": posted.message}
    assert encoded == [posted.message["id"]]
    for socket in sockets:
        await socket.disconnect()


async def test_a_targeted_message_reaches_only_its_sender_and_targets(alice, bob, carol, general):
    alices, bobs, carols = await subscribed(alice), await subscribed(bob), await subscribed(carol)

    secret = await post(alice, "general", "for bob", target_user_ids=[bob.pk])
    public = await post(alice, "general", "for all")

    assert (await alices.receive_json_from())["message"]["id"] == secret.message["id"]
    assert (await bobs.receive_json_from())["message"]["id"] == secret.message["id"]
    assert (await carols.receive_json_from())["message"]["id"] == public.message["id"]  # never the secret
    for socket in (alices, bobs, carols):
        await socket.disconnect()


async def test_a_lost_event_is_read_from_the_database_once_for_the_whole_process(
    alice, bob, general, monkeypatch
):
    sockets = [await subscribed(bob) for _ in range(4)]
    reads = []
    real_read = live.delivery.room_messages
    monkeypatch.setattr(live.delivery, "room_messages", lambda *a: reads.append(a) or real_read(*a))
    real_deliver, dropped = live.hub.deliver_locally, []

    def lose_the_first(event):
        if not dropped:
            dropped.append(event["seq"])
            return True  # "delivered": the in-memory layer is not tried either
        return real_deliver(event)

    monkeypatch.setattr(room_events, "_local_handler", lose_the_first)
    first = await post(alice, "general", "lost on the way")
    second = await post(alice, "general", "arrives and reveals the gap")

    for socket in sockets:
        got = [(await socket.receive_json_from())["message"]["id"] for _ in range(2)]
        assert got == [first.message["id"], second.message["id"]]
    assert len(reads) == 1
    for socket in sockets:
        await socket.disconnect()


async def test_the_last_message_whose_event_was_lost_arrives_within_two_seconds(
    alice, bob, general, monkeypatch
):
    socket = await subscribed(bob)
    monkeypatch.setattr(room_events, "_local_handler", lambda event: True)  # every event is lost
    posted = await post(alice, "general", "nothing follows me")

    # No later event reveals this gap: the poller's room-head check does.
    frame = await socket.receive_json_from(timeout=2.5)
    assert frame["message"]["id"] == posted.message["id"]
    await socket.disconnect()


async def test_a_revocation_whose_push_is_lost_is_applied_from_the_change_log(alice, monkeypatch):
    raw = await database_sync_to_async(bearer)(alice)
    communicator, _ = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
    monkeypatch.setattr(live_changes, "_push", lambda recorded: None)  # the push never happens

    await database_sync_to_async(revoke_native_tokens)(NativeToken.objects.filter(user=alice))

    assert await closed_with(communicator, timeout=2) == (4401, "revoked")


async def test_deleting_the_room_ends_every_local_subscription(alice, bob, general):
    sockets = [await subscribed(alice), await subscribed(bob)]

    await database_sync_to_async(Room.objects.filter(pk=general.pk).delete)()

    for socket in sockets:
        frame = await socket.receive_json_from(timeout=2)
        assert frame == {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"}
        await socket.disconnect()


async def test_a_socket_removed_then_re_added_is_not_unsubscribed_by_the_old_change(
    alice, bob, general, monkeypatch
):
    socket = await subscribed(bob)
    monkeypatch.setattr(live_changes, "_push", lambda recorded: None)  # only the poller applies it

    def remove_and_readd():
        # One transaction: by the time any process reads the change, bob is a member again.
        with transaction.atomic():
            general.memberships.get(user=bob).delete()
            add_member(general, bob)

    await database_sync_to_async(remove_and_readd)()
    await asyncio.sleep(1.2)  # the poller has read the change, and re-read the membership

    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    posted = await post(alice, "general", "still here")
    assert (await socket.receive_json_from())["message"]["id"] == posted.message["id"]
    await socket.disconnect()


async def test_a_room_whose_group_membership_was_lost_is_joined_again_when_its_feed_falls_behind(
    alice, bob, general, monkeypatch
):
    """A layer shard that restarted empty, or failed over before replicating, forgets this
    process's membership of a room's group without any error reaching this process (its own
    channel may live on another shard). The room-head check reads the lost message from the
    database, and the hub joins the group again, so the next message is live, not polled."""
    socket = await subscribed(bob)
    layer, hub, group = get_channel_layer(), current_hub(), room_group(general.pk)
    # Every event goes through the layer, as it does from another process.
    monkeypatch.setattr(room_events, "_local_handler", lambda event: False)
    await layer.group_discard(group, hub.channel)  # the membership is gone

    lost = await post(alice, "general", "sent to nobody")

    frame = await socket.receive_json_from(timeout=2.5)  # read from the database
    assert frame["message"]["id"] == lost.message["id"]
    await asyncio.sleep(0.1)  # the re-join runs beside the gap-fill
    assert hub.channel in layer.groups.get(group, {})
    live_one = await post(alice, "general", "through the layer again")
    started = asyncio.get_running_loop().time()
    assert (await socket.receive_json_from(timeout=2))["message"]["id"] == live_one.message["id"]
    assert asyncio.get_running_loop().time() - started < 0.5  # not the 1-2 s of the head check
    await socket.disconnect()
