"""The operator acting on a person: the user page (tokens, keys, memberships, live sockets),
"Revoke all tokens" and "Deactivate" with confirmation, and what History records.
"""

from datetime import UTC, datetime

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from live import presence
from rooms.models import Membership
from tests.conftest import bearer
from tokens.exceptions import AuthenticationFailed
from tokens.login import issue_token
from tokens.models import NativeToken, SshKey
from tokens.verifier import verify_bearer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def registry():
    """A fresh in-process registry, as in the embedded default."""
    fresh = presence.InProcessRegistry()
    presence.use_registry(fresh)
    yield fresh
    presence.use_registry(None)


def live_socket(token: NativeToken, connection_id: str, ip="192.0.2.44"):
    opened = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    return presence.LiveSocket(connection_id, token.public_id, token.user_id, "ws-1:77", ip, opened)


def user_url(user) -> str:
    return reverse("admin:auth_user_change", args=[user.pk])


USERS = reverse("admin:auth_user_changelist")


def test_the_user_page_shows_tokens_keys_memberships_and_live_sockets(admin_client, general, alice, registry):
    laptop = issue_token(alice, device_name="laptop").token
    for _ in range(14):
        issue_token(alice, device_name="fleet")
    registry.opened(live_socket(laptop, "sock-1"))

    page = admin_client.get(user_url(alice)).content.decode()

    assert "Active tokens: 15" in page and "All tokens (active, expired, revoked): 15" in page
    assert page.count("· fleet ·") == 10  # ten shown, newest first (the laptop is older)
    assert f"?user__id__exact={alice.pk}&amp;status=active" in page
    assert "SSH keys: 1" in page and SshKey.objects.get(user=alice).fingerprint in page
    assert "Room memberships: 1" in page and ">general<" in page
    assert "Live sockets: 1" in page
    assert f"{laptop.public_id} · ws-1:77 · since 2026-03-04 05:06:07 UTC · client IP 192.0.2.44" in page
    assert 'value="Revoke all tokens"' in page and 'value="Deactivate"' in page


def test_revoke_all_tokens_asks_first_then_revokes_every_credential(
    admin_client, admin_user, alice, bob, registry
):
    raws = [bearer(alice), bearer(alice)]
    bobs = bearer(bob)
    registry.opened(live_socket(NativeToken.objects.filter(user=alice).first(), "s1"))
    form = {"action": "revoke_all_tokens", "_selected_action": [alice.pk]}

    confirm = admin_client.post(USERS, form).content.decode()
    assert "Revoke every credential of 1 user?" in confirm
    assert "2 active native tokens" in confirm and "1 live socket will be closed (4401)." in confirm
    assert verify_bearer(raws[0]).user == alice  # nothing happened yet

    done = admin_client.post(USERS, {**form, "confirmed": "yes", "reason": "laptop stolen"}, follow=True)

    assert "Revoked 2 native tokens of 1 user" in done.content.decode()
    # (Service tokens minted before now are tokens.revocation.revoke_user's job, tested there.)
    for raw in raws:
        with pytest.raises(AuthenticationFailed):
            verify_bearer(raw)
    assert verify_bearer(bobs).user == bob
    assert set(NativeToken.objects.filter(user=alice).values_list("revoked_reason", flat=True)) == {
        "laptop stolen"
    }
    entry = LogEntry.objects.get(object_id=str(alice.pk))
    assert (
        entry.user == admin_user and "Revoked all their tokens (laptop stolen)." in entry.get_change_message()
    )


def test_deactivate_asks_first_and_never_deactivates_the_operator(admin_client, admin_user, alice, bob):
    form = {"action": "deactivate", "_selected_action": [alice.pk, admin_user.pk]}

    confirm = admin_client.post(USERS, form).content.decode()
    assert "Deactivate 1 user?" in confirm and "your own account is left active" in confirm

    admin_client.post(USERS, {**form, "confirmed": "yes"})

    alice.refresh_from_db()
    admin_user.refresh_from_db()
    assert not alice.is_active and admin_user.is_active
    assert LogEntry.objects.get(object_id=str(alice.pk)).get_change_message() == "Deactivated."


def test_the_user_page_buttons_lead_to_the_confirmations(admin_client, alice):
    page = admin_client.get(user_url(alice)).content.decode()

    assert f'name="_selected_action" value="{alice.pk}"' in page
    assert 'name="action" value="revoke_all_tokens"' in page and 'name="action" value="deactivate"' in page


