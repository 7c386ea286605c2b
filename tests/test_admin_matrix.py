"""The permission matrix: every role walks the whole admin and gets exactly its grant.

Roles: a staff member holding nothing; one holding each single permission of every model
registered in admin; each of the three groups of API.md; a superuser (the control: every form
posted is valid, so a refusal elsewhere is the permission's doing, not a bad form). Each logs in
with a password through the real login, then walks the plan of tests/admin_plan.py (every page,
form, action, filter, search, sort and autocomplete of the registry; tests/admin_walk.py), and
each request is held to the oracles of tests/admin_oracles.py: a page without its permission is
a 403; no table is written without the permission for that write; no page shows data of a model
the role may not view; no page ever shows a piece of a stored digest or hash.

One database for the module: the world is built once, every request runs in a savepoint that is
rolled back. Not every role makes every request: a walk records which permissions each request
asked about, and a role whose added permissions were not asked about walks the same path to the
same end (admin_oracles.relevant). So nobody walks everything, each single permission what
nobody's walk asked about it, native-viewers what asked about a view permission, the two other
groups (which hold the viewers' permissions too) what asked about their others, and the
superuser everything.
"""

import re
import subprocess
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Q
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from django.utils import timezone

from rooms.membership import create_room
from rooms.models import Membership, Message, Room
from rooms.posting import post_message
from tests.admin_oracles import problems, relevant
from tests.admin_plan import SUPERUSER, CustomView, World, admin_permissions, build_plan, permissions_of_model
from tests.admin_walk import walk
from tests.ssh_helpers import certify, make_key, pub_path, public_key_line, sign
from tokens import krl_store, login
from tokens.authorities import add_authority
from tokens.login import issue_challenge, issue_token, register_key
from tokens.models import (
    CertificateAuthority,
    LoginNonce,
    NativeToken,
    RevocationList,
    RevokedToken,
    SshCertificate,
    SshKey,
    UsedTicket,
)
from tokens.ssh_certificates import parse_certificate
from tokens.ssh_signatures import parse_public_key

PASSWORD = "matrix-staff-password"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
GROUPS = ["native-viewers", "native-revokers", "native-room-managers"]
MARKER_IP = "198.51.100.77"


def cheap_password(raw: str, salt: str) -> str:
    """A PBKDF2 hash (base64 pieces, so a 6-character piece on a page is no coincidence) that
    nobody logs in with, cheap to make."""
    return PBKDF2PasswordHasher().encode(raw, salt, iterations=1000)


