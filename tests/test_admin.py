"""Django admin, as an operator uses it: find tokens, revoke them, deny-list ids, add keys,
manage rooms. Revocation and membership removal must reach live sockets like the commands do.
"""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from rooms.models import Membership, Message, Room
from rooms.posting import post_message
from tests.comm import closed_with, frames_until, hello
from tests.conftest import bearer
from tests.ssh_helpers import fingerprint, make_key, pub_path, public_key_line
from tokens import service_tokens
from tokens.exceptions import RevokedCredential
from tokens.models import NativeToken, RevokedToken, SshKey
from tokens.verifier import verify_bearer

TOKENS = "admin:tokens_nativetoken_changelist"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """admin_user is created with a password; the default hasher costs a second per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def url(name: str, *args) -> str:
    return reverse(name, args=args)


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def token_of(raw: str) -> NativeToken:
    return NativeToken.objects.get(public_id=verify_bearer(raw).id)


@pytest.fixture
def tokens(alice, bob):
    """alice: laptop (active), phone (expired), old (revoked). bob: one active, 40 days old, used."""
    made = {
        "laptop": token_of(bearer(alice, device_name="laptop")),
        "phone": token_of(bearer(alice, device_name="phone")),
        "old": token_of(bearer(alice, device_name="old desktop")),
        "bobs": token_of(bearer(bob, device_name="bob's tablet")),
    }
    NativeToken.objects.filter(pk=made["phone"].pk).update(expires_at=timezone.now() - timedelta(hours=1))
    NativeToken.objects.filter(pk=made["old"].pk).update(revoked_at=timezone.now(), revoked_reason="lost it")
    NativeToken.objects.update(last_used_at=None)
    NativeToken.objects.filter(pk=made["bobs"].pk).update(
        created_at=timezone.now() - timedelta(days=40), last_used_at=timezone.now()
    )
    for token in made.values():
        token.refresh_from_db()
    return made


def listed(admin_client, tokens, **query) -> set[str]:
    """Names of the fixture tokens that the token changelist shows for ``query``."""
    page = html(admin_client.get(url(TOKENS), query))
    return {name for name, token in tokens.items() if token.public_id in page}


# --- native tokens: list, search, filters -----------------------------------------------------


@pytest.mark.django_db
def test_the_token_list_shows_every_column_an_operator_needs(admin_client, tokens):
    page = html(admin_client.get(url(TOKENS)))

    for header in [
        "Token id",
        "User",
        "Device name",
        "User agent",
        "Client IP",
        "Created at",
        "Last used at",
    ]:
        assert header in page
    assert "Live sockets" in page
    for status in ["active", "expired", "revoked"]:
        assert f'<td class="field-status">{status}</td>' in page
    assert all(token.public_id in page for token in tokens.values())


@pytest.mark.django_db
def test_it_searches_tokens_by_username(admin_client, tokens):
    assert listed(admin_client, tokens, q="bob") == {"bobs"}
    assert listed(admin_client, tokens, q="alice") == {"laptop", "phone", "old"}


@pytest.mark.django_db
def test_it_searches_tokens_by_token_id_and_device(admin_client, tokens):
    assert listed(admin_client, tokens, q=tokens["phone"].public_id) == {"phone"}
    assert listed(admin_client, tokens, q="tablet") == {"bobs"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "expected"), [("active", {"laptop", "bobs"}), ("expired", {"phone"}), ("revoked", {"old"})]
)
def test_it_filters_tokens_by_status(admin_client, tokens, status, expected):
    assert listed(admin_client, tokens, status=status) == expected


@pytest.mark.django_db
def test_it_filters_tokens_by_user(admin_client, tokens, bob):
    assert listed(admin_client, tokens, user__id__exact=bob.pk) == {"bobs"}


@pytest.mark.django_db
def test_it_filters_tokens_by_creation_date(admin_client, tokens):
    week_ago = (timezone.now() - timedelta(days=7)).isoformat()

    assert listed(admin_client, tokens, created_at__gte=week_ago) == {"laptop", "phone", "old"}
    assert listed(admin_client, tokens, created_at__lt=week_ago) == {"bobs"}


@pytest.mark.django_db
def test_it_filters_tokens_by_last_use(admin_client, tokens):
    assert listed(admin_client, tokens, last_used_at__isnull="False") == {"bobs"}
    assert listed(admin_client, tokens, last_used_at__isnull="True") == {"laptop", "phone", "old"}


@pytest.mark.django_db
def test_it_filters_tokens_by_expiry(admin_client, tokens):
    now = timezone.now().isoformat()

    assert listed(admin_client, tokens, expires_at__lt=now) == {"phone"}
    assert listed(admin_client, tokens, expires_at__gte=now) == {"laptop", "old", "bobs"}


@pytest.mark.django_db
def test_the_filter_sidebar_offers_status_dates_and_user(admin_client, tokens):
    page = html(admin_client.get(url(TOKENS)))

    for title in ["By status", "By created at", "By last used at", "By expires at", "By user"]:
        assert title in page
    assert 'name="user"' in page and "?user__id__exact=" not in page  # a text box, not a link per user


@pytest.mark.django_db
def test_the_user_filter_takes_a_username(admin_client, tokens):
    assert listed(admin_client, tokens, user="bob") == {"bobs"}
    assert listed(admin_client, tokens, user="nobody") == set()


@pytest.mark.django_db
def test_facet_counts_are_never_computed(admin_client, tokens):
    response = admin_client.get(url(TOKENS), {"_facets": "True"})

    assert response.status_code == 200
    assert "Show counts" not in html(response)


# --- native tokens: never added, never edited, digest never shown ------------------------------


@pytest.mark.django_db
def test_there_is_no_add_form_for_tokens(admin_client, tokens):
    assert admin_client.get(url("admin:tokens_nativetoken_add")).status_code == 403
    assert admin_client.post(url("admin:tokens_nativetoken_add"), {"user": 1}).status_code == 403
    assert url("admin:tokens_nativetoken_add") not in html(admin_client.get(url(TOKENS)))


@pytest.mark.django_db
def test_the_change_page_is_read_only_and_shows_the_audit_trail(admin_client, tokens, bob):
    tokens["old"].revoked_by = bob  # an alice token: "bob" on the page can only be the revoker
    tokens["old"].save()

    page = html(admin_client.get(url("admin:tokens_nativetoken_change", tokens["old"].pk)))

    assert "Revoked at" in page and "Revoked by" in page and "lost it" in page and ">bob<" in page
    assert 'name="device_name"' not in page and 'name="_save"' not in page
    posted = admin_client.post(url("admin:tokens_nativetoken_change", tokens["old"].pk), {"device_name": "x"})
    assert posted.status_code == 403
    tokens["old"].refresh_from_db()
    assert tokens["old"].device_name == "old desktop"


@pytest.mark.django_db
def test_no_admin_page_ever_shows_a_token_digest(admin_client, tokens):
    token = tokens["laptop"]
    pages = [
        admin_client.get(url(TOKENS)),
        admin_client.get(url("admin:tokens_nativetoken_change", token.pk)),
        admin_client.get(url("admin:tokens_nativetoken_history", token.pk)),
        admin_client.post(url(TOKENS), {"action": "revoke_selected", "_selected_action": [token.pk]}),
    ]
    for response in pages:
        page = html(response)
        assert token.digest not in page
        assert token.digest[:16] not in page
        assert "digest" not in page.lower()


@pytest.mark.django_db
def test_searching_for_a_digest_finds_nothing(admin_client, tokens):
    assert listed(admin_client, tokens, q=tokens["laptop"].digest) == set()


# --- native tokens: the revoke action ---------------------------------------------------------


@pytest.mark.django_db
def test_the_revoke_action_revokes_the_selected_tokens_and_records_who(
    admin_client, admin_user, alice, bob, django_capture_on_commit_callbacks
):
    raws = {"a1": bearer(alice), "a2": bearer(alice), "b": bearer(bob)}
    selected = [token_of(raws["a1"]).pk, token_of(raws["b"]).pk]

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url(TOKENS), revoke_form(selected), follow=True)

    assert "Revoked 2 tokens; their live sockets are being closed." in html(response)
    for key in ("a1", "b"):
        with pytest.raises(RevokedCredential):
            verify_bearer(raws[key])
    assert verify_bearer(raws["a2"]).user == alice
    revoked = NativeToken.objects.filter(pk__in=selected)
    assert {(t.revoked_by_id, t.revoked_reason) for t in revoked} == {(admin_user.pk, "admin action")}


@pytest.mark.django_db
def test_the_revoke_action_counts_tokens_already_revoked_apart(admin_client, tokens):
    selected = [tokens["laptop"].pk, tokens["old"].pk]

    response = admin_client.post(url(TOKENS), revoke_form(selected), follow=True)

    assert "Revoked 1 token; their live sockets are being closed. 1 selected token was already revoked." in (
        html(response)
    )
    assert NativeToken.objects.get(pk=tokens["old"].pk).revoked_reason == "lost it"  # first record kept


def revoke_form(selected, **extra) -> dict:
    """The confirmation page's form: the same selection, confirmed."""
    return {"action": "revoke_selected", "_selected_action": selected, "confirmed": "yes", **extra}


