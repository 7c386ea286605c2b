"""The guarantee of API.md's "Enforcement on live sockets", against real server processes.

Every change that takes a right away reaches every live socket it affects within 2 seconds of
its commit, in every configuration: made by an operator command in another process (with no
Redis at all in the embedded default, or with a Redis the command cannot reach), with its push
lost on the way, or made by a cascade or by time itself (expiry). The commit time is the change
log row's own timestamp (foundation.models.Change.created_at), written in the committing transaction.
"""

import asyncio
import subprocess
import time
from datetime import timedelta

import httpx
import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from foundation.models import Change
from rooms.models import Room
from tests import ws
from tests.conftest import ON_REDIS, bearer
from tests.server import free_port, run_manage
from tokens import service_tokens
from tokens.models import NativeToken
from tokens.verifier import verify_bearer

pytestmark = pytest.mark.e2e

BOUND = 2.0  # seconds from commit to effect, at worst (API.md)
abearer = database_sync_to_async(bearer)


async def amanage(*args, env=None) -> subprocess.CompletedProcess:
    result = await asyncio.to_thread(run_manage, *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@database_sync_to_async
def committed_at(kind: str) -> float:
    return Change.objects.filter(kind=kind).latest("seq").created_at.timestamp()


async def open_socket(server, raw: str, room: str | None = None):
    socket = await ws.connect(server.ws_url, additional_headers={"Authorization": f"Bearer {raw}"})
    assert (await ws.recv_json(socket))["type"] == "hello"
    if room is not None:
        await ws.send_json(socket, {"type": "subscribe", "room": room})
        await ws.recv_until(socket, "subscribed")
    return socket


async def closed_at(socket) -> tuple[int, str, float]:
    code, reason = await ws.close_code(socket, timeout=15)
    return code, reason, time.time()


async def unsubscribed_at(socket) -> tuple[dict, float]:
    frame, _ = await ws.recv_until(socket, "unsubscribed", timeout=15)
    return frame, time.time()


def service_token(user) -> str:
    return service_tokens.mint(user, ttl=3600)[0]


async def still_open(socket) -> bool:
    await ws.send_json(socket, {"type": "ping"})
    return (await ws.recv_until(socket, "pong", timeout=5))[0] == {"type": "pong"}


def post(server, raw: str, room: str, body: str) -> dict:
    response = httpx.post(
        f"{server.url}/api/native/rooms/{room}/messages",
        json={"body": body},
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


# --- (1) each command, run as its own process against a running server --------------------------


async def test_revoke_token_with_a_native_token_id_closes_its_socket(server, alice):
    raw = await abearer(alice)
    doomed, bystander = await open_socket(server, raw), await open_socket(server, await abearer(alice))
    watching = asyncio.create_task(closed_at(doomed))

    result = await amanage("revoke_token", await database_sync_to_async(lambda: verify_bearer(raw).id)())

    code, reason, at = await watching
    assert (code, reason) == (4401, "revoked")
    assert at - await committed_at("tokens_revoked") < BOUND
    assert "applied by 1 server process(es)" in result.stdout and "1 socket(s) closed" in result.stdout
    assert await still_open(bystander)
    await bystander.close()


async def test_revoke_token_with_a_jti_closes_the_service_tokens_socket_and_refuses_it(server, alice):
    raw = await database_sync_to_async(service_token)(alice)
    socket = await open_socket(server, raw)
    watching = asyncio.create_task(closed_at(socket))

    result = await amanage("revoke_token", await database_sync_to_async(lambda: verify_bearer(raw).id)())

    code, reason, at = await watching
    assert (code, reason) == (4401, "revoked")
    assert at - await committed_at("jtis_denied") < BOUND
    assert "1 socket(s) closed" in result.stdout
    me = httpx.get(f"{server.url}/api/native/me", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == 401


async def test_revoke_user_tokens_closes_every_socket_of_theirs_service_tokens_included(server, alice, bob):
    service = await database_sync_to_async(service_token)(alice)
    sockets = [await open_socket(server, await abearer(alice)), await open_socket(server, service)]
    bobs = await open_socket(server, await abearer(bob))
    watching = [asyncio.create_task(closed_at(s)) for s in sockets]

    result = await amanage("revoke_user_tokens", "alice")

    commit = await committed_at("user_floor")
    for code, reason, at in await asyncio.gather(*watching):
        assert (code, reason) == (4401, "revoked")
        assert at - commit < BOUND
    assert "2 socket(s) closed" in result.stdout
    assert (
        httpx.get(f"{server.url}/api/native/me", headers={"Authorization": f"Bearer {service}"}).status_code
        == 401
    )
    assert await still_open(bobs)
    await bobs.close()


async def test_remove_member_ends_the_subscription_and_nothing_more_reaches_it(server, alice, bob, general):
    alice_raw = await abearer(alice)
    alices, bobs = (
        await open_socket(server, alice_raw, "general"),
        await open_socket(server, await abearer(bob), "general"),
    )
    watching = asyncio.create_task(unsubscribed_at(bobs))

    result = await amanage("remove_member", "general", "bob")

    frame, at = await watching
    assert frame == {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"}
    assert at - await committed_at("member_removed") < BOUND
    assert "1 subscription(s) ended" in result.stdout
    posted = await asyncio.to_thread(post, server, alice_raw, "general", "bob must not see this")
    assert (await ws.recv_until(alices, "message"))[0]["message"]["id"] == posted["id"]
    assert await ws.no_frame(bobs, wait=1.0)
    await asyncio.gather(alices.close(), bobs.close())


# --- (2) PostgreSQL + Redis, two servers, the command cannot reach Redis --------------------------


@pytest.fixture
def two_servers(server_factory):
    return server_factory(name="enforce-a"), server_factory(name="enforce-b")


def confirmed_by(result, *servers) -> bool:
    """The command's confirmation line names each of these server processes (the suite's
    shared server may report too)."""
    line = next(line for line in result.stdout.splitlines() if line.startswith("live sockets: applied by"))
    return all(f":{server.process.pid}" in line for server in servers)


def unreachable_redis() -> dict:
    return {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_command_that_cannot_reach_redis_still_closes_sockets_on_every_server(
    two_servers, alice, bob
):
    a, b = two_servers
    raw = await abearer(alice)
    sockets = [await open_socket(a, raw), await open_socket(b, raw)]
    service = await database_sync_to_async(service_token)(bob)
    bobs = [await open_socket(a, service), await open_socket(b, service)]
    watching = [asyncio.create_task(closed_at(s)) for s in sockets + bobs]

    token_id = await database_sync_to_async(lambda: verify_bearer(raw).id)()
    first = await amanage("revoke_token", token_id, env=unreachable_redis())
    second = await amanage("revoke_user_tokens", "bob", env=unreachable_redis())

    results = await asyncio.gather(*watching)
    native_commit, floor_commit = await committed_at("tokens_revoked"), await committed_at("user_floor")
    for code, reason, at in results[:2]:
        assert (code, reason) == (4401, "revoked") and at - native_commit < BOUND
    for code, reason, at in results[2:]:
        assert (code, reason) == (4401, "revoked") and at - floor_commit < BOUND
    for result in (first, second):
        assert "push to the servers failed (" in result.stdout
        assert confirmed_by(result, a, b)
    assert "2 socket(s) closed" in first.stdout and "2 socket(s) closed" in second.stdout


@pytest.mark.postgres
@pytest.mark.redis
async def test_remove_member_without_redis_unsubscribes_on_every_server(two_servers, alice, bob, general):
    a, b = two_servers
    raw = await abearer(bob)
    sockets = [await open_socket(a, raw, "general"), await open_socket(b, raw, "general")]
    watching = [asyncio.create_task(unsubscribed_at(s)) for s in sockets]

    result = await amanage("remove_member", "general", "bob", env=unreachable_redis())

    commit = await committed_at("member_removed")
    for frame, at in await asyncio.gather(*watching):
        assert frame["reason"] == "membership_revoked" and at - commit < BOUND
    assert confirmed_by(result, a, b) and "2 subscription(s) ended" in result.stdout


# --- (3) pushes and room events lost on the way ---------------------------------------------------


@pytest.fixture
def lossy_server(server_factory):
    layer = "LossyRedisLayer" if ON_REDIS else "LossyInMemoryLayer"
    env = {"CHANNEL_LAYER_BACKEND": f"tests.lossy_layer.{layer}", "NATIVE_LIVE_PG_LISTEN": "false"}
    return server_factory(env=env, name="lossy")


async def test_a_logout_whose_push_is_lost_still_closes_its_socket(lossy_server, alice):
    raw = await abearer(alice)
    socket = await open_socket(lossy_server, raw)
    watching = asyncio.create_task(closed_at(socket))

    response = await asyncio.to_thread(
        httpx.delete, f"{lossy_server.url}/api/native/logout", headers={"Authorization": f"Bearer {raw}"}
    )

    assert response.status_code == 204
    code, reason, at = await watching
    assert (code, reason) == (4401, "revoked")
    assert at - await committed_at("tokens_revoked") < BOUND


async def test_messages_whose_events_are_lost_still_arrive_once_and_in_order(
    lossy_server, alice, bob, general
):
    alice_raw = await abearer(alice)
    bobs = await open_socket(lossy_server, await abearer(bob), "general")
    posted = [await asyncio.to_thread(post, lossy_server, alice_raw, "general", f"m{i}") for i in range(6)]

    received = []
    deadline = time.monotonic() + 6 * BOUND
    while len(received) < len(posted) and time.monotonic() < deadline:
        frame, _ = await ws.recv_until(bobs, "message", timeout=deadline - time.monotonic())
        received.append(frame["message"]["id"])

    assert received == [m["id"] for m in posted]  # the last one's event was lost too (even seq)
    assert await ws.no_frame(bobs, wait=1.0)  # and nothing twice
    await bobs.close()


async def test_a_membership_removed_without_any_push_still_unsubscribes(lossy_server, bob, general):
    socket = await open_socket(lossy_server, await abearer(bob), "general")
    watching = asyncio.create_task(unsubscribed_at(socket))

    await database_sync_to_async(lambda: general.memberships.get(user=bob).delete())()

    frame, at = await watching
    assert frame["reason"] == "membership_revoked"
    assert at - await committed_at("member_removed") < BOUND


# --- (4) cascades, deactivation and expiry ----------------------------------------------------------


async def test_deleting_a_room_unsubscribes_its_live_subscribers(server, alice, bob, general):
    sockets = [
        await open_socket(server, await abearer(alice), "general"),
        await open_socket(server, await abearer(bob), "general"),
    ]
    watching = [asyncio.create_task(unsubscribed_at(s)) for s in sockets]

    await database_sync_to_async(lambda: Room.objects.get(slug="general").delete())()

    commit = await committed_at("room_deleted")
    for frame, at in await asyncio.gather(*watching):
        assert frame == {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"}
        assert at - commit < BOUND
    for socket in sockets:
        assert await still_open(socket)  # their credentials are fine: only the room is gone
        await socket.close()


async def test_deleting_a_user_closes_their_sockets(server, alice, bob):
    sockets = [
        await open_socket(server, await abearer(bob)),
        await open_socket(server, await database_sync_to_async(service_token)(bob)),
    ]
    alices = await open_socket(server, await abearer(alice))
    watching = [asyncio.create_task(closed_at(s)) for s in sockets]

    await database_sync_to_async(bob.delete)()

    commit = await committed_at("user_deleted")
    for code, _reason, at in await asyncio.gather(*watching):
        assert code == 4401 and at - commit < BOUND
    assert await still_open(alices)
    await alices.close()


async def test_deactivating_a_user_closes_their_sockets_with_4403(server, bob):
    socket = await open_socket(server, await abearer(bob))
    watching = asyncio.create_task(closed_at(socket))

    def deactivate():
        bob.is_active = False
        bob.save()

    await database_sync_to_async(deactivate)()

    code, reason, at = await watching
    assert (code, reason) == (4403, "inactive")
    assert at - await committed_at("user_disabled") < BOUND


async def test_a_token_reaching_its_expiry_closes_its_socket(server, alice):
    raw = await abearer(alice)
    expiry = timezone.now() + timedelta(seconds=1.5)
    await database_sync_to_async(lambda: NativeToken.objects.update(expires_at=expiry))()
    socket = await open_socket(server, raw)

    code, reason, at = await closed_at(socket)

    assert (code, reason) == (4401, "expired")
    assert 0 <= at - expiry.timestamp() < BOUND
