"""The channel layer sharded over several Redis (REDIS_LAYER_URLS), and a change of that list.

channels-redis places each group and each process's inbox on one shard, chosen by hashing its
name over the list. Every process must therefore use the same list; while a change rolls out
(processes restarted one at a time), old and new processes disagree on where things live, and
events between them are lost on the way. The product must survive that: live sockets get
every message anyway (each process reads the heads of its rooms every second and fills gaps
from the database), restarted processes close their sockets 1012 and clients resume with after.

Each test starts its own redis-servers for the shards (tests/faults.py PrivateRedis); the cache,
rate limits and registry stay on the suite's REDIS_URL.
"""

import asyncio

import httpx
import pytest
from channels.db import database_sync_to_async

from foundation import redis_urls
from foundation.channel_layer import RedisChannelLayer
from rooms.room_events import room_group
from tests.conftest import bearer
from tests.faults import PrivateRedis, ResilientSender, Subscriber

pytestmark = [pytest.mark.redis]

abearer = database_sync_to_async(bearer)


@pytest.fixture
def shards(tmp_path):
    started = []
    try:
        for _ in range(3):
            shard = PrivateRedis(tmp_path)
            shard.start()
            started.append(shard)
        yield started
    finally:
        for shard in started:
            shard.stop()


def layer_over(*shards) -> RedisChannelLayer:
    hosts = [redis_urls.layer_host(redis_urls.parse(shard.url), socket_timeout=5) for shard in shards]
    return RedisChannelLayer(hosts=hosts, prefix="shard-test:")


async def test_over_two_shards_direct_sends_and_group_sends_reach_their_receiver(shards):
    """Two layer objects over the same two shards are two processes. A direct send to a process
    channel (the health probe's) must land on the shard it is read from: upstream channels-redis
    picks another one for about half of all channel names (django/channels_redis#220)."""
    first, second = layer_over(*shards[:2]), layer_over(*shards[:2])
    for number in range(20):
        channel = await first.new_channel()
        await second.send(channel, {"type": "probe", "n": number})
        assert (await asyncio.wait_for(first.receive(channel), 3))["n"] == number
    channel = await first.new_channel()
    await first.group_add("room.1", channel)
    await second.group_send("room.1", {"type": "room.message", "seq": 1})
    assert (await asyncio.wait_for(first.receive(channel), 3))["seq"] == 1
    # The group lives on the shard its name hashes to, and only there.
    on = [await shard_client(shard).exists(b"shard-test::group:room.1") for shard in shards[:2]]
    assert on[first.consistent_hash("room.1")] == 1 and sum(on) == 1
    await first.close_pools()
    await second.close_pools()


def shard_client(shard):
    import redis.asyncio

    return redis.asyncio.Redis(port=shard.port)


def layer_env(*shards) -> dict:
    return {"REDIS_LAYER_URLS": ",".join(shard.url for shard in shards), "NATIVE_RATE_WS_FRAMES": "0"}


@pytest.mark.e2e
async def test_while_a_new_shard_list_rolls_out_every_subscriber_gets_every_message_once(
    shards, server_factory, alice, bob, general
):
    """Mid-rollout: ``a`` still shards over two Redis, ``b`` was restarted with a third added.
    They disagree on where each group and inbox lives, so events between them go astray; the
    subscribers on both still get every message of both, exactly once and in order."""
    a = server_factory(env=layer_env(*shards[:2]), name="shards-old")
    b = server_factory(env=layer_env(*shards), name="shards-new")
    listeners = [Subscriber(await abearer(bob), [a]), Subscriber(await abearer(bob), [b])]
    for listener, server in zip(listeners, (a, b), strict=True):
        await listener.until(lambda s=listener, at=server: s.subscribed_to(at), "a subscriber")
    # Each process put the room's group on the shard the room's name hashes to over its list.
    key = f"native:layer:group:{room_group(general.pk)}".encode()
    for server_shards in (shards[:2], shards):
        index = layer_over(*server_shards).consistent_hash(room_group(general.pk))
        assert await shard_client(server_shards[index]).exists(key)

    senders = [
        ResilientSender([server], await abearer(alice), "general", server.log_path.stem) for server in (a, b)
    ]
    for number in range(10):
        await senders[number % 2].send(number)

    acked = sorted(senders[0].acked + senders[1].acked)
    for listener in listeners:
        await listener.until(lambda s=listener: len(s.ids) >= len(acked), "every message", timeout=15)
        assert listener.ids == acked  # exactly once, in order
    for server in (a, b):
        assert httpx.get(f"{server.url}/api/native/health", timeout=10).status_code == 200
    await asyncio.gather(
        *(sender.close() for sender in senders), *(listener.stop() for listener in listeners)
    )
