"""A Redis outage, with two real server processes: what still works, what says 503, and recovery.

The channel layer is only the fast path of live delivery and enforcement: while Redis is down,
live sockets stay open, their messages arrive from the database (each process reads the heads
of its rooms every second), and revocations reach them from the change log (live.poller).

Each test starts its own redis-server (tests/faults.py) and points both servers' REDIS_URL at
it, so stopping it harms nobody else. The database is the test database. These tests are marked
``postgres``: they exercise the production configuration (PostgreSQL + Redis, several
processes), which CI's PostgreSQL pass runs; the embedded configuration has no Redis to lose.

Rate limits are on (high enough never to trip): in production they are what makes login
depend on Redis, and they must fail closed (503), not open, while it is down.
"""

import asyncio
import os
import signal
import time

import httpx
import pytest
from channels.db import database_sync_to_async

from rooms.models import Message
from tests import ws
from tests.conftest import RATE_SETTINGS, bearer
from tests.faults import PrivateRedis, mint_ticket, open_socket, timed_request, wait_until
from tests.flows import login

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

abearer = database_sync_to_async(bearer)

LIMITS_ON = dict.fromkeys(RATE_SETTINGS, "1000/m")
# An answer during an outage must come within the cache's 2-second socket timeout plus slack
# for a loaded CI machine: a hung request is the failure we are looking for.
PROMPT = 6.0
# A frozen Redis can cost a cache timeout (2 s) and a fan-out timeout (2 s) in one request.
FROZEN_PROMPT = 8.0


@pytest.fixture
def redis_server(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)  # in case a test froze it
    server.stop()


@pytest.fixture
def two_servers(server_factory, redis_server):
    env = {"REDIS_URL": redis_server.url, **LIMITS_ON}
    return server_factory(env=env, name="a"), server_factory(env=env, name="b")


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def subscribed_socket(server, token, room="general"):
    socket = await open_socket(server, token)
    await ws.send_json(socket, {"type": "subscribe", "room": room})
    await ws.recv_until(socket, "subscribed", timeout=10)
    return socket


async def test_when_redis_stops_live_sockets_stay_open_and_are_served_from_the_database(
    two_servers, redis_server, alice, bob, general
):
    a, b = two_servers
    alice_token = await abearer(alice)
    listeners = [
        await subscribed_socket(a, await abearer(bob)),
        await subscribed_socket(b, await abearer(bob)),
    ]
    doomed = await open_socket(b, alice_token)  # authenticated, not subscribed
    redis_server.stop()

    # A message posted on one process reaches subscribers on both, from the database.
    posted, elapsed = timed_request(
        "POST", f"{a.url}/api/native/rooms/general/messages", headers=auth(alice_token), json={"body": "dark"}
    )
    assert posted.status_code == 201 and elapsed < PROMPT
    for socket in listeners:
        frame, _ = await ws.recv_until(socket, "message", timeout=PROMPT)
        assert frame["message"]["id"] == posted.json()["id"]
    # A revocation reaches the other process's socket from the change log, without Redis.
    logout, _ = timed_request("DELETE", f"{a.url}/api/native/logout", headers=auth(alice_token))
    assert logout.status_code == 204
    assert await ws.close_code(doomed, timeout=PROMPT) == (4401, "revoked")
    for server in (a, b):
        log = server.log()
        assert "channel layer unavailable" in log and "live delivery continues from the database" in log
        assert "Exception inside application" not in log
    await asyncio.gather(*(socket.close() for socket in listeners))


async def test_while_redis_is_down_reads_and_posts_work_and_login_answers_503(
    two_servers, redis_server, alice, bob, general
):
    a, b = two_servers
    token = await abearer(alice)
    redis_server.stop()

    health, elapsed = timed_request("GET", f"{a.url}/api/native/health")
    assert health.status_code == 503 and elapsed < PROMPT
    assert health.json() == {"status": "down", "database": "ok", "channel_layer": "down", "cache": "down"}

    for server in (a, b):
        for path in ("me", "rooms", "rooms/general/history"):
            response, elapsed = timed_request("GET", f"{server.url}/api/native/{path}", headers=auth(token))
            assert response.status_code == 200, (path, response.text)
            assert elapsed < PROMPT, path
    # A post is committed and acknowledged; only its live fan-out is lost (a resuming client
    # reads it with after=).
    posted, elapsed = timed_request(
        "POST",
        f"{b.url}/api/native/rooms/general/messages",
        headers=auth(token),
        json={"body": "in the dark"},
    )
    assert posted.status_code == 201 and elapsed < PROMPT
    assert await database_sync_to_async(Message.objects.filter(pk=posted.json()["id"]).exists)()

    # Login fails closed: its rate limits cannot be counted, and an outage must not lift them.
    challenge, elapsed = timed_request("GET", f"{a.url}/api/native/challenge")
    assert challenge.status_code == 503 and elapsed < PROMPT
    assert challenge.json()["error"] == "unavailable"
    token_response, elapsed = timed_request(
        "POST",
        f"{b.url}/api/native/token",
        json={"public_key": "ssh-ed25519 AAAA", "nonce": "n" * 43, "signature": "sig"},
    )
    assert token_response.status_code == 503 and elapsed < PROMPT
    assert token_response.json()["error"] == "unavailable"

    # A ticket can still be minted and used (the database holds it), and the new socket is
    # served from the database too: it sees the next message.
    ticket = mint_ticket(a.url, token)
    socket = await ws.connect(f"{a.ws_url}?ticket={ticket}")
    assert (await ws.recv_json(socket, timeout=PROMPT))["type"] == "hello"
    await ws.send_json(socket, {"type": "subscribe", "room": "general"})
    await ws.recv_until(socket, "subscribed", timeout=PROMPT)
    later, _ = timed_request(
        "POST", f"{b.url}/api/native/rooms/general/messages", headers=auth(token), json={"body": "still dark"}
    )
    frame, _ = await ws.recv_until(socket, "message", timeout=PROMPT)
    assert frame["message"]["id"] == later.json()["id"]
    assert "Exception inside application" not in a.log()
    assert "fan-out to room." in b.log()  # the operator sees that the fast path failed
    await socket.close()