@pytest.mark.django_db
def test_revoking_asks_first_saying_how_many_tokens_and_live_sockets_it_hits(admin_client, tokens):
    from datetime import UTC, datetime

    from live import presence

    presence.use_registry(presence.InProcessRegistry())
    try:
        for i in range(3):  # three sockets on the laptop token, one on bob's
            opened = datetime.now(UTC)
            presence.opened(presence.LiveSocket(f"c{i}", tokens["laptop"].public_id, 1, "h:1", None, opened))
        presence.opened(presence.LiveSocket("c9", tokens["bobs"].public_id, 2, "h:1", None, opened))
        selected = [tokens["laptop"].pk, tokens["old"].pk, tokens["bobs"].pk]

        page = html(
            admin_client.post(url(TOKENS), {"action": "revoke_selected", "_selected_action": selected})
        )
    finally:
        presence.use_registry(None)

    assert "Revoke 2 tokens?" in page
    assert "3 tokens selected, 1 of them already revoked." in page
    assert "4 live sockets will be closed (4401)." in page
    assert 'name="confirmed" value="yes"' in page
    assert not NativeToken.objects.filter(pk=tokens["laptop"].pk).exclude(revoked_at=None).exists()


@pytest.mark.django_db
def test_revoking_from_the_active_list_counts_right(admin_client, tokens):
    """The list filtered by status Active used to report "-1 selected tokens were already revoked"."""
    selected = [tokens["laptop"].pk, tokens["bobs"].pk]

    response = admin_client.post(url(TOKENS) + "?status=active", revoke_form(selected), follow=True)

    page = html(response)
    assert "Revoked 2 tokens; their live sockets are being closed." in page
    assert "already revoked" not in page