def test_a_viewer_sees_no_buttons_and_cannot_act(client, alice, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw-for-viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(viewer)
    raw = bearer(alice)

    page = client.get(user_url(alice)).content.decode()
    client.post(USERS, {"action": "revoke_all_tokens", "_selected_action": [alice.pk], "confirmed": "yes"})

    assert 'value="Revoke all tokens"' not in page
    assert verify_bearer(raw).user == alice


# --- History ------------------------------------------------------------------------------------


def test_a_revocation_by_action_is_in_each_tokens_history(admin_client, admin_user, alice):
    tokens = [issue_token(alice, device_name=f"d{i}").token for i in range(3)]

    admin_client.post(
        reverse("admin:tokens_nativetoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [t.pk for t in tokens], "confirmed": "yes"},
    )

    for token in tokens:
        entry = LogEntry.objects.get(object_id=str(token.pk))
        assert entry.user == admin_user and entry.get_change_message() == "Revoked (admin action)."
        assert entry.object_repr == f"{token.public_id} (alice)"
    history = admin_client.get(reverse("admin:tokens_nativetoken_history", args=[tokens[0].pk]))
    assert "Revoked (admin action)." in history.content.decode()


def test_a_mass_revocation_writes_a_bounded_history(admin_client, alice, bob):
    for user, count in ((alice, 120), (bob, 30)):
        NativeToken.objects.bulk_create(
            NativeToken(
                public_id=f"{user.username}{i:05d}",
                digest=f"{user.username}{i:059d}",
                user=user,
                expires_at=datetime(2099, 1, 1, tzinfo=UTC),
            )
            for i in range(count)
        )
    one = NativeToken.objects.filter(user=alice).first().pk

    admin_client.post(
        reverse("admin:tokens_nativetoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [one], "select_across": "1", "confirmed": "yes"},
    )

    assert NativeToken.objects.filter(revoked_at=None).count() == 0
    entries = {entry.object_repr: entry.get_change_message() for entry in LogEntry.objects.all()}
    assert entries == {
        "alice": "Revoked 120 of their native tokens (admin action).",
        "bob": "Revoked 30 of their native tokens (admin action).",
    }


def test_deny_list_additions_and_membership_changes_are_in_history(
    admin_client, admin_user, general, mallory
):
    from datetime import timedelta

    from django.utils import timezone

    soon = timezone.now() + timedelta(days=1)
    admin_client.post(
        reverse("admin:tokens_revokedtoken_add"),
        {
            "jti": "leakedJti",
            "expires_at_0": f"{soon:%Y-%m-%d}",
            "expires_at_1": f"{soon:%H:%M:%S}",
            "reason": "x",
        },
    )
    admin_client.post(reverse("admin:rooms_membership_add"), {"user": mallory.pk, "room": general.pk})
    membership = Membership.objects.get(user=mallory, room=general)
    admin_client.post(reverse("admin:rooms_membership_delete", args=[membership.pk]), {"post": "yes"})

    flags = sorted((entry.object_repr, entry.action_flag, entry.user_id) for entry in LogEntry.objects.all())
    assert flags == [
        ("leakedJti", 1, admin_user.pk),
        ("mallory in general", 1, admin_user.pk),
        ("mallory in general", 3, admin_user.pk),
    ]


# --- SSH keys ---------------------------------------------------------------------------------


def test_the_tokens_of_a_deleted_key_can_still_be_found(admin_client, alice):
    key = SshKey.objects.get(user=alice)
    minted = issue_token(alice, ssh_key=key, device_name="from-key").token
    issue_token(alice, device_name="other")

    admin_client.post(reverse("admin:tokens_sshkey_delete", args=[key.pk]), {"post": "yes"})

    minted.refresh_from_db()
    assert not SshKey.objects.filter(pk=key.pk).exists()
    assert minted.ssh_key is None and minted.ssh_key_fingerprint == key.fingerprint
    found = admin_client.get(
        reverse("admin:tokens_nativetoken_changelist"), {"q": key.fingerprint}
    ).content.decode()
    assert minted.public_id in found and "other" not in found
    page = admin_client.get(reverse("admin:tokens_nativetoken_change", args=[minted.pk])).content.decode()
    assert f"{key.fingerprint} (deleted)" in page


def test_a_key_page_links_to_the_tokens_it_minted(admin_client, alice):
    key = SshKey.objects.get(user=alice)
    minted = issue_token(alice, ssh_key=key).token
    issue_token(alice)

    page = admin_client.get(reverse("admin:tokens_sshkey_change", args=[key.pk])).content.decode()
    listed = admin_client.get(reverse("admin:tokens_nativetoken_changelist"), {"ssh_key__id__exact": key.pk})

    assert f"?ssh_key__id__exact={key.pk}" in page
    assert minted.public_id in listed.content.decode() and NativeToken.objects.count() == 2
    assert listed.content.decode().count('class="field-token_id"') == 1


# --- deleting a user ----------------------------------------------------------------------------


def test_the_user_delete_page_counts_what_goes_instead_of_listing_it(admin_client, general, alice):
    for _ in range(30):
        issue_token(alice)

    page = admin_client.get(reverse("admin:auth_user_delete", args=[alice.pk])).content.decode()

    assert "Native tokens: 30" in page and "Memberships: 1" in page and "SSH keys: 1" in page
    assert "Yes, I’m sure" in page
