"""A server process dies (kill -9) in the middle of a stream: nothing acknowledged is lost.

Two real server processes share the test database and Redis. Subscribers use the real client
(native_client.Tail, given both server URLs to fail over between), and the sender is a careful
client (tests.faults.ResilientSender) that resends an unacknowledged frame with the same
client_id on the surviving server. The promise under test (API.md, "Delivery guarantees"):
every message the server acknowledged reaches every subscriber exactly once, in id order.
"""

import asyncio
import time

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from rooms.models import Message
from tests.conftest import bearer
from tests.faults import ResilientSender, Subscriber, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

abearer = database_sync_to_async(bearer)


@pytest.fixture
def two_servers(server_factory):
    env = {"NATIVE_RATE_WS_FRAMES": "0"}  # the sender streams faster than a person types
    return server_factory(env=env, name="doomed"), server_factory(env=env, name="survivor")


def layer_redis():
    return redis.Redis.from_url(settings.REDIS_URL)


def group_members(room_id: int) -> set[str]:
    """The channel names channels_redis holds in a room's group (its key naming, 4.x)."""
    key = get_channel_layer()._group_key(f"room.{room_id}")
    return {name.decode() for name in layer_redis().zrange(key, 0, -1)}


def inbox_key(channel: str) -> str:
    """The Redis key of the per-process inbox that a process-local channel's events go to."""
    layer = get_channel_layer()
    return layer.prefix + layer.non_local_name(channel)


async def test_after_kill_9_every_acknowledged_message_arrives_once_and_in_order_on_the_survivor(
    two_servers, alice, bob, general
):
    doomed, survivor = two_servers
    before = group_members(general.pk)
    on_doomed = Subscriber(await abearer(bob), [doomed, survivor])
    await on_doomed.until(lambda: on_doomed.subscribed_to(doomed), "the first subscriber")
    doomed_channels = group_members(general.pk) - before
    on_survivor = Subscriber(await abearer(bob), [survivor, doomed])
    await on_survivor.until(lambda: on_survivor.subscribed_to(survivor), "the second subscriber")
    subscribers = (on_doomed, on_survivor)

    sender = ResilientSender([doomed, survivor], await abearer(alice), "general", "stream")

    async def stream(count):
        for number in range(count):
            await sender.send(number)

    async def kill_mid_stream():
        while len(sender.acked) < 25:
            await asyncio.sleep(0.005)
        doomed.process.kill()  # SIGKILL: no cleanup, no group_discard, sockets just drop
        doomed.process.wait()

    await asyncio.gather(stream(60), kill_mid_stream())
    assert sender.reconnects >= 1, "the kill must have hit the sender's connection"
    acked = sender.acked
    assert acked == sorted(set(acked)) and len(acked) == 60
    for subscriber in subscribers:
        await subscriber.until(lambda s=subscriber: len(s.ids) >= len(acked), "every acknowledged message")
        assert subscriber.ids == acked  # exactly once, in order, nothing extra
    # The subscriber on the dead process failed over to the survivor and resumed there.
    assert any(e.kind == "reconnecting" for e in on_doomed.events)
    assert on_doomed.subscribed_to(survivor)
    # The frame in flight at the kill was resent with its client_id: committed at most once.
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(room=general).order_by("id").values_list("id", flat=True))
    )()
    assert stored == acked

    # The dead process's channels stay in the room group until group expiry (30 minutes). Fill its
    # inbox to the layer's capacity: further sends must skip it, not fail or block.
    assert doomed_channels and doomed_channels <= group_members(general.pk)
    inbox = inbox_key(next(iter(doomed_channels)))
    client = layer_redis()
    backlog = client.zcard(inbox)
    assert backlog >= 1, "events for the dead process pile up in its inbox"
    capacity = get_channel_layer().get_capacity(next(iter(doomed_channels)))  # a hub's channel
    # Dated now: the layer sweeps events older than its 60-second expiry before each send.
    client.zadd(inbox, {f"filler-{n}": time.time() for n in range(capacity - backlog)})
    await stream_more(sender, 60, 80)
    assert client.zcard(inbox) == capacity
    for subscriber in subscribers:
        await subscriber.until(
            lambda s=subscriber: len(s.ids) >= len(sender.acked), "messages after the kill"
        )
        assert subscriber.ids == sender.acked
    wait_until(lambda: "channels over capacity in group room." in survivor.log(), timeout=5, what="log")
    await sender.close()
    for subscriber in subscribers:
        await subscriber.stop()


async def stream_more(sender, start, stop):
    for number in range(start, stop):
        await sender.send(number)
