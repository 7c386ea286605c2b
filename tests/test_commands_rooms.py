"""``create_room``, ``add_member``, ``remove_member``: managing who is in which room.

Choices tested here: adding an existing member succeeds and says nothing changed (exit 0);
removing someone who is not a member fails (exit 1), because a script that believes it
removed a user should hear that it did not.
"""

import io

import pytest
from channels.db import database_sync_to_async
from django.core.management import CommandError, call_command

from rooms.models import Membership, Room
from rooms.posting import post_message
from tests.comm import frames_until, hello
from tests.conftest import bearer
from tests.server import run_manage


def run(command, /, *args, **options) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def members(slug: str) -> set[str]:
    return set(Membership.objects.filter(room__slug=slug).values_list("user__username", flat=True))


# --- create_room -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_room_makes_a_room_with_its_members(alice, bob):
    out = run("create_room", "ops", "--name", "Operations", "--member", "alice", "--member", "bob")

    room = Room.objects.get(slug="ops")
    assert room.name == "Operations"
    assert members("ops") == {"alice", "bob"}
    assert out == "created room 'ops' (Operations) with 2 members\n"


@pytest.mark.django_db
def test_create_room_takes_several_members_after_one_flag(alice, bob):
    run("create_room", "ops", "--member", "alice", "bob", "alice")

    assert members("ops") == {"alice", "bob"}


@pytest.mark.django_db
def test_create_room_without_members_or_name_uses_the_slug_as_name(db):
    out = run("create_room", "empty")

    assert Room.objects.get(slug="empty").name == "empty"
    assert out == "created room 'empty' (empty) with 0 members\n"


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["Has Caps", "_leading-underscore", "x" * 65, "sp ace"])
def test_create_room_refuses_a_slug_the_model_does_not_allow(slug):
    with pytest.raises(CommandError, match=f"cannot create room {slug!r}"):
        run("create_room", slug)

    assert not Room.objects.exists()


@pytest.mark.django_db
def test_create_room_refuses_a_slug_in_use(general):
    with pytest.raises(CommandError, match="already exists"):
        run("create_room", "general", "--name", "Another")

    assert Room.objects.get(slug="general").name == "General"


@pytest.mark.django_db
def test_create_room_with_an_unknown_member_creates_nothing(alice):
    with pytest.raises(CommandError, match="no user named 'zed'; nothing was created"):
        run("create_room", "ops", "--member", "alice", "--member", "zed")

    assert not Room.objects.filter(slug="ops").exists()


# --- add_member --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_add_member_lets_the_user_in(general, mallory):
    out = run("add_member", "general", "mallory")

    assert members("general") == {"alice", "bob", "mallory"}
    assert out == "added 'mallory' to room 'general'\n"


@pytest.mark.django_db
def test_adding_an_existing_member_succeeds_and_says_nothing_changed(general):
    out = run("add_member", "general", "alice")

    assert out == "'alice' is already a member of room 'general'; nothing changed\n"
    assert Membership.objects.filter(room=general, user__username="alice").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("slug", "username", "error"),
    [("nowhere", "alice", "no room 'nowhere'"), ("general", "zed", "no user named 'zed'")],
)
def test_add_member_refuses_an_unknown_room_or_user(general, slug, username, error):
    with pytest.raises(CommandError, match=error):
        run("add_member", slug, username)

    assert members("general") == {"alice", "bob"}


# --- remove_member -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_remove_member_takes_the_user_out(general):
    out = run("remove_member", "general", "bob")

    assert members("general") == {"alice"}
    assert out.startswith("removed 'bob' from room 'general'\n")


@pytest.mark.django_db
def test_removing_a_non_member_fails(general, mallory):
    with pytest.raises(CommandError, match="'mallory' is not a member of room 'general'"):
        run("remove_member", "general", "mallory")

    assert members("general") == {"alice", "bob"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("slug", "username", "error"),
    [("nowhere", "bob", "no room 'nowhere'"), ("general", "zed", "no user named 'zed'")],
)
def test_remove_member_refuses_an_unknown_room_or_user(general, slug, username, error):
    with pytest.raises(CommandError, match=error):
        run("remove_member", slug, username)

    assert members("general") == {"alice", "bob"}


def test_the_real_commands_exit_codes_follow_those_choices(transactional_db, general, mallory):
    again = run_manage("add_member", "general", "alice")
    missing = run_manage("remove_member", "general", "mallory")

    assert (again.returncode, again.stdout) == (
        0,
        "'alice' is already a member of room 'general'; nothing changed\n",
    )
    assert missing.returncode == 1 and missing.stdout == ""
    assert "CommandError: 'mallory' is not a member of room 'general'" in missing.stderr


# --- live effect -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_remove_member_unsubscribes_the_users_live_socket_at_once(general, alice, bob):
    raw = await database_sync_to_async(bearer)(bob)
    communicator, _ = await hello(f"token={raw}")
    await communicator.send_json_to({"type": "subscribe", "room": "general"})
    await frames_until(communicator, "subscribed")

    await database_sync_to_async(run)("remove_member", "general", "bob")

    frame = await communicator.receive_json_from(timeout=1)
    assert frame == {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"}
    # From now on the room's messages no longer reach bob's socket.
    await database_sync_to_async(post_message)(alice, "general", "bob is gone", None, None)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_remove_member_leaves_other_members_subscribed(general, alice, bob):
    raw = await database_sync_to_async(bearer)(alice)
    communicator, _ = await hello(f"token={raw}")
    await communicator.send_json_to({"type": "subscribe", "room": "general"})
    await frames_until(communicator, "subscribed")

    await database_sync_to_async(run)("remove_member", "general", "bob")
    await database_sync_to_async(post_message)(alice, "general", "still here", None, None)

    frame = await communicator.receive_json_from(timeout=1)
    assert frame["type"] == "message" and frame["message"]["body"] == "still here"
    await communicator.disconnect()
