"""Websocket authentication: every credential path of API.md, and every refusal code.

What a ticket itself refuses (replayed, expired, forged, tampered, dead with its credential)
is tests/test_tickets.py's."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from tests.comm import closed_with, hello, open_socket
from tests.conftest import bearer
from tokens import tickets
from tokens.crypto import digest
from tokens.models import NativeToken
from tokens.revocation import revoke_native_tokens
from tokens.service_tokens import mint
from tokens.verifier import verify_bearer

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def token_and_ticket(user):
    raw = bearer(user)
    return raw, tickets.mint(verify_bearer(raw))


@database_sync_to_async
def revoke(raw):
    revoke_native_tokens(NativeToken.objects.filter(digest=digest(raw)))


async def test_a_ticket_opens_a_socket_and_says_hello(alice):
    _, ticket = await token_and_ticket(alice)
    communicator, frame = await hello(f"ticket={ticket}")
    assert frame["user"] == {"id": alice.pk, "username": "alice"}
    assert isinstance(frame["connection_id"], str) and frame["connection_id"]
    await communicator.disconnect()


async def test_an_authorization_header_bearer_token_is_accepted(alice):
    raw = await database_sync_to_async(bearer)(alice)
    communicator, frame = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
    assert frame["user"]["username"] == "alice"
    await communicator.disconnect()


async def test_a_query_token_is_accepted_while_the_setting_allows_it(alice, settings):
    raw = await database_sync_to_async(bearer)(alice)
    communicator, _ = await hello(f"token={raw}")
    await communicator.disconnect()


async def test_a_query_token_is_ignored_when_the_setting_forbids_it(alice, settings):
    settings.NATIVE_WS_ALLOW_QUERY_TOKEN = False
    settings.NATIVE_WS_AUTH_TIMEOUT = 0.3
    raw = await database_sync_to_async(bearer)(alice)
    communicator = await open_socket(f"token={raw}")
    assert await closed_with(communicator) == (4408, "auth_timeout")


async def test_a_ticket_takes_precedence_over_a_bad_bearer_header(alice):
    _, ticket = await token_and_ticket(alice)
    communicator, _ = await hello(f"ticket={ticket}", headers=[(b"authorization", b"Bearer nat_garbage")])
    await communicator.disconnect()


async def test_a_first_auth_frame_with_a_ticket_authenticates(alice):
    _, ticket = await token_and_ticket(alice)
    communicator = await open_socket()
    await communicator.send_json_to({"type": "auth", "ticket": ticket})
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "hello"
    await communicator.disconnect()


async def test_a_first_auth_frame_with_a_token_authenticates(alice):
    raw = await database_sync_to_async(bearer)(alice)
    communicator = await open_socket()
    await communicator.send_json_to({"type": "auth", "token": raw})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    await communicator.disconnect()


async def test_no_credential_within_the_timeout_closes_4408(settings, db):
    settings.NATIVE_WS_AUTH_TIMEOUT = 0.2
    communicator = await open_socket()
    assert await closed_with(communicator) == (4408, "auth_timeout")


async def test_a_first_frame_that_is_not_auth_closes_4401(db):
    communicator = await open_socket()
    await communicator.send_json_to({"type": "subscribe", "room": "general"})
    assert await closed_with(communicator) == (4401, "unauthorized")


async def test_an_inactive_user_is_refused_with_4403(alice):
    raw, ticket = await token_and_ticket(alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    communicator = await open_socket(f"ticket={ticket}")
    assert await closed_with(communicator) == (4403, "inactive")


async def test_a_browser_from_a_foreign_origin_is_refused_with_4403(alice):
    _, ticket = await token_and_ticket(alice)
    communicator = await open_socket(f"ticket={ticket}", headers=[(b"origin", b"https://evil.example")])
    assert await closed_with(communicator) == (4403, "origin")
    # The ticket was not spent on the refused attempt.
    communicator, _ = await hello(f"ticket={ticket}")
    await communicator.disconnect()


async def test_a_browser_from_an_allowed_host_gets_in(alice):
    _, ticket = await token_and_ticket(alice)
    communicator, _ = await hello(f"ticket={ticket}", headers=[(b"origin", b"http://localhost:8000")])
    await communicator.disconnect()


async def test_the_socket_closes_4401_when_its_token_expires(alice):
    raw = await database_sync_to_async(bearer)(alice)
    await database_sync_to_async(NativeToken.objects.update)(
        expires_at=timezone.now() + timedelta(seconds=0.5)
    )
    communicator, _ = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
    assert await closed_with(communicator, timeout=3) == (4401, "expired")


async def test_revoking_the_token_closes_its_live_socket_with_4401(alice):
    raw, ticket = await token_and_ticket(alice)
    communicator, _ = await hello(f"ticket={ticket}")
    await revoke(raw)
    assert await closed_with(communicator, timeout=2) == (4401, "revoked")


async def test_revoking_one_token_leaves_the_users_other_sockets_open(alice):
    raw_a, ticket_a = await token_and_ticket(alice)
    _, ticket_b = await token_and_ticket(alice)
    first, _ = await hello(f"ticket={ticket_a}")
    second, _ = await hello(f"ticket={ticket_b}")
    await revoke(raw_a)
    assert await closed_with(first, timeout=2) == (4401, "revoked")
    await second.send_json_to({"type": "ping", "ref": "still-there"})
    assert await second.receive_json_from(timeout=2) == {"type": "pong", "ref": "still-there"}
    await second.disconnect()


# --- a change committed while the socket was still verifying ------------------------------------
# The hub applies each change to the sockets registered at that moment; a socket that was still
# verifying replays the changes it missed from the hub's recent list, and when that list cannot
# answer (too far behind, or the log was reset) the verifier re-checks its credential against the
# database (tokens.verifier.recheck). These tests force that last path.


@pytest.fixture
def replay_cannot_answer(monkeypatch):
    from live.hub import Hub

    monkeypatch.setattr(Hub, "replay", lambda self, socket, since: None)


def change_while_verifying(monkeypatch, change):
    """Make ``change()`` (which records a change in the log) happen after the socket's credential
    was verified and before it registers, and wait until the hub has applied it: the live path
    cannot see this socket, only the re-check can."""
    import time

    from foundation.changelog import head_position
    from live.hub import current_hub
    from native_api import consumer

    verify = consumer.admit

    def admit_then_change(*args):
        credential = verify(*args)
        change()
        _, seq = head_position()
        deadline = time.monotonic() + 5
        while current_hub().position()[1] < seq:
            assert time.monotonic() < deadline, "the hub did not apply the change"
            time.sleep(0.01)
        return credential

    monkeypatch.setattr(consumer, "admit", admit_then_change)


async def refused_before_hello(communicator) -> tuple[int, str]:
    """The close code and reason, when the socket closes without ever saying hello."""
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close", f"expected a close, got {output}"
    return output.get("code"), output.get("reason", "")


@pytest.mark.parametrize("kind", ["native", "service"])
async def test_a_user_deactivated_while_their_socket_verifies_is_closed_4403(
    alice, monkeypatch, replay_cannot_answer, kind
):
    raw = await database_sync_to_async(bearer if kind == "native" else lambda u: mint(u)[0])(alice)

    def deactivate():
        alice.is_active = False
        alice.save()

    change_while_verifying(monkeypatch, deactivate)
    communicator = await open_socket(headers=[(b"authorization", f"Bearer {raw}".encode())])
    assert await refused_before_hello(communicator) == (4403, "inactive")


async def test_a_user_deleted_while_their_service_token_socket_verifies_is_closed_4401(
    alice, monkeypatch, replay_cannot_answer
):
    raw, _ = await database_sync_to_async(mint)(alice)
    change_while_verifying(monkeypatch, alice.delete)
    communicator = await open_socket(headers=[(b"authorization", f"Bearer {raw}".encode())])
    assert await refused_before_hello(communicator) == (4401, "revoked")


async def test_a_floor_set_while_a_native_token_socket_verifies_closes_it_4401(
    alice, monkeypatch, replay_cannot_answer
):
    """revoke_user_tokens revokes native tokens row by row; its floor also refuses one whose row it
    could not see (a login that committed just after it read the rows)."""
    from foundation.changelog import record
    from foundation.models import Change
    from tokens.models import CredentialFloor

    raw = await database_sync_to_async(bearer)(alice)

    def floor_only():
        with transaction.atomic():
            now = timezone.now()
            CredentialFloor.objects.create(user=alice, not_before=now)
            record(Change.Kind.USER_FLOOR, [{"user": alice.pk, "not_before": now.isoformat()}])

    change_while_verifying(monkeypatch, floor_only)
    communicator = await open_socket(headers=[(b"authorization", f"Bearer {raw}".encode())])
    assert await refused_before_hello(communicator) == (4401, "revoked")