def build_world(keys, key_dir) -> tuple[World, NativeToken]:
    """alice and bob: API users in "general"; alice alone in "hidden-club" (named "Marker
    Lounge"); mallory in no room; peer: another staff member; a superuser. Tokens, a ticket, a
    nonce, a deny-list entry, messages and a group, each with a marker only its own pages show."""
    User = get_user_model()  # noqa: N806
    superuser = User.objects.create_superuser("root", "root@example.com", None)
    people = {}
    for name in ("alice", "bob", "mallory"):
        people[name] = User.objects.create_user(name, email=f"{name}@marker.example")
        register_key(people[name], parse_public_key(public_key_line(keys[name])), name=f"{name}'s key")
    alice, bob, mallory = people["alice"], people["bob"], people["mallory"]
    alice.password = cheap_password("alice-password", "Qz7vXkAliceSalt")
    alice.save()
    peer = User.objects.create_user("peer", is_staff=True)
    peer.password = cheap_password("peer-password", "Jw4nRbPeerSalt")
    peer.save()
    peer.user_permissions.add(Permission.objects.get(codename="view_room"))
    marker_group = Group.objects.create(name="marker-group")
    marker_group.permissions.add(Permission.objects.get(codename="view_message"))

    general = create_room("general", "General", members=[alice, bob])
    club = create_room("hidden-club", "Marker Lounge", members=[alice])
    post_message(alice, "general", "marker-body-Msg1", None, None)
    message = Message.objects.get(body="marker-body-Msg1")
    post_message(bob, "general", "marker-body-Targeted", None, [alice.pk])
    token = issue_token(alice, ssh_key=SshKey.objects.get(user=alice), device_name="marker-tablet").token
    issue_token(bob, device_name="bobs-phone")
    old = issue_token(alice, device_name="old").token
    NativeToken.objects.filter(pk=old.pk).update(revoked_at=timezone.now(), revoked_reason="lost")
    UsedTicket.objects.create(key="marker-used-ticket")
    issue_challenge()
    entry = RevokedToken.objects.create(
        jti="marker-jti-Rv1", reason="marker-reason-Rv1", expires_at=timezone.now() + timedelta(days=1)
    )
    fresh_key = public_key_line(make_key(key_dir, "ed25519", comment="probe@matrix"))
    soon = timezone.now() + timedelta(days=2)
    identity = certificate_world(key_dir)

    secrets = []
    for digest in [
        *NativeToken.objects.values_list("digest", flat=True),
        *LoginNonce.objects.values_list("digest", flat=True),
    ]:
        secrets += [digest[:10], digest[-10:]]
    for user in (alice, peer):
        _, _, salt, hashed = user.password.split("$")
        secrets += [salt[:6], hashed[:6]]

    return World(
        superuser=superuser,
        samples={
            User: [alice, peer],
            Group: [marker_group],
            NativeToken: [token],
            RevokedToken: [entry],
            SshKey: [SshKey.objects.get(user=alice)],
            Room: [general],
            Membership: [Membership.objects.get(room=general, user=bob)],
            Message: [message],
            CertificateAuthority: [identity["authority"]],
            SshCertificate: [identity["certificate"]],
            RevocationList: [identity["krl"]],
        },
        add_forms={
            Room: {"slug": "probe-room", "name": "Probe", "add_members": [str(mallory.pk)]},
            Membership: {"user": str(mallory.pk), "room": str(general.pk)},
            SshKey: {"user": str(mallory.pk), "name": "probe", "public_key": fresh_key},
            RevokedToken: {
                "jti": "probe-jti",
                "expires_at_0": f"{soon:%Y-%m-%d}",
                "expires_at_1": f"{soon:%H:%M:%S}",
                "reason": "probe",
            },
            User: {
                "username": "probe-user",
                "password1": "Probe-pass-9x!",
                "password2": "Probe-pass-9x!",
                "usable_password": "true",
            },
            Group: {
                "name": "probe-group",
                "permissions": [str(Permission.objects.get(codename="view_room").pk)],
            },
            CertificateAuthority: {"name": "probe-ca", "public_key": identity["probe_ca"], "principals": ""},
            RevocationList: {"file": identity["probe_krl"]},
        },
        custom_views={
            "auth_user_password_change": CustomView(
                "change",
                {"password1": "Other-pass-7q!", "password2": "Other-pass-7q!", "usable_password": "true"},
            )
        },
        markers={
            token.public_id: {NativeToken},
            "marker-tablet": {NativeToken},
            MARKER_IP: {NativeToken},
            public_key_line(keys["alice"]).split()[1][30:60]: {SshKey},
            "marker-jti-Rv1": {RevokedToken},
            "marker-reason-Rv1": {RevokedToken},
            "marker-body-Msg1": {Message},
            "marker-body-Targeted": {Message},
            "Marker Lounge": {Room},
            club.slug: {Room, Membership},
            "alice@marker.example": {User},
        },
        secrets=secrets,
    ), token