async def test_after_redis_restarts_the_same_processes_log_in_and_fan_out_again(
    two_servers, redis_server, alice, bob, general, keys
):
    a, b = two_servers
    pids = [a.process.pid, b.process.pid]
    old_socket = await subscribed_socket(b, await abearer(bob))
    redis_server.stop()
    assert httpx.get(f"{a.url}/api/native/challenge", timeout=10).status_code == 503

    redis_server.start()  # same port, empty: counters and layer state are gone
    for server in (a, b):
        # Login comes back last: after a failure the rate limiter leaves the cache alone for
        # CACHE_RETRY_AFTER (3 s), so that a hung Redis costs one timeout, not one per request.
        for path in ("health", "challenge"):
            wait_until(
                lambda url=f"{server.url}/api/native/{path}": httpx.get(url, timeout=10).status_code == 200,
                timeout=15,
                what=f"{path} to recover",
            )
    # New logins (challenge + signed token), new tickets and sockets, fan-out across processes.
    alice_token = login(a.url, keys["alice"])["token"]
    bob_token = login(b.url, keys["bob"])["token"]
    listener = await subscribed_socket(b, bob_token)
    sender = await open_socket(a, alice_token)
    await ws.send_json(sender, {"type": "send", "room": "general", "body": "we are back", "ref": "r"})
    ack = await ws.recv_json(sender, timeout=10)
    assert ack["type"] == "ack"
    frame = await ws.recv_json(listener, timeout=10)
    assert frame["message"]["id"] == ack["id"] and frame["message"]["body"] == "we are back"
    # The socket that lived through the outage got it too, once.
    old_frame, _ = await ws.recv_until(old_socket, "message", timeout=10)
    assert old_frame["message"]["id"] == ack["id"]
    assert [a.process.pid, b.process.pid] == pids and a.process.poll() is None and b.process.poll() is None
    # The fast path is back: the hub re-joined its groups once the layer answered again.
    wait_until(lambda: "re-joined its groups" in b.log(), timeout=15, what="the hub to re-join its groups")
    await asyncio.gather(sender.close(), listener.close(), old_socket.close())


async def test_a_frozen_redis_costs_seconds_not_a_hang_and_sockets_are_served_meanwhile(
    two_servers, redis_server, alice, bob, general
):
    """A Redis that accepts connections but never answers (stopped process, network partition)
    is worse than a dead one: without socket timeouts every call would wait forever."""
    a, b = two_servers
    token, other_token = await abearer(alice), await abearer(alice)
    socket = await subscribed_socket(b, await abearer(bob))
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    started = time.monotonic()

    me, elapsed = timed_request("GET", f"{a.url}/api/native/me", headers=auth(token))
    assert me.status_code == 200 and elapsed < FROZEN_PROMPT
    challenge, elapsed = timed_request("GET", f"{a.url}/api/native/challenge")
    assert challenge.status_code == 503 and elapsed < FROZEN_PROMPT
    # The post commits; the fan-out to the frozen layer gives up after FAN_OUT_TIMEOUT.
    posted, elapsed = timed_request(
        "POST", f"{a.url}/api/native/rooms/general/messages", headers=auth(token), json={"body": "frozen"}
    )
    assert posted.status_code == 201 and elapsed < FROZEN_PROMPT
    # A logout is committed too; telling the sockets of that token gives up the same way.
    logout, elapsed = timed_request("DELETE", f"{b.url}/api/native/logout", headers=auth(other_token))
    assert logout.status_code == 204 and elapsed < FROZEN_PROMPT
    # The subscriber still gets the post, read from the database while the layer hangs.
    remaining = 30 - (time.monotonic() - started)
    frame, _ = await ws.recv_until(socket, "message", timeout=remaining)
    assert frame["message"]["id"] == posted.json()["id"]

    os.kill(redis_server.process.pid, signal.SIGCONT)
    wait_until(
        lambda: httpx.get(f"{a.url}/api/native/health", timeout=10).status_code == 200,
        timeout=15,
        what="health to recover",
    )
    again = await subscribed_socket(b, await abearer(bob))
    await asyncio.gather(again.close(), socket.close())
