"""``mint_service_token``, ``revoke_token`` and ``revoke_user_tokens``: what an operator types,
what they see, and what the credential does afterwards (verifier and live sockets).

Commands run in autocommit mode, so a revocation and its change-log row (foundation.changelog) are
committed before the command reports. Tests that check those effects use transactional
databases, like the command does in production, instead of capturing the hooks by hand.
"""

import asyncio
import io
import time
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from foundation.models import Change
from tests import ws
from tests.comm import closed_with, hello, open_socket
from tests.conftest import bearer
from tests.server import run_manage as manage
from tokens import service_tokens
from tokens.exceptions import MalformedCredential, RevokedCredential
from tokens.models import NativeToken, RevokedToken
from tokens.tickets import mint as mint_ticket
from tokens.verifier import consume_ticket, verify_bearer


def run(command, /, *args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def token_id(raw: str) -> str:
    return verify_bearer(raw).id


# --- mint_service_token -----------------------------------------------------------------------


@pytest.mark.django_db
def test_mint_prints_only_the_token_on_stdout_and_the_jti_on_stderr(alice):
    out, err = run("mint_service_token", "alice", ttl=600, name="ci-bot")

    token = out.strip()
    assert out == token + "\n" and token.startswith("nst_")
    credential = verify_bearer(token)
    assert credential.kind == "service" and credential.user == alice
    expires_at = credential.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert err == f"jti={credential.id} expires_at={expires_at}\n"
    assert abs((credential.expires_at - timezone.now()).total_seconds() - 600) < 5
    assert service_tokens.read(token).name == "ci-bot"


@pytest.mark.django_db
def test_mint_uses_the_default_ttl_without_ttl(alice, settings):
    settings.NATIVE_SERVICE_TOKEN_TTL = 1234

    out, _ = run("mint_service_token", "alice")

    remaining = (verify_bearer(out.strip()).expires_at - timezone.now()).total_seconds()
    assert 1225 < remaining <= 1234


@pytest.mark.django_db
@pytest.mark.parametrize("ttl", [0, -5, 30 * 86400 + 1])
def test_mint_refuses_a_ttl_outside_1_to_the_maximum(alice, ttl):
    assert settings.NATIVE_SERVICE_TOKEN_MAX_TTL == 30 * 86400
    with pytest.raises(CommandError, match=r"--ttl must be between 1 and 2592000 seconds"):
        run("mint_service_token", "alice", ttl=ttl)


@pytest.mark.django_db
def test_mint_accepts_exactly_the_maximum_ttl(alice, settings):
    settings.NATIVE_SERVICE_TOKEN_MAX_TTL = 3600

    out, _ = run("mint_service_token", "alice", ttl=3600)

    assert verify_bearer(out.strip()).user == alice


@pytest.mark.django_db
def test_mint_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run("mint_service_token", "nobody")


@pytest.mark.django_db
def test_mint_refuses_an_inactive_user(alice):
    alice.is_active = False
    alice.save()

    with pytest.raises(CommandError, match="inactive"):
        run("mint_service_token", "alice")


@pytest.mark.django_db
def test_minted_tokens_survive_a_secret_key_rotation_until_the_old_key_leaves_the_fallbacks(alice, settings):
    token = run("mint_service_token", "alice")[0].strip()
    old_key = settings.SECRET_KEY

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "rotated-" + "k" * 60, [old_key]
    assert verify_bearer(token).user == alice
    fresh = run("mint_service_token", "alice")[0].strip()

    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(MalformedCredential):
        verify_bearer(token)
    assert verify_bearer(fresh).user == alice


def test_the_real_command_exits_0_with_the_token_and_1_on_bad_input(transactional_db, alice):
    good = manage("mint_service_token", "alice", "--ttl", "60")
    assert good.returncode == 0, good.stderr
    token = good.stdout.strip()
    assert good.stdout == token + "\n"
    assert verify_bearer(token).user == alice
    assert good.stderr.startswith(f"jti={verify_bearer(token).id} expires_at=")

    bad = manage("mint_service_token", "nobody")
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert "CommandError: no user named 'nobody'" in bad.stderr


# --- revoke_token ----------------------------------------------------------------------------


def test_revoking_a_jti_makes_the_verifier_refuse_it_at_once(transactional_db, alice):
    token = run("mint_service_token", "alice")[0].strip()
    jti = token_id(token)  # also loads this process's deny-list copy

    out, _ = run("revoke_token", jti, reason="leaked in CI log")

    entry = RevokedToken.objects.get(jti=jti)
    assert entry.reason == "leaked in CI log"
    expected_until = timezone.now() + timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING)
    assert abs((entry.expires_at - expected_until).total_seconds()) < 5
    assert out.startswith(f"deny-listed service token jti {jti} at ")
    with pytest.raises(RevokedCredential):
        verify_bearer(token)
    # Every process learns it from the change log, in the same transaction as the row.
    change = Change.objects.get(kind="jtis_denied")
    assert change.data["ids"] == [jti]