def certificate_world(key_dir) -> dict:
    """carol logged in with a certificate (serial 9) from the trusted CA "corp"; a KRL of corp's
    serial 99 is in force. For the add forms: another CA's key, and a KRL of carol's serial."""
    carol = get_user_model().objects.create_user("carol")
    ca = make_key(key_dir, "ed25519", comment="corp-ca")
    authority = add_authority("corp", public_key_line(ca))
    carol_key = make_key(key_dir, "ed25519", comment="carol")
    cert = certify(ca, pub_path(carol_key), principals=["carol"], serial=9, identity="carol@corp")
    login.exchange(
        login.LoginRequest(
            public_key=parse_certificate(cert.read_text()),
            nonce="n",
            signature=sign(cert, b"n", settings.NATIVE_SIGNATURE_NAMESPACE),
        )
    )
    krl = krl_store.load(krl_of(key_dir, ca, serial=99), source="world.krl", loaded_by="matrix").row
    assert carol.native_tokens.filter(revoked_at=None).exists()
    return {
        "authority": authority,
        "certificate": SshCertificate.objects.get(authority=authority),
        "krl": krl,
        "probe_ca": public_key_line(make_key(key_dir, "ed25519", comment="probe-ca")),
        "probe_krl": SimpleUploadedFile("probe.krl", krl_of(key_dir, ca, serial=9)),
    }


def krl_of(key_dir, ca, *, serial: int) -> bytes:
    spec, krl = key_dir / f"krl-{serial}.spec", key_dir / f"krl-{serial}.krl"
    spec.write_text(f"serial: {serial}\n")
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(krl), "-s", str(pub_path(ca)), str(spec)], check=True)
    return krl.read_bytes()


@pytest.fixture(scope="module")
def world_and_token(django_db_setup, django_db_blocker, keys, key_dir):
    """Built once for the module, inside a transaction rolled back at its end."""
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            if Group.objects.filter(name__in=GROUPS).count() != len(GROUPS):
                recreate_groups()  # a transactional test flushed the database before this module
            yield build_world(keys, key_dir)
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


def recreate_groups():
    from django.apps import apps
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    for (app_label, name), migration in MigrationLoader(connection).disk_migrations.items():
        if app_label == "tokens" and "staff_groups" in name:
            for operation in migration.operations:
                if hasattr(operation, "code"):
                    operation.code(apps, None)


@pytest.fixture(scope="module")
def world(world_and_token):
    return world_and_token[0]


class live_socket:  # noqa: N801  (a context manager, named for what it sets up)
    """One live socket on the marker token, in a fresh in-process registry."""

    def __init__(self, token):
        self.token = token

    def __enter__(self):
        from datetime import UTC, datetime

        from live import presence

        presence.use_registry(presence.InProcessRegistry())
        presence.opened(
            presence.LiveSocket(
                "conn-m", self.token.public_id, self.token.user_id, "h:1", MARKER_IP, datetime.now(UTC)
            )
        )

    def __exit__(self, *exc):
        from live import presence

        presence.use_registry(None)


@pytest.fixture(scope="module")
def plan(world_and_token):
    world, token = world_and_token
    client = Client()
    client.force_login(world.superuser)
    with live_socket(token):
        return build_plan(client, world)


def staff_member(principal: str):
    """A staff account for ``principal``, with a password; returns it and what it holds."""
    user = get_user_model().objects.create_user(
        principal.replace(":", "-").replace(".", "-")[:150],
        password=PASSWORD,
        is_staff=True,
        is_superuser=principal == "superuser",
    )
    kind, _, name = principal.partition(":")
    if kind == "group":
        user.groups.add(Group.objects.get(name=name))
    elif kind == "perm":
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    held = Permission.objects.filter(Q(user=user) | Q(group__user=user)).select_related("content_type")
    perms = {f"{p.content_type.app_label}.{p.codename}" for p in held}
    if user.is_superuser:
        perms |= {p for model in admin.site._registry for p in permissions_of_model(model)}
        perms.add(SUPERUSER)
    return user, frozenset(perms)


def logged_in(principal: str):
    user, perms = staff_member(principal)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD), principal
    return client, perms