@pytest.mark.django_db
def test_revoking_everything_matching_a_search_revokes_across_pages(admin_client, alice, bob):
    from tokens.login import issue_token

    for _ in range(60):  # more than one page (50)
        issue_token(alice, device_name="fleet")
    issue_token(bob, device_name="desk")
    first_page = [NativeToken.objects.filter(device_name="fleet").first().pk]

    response = admin_client.post(
        url(TOKENS) + "?q=fleet",
        revoke_form(first_page, select_across="1", reason="fleet retired"),
        follow=True,
    )

    assert "Revoked 60 tokens" in html(response)
    assert NativeToken.objects.filter(device_name="fleet", revoked_reason="fleet retired").count() == 60
    assert NativeToken.objects.get(device_name="desk").revoked_at is None


@pytest.mark.django_db
def test_staff_without_change_permission_cannot_revoke(client, tokens, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw-for-viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_nativetoken"))
    client.force_login(viewer)

    page = html(client.get(url(TOKENS)))
    client.post(url(TOKENS), revoke_form([tokens["laptop"].pk]))

    assert "Revoke selected tokens" not in page
    assert NativeToken.objects.get(pk=tokens["laptop"].pk).revoked_at is None


@pytest.mark.django_db(transaction=True)
async def test_the_revoke_action_closes_live_sockets_with_4401(admin_client, alice):
    raw = await database_sync_to_async(bearer)(alice)
    communicator, _ = await hello(f"token={raw}")
    pk = (await database_sync_to_async(token_of)(raw)).pk

    await sync_to_async(admin_client.post)(url(TOKENS), revoke_form([pk]))

    assert await closed_with(communicator, timeout=1) == (4401, "revoked")


@pytest.mark.django_db
def test_tokens_are_never_deleted_in_admin(admin_client, tokens):
    pk = tokens["laptop"].pk
    page = html(admin_client.get(url(TOKENS)))

    assert "delete_selected" not in page
    assert admin_client.get(url("admin:tokens_nativetoken_delete", pk)).status_code == 403
    assert admin_client.post(url("admin:tokens_nativetoken_delete", pk), {"post": "yes"}).status_code == 403
    admin_client.post(url(TOKENS), {"action": "delete_selected", "_selected_action": [pk], "post": "yes"})
    assert NativeToken.objects.filter(pk=pk).exists()


@pytest.mark.django_db
def test_the_token_page_offers_revoking_it_and_shows_its_live_sockets(admin_client, tokens):
    from datetime import UTC, datetime

    from live import presence

    token = tokens["laptop"]
    presence.use_registry(presence.InProcessRegistry())
    try:
        when = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
        presence.opened(
            presence.LiveSocket("conn1", token.public_id, token.user_id, "web-2:4242", "198.51.100.7", when)
        )
        page = html(admin_client.get(url("admin:tokens_nativetoken_change", token.pk)))
        revoked_page = html(admin_client.get(url("admin:tokens_nativetoken_change", tokens["old"].pk)))
    finally:
        presence.use_registry(None)

    assert f"{token.public_id} (alice)" in page  # a readable title
    assert "Client IP" in page and "Token id" in page
    for cell in ["conn1", "web-2:4242", "2026-05-04 03:02:01 UTC", "198.51.100.7"]:
        assert f"<td>{cell}</td>" in page
    assert 'value="Revoke this token"' in page
    assert 'value="Revoke this token"' not in revoked_page


# --- revoked tokens (deny-list) ---------------------------------------------------------------


def deny_list_form(jti: str, expires_at=None, reason: str = "") -> dict:
    expires_at = expires_at or timezone.now() + timedelta(days=1)
    return {
        "jti": jti,
        "expires_at_0": expires_at.strftime("%Y-%m-%d"),
        "expires_at_1": expires_at.strftime("%H:%M:%S"),
        "reason": reason,
    }


@pytest.mark.django_db
def test_adding_a_jti_in_admin_makes_the_verifier_refuse_that_service_token(
    admin_client, admin_user, alice, django_capture_on_commit_callbacks
):
    token, claims = service_tokens.mint(alice, ttl=3600)
    assert verify_bearer(token).user == alice  # the deny-list copy is now loaded

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url("admin:tokens_revokedtoken_add"), deny_list_form(claims.jti, reason="leaked")
        )

    assert response.status_code == 302
    entry = RevokedToken.objects.get(jti=claims.jti)
    assert (entry.revoked_by, entry.reason) == (admin_user, "leaked")
    with pytest.raises(RevokedCredential):
        verify_bearer(token)