def test_revoking_a_jti_kills_its_unused_tickets(transactional_db, alice):
    token = run("mint_service_token", "alice")[0].strip()
    ticket = mint_ticket(verify_bearer(token))

    run("revoke_token", token_id(token))

    with pytest.raises(RevokedCredential):
        consume_ticket(ticket)


def test_expires_at_without_a_timezone_is_read_as_utc(transactional_db, alice):
    later = (timezone.now() + timedelta(days=3)).replace(microsecond=0, tzinfo=None)

    out, _ = run("revoke_token", "someJti123", jti=True, expires_at=later.isoformat())

    assert RevokedToken.objects.get(jti="someJti123").expires_at == later.replace(tzinfo=UTC)
    assert f"until {later.isoformat()}.000Z;" in out.splitlines()[0]


def test_expires_at_with_an_offset_is_kept_as_that_instant(transactional_db):
    run("revoke_token", "someJti123", jti=True, expires_at="2999-01-01T12:00:00+02:00")

    assert RevokedToken.objects.get(jti="someJti123").expires_at == datetime(2999, 1, 1, 10, tzinfo=UTC)


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["tomorrow", "2026-13-01T00:00:00", "12:00"])
def test_it_refuses_an_expires_at_that_is_not_an_iso_datetime(value):
    with pytest.raises(CommandError, match="is not an ISO 8601 date and time"):
        run("revoke_token", "someJti123", expires_at=value)

    assert not RevokedToken.objects.exists()


@pytest.mark.django_db
def test_it_refuses_an_expires_at_in_the_past():
    with pytest.raises(CommandError, match="in the past"):
        run("revoke_token", "someJti123", expires_at="2001-01-01T00:00:00Z")

    assert not RevokedToken.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["", "   ", "x" * 65, "bad\nid"])
def test_it_refuses_an_id_that_cannot_be_a_token_id(value):
    with pytest.raises(CommandError, match="ID must be 1 to 64 printable characters"):
        run("revoke_token", value)

    assert not RevokedToken.objects.exists()


def test_revoking_a_jti_twice_keeps_the_first_record(transactional_db):
    run("revoke_token", "someJti123", jti=True, reason="first", expires_at="2999-01-01T00:00:00Z")

    out, _ = run("revoke_token", "someJti123", jti=True, reason="second")

    entry = RevokedToken.objects.get(jti="someJti123")
    assert entry.reason == "first"
    assert out.startswith("service token jti someJti123 was already deny-listed at ")
    assert out.endswith("(until 2999-01-01T00:00:00.000Z); nothing changed\n")
    assert Change.objects.filter(kind="jtis_denied").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("typo", ["someJti123", "nat_notAnId", "x" * 28])
def test_an_id_that_is_neither_a_token_id_nor_an_issued_jti_is_refused(typo):
    with pytest.raises(
        CommandError, match="neither a native token id nor a service-token jti this server issued"
    ):
        run("revoke_token", typo)

    assert not RevokedToken.objects.exists()
    assert not Change.objects.exists()


