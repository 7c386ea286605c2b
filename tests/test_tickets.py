"""Websocket tickets (tokens.tickets): signed by the server, free to mint, single use at claim,
dead with their credential. Who is who: alice holds the tickets; bob is another user whose
token a tampered ticket tries to borrow.

The close codes are API.md's: 4401 for a bad, expired, replayed or revoked ticket, 4403 when
its user is inactive. Cross-process single use (the same ticket at two servers at once) is
tests/test_races.py's.
"""

import json
from datetime import timedelta
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.comm import closed_with, hello, open_socket
from tests.conftest import auth_header, bearer
from tokens import service_tokens, tickets
from tokens.models import NativeToken, UsedTicket
from tokens.revocation import revoke_by_id, revoke_jti, revoke_user
from tokens.verifier import verify_bearer

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def native_ticket(user) -> tuple[str, str]:
    raw = bearer(user)
    return raw, tickets.mint(verify_bearer(raw))


@database_sync_to_async
def service_ticket(user) -> tuple[str, str]:
    raw, _ = service_tokens.mint(user, ttl=3600)
    return raw, tickets.mint(verify_bearer(raw))


def payload_of(ticket: str) -> dict:
    body, _ = ticket[len(tickets.PREFIX) :].rsplit(":", 1)
    return json.loads(signing.b64_decode(body.encode()))


def with_payload(ticket: str, payload: dict) -> str:
    """The same signature over another payload: what a client that edits a ticket sends."""
    _, signature = ticket[len(tickets.PREFIX) :].rsplit(":", 1)
    body = signing.b64_encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    return f"{tickets.PREFIX}{body}:{signature}"


async def refused(ticket: str) -> tuple[int, str]:
    return await closed_with(await open_socket(f"ticket={ticket}"))


async def opens(ticket: str) -> None:
    communicator, _ = await hello(f"ticket={ticket}")
    await communicator.disconnect()


# --- minting --------------------------------------------------------------------------------


def test_minting_a_ticket_writes_nothing(client, alice):
    raw = bearer(alice)
    client.get("/api/native/me", **auth_header(raw))  # the token's once-a-minute last-used write
    with CaptureQueriesContext(connection) as queries:
        answer = client.post("/api/native/ws-ticket", **auth_header(raw))
    assert answer.status_code == 201 and answer.json()["ticket"].startswith("wst_")
    assert [q["sql"] for q in queries.captured_queries if not q["sql"].lstrip().startswith("SELECT")] == []
    assert not UsedTicket.objects.exists()


def test_a_ticket_says_who_and_which_credential_and_nothing_secret(alice):
    raw = bearer(alice)
    credential = verify_bearer(raw)
    claims = tickets.read(tickets.mint(credential))
    assert (claims.user_id, claims.kind, claims.credential_id) == (alice.pk, "native", credential.id)
    assert 29 < (claims.expires_at - timezone.now()).total_seconds() <= 30
    assert raw not in json.dumps(payload_of(tickets.mint(credential)))


def test_every_ticket_has_its_own_claim_key_and_keys_sort_by_expiry(alice):
    credential = verify_bearer(bearer(alice))
    first = tickets.read(tickets.mint(credential))
    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + timedelta(seconds=1)):
        later = tickets.read(tickets.mint(credential))
    assert first.claim_key != tickets.read(tickets.mint(credential)).claim_key
    assert first.claim_key < tickets.claim_keys_before(later.expires_at) <= later.claim_key


# --- single use -------------------------------------------------------------------------------


async def test_a_ticket_opens_one_socket_and_is_then_refused_as_replayed(alice):
    _, ticket = await native_ticket(alice)
    first, _ = await hello(f"ticket={ticket}")
    assert await refused(ticket) == (4401, "unauthorized")
    assert await refused(ticket) == (4401, "unauthorized")
    await first.disconnect()
    assert await database_sync_to_async(UsedTicket.objects.count)() == 1


async def test_a_service_token_ticket_is_single_use_too(alice):
    _, ticket = await service_ticket(alice)
    await opens(ticket)
    assert await refused(ticket) == (4401, "unauthorized")


# --- what a client cannot make or change -------------------------------------------------------


async def test_an_expired_ticket_is_refused(alice):
    raw = await database_sync_to_async(bearer)(alice)
    credential = await database_sync_to_async(verify_bearer)(raw)
    with mock.patch("django.utils.timezone.now", return_value=timezone.now() - timedelta(seconds=31)):
        ticket = tickets.mint(credential)
    assert await refused(ticket) == (4401, "unauthorized")


async def test_a_forged_ticket_is_refused(alice):
    _, ticket = await native_ticket(alice)
    forged_signature = ticket[:-6] + ("AAAAAA" if not ticket.endswith("AAAAAA") else "BBBBBB")
    made_up = with_payload(ticket, {**payload_of(ticket), "r": "0" * 22})
    for bad in (forged_signature, made_up, "wst_e30:" + "A" * 43, "wst_", "wst_nope", "wst_é", "x" * 2000):
        assert await refused(bad) == (4401, "unauthorized"), bad