@pytest.mark.django_db
def test_adding_a_native_token_id_in_admin_revokes_that_token(
    admin_client, alice, django_capture_on_commit_callbacks
):
    raw = bearer(alice)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url("admin:tokens_revokedtoken_add"), deny_list_form(verify_bearer(raw).id))

    with pytest.raises(RevokedCredential):
        verify_bearer(raw)
    assert token_of_unchecked(raw).revoked_reason == "deny-listed"


def token_of_unchecked(raw: str) -> NativeToken:
    from tokens.crypto import digest

    return NativeToken.objects.get(digest=digest(raw))


@pytest.mark.django_db(transaction=True)
async def test_adding_a_jti_in_admin_closes_sockets_opened_with_it(admin_client, alice):
    token, claims = await database_sync_to_async(service_tokens.mint)(alice, ttl=3600)
    communicator, _ = await hello(f"token={token}")

    await sync_to_async(admin_client.post)(url("admin:tokens_revokedtoken_add"), deny_list_form(claims.jti))

    assert await closed_with(communicator, timeout=1) == (4401, "revoked")


@pytest.mark.django_db
def test_the_deny_list_add_form_proposes_the_longest_service_token_lifetime(admin_client):
    page = html(admin_client.get(url("admin:tokens_revokedtoken_add")))

    longest = timezone.now() + timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING)
    assert f'value="{longest.strftime("%Y-%m-%d")}"' in page


@pytest.mark.django_db
def test_the_deny_list_refuses_an_expiry_in_the_past_and_a_duplicate(admin_client):
    past = admin_client.post(
        url("admin:tokens_revokedtoken_add"),
        deny_list_form("someJti", expires_at=timezone.now() - timedelta(days=1)),
    )
    assert "Must be in the future" in html(past)
    assert not RevokedToken.objects.exists()

    admin_client.post(url("admin:tokens_revokedtoken_add"), deny_list_form("someJti", reason="first"))
    again = admin_client.post(url("admin:tokens_revokedtoken_add"), deny_list_form("someJti", reason="again"))
    assert "already exists" in html(again)
    assert RevokedToken.objects.get().reason == "first"


