"""Redis under Sentinel (REDIS_URL=redis+sentinel://…): a failover keeps API.md's contract.

Real processes: a primary, a replica and three Sentinels (tests/faults.py SentinelRedis, failing
over about two seconds after the primary dies), started and stopped by each test.

- In this process: when the primary is demoted while our connections to it stay open (a
  READONLY answer), the cache's counters, the live-connection registry and the channel layer
  write to the new primary at their next call, with no error and no restart.
- With two daphne processes: the primary is killed (SIGKILL) while messages stream; every
  acknowledged message reaches each resuming client exactly once, in order; logins, tickets and
  logout work on the new primary, and logout closes the socket 4401.

Marked postgres and redis: the production configuration, which CI's second pass runs.
"""

import asyncio

import httpx
import pytest
import redis
from channels.db import database_sync_to_async
from django.core.cache import caches

from foundation import redis_urls
from foundation.channel_layer import RedisChannelLayer
from live.presence_redis import RedisRegistry
from native_api import counters, ratelimits
from rooms.models import Message
from tests import ws
from tests.conftest import RATE_SETTINGS, bearer
from tests.faults import ResilientSender, SentinelRedis, Subscriber, mint_ticket, open_socket, wait_until
from tests.flows import login
from tests.test_presence import socket_of

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

abearer = database_sync_to_async(bearer)


@pytest.fixture
def sentinel_group(tmp_path):
    group = SentinelRedis(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


def demote_primary(group: SentinelRedis) -> int:
    """Swap the roles by hand and point the Sentinels at the new primary, leaving every client
    connection to the old one open (a Sentinel failover would close them): the next write on
    such a connection is answered READONLY. Returns the new primary's port."""
    old, new = group.primary_port, group.replica_port
    group.client(new).execute_command("REPLICAOF", "NO", "ONE")
    group.client(old).execute_command("REPLICAOF", "127.0.0.1", str(new))
    for port in group.sentinel_ports:
        group.client(port).execute_command("SENTINEL", "REMOVE", group.MASTER)
        group.client(port).execute_command("SENTINEL", "MONITOR", group.MASTER, "127.0.0.1", str(new), "2")
    return new


def test_a_command_that_timed_out_never_hands_its_late_reply_to_the_next_command(sentinel_group):
    """A read that times out (a partition, a stalled primary) must close its connection: the
    reply still arrives later, and a connection put back in the pool would hand it to the next
    command on it (redis/redis-py#4292). The deploy/ partition drill met it as a rate-limit count
    of None (a 500 on ws-ticket) once the cut host's link came back."""
    client = redis_urls.client(sentinel_group.url, socket_timeout=1.0)
    try:
        client.set("late-a", "A")
        client.set("late-b", "B")
        sentinel_group.client(sentinel_group.primary_port).execute_command("CLIENT", "PAUSE", "1500", "ALL")
        with pytest.raises(redis.TimeoutError):
            client.get("late-a")  # answered 0.5 s later, when the pause ends
        # Asked before that late reply comes: on the same connection it would read it as its own.
        assert client.get("late-b") == b"B"
        assert client.incr("late-count") == 1
    finally:
        client.close()


async def test_after_a_demotion_every_redis_user_writes_to_the_new_primary_at_its_next_call(
    sentinel_group, settings
):
    group = sentinel_group
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": [group.url],
            "OPTIONS": {"pool_class": "config.redis_pool.SharedConnectionPool", "socket_timeout": 2},
        }
    }
    registry = RedisRegistry(group.url, prefix="sentinel-test:presence", process="p1")
    layer = RedisChannelLayer(hosts=[redis_urls.layer_host(redis_urls.parse(group.url), socket_timeout=10)])
    channel = await layer.new_channel()
    # Every user has a connection open to the primary.
    assert await asyncio.to_thread(counters.incr, "failover-count", ttl=60) == 1
    registry.opened(socket_of("c1"))
    assert registry.flush()
    await layer.send(channel, {"type": "before"})
    assert (await layer.receive(channel))["type"] == "before"

    new = demote_primary(group)
    with pytest.raises(redis.exceptions.ReadOnlyError):
        group.client(group.primary_port).set("k", "v")  # what a write there gets now

    # The first call of each: no error (the READONLY connection is dropped, the retry asks the
    # Sentinels), and the data is on the new primary.
    assert await asyncio.to_thread(counters.incr, "failover-count", ttl=60) == 2
    cache = caches["default"]
    assert int(group.client(new).get(cache.make_and_validate_key("failover-count"))) == 2
    registry.opened(socket_of("c2"))
    assert registry.flush()  # (its own thread may be the one that writes it: wait for it)
    entry = ("sentinel-test:presence:proc:host:1", "c2")
    wait_until(lambda: group.client(new).hexists(*entry), timeout=5, what="the registry entry")
    await layer.send(channel, {"type": "after"})
    assert (await layer.receive(channel))["type"] == "after"
    assert not ratelimits._cache_is_down()
    registry.stop(forget=False)
    await layer.close_pools()


