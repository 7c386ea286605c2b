"""Randomized visibility: random users, rooms, memberships and targeted messages.

For each seed, every user's REST history, last_message_id, room list and live websocket stream
must equal exactly what the rule allows, computed here independently of rooms.visibility:
a member sees a message when it is untargeted, or they sent it, or they are a target.
"""

import random

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from rooms.membership import add_member, create_room
from rooms.posting import post_message
from tests.comm import frames_until, hello
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)


def build_world(rng: random.Random):
    users = [get_user_model().objects.create_user(username=f"u{i}") for i in range(5)]
    rooms, members = [], {}
    for r in range(3):
        room = create_room(f"room-{r}")
        chosen = [u for u in users if rng.random() < 0.6] or [rng.choice(users)]
        for user in chosen:
            add_member(room, user)
        rooms.append(room)
        members[room.slug] = {u.pk for u in chosen}
    return users, rooms, members


def random_messages(rng, users, rooms, members, count):
    by_pk = {u.pk: u for u in users}
    sent = []
    for _ in range(count):
        room = rng.choice(rooms)
        sender = by_pk[rng.choice(sorted(members[room.slug]))]
        targets = []
        if rng.random() < 0.5:
            targets = rng.sample(sorted(members[room.slug]), k=rng.randint(1, len(members[room.slug])))
        message = post_message(sender, room.slug, f"m{len(sent)}", target_user_ids=targets or None).message
        sent.append(message)
    return sent


def expected_for(user_pk, slug, members, messages):
    if user_pk not in members[slug]:
        return None
    return [
        m["id"]
        for m in messages
        if m["room"] == slug
        and (not m["target_user_ids"] or m["sender"]["id"] == user_pk or user_pk in m["target_user_ids"])
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_history_rooms_and_last_message_id_follow_the_rule(client, seed):
    rng = random.Random(seed)
    users, rooms, members = build_world(rng)
    messages = random_messages(rng, users, rooms, members, 60)
    for user in users:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {bearer(user)}"}
        listed = {
            r["slug"]: r["last_message_id"]
            for r in client.get("/api/native/rooms", **headers).json()["rooms"]
        }
        for room in rooms:
            expected = expected_for(user.pk, room.slug, members, messages)
            response = client.get(f"/api/native/rooms/{room.slug}/history?limit=200", **headers)
            if expected is None:
                assert response.status_code == 403 and room.slug not in listed
                continue
            assert [m["id"] for m in response.json()["messages"]] == expected
            assert listed[room.slug] == (expected[-1] if expected else None)


@pytest.mark.parametrize("seed", [4, 5])
async def test_live_streams_and_resume_backlogs_follow_the_rule(seed):
    rng = random.Random(seed)
    users, rooms, members = await database_sync_to_async(build_world)(rng)
    before = await database_sync_to_async(random_messages)(rng, users, rooms, members, 20)
    sockets, backlogs = {}, {}
    for user in users:
        raw = await database_sync_to_async(bearer)(user)
        socket, _ = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
        sockets[user.pk] = socket
        for room in rooms:
            await socket.send_json_to({"type": "subscribe", "room": room.slug, "after": 0})
            frames = await frames_until(socket, "subscribed") if user.pk in members[room.slug] else None
            if frames is None:
                error = await socket.receive_json_from()
                assert error["code"] == "forbidden"
                continue
            backlogs[(user.pk, room.slug)] = [f["message"]["id"] for f in frames[:-1]]
            expected = expected_for(user.pk, room.slug, members, before)
            assert backlogs[(user.pk, room.slug)] == expected
            assert frames[-1]["last_message_id"] == (expected[-1] if expected else None)
    live = await database_sync_to_async(random_messages)(rng, users, rooms, members, 40)
    for user in users:
        wanted = sorted(i for room in rooms for i in (expected_for(user.pk, room.slug, members, live) or []))
        got = []
        for _ in wanted:
            got.append((await sockets[user.pk].receive_json_from(timeout=5))["message"]["id"])
        assert sorted(got) == wanted
        assert await sockets[user.pk].receive_nothing(timeout=0.1)
        await sockets[user.pk].disconnect()
