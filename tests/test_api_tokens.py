"""Bearer authentication and token management: me, logout, tokens list / revoke one / revoke all."""

from datetime import timedelta

import pytest
from django.utils import timezone

from foundation.timestamps import isoformat
from tests.conftest import auth_header, bearer
from tokens.models import NativeToken

pytestmark = pytest.mark.django_db


TOKEN_INFO_FIELDS = {
    "id",
    "kind",
    "device_name",
    "user_agent",
    "created_ip",
    "created_at",
    "last_used_at",
    "expires_at",
    "current",
    "live_sockets",
}


def open_socket_for(credential_id: str, user_id: int, connection_id: str):
    """Register a live websocket in the presence registry, as the websocket layer does."""
    from live import presence

    presence.opened(
        presence.LiveSocket(connection_id, credential_id, user_id, presence.PROCESS, None, timezone.now())
    )
    registry = presence.registry()
    if hasattr(registry, "flush"):  # Redis: written by a background thread every 100 ms
        registry.flush()
    return connection_id


@pytest.fixture
def live_registry():
    from live import presence

    opened = []
    yield opened
    for connection_id in opened:
        presence.closed(connection_id)


def test_me_describes_the_user_and_the_current_token(client, alice):
    raw = bearer(alice, device_name="laptop", user_agent="native/1.0", client_ip="203.0.113.9")
    response = client.get("/api/native/me", **auth_header(raw))
    assert response.status_code == 200
    data = response.json()
    assert data["user"] == {"id": alice.pk, "username": "alice"}
    token = data["token"]
    assert set(token) == TOKEN_INFO_FIELDS
    assert (token["kind"], token["device_name"], token["user_agent"]) == ("native", "laptop", "native/1.0")
    assert token["created_ip"] == "203.0.113.9" and token["current"] is True
    assert token["id"] == NativeToken.objects.get().public_id and token["live_sockets"] == 0


def test_a_service_token_has_the_same_token_info_fields_with_null_where_they_do_not_apply(client, alice):
    from tokens.service_tokens import mint

    raw, claims = mint(alice, name="deploy-bot")
    response = client.get("/api/native/me", **auth_header(raw))
    assert response.status_code == 200
    token = response.json()["token"]
    assert set(token) == TOKEN_INFO_FIELDS
    assert token == {
        "id": claims.jti,
        "kind": "service",
        "device_name": "deploy-bot",
        "user_agent": None,
        "created_ip": None,
        "created_at": isoformat(claims.issued_at),  # to the millisecond (iat_us), like a native token
        "last_used_at": None,
        "expires_at": claims.expires_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "current": True,
        "live_sockets": 0,
    }


def test_live_sockets_counts_the_websockets_open_with_each_token(client, alice, live_registry):
    raw, other = bearer(alice, device_name="this"), bearer(alice, device_name="other")
    this_id = NativeToken.objects.get(device_name="this").public_id
    other_id = NativeToken.objects.get(device_name="other").public_id
    live_registry += [open_socket_for(other_id, alice.pk, f"c{i}") for i in range(2)]
    live_registry.append(open_socket_for(this_id, alice.pk, "c-this"))
    listed = client.get("/api/native/tokens", **auth_header(raw)).json()["tokens"]
    assert {t["id"]: t["live_sockets"] for t in listed} == {this_id: 1, other_id: 2}
    me = client.get("/api/native/me", **auth_header(other)).json()["token"]
    assert (me["id"], me["live_sockets"]) == (other_id, 2)


def test_the_token_list_asks_the_live_registry_once_for_all_tokens(client, alice, monkeypatch):
    from live import presence

    calls = []
    real = presence.counts_for_credentials
    monkeypatch.setattr(presence, "counts_for_credentials", lambda ids: calls.append(list(ids)) or real(ids))
    raws = [bearer(alice, device_name=f"d{i}") for i in range(5)]
    assert len(client.get("/api/native/tokens", **auth_header(raws[0])).json()["tokens"]) == 5
    assert len(calls) == 1 and len(calls[0]) == 5


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer nat_",
        "Bearer nat_" + "A" * 49,
        "Bearer nst_eyJhbGciOiJub25lIn0",
        "Bearer " + "nat_" + "é" * 49,
    ],
)
def test_missing_or_malformed_credentials_get_401(client, alice, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/api/native/me", **extra)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": "A valid bearer token is required."}
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_tampered_or_truncated_token_gets_401(client, alice):
    raw = bearer(alice)
    i = next(i for i in range(len(raw) - 2, 4, -1) if raw[i] != raw[i + 1])  # two different chars
    swapped = raw[:i] + raw[i + 1] + raw[i] + raw[i + 2 :]
    for bad in [raw[:-1], raw + "x", swapped, "nat_" + raw[5:] + raw[4]]:
        assert client.get("/api/native/me", **auth_header(bad)).status_code == 401


def test_an_expired_token_gets_401(client, alice):
    raw = bearer(alice)
    NativeToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/native/me", **auth_header(raw)).status_code == 401


def test_a_disabled_users_token_gets_403(client, alice):
    raw = bearer(alice)
    alice.is_active = False
    alice.save()
    assert client.get("/api/native/me", **auth_header(raw)).status_code == 403


