"""Every admin list and change page of ours costs a fixed number of queries, whatever the rows.

Each page is loaded with a few rows and with many: an N+1 (a query per row, per member, per
token) would make the counts differ. The bounds are generous absolute caps on top of that.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from rooms.models import Membership, Message, Room
from tokens.models import NativeToken, RevokedToken, SshKey

pytestmark = pytest.mark.django_db
MAX_QUERIES = 15


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed(n: int) -> dict:
    """``n`` of everything: users with a token and a key each, memberships of one room, messages
    (every third one targeted at two users), deny-list entries."""
    User = get_user_model()  # noqa: N806
    tag = f"n{n}"
    users = User.objects.bulk_create(User(username=f"{tag}-user{i}") for i in range(n))
    expiry = timezone.now() + timedelta(days=1)
    tokens = NativeToken.objects.bulk_create(
        NativeToken(
            public_id=f"{tag}t{i}",
            digest=f"{tag}-d{i}-".ljust(64, "0"),
            user=u,
            device_name=f"dev{i}",
            expires_at=expiry,
        )
        for i, u in enumerate(users)
    )
    SshKey.objects.bulk_create(
        SshKey(user=u, key_type="ssh-ed25519", public_key=f"k{tag}{i}", fingerprint=f"SHA256:{tag}{i}")
        for i, u in enumerate(users)
    )
    room = Room.objects.create(slug=f"room-{tag}", name="Room")
    Membership.objects.bulk_create(Membership(room=room, user=u) for u in users)
    messages = Message.objects.bulk_create(
        Message(room=room, seq=i + 1, sender=users[i], body=f"m{i}", is_targeted=i % 3 == 0) for i in range(n)
    )
    room.last_seq = n
    room.save()
    for message in messages:
        if message.is_targeted:
            message.targets.add(users[0], users[-1])
    RevokedToken.objects.bulk_create(
        RevokedToken(jti=f"{tag}jti{i}", expires_at=expiry, revoked_by=users[i]) for i in range(n)
    )
    return {
        "user": users[-1],
        "token": tokens[-1],
        "key": SshKey.objects.filter(user=users[-1]).get(),
        "room": room,
        "membership": Membership.objects.filter(room=room).last(),
        "message": Message.objects.filter(room=room, is_targeted=True).last(),
        "revoked": RevokedToken.objects.filter(jti__startswith=tag).last(),
    }


PAGES = [
    ("tokens_nativetoken", "token"),
    ("tokens_revokedtoken", "revoked"),
    ("tokens_sshkey", "key"),
    ("rooms_room", "room"),
    ("rooms_membership", "membership"),
    ("rooms_message", "message"),
    ("auth_user", "user"),
]


def queries_for(client, path, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, params or {})
    assert response.status_code == 200, (path, response.status_code)
    return len(captured)


@pytest.mark.parametrize(("prefix", "key"), PAGES)
def test_list_and_change_pages_cost_the_same_with_few_and_many_rows(admin_client, prefix, key):
    few = seed(3)
    changelist = reverse(f"admin:{prefix}_changelist")
    admin_client.get(changelist)  # warm the content-type and session caches
    list_few = queries_for(admin_client, changelist)
    many = seed(60)
    list_many = queries_for(admin_client, changelist)
    admin_client.get(reverse(f"admin:{prefix}_change", args=[few[key].pk]))  # warm per-model caches
    change_few = queries_for(admin_client, reverse(f"admin:{prefix}_change", args=[few[key].pk]))
    change_many = queries_for(admin_client, reverse(f"admin:{prefix}_change", args=[many[key].pk]))
    # many[...]'s objects have 60 members, 60 tokens, 60 targets... few[...]'s have 3.
    assert list_few == list_many <= MAX_QUERIES
    assert change_few == change_many <= MAX_QUERIES


@pytest.mark.parametrize(
    ("prefix", "params"),
    [
        ("tokens_nativetoken", {"q": "n60-user1"}),
        ("tokens_nativetoken", {"q": "dev1"}),
        ("tokens_nativetoken", {"status": "active", "user": "n60-user5"}),
        ("tokens_revokedtoken", {"q": "n60jti"}),
        ("tokens_sshkey", {"q": "SHA256:n60"}),
        ("rooms_membership", {"room": "room-n60"}),
        ("rooms_message", {"q": "m1", "room": "room-n60"}),
        ("auth_user", {"q": "n60"}),
    ],
)
def test_searches_and_filters_cost_a_fixed_number_of_queries(admin_client, prefix, params):
    seed(60)

    assert queries_for(admin_client, reverse(f"admin:{prefix}_changelist"), params) <= MAX_QUERIES


def test_the_room_page_with_many_members_costs_what_a_small_one_costs(admin_client):
    few, many = seed(3), seed(200)

    admin_client.get(reverse("admin:rooms_room_change", args=[few["room"].pk]))  # warm caches
    small = queries_for(admin_client, reverse("admin:rooms_room_change", args=[few["room"].pk]))
    big = queries_for(admin_client, reverse("admin:rooms_room_change", args=[many["room"].pk]))

    assert small == big <= MAX_QUERIES


def test_the_user_page_with_many_tokens_costs_what_a_small_one_costs(admin_client):
    data = seed(3)
    heavy = data["user"]
    expiry = timezone.now() + timedelta(days=1)
    light = get_user_model().objects.create(username="light")
    NativeToken.objects.bulk_create(
        NativeToken(public_id=f"heavy{i}", digest=f"heavy-{i}-".ljust(64, "0"), user=heavy, expires_at=expiry)
        for i in range(200)
    )

    admin_client.get(reverse("admin:auth_user_change", args=[light.pk]))  # warm caches
    assert queries_for(admin_client, reverse("admin:auth_user_change", args=[light.pk])) == queries_for(
        admin_client, reverse("admin:auth_user_change", args=[heavy.pk])
    )


def test_the_revoke_confirmation_costs_a_fixed_number_of_queries(admin_client):
    seed(3)
    seed(60)
    changelist = reverse("admin:tokens_nativetoken_changelist")
    one = NativeToken.objects.first().pk

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.post(
            changelist, {"action": "revoke_selected", "_selected_action": [one], "select_across": "1"}
        )

    assert response.status_code == 200 and "Revoke 63 tokens?" in response.content.decode()
    assert len(captured) <= MAX_QUERIES
