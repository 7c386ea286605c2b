"""GET /api/native/health: really probes the database, the cache and the channel layer."""

import asyncio
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection

from native_api.endpoints import Operation, endpoint, json_response
from native_api.schemas.http import Health

PROBE_TIMEOUT = 3.0


def _probe_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _probe_cache():
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", 10)
    if cache.get(key) != "ok":
        raise RuntimeError("cache lost a value")
    cache.delete(key)


async def _probe_channel_layer():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.probe"})
    message = await layer.receive(channel)
    if message.get("type") != "health.probe":
        raise RuntimeError("channel layer returned a foreign message")


async def _status(probe) -> str:
    try:
        await asyncio.wait_for(probe(), PROBE_TIMEOUT)
    except Exception:
        return "down"
    return "ok"


@endpoint(
    get=Operation(
        "getHealth",
        "health",
        "Probe the database, the cache and the channel layer, for real.",
        responses={
            200: (Health, "Every part answers."),
            503: (Health, "A part is down; it is marked down, and so is status."),
        },
    )
)
async def health(request):
    database, cache_status, layer = await asyncio.gather(
        _status(sync_to_async(_probe_database, thread_sensitive=True)),
        _status(sync_to_async(_probe_cache, thread_sensitive=False)),
        _status(_probe_channel_layer),
    )
    healthy = "down" not in (database, cache_status, layer)
    body = Health(
        status="ok" if healthy else "down", database=database, channel_layer=layer, cache=cache_status
    )
    return json_response(body, status=200 if healthy else 503)
