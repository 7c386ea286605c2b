"""Websocket rooms: subscribe, live delivery, targeted messages, resume, membership, bad frames."""

import pytest
from channels.db import database_sync_to_async

from rooms.membership import add_member, remove_member
from rooms.posting import post_message
from tests.comm import closed_with, frames_until, hello
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def carol(db, django_user_model, general):
    """A third member of general, so that a message targeted at bob has someone to hide from."""
    user = django_user_model.objects.create_user(username="carol")
    add_member(general, user)
    return user


async def connect(user):
    raw = await database_sync_to_async(bearer)(user)
    communicator, _ = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
    return communicator


async def subscribe(communicator, room, after=None, ref=None) -> list[dict]:
    frame = {"type": "subscribe", "room": room}
    if after is not None:
        frame["after"] = after
    if ref is not None:
        frame["ref"] = ref
    await communicator.send_json_to(frame)
    return await frames_until(communicator, "subscribed")


post = database_sync_to_async(post_message)


async def test_ping_answers_pong_with_the_ref(alice):
    socket = await connect(alice)
    await socket.send_json_to({"type": "ping", "ref": "r1"})
    assert await socket.receive_json_from() == {"type": "pong", "ref": "r1"}
    await socket.disconnect()


async def test_a_member_subscribes_and_receives_live_messages(alice, bob, general):
    socket = await connect(bob)
    frames = await subscribe(socket, "general", ref="s")
    assert frames == [{"type": "subscribed", "room": "general", "last_message_id": None, "ref": "s"}]
    posted = await post(alice, "general", "hello")
    frame = await socket.receive_json_from()
    assert frame == {"type": "message", "message": posted.message}
    await socket.disconnect()


async def test_a_non_member_and_an_unknown_room_get_the_same_forbidden(mallory, general):
    socket = await connect(mallory)
    for room in ["general", "no-such-room"]:
        await socket.send_json_to({"type": "subscribe", "room": room, "ref": "x"})
        frame = await socket.receive_json_from()
        assert frame["type"] == "error" and frame["code"] == "forbidden"
        assert frame["room"] == room and frame["ref"] == "x"
    await socket.disconnect()


async def test_a_non_member_cannot_send(mallory, general):
    socket = await connect(mallory)
    await socket.send_json_to({"type": "send", "room": "general", "body": "let me in"})
    frame = await socket.receive_json_from()
    assert (frame["type"], frame["code"]) == ("error", "forbidden")
    await socket.disconnect()


async def test_a_targeted_message_reaches_only_its_sender_and_target(alice, bob, carol, general):
    sockets = {user.username: await connect(user) for user in (alice, bob, carol)}
    for socket in sockets.values():
        await subscribe(socket, "general")
    secret = await post(alice, "general", "for bob only", target_user_ids=[bob.pk])
    public = await post(alice, "general", "for everyone")
    for name in ("alice", "bob"):
        first = await sockets[name].receive_json_from()
        assert first["message"]["id"] == secret.message["id"]
        assert first["message"]["target_user_ids"] == [bob.pk]
    for name, socket in sockets.items():
        frame = await socket.receive_json_from()
        assert frame["message"]["id"] == public.message["id"], name
        assert await socket.receive_nothing(timeout=0.1)
        await socket.disconnect()


async def test_send_acks_with_the_id_and_a_client_id_retry_gets_the_same_id(alice, general):
    socket = await connect(alice)
    frame = {"type": "send", "room": "general", "body": "once", "client_id": "c-1", "ref": "a"}
    await socket.send_json_to(frame)
    ack = await socket.receive_json_from()
    assert ack["type"] == "ack" and ack["client_id"] == "c-1" and ack["ref"] == "a"
    await socket.send_json_to(frame)
    again = await socket.receive_json_from()
    assert again["id"] == ack["id"]
    history = await database_sync_to_async(lambda: list(general.messages.values_list("id", flat=True)))()
    assert history == [ack["id"]]
    await socket.disconnect()


async def test_subscribe_with_after_sends_exactly_the_missed_messages_then_subscribed(alice, bob, general):
    seen = await post(alice, "general", "seen before the disconnect")
    missed = [await post(alice, "general", f"missed {i}") for i in range(3)]
    hidden = await post(alice, "general", "not for bob", target_user_ids=[alice.pk])
    socket = await connect(bob)
    frames = await subscribe(socket, "general", after=seen.message["id"])
    assert [f["message"]["id"] for f in frames[:-1]] == [m.message["id"] for m in missed]
    assert frames[-1] == {
        "type": "subscribed",
        "room": "general",
        "last_message_id": missed[-1].message["id"],
    }
    assert hidden.message["id"] > frames[-1]["last_message_id"]
    live = await post(alice, "general", "live")
    assert (await socket.receive_json_from())["message"]["id"] == live.message["id"]
    await socket.disconnect()