# --- two server processes, the primary killed under load ----------------------------------------

LIMITS_ON = dict.fromkeys(RATE_SETTINGS, "1000/m")  # login depends on Redis, as in production
BEFORE, AFTER = 10, 15  # messages acknowledged before the kill, and after the failover


@pytest.fixture
def two_servers(sentinel_group, server_factory):
    # In this order, the servers stop before Redis does (fixtures end in reverse order).
    env = {"REDIS_URL": sentinel_group.url, **LIMITS_ON, "NATIVE_RATE_WS_FRAMES": "0"}
    return server_factory(env=env, name="a"), server_factory(env=env, name="b")


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def live_sockets(server, token: str) -> int:
    """What GET tokens says of this token's open sockets: the live-connection registry."""
    tokens = httpx.get(f"{server.url}/api/native/tokens", headers=auth(token), timeout=10).json()["tokens"]
    return next(info["live_sockets"] for info in tokens if info["current"])


async def test_when_the_primary_is_killed_under_load_every_message_arrives_once_and_logins_and_logout_work(
    two_servers, sentinel_group, alice, bob, general, keys
):
    a, b = two_servers
    subscribers = []
    for user, servers in ((bob, [a, b]), (bob, [b, a]), (alice, [a, b]), (alice, [b, a])):
        subscriber = Subscriber(await abearer(user), servers)
        await subscriber.until(lambda s=subscriber, first=servers[0]: s.subscribed_to(first), "a subscriber")
        subscribers.append(subscriber)
    sender = ResilientSender([a, b], await abearer(alice), "general", "failover")
    failover = {}

    async def stream():
        """A steady stream from before the kill until well after the new primary took over."""
        number = 0
        while "acked" not in failover or len(sender.acked) < failover["acked"] + AFTER:
            await sender.send(number)
            number += 1
            await asyncio.sleep(0.05)

    async def kill_the_primary_mid_stream():
        while len(sender.acked) < BEFORE:
            await asyncio.sleep(0.01)
        old = await asyncio.to_thread(sentinel_group.kill_primary)
        failover["acked_at_kill"] = len(sender.acked)
        failover["primary"] = await asyncio.to_thread(sentinel_group.wait_for_failover, old)
        failover["acked"] = len(sender.acked)

    await asyncio.gather(stream(), kill_the_primary_mid_stream())
    acked = sender.acked
    assert acked == sorted(set(acked)) and len(acked) >= BEFORE + AFTER
    assert failover["acked"] > failover["acked_at_kill"], "messages were also sent during the failover"
    assert (
        await database_sync_to_async(
            lambda: list(Message.objects.filter(room=general).order_by("id").values_list("id", flat=True))
        )()
        == acked
    )
    for subscriber in subscribers:
        await subscriber.until(lambda s=subscriber: len(s.ids) >= len(acked), "every acknowledged message")
        assert subscriber.ids == acked  # exactly once, in order, across any reconnection
        # A socket either lived through the failover or was closed 1013 and resumed with after.
        closes = {e.close_code for e in subscriber.events if e.kind == "reconnecting"}
        assert closes <= {1013}, subscriber.events

    # Logins, tickets and revocation on the new primary. Login comes back last: after a failed
    # count the rate limiter leaves the cache alone for CACHE_RETRY_AFTER (3 s).
    for server in (a, b):
        wait_until(
            lambda s=server: httpx.get(f"{s.url}/api/native/challenge", timeout=10).status_code == 200,
            timeout=15,
            what="login to come back",
        )
    token = login(a.url, keys["alice"])["token"]
    assert login(b.url, keys["bob"])["token"]
    socket = await open_socket(b, token)
    spare_ticket = mint_ticket(a.url, token)
    wait_until(lambda: live_sockets(a, token) == 1, timeout=10, what="the registry to count the socket")
    logout = httpx.delete(f"{a.url}/api/native/logout", headers=auth(token), timeout=10)
    assert logout.status_code == 204
    assert await ws.close_code(socket, timeout=3) == (4401, "revoked")
    # No revoked credential is accepted, on either process.
    for server in (a, b):
        assert httpx.get(f"{server.url}/api/native/me", headers=auth(token), timeout=10).status_code == 401
    refused = await ws.connect(f"{b.ws_url}?ticket={spare_ticket}")
    assert (await ws.close_code(refused, timeout=5))[0] == 4401
    # Every part of both processes talks to the new primary; the hubs are back on the fast path.
    for server in (a, b):
        health = httpx.get(f"{server.url}/api/native/health", timeout=10)
        assert health.status_code == 200, health.text
        wait_until(lambda s=server: "re-joined its groups" in s.log(), timeout=10, what="the hub to re-join")
        assert "Exception inside application" not in server.log()
    assert sentinel_group.client(failover["primary"]).dbsize() > 0
    await sender.close()
    for subscriber in subscribers:
        await subscriber.stop()