@pytest.mark.django_db
def test_deny_list_entries_are_listed_searchable_and_never_edited_or_deleted(admin_client, admin_user):
    entry = RevokedToken.objects.create(
        jti="findMe123",
        expires_at=timezone.now() + timedelta(days=1),
        reason="ci leak",
        revoked_by=admin_user,
    )
    RevokedToken.objects.create(jti="other456", expires_at=timezone.now() + timedelta(days=1))

    found = html(admin_client.get(url("admin:tokens_revokedtoken_changelist"), {"q": "findMe"}))
    assert "findMe123" in found and "ci leak" in found and "other456" not in found
    assert admin_client.get(url("admin:tokens_revokedtoken_delete", entry.pk)).status_code == 403
    admin_client.post(url("admin:tokens_revokedtoken_change", entry.pk), {"jti": "changed", "reason": "x"})
    entry.refresh_from_db()
    assert (entry.jti, entry.reason) == ("findMe123", "ci leak")


# --- SSH keys --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_operator_adds_a_key_by_pasting_the_public_key_line(admin_client, alice, tmp_path):
    key = make_key(tmp_path, "ecdsa256", comment="alice@tablet")

    response = admin_client.post(
        url("admin:tokens_sshkey_add"),
        {"user": alice.pk, "name": "", "public_key": public_key_line(key) + "\n"},
    )

    assert response.status_code == 302
    added = SshKey.objects.get(fingerprint=fingerprint(pub_path(key)))
    assert (added.user, added.key_type, added.name) == (alice, "ecdsa-sha2-nistp256", "alice@tablet")
    assert added.public_key == " ".join(public_key_line(key).split()[:2])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("ssh-ed25519 not-base64!!", "Not a usable public key: key data is not valid base64."),
        ("ssh-dss AAAAB3NzaC1kc3M=", "Not a usable public key: unsupported key type"),
        ("", "This field is required."),
    ],
)
def test_the_key_form_refuses_what_cannot_be_a_login_key(admin_client, alice, line, error):
    response = admin_client.post(url("admin:tokens_sshkey_add"), {"user": alice.pk, "public_key": line})

    assert error in html(response)
    assert SshKey.objects.filter(user=alice).count() == 1


@pytest.mark.django_db
def test_the_key_form_refuses_short_rsa_keys_and_keys_already_registered(
    admin_client, alice, bob, keys, tmp_path
):
    small = public_key_line(make_key(tmp_path, "rsa1024"))
    taken = public_key_line(keys["bob"])

    small_page = html(
        admin_client.post(url("admin:tokens_sshkey_add"), {"user": alice.pk, "public_key": small})
    )
    taken_page = html(
        admin_client.post(url("admin:tokens_sshkey_add"), {"user": alice.pk, "public_key": taken})
    )

    assert "RSA keys must be at least 2048 bits" in small_page
    assert "This key is already registered to user &#x27;bob&#x27;." in taken_page
    assert SshKey.objects.filter(user=alice).count() == 1


@pytest.mark.django_db
def test_the_key_list_searches_by_username_and_fingerprint(admin_client, alice, bob):
    bobs = SshKey.objects.get(user=bob)

    by_name = html(admin_client.get(url("admin:tokens_sshkey_changelist"), {"q": "alice"}))
    by_fingerprint = html(admin_client.get(url("admin:tokens_sshkey_changelist"), {"q": bobs.fingerprint}))

    assert "alice&#x27;s key" in by_name and bobs.fingerprint not in by_name
    assert bobs.fingerprint in by_fingerprint and "alice&#x27;s key" not in by_fingerprint


@pytest.mark.django_db
def test_a_keys_material_and_owner_cannot_be_edited(admin_client, alice, bob):
    key = SshKey.objects.get(user=alice)

    admin_client.post(
        url("admin:tokens_sshkey_change", key.pk),
        {"user": bob.pk, "name": "renamed", "public_key": "ssh-ed25519 AAAA", "fingerprint": "SHA256:x"},
    )

    key.refresh_from_db()
    assert (key.user, key.name) == (alice, "renamed")
    assert key.fingerprint.startswith("SHA256:") and key.fingerprint != "SHA256:x"


# --- rooms, memberships, messages --------------------------------------------------------------