def test_a_mistyped_jti_is_refused_and_the_real_one_still_works(transactional_db, alice):
    token = run("mint_service_token", "alice")[0].strip()
    jti = token_id(token)
    typo = jti[:5] + ("A" if jti[5] != "A" else "B") + jti[6:]

    with pytest.raises(CommandError, match="check it for a typo"):
        run("revoke_token", typo)
    assert verify_bearer(token).id == jti

    run("revoke_token", jti)
    with pytest.raises(RevokedCredential):
        verify_bearer(token)


def test_a_jti_minted_under_a_rotated_key_is_still_recognised(transactional_db, alice, settings):
    token = run("mint_service_token", "alice")[0].strip()
    jti = token_id(token)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-key-" + "k" * 60

    run("revoke_token", jti)

    assert RevokedToken.objects.filter(jti=jti).exists()


def test_revoking_a_native_token_id_refuses_that_token_and_only_it(transactional_db, alice):
    doomed, kept = bearer(alice), bearer(alice)
    ticket = mint_ticket(verify_bearer(doomed))
    doomed_id = token_id(doomed)

    out, _ = run("revoke_token", doomed_id)

    assert out.startswith(f"revoked native token {doomed_id} of user 'alice' at ")
    with pytest.raises(RevokedCredential):
        verify_bearer(doomed)
    with pytest.raises(RevokedCredential):
        consume_ticket(ticket)
    assert verify_bearer(kept).user == alice
    token = NativeToken.objects.get(public_id=doomed_id)
    assert token.revoked_reason == "manage.py revoke_token" and token.revoked_by is None
    assert not RevokedToken.objects.filter(jti=doomed_id).exists()  # a native id needs no deny-list row


def test_revoking_a_revoked_native_token_says_so_and_changes_nothing(transactional_db, alice):
    raw = bearer(alice)
    run("revoke_token", token_id(raw), reason="first")
    first = NativeToken.objects.get()

    out, _ = run("revoke_token", first.public_id, reason="second")

    assert out.startswith(f"native token {first.public_id} of user 'alice' was already revoked at ")
    again = NativeToken.objects.get()
    assert (again.revoked_at, again.revoked_reason) == (first.revoked_at, "first")


def test_without_a_shared_channel_layer_the_command_says_the_servers_read_the_database(
    transactional_db, alice
):
    # In-process tests always run on the in-memory layer (tests/conftest.py), as embedded mode does.
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    out, _ = run("revoke_token", token_id(bearer(alice)), wait=0)
    assert "push to the servers failed (no channel layer shared with the servers)" in out
    assert "they read the change from the database, within 2 s of its commit" in out


def test_with_no_server_running_the_command_says_no_socket_can_be_affected(
    transactional_db, alice, monkeypatch
):
    # Other tests' server processes report into this database: none counts as alive here.
    monkeypatch.setattr("live.confirm.ALIVE_WITHIN", timedelta(0))
    out, err = run("revoke_token", token_id(bearer(alice)))
    assert "no server process has reported in the last 0 s" in out
    assert err == ""


# --- revoke_user_tokens ---------------------------------------------------------------------


def test_revoke_user_tokens_revokes_all_of_theirs_and_nobody_elses(transactional_db, alice, bob):
    alices = [bearer(alice), bearer(alice)]
    bobs = bearer(bob)

    out, _ = run("revoke_user_tokens", "alice", reason="laptop stolen")

    first = out.splitlines()[0]
    assert first.startswith("revoked every credential of user 'alice' at ")
    assert first.endswith(
        ": 2 native tokens, every service token minted before then, and every ticket they minted"
    )
    for raw in alices:
        with pytest.raises(RevokedCredential):
            verify_bearer(raw)
    assert verify_bearer(bobs).user == bob
    assert set(NativeToken.objects.filter(user=alice).values_list("revoked_reason", flat=True)) == {
        "laptop stolen"
    }


def test_revoke_user_tokens_counts_only_tokens_that_were_live(transactional_db, alice):
    bearer(alice)
    run("revoke_user_tokens", "alice")

    out, _ = run("revoke_user_tokens", "alice")

    assert ": 0 native tokens, every service token minted before then" in out.splitlines()[0]