async def test_events_that_arrive_out_of_order_are_delivered_in_order_without_duplicates(alice, bob, general):
    """A fan-out event from another process can overtake an earlier one; seq fills the gap."""
    import live.hub
    from rooms import room_events

    socket = await connect(bob)
    await subscribe(socket, "general")
    held = []
    original = room_events._local_handler
    room_events.set_local_handler(lambda event: held.append(event) or True)
    try:
        first = await post(alice, "general", "first")
        second = await post(alice, "general", "second")
    finally:
        room_events.set_local_handler(original)
    assert [event["seq"] for event in held] == [1, 2]
    hub = live.hub.current_hub()
    hub.on_room_message(held[1])  # the later message arrives first
    hub.on_room_message(held[0])  # then the earlier one, late: a duplicate by now
    ids = [(await socket.receive_json_from())["message"]["id"] for _ in range(2)]
    assert ids == [first.message["id"], second.message["id"]]
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_unsubscribe_stops_delivery(alice, bob, general):
    socket = await connect(bob)
    await subscribe(socket, "general")
    await socket.send_json_to({"type": "unsubscribe", "room": "general", "ref": "u"})
    assert await socket.receive_json_from() == {
        "type": "unsubscribed",
        "room": "general",
        "reason": "client",
        "ref": "u",
    }
    await post(alice, "general", "after unsubscribe")
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_removal_from_the_room_unsubscribes_the_live_socket_at_once(alice, bob, general):
    socket = await connect(bob)
    await subscribe(socket, "general")
    await database_sync_to_async(remove_member)(general, bob)
    frame = await socket.receive_json_from(timeout=1)
    assert frame == {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"}
    await post(alice, "general", "bob must not see this")
    assert await socket.receive_nothing(timeout=0.2)
    await socket.send_json_to({"type": "subscribe", "room": "general"})
    assert (await socket.receive_json_from())["code"] == "forbidden"
    await socket.disconnect()


async def test_a_new_member_can_subscribe_without_reconnecting(mallory, general):
    socket = await connect(mallory)
    await socket.send_json_to({"type": "subscribe", "room": "general"})
    assert (await socket.receive_json_from())["code"] == "forbidden"
    await database_sync_to_async(add_member)(general, mallory)
    frames = await subscribe(socket, "general")
    assert frames[-1]["type"] == "subscribed"
    await socket.disconnect()


@pytest.mark.parametrize(
    "frame, detail_fragment",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": 5}', "JSON object"),
        ('{"type": "dance"}', "Unknown frame type"),
        ('{"type": "subscribe", "room": 7}', "room"),
        ('{"type": "subscribe", "room": "general", "after": "x"}', "after"),
        ('{"type": "subscribe", "room": "general", "after": -1}', "after"),
        ('{"type": "send", "room": "general", "body": ""}', "body"),
        ('{"type": "send", "room": "general", "body": 5}', "body"),
        ('{"type": "send", "room": "general", "body": "' + "x" * 4001 + '"}', "body"),
        ('{"type": "send", "room": "general", "body": "x", "client_id": 5}', "client_id"),
        ('{"type": "send", "room": "general", "body": "x", "target_user_ids": "all"}', "target_user_ids"),
        ('{"type": "ping", "ref": 5}', "ref"),
    ],
)
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_usable(
    alice, general, frame, detail_fragment
):
    socket = await connect(alice)
    await socket.send_to(text_data=frame)
    error = await socket.receive_json_from()
    assert error["type"] == "error" and error["code"] == "invalid_request"
    assert detail_fragment in error["detail"]
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    await socket.disconnect()


async def test_a_binary_frame_gets_an_error_frame(alice):
    socket = await connect(alice)
    await socket.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive_json_from())["code"] == "invalid_request"
    await socket.disconnect()


async def test_repeated_bad_frames_close_the_socket_with_4400(alice, settings):
    settings.NATIVE_WS_MAX_BAD_FRAMES = 3
    socket = await connect(alice)
    for _ in range(3):
        await socket.send_to(text_data="junk")
    assert await closed_with(socket) == (4400, "protocol_violation")


async def test_a_frame_over_64_kib_closes_with_1009(alice):
    socket = await connect(alice)
    await socket.send_to(text_data="x" * (64 * 1024 + 1))
    assert await closed_with(socket) == (1009, "too_big")


async def test_the_number_of_rooms_per_connection_is_capped(alice, general, alice_only, settings):
    settings.NATIVE_WS_MAX_ROOMS = 1
    socket = await connect(alice)
    await subscribe(socket, "general")
    await socket.send_json_to({"type": "subscribe", "room": "alice-only"})
    error = await socket.receive_json_from()
    assert error["code"] == "invalid_request" and "At most 1 rooms" in error["detail"]
    await socket.disconnect()


async def test_an_unknown_path_is_refused(db):
    from channels.testing import WebsocketCommunicator

    from native_api.routing import websocket_application

    communicator = WebsocketCommunicator(websocket_application(), "/api/ws/other")
    connected, _ = await communicator.connect()
    assert not connected