@dataclass
class Walked:
    """What each request of the plan did for one principal: the outcome of its own request, or
    of the smaller principal it was decided by (admin_oracles.relevant), with that one's perms."""

    perms: frozenset
    outcomes: list  # the principal's own requests
    decided: dict  # probe label -> (outcome, perms of the principal that walked it)


def walk_as(principal: str, base: Walked | None, token, probes=None) -> Walked:
    client, perms = logged_in(principal)
    if probes is None:
        probes = [
            outcome.probe
            for outcome, base_perms in base.decided.values()
            if relevant(outcome, base_perms, perms)
        ]
    with live_socket(token):
        outcomes = walk(client, probes)
    decided = dict(base.decided) if base else {}
    decided.update({outcome.probe.label: (outcome, perms) for outcome in outcomes})
    return Walked(perms, outcomes, decided)


@pytest.fixture(scope="module")
def as_nobody(world_and_token, plan):
    """The whole plan walked by a staff member holding no permission (once for the module)."""
    with override_settings(PASSWORD_HASHERS=FAST_HASHERS), transaction.atomic():
        walked = walk_as("nobody", None, world_and_token[1], plan)
        transaction.set_rollback(True)
    return walked


@pytest.fixture(scope="module")
def as_viewer(world_and_token, as_nobody):
    """native-viewers, whose permissions the other two groups hold too: they are decided by it."""
    with override_settings(PASSWORD_HASHERS=FAST_HASHERS), transaction.atomic():
        walked = walk_as("group:native-viewers", as_nobody, world_and_token[1])
        transaction.set_rollback(True)
    return walked


@pytest.fixture
def token(world_and_token):
    return world_and_token[1]


def assert_within_grant(walked: Walked, world):
    found = [problem for outcome in walked.outcomes for problem in problems(outcome, walked.perms, world)]
    assert not found, f"{len(found)} problems:\n" + "\n".join(found)


@pytest.mark.django_db
def test_the_plan_walks_every_registered_admin_page_action_and_form(plan):
    labels = {probe.label for probe in plan}
    assert len(labels) == len(plan)
    for model, model_admin in admin.site._registry.items():
        name = f"{model._meta.app_label}.{model._meta.model_name}"
        assert {f"{name} list", f"{name} list?q=a", f"{name} list?o=-1", f"{name} add"} <= labels, name
        assert any(label.startswith(name) and label.endswith(" changed") for label in labels), name
        assert any(label.startswith(name) and label.endswith(" deleted") for label in labels), name
        for _, action, _ in model_admin._get_base_actions():
            assert f"{name} action {action} confirmed" in labels
    assert any(label.startswith("autocomplete ") for label in labels)
    assert (
        "tokens.nativetoken list?status=active" in labels and "tokens.nativetoken list?user=alice" in labels
    )


@pytest.mark.django_db
def test_a_staff_member_holding_nothing_gets_nothing(as_nobody, world):
    assert as_nobody.perms == frozenset()
    assert_within_grant(as_nobody, world)


@pytest.mark.django_db
def test_a_viewer_sees_everything_and_changes_nothing(as_viewer, world):
    every_view = {f"{m._meta.app_label}.view_{m._meta.model_name}" for m in admin.site._registry}
    assert as_viewer.perms == every_view - {"auth.view_group"}  # groups are not the product's
    assert_within_grant(as_viewer, world)


@pytest.mark.django_db
@pytest.mark.parametrize("group", ["native-revokers", "native-room-managers"])
def test_a_group_gets_exactly_what_its_permissions_grant(group, settings, as_viewer, world, token):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    walked = walk_as(f"group:{group}", as_viewer, token)
    assert walked.perms > as_viewer.perms
    assert_within_grant(walked, world)


@pytest.mark.django_db
@pytest.mark.parametrize("permission", admin_permissions())
def test_a_single_permission_grants_exactly_itself(permission, settings, as_nobody, world, token):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    # A list's searches, sorts and filters change its rows, not the permission that gates it:
    # nobody, the groups and the superuser walk them; one permission alone need not.
    base = Walked(
        as_nobody.perms,
        [],
        {label: decided for label, decided in as_nobody.decided.items() if decided[0].probe.kind != "lookup"},
    )
    assert_within_grant(walk_as(f"perm:{permission}", base, token), world)