def test_last_used_is_written_at_most_once_a_minute(client, alice, django_assert_num_queries):
    raw = bearer(alice)
    client.get("/api/native/me", **auth_header(raw))
    first = NativeToken.objects.get().last_used_at
    assert first is not None
    with django_assert_num_queries(1):  # the lookup only: no write within the minute
        client.get("/api/native/me", **auth_header(raw))
    assert NativeToken.objects.get().last_used_at == first
    NativeToken.objects.update(last_used_at=timezone.now() - timedelta(seconds=61))
    client.get("/api/native/me", **auth_header(raw))
    assert NativeToken.objects.get().last_used_at > first


def test_logout_revokes_the_presented_token_at_once(client, alice):
    raw, other = bearer(alice), bearer(alice)
    assert client.delete("/api/native/logout", **auth_header(raw)).status_code == 204
    assert client.get("/api/native/me", **auth_header(raw)).status_code == 401
    assert client.get("/api/native/me", **auth_header(other)).status_code == 200
    token = NativeToken.objects.get(revoked_at__isnull=False)
    assert token.revoked_reason == "logout" and token.revoked_by == alice


def test_logout_kills_the_tokens_unused_tickets(client, alice):
    from tokens.exceptions import RevokedCredential
    from tokens.verifier import consume_ticket

    raw = bearer(alice)
    ticket = client.post("/api/native/ws-ticket", **auth_header(raw)).json()["ticket"]
    client.delete("/api/native/logout", **auth_header(raw))

    with pytest.raises(RevokedCredential):
        consume_ticket(ticket)


def test_the_token_list_shows_only_the_callers_live_tokens_newest_first(client, alice, bob):
    old = bearer(alice, device_name="old")
    NativeToken.objects.filter(device_name="old").update(created_at=timezone.now() - timedelta(days=1))
    current = bearer(alice, device_name="current")
    bearer(alice, device_name="expired")
    NativeToken.objects.filter(device_name="expired").update(expires_at=timezone.now())
    bearer(bob, device_name="bobs")
    response = client.get("/api/native/tokens", **auth_header(current))
    listed = response.json()["tokens"]
    assert [t["device_name"] for t in listed] == ["current", "old"]
    assert [t["current"] for t in listed] == [True, False]
    assert old not in response.content.decode()


def test_a_user_revokes_one_of_their_other_tokens(client, alice):
    raw, other = bearer(alice), bearer(alice, device_name="phone")
    other_id = NativeToken.objects.get(device_name="phone").public_id
    assert client.delete(f"/api/native/tokens/{other_id}", **auth_header(raw)).status_code == 204
    assert client.get("/api/native/me", **auth_header(other)).status_code == 401
    assert client.delete(f"/api/native/tokens/{other_id}", **auth_header(raw)).status_code == 404


def test_a_user_cannot_revoke_another_users_token(client, alice, bob):
    raw = bearer(alice)
    bobs = bearer(bob)
    bob_id = NativeToken.objects.get(user=bob).public_id
    response = client.delete(f"/api/native/tokens/{bob_id}", **auth_header(raw))
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert client.get("/api/native/me", **auth_header(bobs)).status_code == 200


def test_log_out_everywhere_revokes_every_token_of_the_caller_only(client, alice, bob):
    raws = [bearer(alice) for _ in range(3)]
    bobs = bearer(bob)
    assert client.delete("/api/native/tokens", **auth_header(raws[0])).status_code == 204
    assert all(client.get("/api/native/me", **auth_header(r)).status_code == 401 for r in raws)
    assert client.get("/api/native/me", **auth_header(bobs)).status_code == 200


def test_ws_ticket_post_gives_201_and_get_gives_200(client, alice):
    raw = bearer(alice)
    posted = client.post("/api/native/ws-ticket", **auth_header(raw))
    got = client.get("/api/native/ws-ticket", **auth_header(raw))
    assert (posted.status_code, got.status_code) == (201, 200)
    data = posted.json()
    assert data["ticket"].startswith("wst_") and data["expires_in"] == 30
    assert data["url"] == f"/api/ws/native?ticket={data['ticket']}"
    assert posted["Cache-Control"] == "no-store"


def test_ws_ticket_needs_a_credential(client, db):
    assert client.post("/api/native/ws-ticket").status_code == 401


def test_logout_with_a_service_token_deny_lists_it(client, alice, django_capture_on_commit_callbacks):
    from tokens.models import RevokedToken
    from tokens.service_tokens import mint

    raw, claims = mint(alice)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete("/api/native/logout", **auth_header(raw)).status_code == 204
    assert RevokedToken.objects.get().jti == claims.jti
    assert client.get("/api/native/me", **auth_header(raw)).status_code == 401


@pytest.mark.parametrize(
    "method, path", [("delete", "/api/native/logout"), ("delete", "/api/native/tokens"), ("delete", "TOKEN")]
)
def test_a_204_has_no_body_and_no_content_type(client, alice, method, path):
    raw = bearer(alice)
    if path == "TOKEN":
        bearer(alice, device_name="other")
        path = f"/api/native/tokens/{NativeToken.objects.get(device_name='other').public_id}"
    response = getattr(client, method)(path, **auth_header(raw))
    assert response.status_code == 204
    assert response.content == b"" and "Content-Type" not in response


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/native/me"),
        ("get", "/api/native/tokens"),
        ("post", "/api/native/ws-ticket"),
        ("delete", "/api/native/logout"),
        ("get", "/api/native/rooms"),
        ("get", "/api/native/rooms/general/members"),
    ],
)
def test_every_401_carries_a_bearer_challenge(client, db, method, path):
    response = getattr(client, method)(path, HTTP_AUTHORIZATION="Bearer nat_nope")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