@pytest.mark.parametrize(
    "field",
    ["r", "x", "u", "k", "c"],
    ids=["random id", "expiry", "user", "kind", "credential"],
)
async def test_a_ticket_with_any_field_changed_is_refused(alice, bob, field):
    _, ticket = await native_ticket(alice)
    bobs_credential = await database_sync_to_async(lambda: verify_bearer(bearer(bob)))()
    payload = payload_of(ticket)
    payload[field] = {
        "r": "1" * 22,
        "x": payload["x"] + 3_600_000,
        "u": bob.pk,
        "k": "s",
        "c": bobs_credential.id,
    }[field]
    assert await refused(with_payload(ticket, payload)) == (4401, "unauthorized")
    await opens(ticket)  # the untouched ticket was not spent by the refusals


@pytest.mark.parametrize("field", ["ce", "ci"], ids=["credential expiry", "credential issued at"])
async def test_a_service_ticket_with_its_credential_times_changed_is_refused(alice, field):
    _, ticket = await service_ticket(alice)
    payload = payload_of(ticket)
    payload[field] = payload[field] + 86_400
    assert await refused(with_payload(ticket, payload)) == (4401, "unauthorized")


async def test_a_ticket_signed_with_another_key_is_refused(alice, settings):
    raw = await database_sync_to_async(bearer)(alice)
    credential = await database_sync_to_async(verify_bearer)(raw)
    settings.SECRET_KEY = "another-deployment-" + "k" * 50
    ticket = tickets.mint(credential)
    settings.SECRET_KEY = "this-deployment-" + "s" * 50
    assert await refused(ticket) == (4401, "unauthorized")


async def test_a_ticket_signed_with_a_fallback_key_still_works_during_a_rotation(alice, settings):
    raw = await database_sync_to_async(bearer)(alice)
    credential = await database_sync_to_async(verify_bearer)(raw)
    old_key = settings.SECRET_KEY
    ticket = tickets.mint(credential)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-new-key-" + "n" * 50, [old_key]
    await opens(ticket)


# --- dead with its credential -------------------------------------------------------------------


async def test_a_ticket_minted_by_a_token_that_then_logs_out_is_refused(alice, async_client):
    raw = await database_sync_to_async(bearer)(alice)
    minted = await async_client.post("/api/native/ws-ticket", headers={"Authorization": f"Bearer {raw}"})
    ticket = minted.json()["ticket"]
    logout = await async_client.delete("/api/native/logout", headers={"Authorization": f"Bearer {raw}"})
    assert logout.status_code == 204
    assert await refused(ticket) == (4401, "unauthorized")


async def test_a_ticket_dies_with_revoke_token(alice):
    raw, ticket = await native_ticket(alice)
    token_id = await database_sync_to_async(lambda: verify_bearer(raw).id)()
    await database_sync_to_async(revoke_by_id)(token_id)
    assert await refused(ticket) == (4401, "unauthorized")


async def test_a_ticket_dies_with_revoke_user_tokens_whichever_credential_minted_it(alice):
    _, native = await native_ticket(alice)
    _, service = await service_ticket(alice)
    await database_sync_to_async(revoke_user)(alice)
    assert await refused(native) == (4401, "unauthorized")
    assert await refused(service) == (4401, "unauthorized")


async def test_a_ticket_dies_when_its_service_token_is_deny_listed(alice):
    raw, ticket = await service_ticket(alice)
    claims = service_tokens.read(raw)
    await database_sync_to_async(revoke_jti)(claims.jti, expires_at=claims.expires_at)
    assert await refused(ticket) == (4401, "unauthorized")


async def test_a_ticket_dies_when_its_native_token_id_is_deny_listed_in_admin(alice):
    from tokens.models import RevokedToken

    raw, ticket = await native_ticket(alice)
    token_id = await database_sync_to_async(lambda: verify_bearer(raw).id)()
    await database_sync_to_async(RevokedToken.objects.create)(
        jti=token_id, expires_at=timezone.now() + timedelta(days=30)
    )
    assert await refused(ticket) == (4401, "unauthorized")


async def test_a_ticket_of_a_deactivated_user_is_refused_4403(alice):
    _, native = await native_ticket(alice)
    _, service = await service_ticket(alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    assert await refused(native) == (4403, "inactive")
    assert await refused(service) == (4403, "inactive")


async def test_a_ticket_of_a_deleted_user_is_refused(alice):
    _, ticket = await native_ticket(alice)
    await database_sync_to_async(alice.delete)()
    assert await refused(ticket) == (4401, "unauthorized")


async def test_a_ticket_outliving_its_token_is_refused(alice):
    raw, ticket = await native_ticket(alice)
    await database_sync_to_async(NativeToken.objects.update)(expires_at=timezone.now() - timedelta(seconds=1))
    assert await refused(ticket) == (4401, "unauthorized")