@pytest.mark.django_db
def test_the_room_list_shows_member_counts(admin_client, general, alice_only):
    page = html(admin_client.get(url("admin:rooms_room_changelist")))

    assert '<td class="field-member_count">2</td>' in page
    assert '<td class="field-member_count">1</td>' in page


@pytest.mark.django_db
def test_an_operator_creates_a_room_with_members(admin_client, alice, bob):
    response = admin_client.post(
        url("admin:rooms_room_add"), {"slug": "ops", "name": "Operations", "add_members": [alice.pk, bob.pk]}
    )

    assert response.status_code == 302
    members = set(Membership.objects.filter(room__slug="ops").values_list("user__username", flat=True))
    assert members == {"alice", "bob"}


@pytest.mark.django_db
def test_the_room_form_refuses_a_bad_slug(admin_client):
    response = admin_client.post(url("admin:rooms_room_add"), {"slug": "Not A Slug", "name": "x"})

    assert "Lowercase letters, digits, - and _." in html(response)
    assert not Room.objects.exists()


@pytest.mark.django_db
def test_a_big_room_page_has_no_field_per_member_and_a_rename_saves(admin_client, general, django_user_model):
    django_user_model.objects.bulk_create(django_user_model(username=f"member{i}") for i in range(300))
    Membership.objects.bulk_create(
        Membership(room=general, user=user)
        for user in django_user_model.objects.filter(username__startswith="member")
    )

    page = html(admin_client.get(url("admin:rooms_room_change", general.pk)))
    saved = admin_client.post(url("admin:rooms_room_change", general.pk), {"name": "Renamed"})

    assert "302 members" in page
    assert f"?room__id__exact={general.pk}" in page  # the filtered membership list
    assert "memberships-" not in page and page.count("<option") < 10
    assert saved.status_code == 302
    general.refresh_from_db()
    assert general.name == "Renamed" and Membership.objects.filter(room=general).count() == 302


@pytest.mark.django_db
def test_members_added_on_the_room_page_are_in_history(admin_client, admin_user, general, mallory):
    from django.contrib.admin.models import ADDITION, LogEntry

    response = admin_client.post(
        url("admin:rooms_room_change", general.pk),
        {"name": general.name, "add_members": [mallory.pk]},
        follow=True,
    )

    assert "Added mallory to general." in html(response)
    membership = Membership.objects.get(room=general, user=mallory)
    entry = LogEntry.objects.get(object_id=str(membership.pk), action_flag=ADDITION)
    assert entry.user == admin_user and entry.object_repr == "mallory in general"


async def subscribed_socket(user, slug: str):
    raw = await database_sync_to_async(bearer)(user)
    communicator, _ = await hello(f"token={raw}")
    await communicator.send_json_to({"type": "subscribe", "room": slug})
    await frames_until(communicator, "subscribed")
    return communicator


async def assert_unsubscribed(communicator, slug: str):
    frame = await communicator.receive_json_from(timeout=1)
    assert frame == {"type": "unsubscribed", "room": slug, "reason": "membership_revoked"}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_membership_page_unsubscribes_their_socket(admin_client, general, bob):
    communicator = await subscribed_socket(bob, "general")
    membership = await database_sync_to_async(Membership.objects.get)(room=general, user=bob)

    await sync_to_async(admin_client.post)(
        url("admin:rooms_membership_delete", membership.pk), {"post": "yes"}
    )

    await assert_unsubscribed(communicator, "general")


@pytest.mark.django_db(transaction=True)
async def test_the_bulk_delete_action_on_memberships_unsubscribes_each_user(
    admin_client, general, alice, bob
):
    sockets = {user.username: await subscribed_socket(user, "general") for user in (alice, bob)}
    pks = await database_sync_to_async(
        lambda: list(Membership.objects.filter(room=general).values_list("pk", flat=True))
    )()

    await sync_to_async(admin_client.post)(
        url("admin:rooms_membership_changelist"),
        {"action": "delete_selected", "_selected_action": pks, "post": "yes"},
    )

    for communicator in sockets.values():
        await assert_unsubscribed(communicator, "general")


