"""Staff roles in admin (issue 20), one finding or rule per test, each through a real password
login: a staff member changes exactly what their permissions grant, on every path a form or an
action offers; no lookup reaches a stored digest or hash, whatever the permissions; the three
groups of API.md exist. tests/test_admin_matrix.py walks every page for every role; these are
the readable cases.

The cast: alice and bob are API users (not staff) in "general"; mallory is in no room. Each
staff member below is made for the test, with a password, holding only what its name says.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core import checks
from django.urls import reverse
from django.utils import timezone

from rooms.models import Membership
from tests.conftest import bearer
from tokens.exceptions import AuthenticationFailed
from tokens.models import NativeToken, RevokedToken
from tokens.verifier import verify_bearer

pytestmark = pytest.mark.django_db
PASSWORD = "a-staff-password"
TOKENS = reverse("admin:tokens_nativetoken_changelist")
USERS = reverse("admin:auth_user_changelist")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def perm(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def staff(client, username: str, *perms: str, groups=(), superuser=False):
    """A staff account holding exactly ``perms`` (and ``groups``), logged in with its password."""
    user = get_user_model().objects.create_user(
        username, password=PASSWORD, is_staff=True, is_superuser=superuser
    )
    user.user_permissions.set([perm(name) for name in perms])
    user.groups.set(Group.objects.filter(name__in=groups))
    assert client.login(username=username, password=PASSWORD)
    return user


def token_of(raw: str) -> NativeToken:
    return NativeToken.objects.get(public_id=verify_bearer(raw).id)


# --- finding 1: a room editor granting memberships ---------------------------------------------


def test_a_room_editor_without_add_membership_cannot_add_members_through_the_room_form(
    client, general, mallory
):
    staff(client, "editor", "rooms.change_room", "rooms.view_room")
    page = client.get(reverse("admin:rooms_room_change", args=[general.pk])).content.decode()

    response = client.post(
        reverse("admin:rooms_room_change", args=[general.pk]),
        {"name": "Renamed", "add_members": [mallory.pk]},
    )

    assert 'name="add_members"' not in page
    assert client.get(reverse("admin:rooms_membership_add")).status_code == 403
    assert response.status_code == 302  # the rename itself is granted
    general.refresh_from_db()
    assert general.name == "Renamed"
    assert not Membership.objects.filter(room=general, user=mallory).exists()


def test_a_room_creator_without_add_membership_creates_the_room_without_members(client, alice):
    staff(client, "creator", "rooms.add_room", "rooms.view_room")

    client.post(reverse("admin:rooms_room_add"), {"slug": "ops", "name": "Ops", "add_members": [alice.pk]})

    assert not Membership.objects.filter(room__slug="ops").exists()


def test_a_room_editor_with_add_membership_adds_members_on_the_room_page(client, general, mallory):
    staff(client, "manager", "rooms.change_room", "rooms.view_room", "rooms.add_membership")

    page = client.get(reverse("admin:rooms_room_change", args=[general.pk])).content.decode()
    client.post(
        reverse("admin:rooms_room_change", args=[general.pk]),
        {"name": general.name, "add_members": [mallory.pk]},
    )

    assert 'name="add_members"' in page
    assert Membership.objects.filter(room=general, user=mallory).exists()


# --- finding 2: the token digest, one hex digit at a time --------------------------------------


@pytest.mark.parametrize("superuser", [False, True], ids=["token viewer", "superuser"])
def test_no_lookup_on_the_token_list_reaches_the_digest(client, alice, superuser):
    raw = bearer(alice)
    digest = token_of(raw).digest
    staff(client, "viewer", "tokens.view_nativetoken", superuser=superuser)

    for query in [
        {"digest__startswith": digest[0]},
        {"digest__startswith": digest[:10]},
        {"digest": digest},
        {"digest__exact": digest},
        {"digest__gt": "0"},
        {"digest__regex": "^[0-7]"},
        {"_to_field": "digest", "_popup": "1"},
    ]:
        response = client.get(TOKENS, query)
        assert response.status_code == 400, (query, response.status_code)
        assert token_of(raw).public_id not in response.content.decode()


@pytest.mark.parametrize(
    ("changelist", "lookup"),
    [
        ("admin:auth_user_changelist", "native_tokens__digest__startswith"),
        ("admin:auth_user_changelist", "password__startswith"),
        ("admin:tokens_sshkey_changelist", "user__native_tokens__digest__startswith"),
        ("admin:tokens_sshkey_changelist", "nativetoken__digest__startswith"),
        ("admin:rooms_membership_changelist", "user__password__startswith"),
        ("admin:rooms_room_changelist", "memberships__user__native_tokens__digest"),
    ],
)
def test_no_lookup_through_a_relation_reaches_a_digest_or_a_password(client, alice, changelist, lookup):
    bearer(alice)
    staff(client, "root", superuser=True)

    assert client.get(reverse(changelist), {lookup: "a"}).status_code == 400


def test_the_user_page_shows_no_part_of_the_password_hash(client, alice):
    alice.set_password("alices-admin-password")
    alice.save()
    algorithm, *parts = alice.password.split("$")
    staff(client, "root", superuser=True)

    page = client.get(reverse("admin:auth_user_change", args=[alice.pk])).content.decode()

    assert algorithm in page  # which hasher is still said
    for part in parts:
        assert part[:6] not in page  # Django's widget showed six characters of salt and hash


def test_an_admin_that_searches_or_sorts_by_a_digest_fails_the_system_checks():
    from django.contrib import admin

    from tokens.models import LoginNonce

    class LeakyAdmin(admin.ModelAdmin):
        search_fields = ["digest"]
        list_display = ["id", "digest"]
        list_filter = ["expires_at"]

    site = admin.AdminSite(name="leaky")
    site.register(LoginNonce, LeakyAdmin)
    from tokens.checks import check_admin_secrets

    found = check_admin_secrets(None, site=site)

    assert {problem.id for problem in found} == {"tokens.E002", "tokens.E003"}
    assert any("search_fields" in problem.msg for problem in found)
    assert any("list_display" in problem.msg for problem in found)
    assert not [p for p in checks.run_checks() if p.id in {"tokens.E002", "tokens.E003"}]


# --- revoking tokens needs tokens.revoke_nativetoken -------------------------------------------


def revoke(client, token: NativeToken):
    return client.post(
        TOKENS, {"action": "revoke_selected", "_selected_action": [token.pk], "confirmed": "yes"}
    )


def test_change_nativetoken_alone_does_not_revoke(client, alice):
    raw = bearer(alice)
    staff(client, "changer", "tokens.view_nativetoken", "tokens.change_nativetoken")

    page = client.get(reverse("admin:tokens_nativetoken_change", args=[token_of(raw).pk])).content.decode()
    revoke(client, token_of(raw))

    assert "Revoke this token" not in page
    assert verify_bearer(raw).user == alice


def test_revoke_nativetoken_revokes_from_the_list_and_from_the_token_page(client, alice):
    raws = [bearer(alice), bearer(alice)]
    staff(client, "revoker", "tokens.view_nativetoken", "tokens.revoke_nativetoken")

    page = client.get(reverse("admin:tokens_nativetoken_change", args=[token_of(raws[0]).pk]))
    revoke(client, token_of(raws[0]))

    assert "Revoke this token" in page.content.decode()
    with pytest.raises(AuthenticationFailed):
        verify_bearer(raws[0])
    assert verify_bearer(raws[1]).user == alice


def test_deny_listing_needs_add_revokedtoken(client):
    staff(client, "viewer", "tokens.view_revokedtoken", "tokens.change_revokedtoken")
    soon = timezone.now() + timedelta(days=1)
    form = {"jti": "leaked", "expires_at_0": f"{soon:%Y-%m-%d}", "expires_at_1": f"{soon:%H:%M:%S}"}

    assert client.post(reverse("admin:tokens_revokedtoken_add"), form).status_code == 403
    assert not RevokedToken.objects.exists()


# --- the user page: revoke all, deactivate, and what it shows ----------------------------------


def user_action(client, action: str, user):
    return client.post(USERS, {"action": action, "_selected_action": [user.pk], "confirmed": "yes"})


def test_revoke_all_needs_revoke_nativetoken_not_change_user(client, alice):
    raw = bearer(alice)
    staff(client, "editor", "auth.view_user", "auth.change_user")

    page = client.get(reverse("admin:auth_user_change", args=[alice.pk])).content.decode()
    user_action(client, "revoke_all_tokens", alice)

    assert 'value="Revoke all tokens"' not in page and 'value="Deactivate"' in page
    assert verify_bearer(raw).user == alice


def test_revoke_all_with_revoke_nativetoken_and_view_user(client, alice):
    raw = bearer(alice)
    staff(client, "revoker", "auth.view_user", "tokens.revoke_nativetoken")

    page = client.get(reverse("admin:auth_user_change", args=[alice.pk])).content.decode()
    user_action(client, "revoke_all_tokens", alice)
    user_action(client, "deactivate", alice)

    assert 'value="Revoke all tokens"' in page and 'value="Deactivate"' not in page
    with pytest.raises(AuthenticationFailed):
        verify_bearer(raw)
    alice.refresh_from_db()
    assert alice.is_active  # deactivating needs auth.change_user


def test_a_user_viewer_sees_no_tokens_keys_memberships_or_sockets_without_their_permissions(
    client, general, alice
):
    raw = bearer(alice, device_name="laptop")
    staff(client, "viewer", "auth.view_user")

    page = client.get(reverse("admin:auth_user_change", args=[alice.pk])).content.decode()

    assert "alice" in page
    assert token_of(raw).public_id not in page and "laptop" not in page
    assert "SHA256:" not in page and ">general<" not in page
    assert "Active tokens" not in page and "Live sockets" not in page


def test_a_user_viewer_with_token_view_sees_the_tokens_section_only(client, general, alice):
    raw = bearer(alice, device_name="laptop")
    staff(client, "viewer", "auth.view_user", "tokens.view_nativetoken")

    page = client.get(reverse("admin:auth_user_change", args=[alice.pk])).content.decode()

    assert token_of(raw).public_id in page and "Active tokens: 1" in page
    assert "SHA256:" not in page and ">general<" not in page


@pytest.fixture
def peer(django_user_model):
    """Another staff member, with a permission of their own."""
    user = django_user_model.objects.create_user("peer", password="peer-password", is_staff=True)
    user.user_permissions.add(perm("rooms.view_room"))
    return user


def test_change_user_cannot_make_anyone_superuser_or_grant_permissions(client, alice):
    me = staff(client, "editor", "auth.view_user", "auth.change_user")
    viewers = Group.objects.get(name="native-viewers")

    for target in (alice, me):
        client.post(
            reverse("admin:auth_user_change", args=[target.pk]),
            {
                "username": target.username,
                "is_active": "on",
                "is_staff": "on",
                "is_superuser": "on",
                "groups": [viewers.pk],
                "user_permissions": [perm("tokens.revoke_nativetoken").pk],
                "date_joined_0": f"{target.date_joined:%Y-%m-%d}",
                "date_joined_1": f"{target.date_joined:%H:%M:%S}",
            },
        )
        target.refresh_from_db()
        assert not target.is_superuser
        assert not target.groups.exists()
        assert not target.has_perm("tokens.revoke_nativetoken")
    alice.refresh_from_db()
    assert not alice.is_staff


def test_change_user_cannot_change_deactivate_or_reset_the_password_of_a_staff_account(client, peer):
    staff(client, "editor", "auth.view_user", "auth.change_user")
    before = peer.password

    page = client.get(reverse("admin:auth_user_change", args=[peer.pk])).content.decode()
    user_action(client, "deactivate", peer)
    reset = client.post(
        reverse("admin:auth_user_password_change", args=[peer.pk]),
        {"password1": "taken-over-1", "password2": "taken-over-1", "usable_password": "true"},
    )
    edit = client.post(reverse("admin:auth_user_change", args=[peer.pk]), {"username": "renamed"})

    assert 'name="username"' not in page  # read-only
    assert reset.status_code == 403 and edit.status_code == 403
    peer.refresh_from_db()
    assert peer.is_active and peer.password == before and peer.username == "peer"


def test_change_user_deactivates_an_api_user(client, alice):
    staff(client, "editor", "auth.view_user", "auth.change_user")

    user_action(client, "deactivate", alice)

    alice.refresh_from_db()
    assert not alice.is_active


def test_change_group_cannot_grant_permissions(client):
    staff(client, "grouper", "auth.view_group", "auth.change_group", "auth.add_group")
    group = Group.objects.create(name="mine")

    client.post(
        reverse("admin:auth_group_change", args=[group.pk]),
        {"name": "mine", "permissions": [perm("tokens.revoke_nativetoken").pk]},
    )
    client.post(
        reverse("admin:auth_group_add"), {"name": "new", "permissions": [perm("auth.change_user").pk]}
    )

    assert not group.permissions.exists()
    assert not Permission.objects.filter(group__name="new").exists()


# --- the groups of API.md ----------------------------------------------------------------------

VIEW_EVERYTHING = {
    "tokens.view_nativetoken",
    "tokens.view_revokedtoken",
    "tokens.view_sshkey",
    "tokens.view_certificateauthority",
    "tokens.view_sshcertificate",
    "tokens.view_revocationlist",
    "rooms.view_room",
    "rooms.view_membership",
    "rooms.view_message",
    "auth.view_user",
}
GROUPS = {
    "native-viewers": VIEW_EVERYTHING,
    "native-revokers": VIEW_EVERYTHING
    | {"tokens.revoke_nativetoken", "tokens.add_revokedtoken", "auth.change_user"},
    "native-room-managers": VIEW_EVERYTHING
    | {
        "rooms.add_room",
        "rooms.change_room",
        "rooms.delete_room",
        "rooms.add_membership",
        "rooms.change_membership",
        "rooms.delete_membership",
    },
}


def permissions_of(group: Group) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


def test_the_migration_made_the_three_groups_with_exactly_their_permissions():
    # The test database is built by one `migrate` run, in which post_migrate (which normally
    # creates permissions) comes after every migration: the data migration made its own.
    assert {name: permissions_of(Group.objects.get(name=name)) for name in GROUPS} == GROUPS


def test_the_migration_is_reversible_and_recreates_missing_permissions():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    migration, forward, backward = staff_groups_migration()
    state = MigrationExecutor(connection).loader.project_state((migration.app_label, migration.name))
    Permission.objects.filter(codename__in=["revoke_nativetoken", "view_message"]).delete()

    backward(state.apps, None)
    assert not Group.objects.filter(name__in=GROUPS).exists()
    forward(state.apps, None)
    assert {name: permissions_of(Group.objects.get(name=name)) for name in GROUPS} == GROUPS


def staff_groups_migration():
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connection)
    [(key, migration)] = [
        (key, m)
        for key, m in loader.disk_migrations.items()
        if key[0] == "tokens" and "staff_groups" in key[1]
    ]
    [operation] = [op for op in migration.operations if hasattr(op, "reverse_code")]
    return migration, operation.code, operation.reverse_code


def test_a_revoker_revokes_deny_lists_and_deactivates_but_edits_no_room(client, general, alice, bob):
    raw = bearer(alice)
    staff(client, "oncall", groups=["native-revokers"])
    soon = timezone.now() + timedelta(days=1)

    revoke(client, token_of(raw))
    client.post(
        reverse("admin:tokens_revokedtoken_add"),
        {"jti": "leaked", "expires_at_0": f"{soon:%Y-%m-%d}", "expires_at_1": f"{soon:%H:%M:%S}"},
    )
    user_action(client, "deactivate", bob)
    renamed = client.post(reverse("admin:rooms_room_change", args=[general.pk]), {"name": "x"})

    with pytest.raises(AuthenticationFailed):
        verify_bearer(raw)
    assert RevokedToken.objects.filter(jti="leaked").exists()
    bob.refresh_from_db()
    assert not bob.is_active
    assert renamed.status_code == 403


def test_a_room_manager_manages_rooms_and_members_but_revokes_nothing(client, general, alice, mallory):
    raw = bearer(alice)
    staff(client, "rooms", groups=["native-room-managers"])
    membership = Membership.objects.get(room=general, user__username="bob")

    client.post(reverse("admin:rooms_room_add"), {"slug": "ops", "name": "Ops", "add_members": [mallory.pk]})
    client.post(reverse("admin:rooms_membership_delete", args=[membership.pk]), {"post": "yes"})
    revoke(client, token_of(raw))

    assert Membership.objects.filter(room__slug="ops", user=mallory).exists()
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert verify_bearer(raw).user == alice


def test_a_viewer_sees_every_list_and_changes_nothing(client, general, alice):
    raw = bearer(alice)
    staff(client, "auditor", groups=["native-viewers"])

    for name in [
        "tokens_nativetoken",
        "tokens_revokedtoken",
        "tokens_sshkey",
        "rooms_room",
        "rooms_membership",
        "rooms_message",
        "auth_user",
    ]:
        page = client.get(reverse(f"admin:{name}_changelist"))
        assert page.status_code == 200, name
        assert 'name="action"' not in page.content.decode(), name  # no action is theirs
    revoke(client, token_of(raw))
    user_action(client, "deactivate", alice)

    assert verify_bearer(raw).user == alice