@pytest.mark.django_db
def test_a_superuser_posts_every_form_successfully_and_sees_no_secret(settings, plan, world, token):
    """The control: the plan's forms are valid (a superuser's saves go through), so a refusal
    elsewhere is the permission's doing; and no page shows a digest, even to a superuser."""
    settings.PASSWORD_HASHERS = FAST_HASHERS
    walked = walk_as("superuser", None, token, plan)
    assert_within_grant(walked, world)
    assert sum(bool(outcome.writes - {("django_session", "update")}) for outcome in walked.outcomes) >= 10


# --- lookups, searches and sorts never reach a secret ----------------------------------------------


def secret_paths(model, depth: int = 3, prefix: str = "") -> list[str]:
    """Every lookup path from ``model`` to a secret field, through relations, ``depth`` deep
    (a reverse relation's ``name`` is its query name: ``user__native_tokens__digest``)."""
    from tokens.admin_guard import is_secret_field

    paths = []
    for field in model._meta.get_fields():
        if is_secret_field(field):
            paths.append(prefix + field.name)
        elif field.is_relation and field.related_model and depth > 1:
            paths += secret_paths(field.related_model, depth - 1, f"{prefix}{field.name}__")
    return paths


@pytest.mark.django_db
def test_no_admin_allows_a_lookup_that_reaches_a_secret(world):
    request = RequestFactory().get("/")
    request.user = world.superuser
    checked = 0
    for model, model_admin in admin.site._registry.items():
        for path in secret_paths(model):
            for lookup in (path, f"{path}__startswith", f"{path}__exact", f"{path}__regex"):
                assert not model_admin.lookup_allowed(lookup, "0", request), (model, lookup)
                checked += 1
    assert checked > 40


@pytest.mark.django_db
@pytest.mark.parametrize("principal", ["superuser", "group:native-viewers"])
def test_no_filter_url_reaches_a_secret(principal, settings, world):
    settings.PASSWORD_HASHERS = FAST_HASHERS
    client, _ = logged_in(principal)
    for model in admin.site._registry:
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for path in secret_paths(model, depth=2):
            for query in ({f"{path}__startswith": "a"}, {path: "0" * 64}, {"_to_field": path, "_popup": "1"}):
                response = client.get(changelist, query)
                assert response.status_code in (400, 403), (
                    principal,
                    changelist,
                    query,
                    response.status_code,
                )


@pytest.mark.django_db
def test_no_search_tells_a_right_digest_from_a_wrong_one(settings, world, token):
    """A search by a piece of a stored digest or hash lists what a search by any other string
    of that length lists: a search is no oracle."""
    settings.PASSWORD_HASHERS = FAST_HASHERS
    client, _ = logged_in("superuser")
    stored = NativeToken.objects.get(pk=token.pk).digest
    for model in admin.site._registry:
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        # (Shorter pieces match names by chance; a digit at a time is the lookups' test above.)
        for right in (stored[:10], alice_password_piece()):
            wrong = "".join("f" if c != "f" else "e" for c in right)  # same length, never a number
            found = [listed(client.get(changelist, {"q": term}), changelist) for term in (right, wrong)]
            assert found[0] == found[1], (changelist, right)


def listed(response, changelist: str) -> set[str]:
    assert response.status_code == 200
    return set(re.findall(re.escape(changelist) + r"(\d+)/change/", response.content.decode()))


def alice_password_piece() -> str:
    return get_user_model().objects.get(username="alice").password.split("$")[3][:6]


def test_the_admin_checks_find_no_secret_exposed_by_the_registered_admins():
    from tokens.checks import check_admin_secrets

    assert check_admin_secrets(None) == []