@pytest.mark.django_db
def test_memberships_are_added_and_removed_but_never_moved(admin_client, general, mallory):
    membership = Membership.objects.get(room=general, user__username="bob")

    added = admin_client.post(url("admin:rooms_membership_add"), {"user": mallory.pk, "room": general.pk})
    moved = admin_client.post(
        url("admin:rooms_membership_change", membership.pk), {"user": mallory.pk, "room": general.pk}
    )

    assert added.status_code == 302
    assert Membership.objects.filter(room=general, user=mallory).exists()
    assert moved.status_code == 403
    assert Membership.objects.get(pk=membership.pk).user.username == "bob"


@pytest.mark.django_db
def test_messages_are_listed_searchable_and_read_only(admin_client, general, alice, bob):
    post_message(alice, "general", "the launch code is banana", None, None)
    post_message(bob, "general", "just for alice", None, [alice.pk])
    secret = Message.objects.get(body__contains="banana")

    messages_url = url("admin:rooms_message_changelist")
    found = html(admin_client.get(messages_url, {"q": "banana", "room": "general"}))
    by_sender = html(admin_client.get(messages_url, {"q": "bob"}))
    by_id = html(admin_client.get(messages_url, {"q": str(secret.pk)}))
    everything = html(admin_client.get(messages_url))

    assert "the launch code is banana" in found and "just for alice" not in found
    assert "just for alice" in by_sender and "banana" not in by_sender
    assert "banana" in by_id and "just for alice" not in by_id
    assert 'alt="True"' in everything and 'alt="False"' in everything  # is_targeted, both kinds
    assert admin_client.get(url("admin:rooms_message_add")).status_code == 403
    admin_client.post(url("admin:rooms_message_change", secret.pk), {"body": "edited"})
    secret.refresh_from_db()
    assert secret.body == "the launch code is banana"


# --- every page renders ------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_admin_page_of_ours_renders(admin_client, tokens, general):
    post_message(tokens["laptop"].user, "general", "hello", None, None)
    RevokedToken.objects.create(jti="jti1", expires_at=timezone.now() + timedelta(days=1))
    objects = {
        "tokens_nativetoken": tokens["laptop"],
        "tokens_revokedtoken": RevokedToken.objects.get(),
        "tokens_sshkey": SshKey.objects.first(),
        "rooms_room": general,
        "rooms_membership": Membership.objects.first(),
        "rooms_message": Message.objects.get(),
    }
    for prefix, obj in objects.items():
        assert admin_client.get(url(f"admin:{prefix}_changelist")).status_code == 200, prefix
        assert admin_client.get(url(f"admin:{prefix}_change", obj.pk)).status_code == 200, prefix
    for prefix in ["tokens_revokedtoken", "tokens_sshkey", "rooms_room", "rooms_membership"]:
        assert admin_client.get(url(f"admin:{prefix}_add")).status_code == 200, prefix
    assert admin_client.get(url("admin:index")).status_code == 200


def test_nonces_and_tickets_are_not_in_admin():
    from django.contrib import admin

    from tokens.models import LoginNonce, UsedTicket

    assert not admin.site.is_registered(LoginNonce)
    assert not admin.site.is_registered(UsedTicket)
    assert admin.site.is_registered(get_user_model())


# --- users: deactivating or deleting one ends their live sockets -------------------------------


def user_change_form(user, **changes) -> dict:
    data = {
        "username": user.username,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "is_active": "on",
        **changes,
    }
    return {key: value for key, value in data.items() if value is not None}


@pytest.mark.django_db(transaction=True)
async def test_deactivating_a_user_in_admin_closes_their_sockets(admin_client, general, alice, bob):
    alices = await subscribed_socket(alice, "general")
    bobs = await subscribed_socket(bob, "general")
    form = user_change_form(alice, is_active=None)

    response = await sync_to_async(admin_client.post)(url("admin:auth_user_change", alice.pk), form)

    assert response.status_code == 302
    assert await closed_with(alices, timeout=1) == (4403, "inactive")
    await bobs.send_json_to({"type": "ping"})
    assert await bobs.receive_json_from(timeout=1) == {"type": "pong"}
    await bobs.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_user_in_admin_closes_their_sockets(admin_client, alice_only, alice):
    token, _ = await database_sync_to_async(service_tokens.mint)(alice, ttl=3600)
    sockets = [await subscribed_socket(alice, "alice-only"), (await hello(f"token={token}"))[0]]

    response = await sync_to_async(admin_client.post)(
        url("admin:auth_user_delete", alice.pk), {"post": "yes"}
    )

    assert response.status_code == 302
    for communicator in sockets:
        assert (await closed_with(communicator, timeout=1))[0] == 4401