def test_revoke_user_tokens_kills_their_service_tokens_and_tickets_too(transactional_db, alice, bob):
    service = run("mint_service_token", "alice")[0].strip()
    ticket = mint_ticket(verify_bearer(service))
    bobs_service = run("mint_service_token", "bob")[0].strip()

    run("revoke_user_tokens", "alice")

    with pytest.raises(RevokedCredential):
        verify_bearer(service)
    with pytest.raises(RevokedCredential):
        consume_ticket(ticket)
    assert verify_bearer(bobs_service).user == bob
    # A service token minted after the revocation works at once: the floor is "minted before
    # now", to the microsecond (tests/test_e2e_user_floor.py runs it in separate processes).
    fresh = run("mint_service_token", "alice")[0].strip()
    assert verify_bearer(fresh).user == alice


@pytest.mark.django_db
def test_revoke_user_tokens_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run("revoke_user_tokens", "nobody")


# --- live sockets --------------------------------------------------------------------------

run_async = database_sync_to_async(run)


@pytest.mark.django_db(transaction=True)
async def test_revoke_token_closes_a_socket_opened_with_that_native_token(alice):
    raw = await database_sync_to_async(bearer)(alice)
    kept = await database_sync_to_async(bearer)(alice)
    doomed, _ = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
    other, _ = await hello(headers=[(b"authorization", f"Bearer {kept}".encode())])

    await run_async("revoke_token", await database_sync_to_async(token_id)(raw))

    assert await closed_with(doomed, timeout=1) == (4401, "revoked")
    await other.send_json_to({"type": "ping"})
    assert await other.receive_json_from(timeout=1) == {"type": "pong"}
    await other.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_revoke_token_closes_a_socket_opened_with_that_service_token(alice):
    token = (await run_async("mint_service_token", "alice"))[0].strip()
    communicator, _ = await hello(f"token={token}")

    await run_async("revoke_token", await database_sync_to_async(token_id)(token))

    assert await closed_with(communicator, timeout=1) == (4401, "revoked")


@pytest.mark.django_db(transaction=True)
async def test_revoke_user_tokens_closes_every_socket_of_theirs_and_no_one_elses(alice, bob):
    alice_native = await database_sync_to_async(bearer)(alice)
    alice_service = (await run_async("mint_service_token", "alice"))[0].strip()
    bob_native = await database_sync_to_async(bearer)(bob)
    alice_sockets = [(await hello(f"token={raw}"))[0] for raw in (alice_native, alice_service)]
    bob_socket, _ = await hello(f"token={bob_native}")

    await run_async("revoke_user_tokens", "alice")

    for communicator in alice_sockets:
        assert (await closed_with(communicator, timeout=1))[0] == 4401
    await bob_socket.send_json_to({"type": "ping"})
    assert await bob_socket.receive_json_from(timeout=1) == {"type": "pong"}
    await bob_socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_revoked_token_cannot_open_a_new_socket(alice):
    raw = await database_sync_to_async(bearer)(alice)
    await run_async("revoke_token", await database_sync_to_async(token_id)(raw))

    communicator = await open_socket(f"token={raw}")
    assert await closed_with(communicator) == (4401, "unauthorized")


@pytest.mark.e2e
@pytest.mark.redis
async def test_revoke_token_run_by_an_operator_closes_a_socket_on_a_real_server_within_a_second(
    server, alice
):
    """The production shape: the command and the server are different processes sharing Redis."""
    raw = await database_sync_to_async(bearer)(alice)
    socket = await ws.connect(f"{server.ws_url}?token={raw}")
    assert (await ws.recv_json(socket))["type"] == "hello"

    result = await asyncio.to_thread(manage, "revoke_token", await database_sync_to_async(token_id)(raw))
    finished = time.monotonic()

    assert result.returncode == 0, result.stderr
    assert await ws.close_code(socket, timeout=5) == (4401, "revoked"), result.stdout + result.stderr
    assert time.monotonic() - finished < 1.0
    assert "pushed to the running servers through the channel layer" in result.stdout
    assert "applied by 1 server process(es)" in result.stdout
    assert "1 socket(s) closed" in result.stdout
