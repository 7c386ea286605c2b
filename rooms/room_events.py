"""Where a committed room event leaves the domain: this process's delivery engine, then the
channel layer for every other process.

The domain does not know the engine (live) that delivers to websockets: the engine registers a
handler here when it starts (``set_local_handler``), and posting calls ``publish`` after commit.
A process without an engine (a gunicorn worker, a command) has no handler, and its events reach
every server through the channel layer alone.
"""

import asyncio
import logging
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

FAN_OUT_TIMEOUT = 2.0  # seconds

# event -> True when this process's engine took it: it delivers it locally and publishes it to
# the other processes itself (called from any thread).
_local_handler: Callable[[dict], bool] | None = None


def set_local_handler(handler: Callable[[dict], bool] | None) -> None:
    """The engine of this process takes room events directly (None: no engine here)."""
    global _local_handler
    _local_handler = handler


def room_group(room_id: int) -> str:
    """The channel-layer group of a room's events."""
    return f"room.{room_id}"


def publish(event: dict) -> None:
    """One send per message. A process with an engine hands the event to it (from any thread) and
    returns at once: the engine delivers it to its local subscribers and publishes it to the
    other processes from its event loop, in order per room, so the post (and its ack) never
    waits for the channel layer. Without an engine, the event goes through the channel layer
    from here, bounded by FAN_OUT_TIMEOUT."""
    handler = _local_handler
    if handler is not None and handler(event):
        return
    layer = get_channel_layer()
    group = room_group(event["room_id"])
    try:
        # Bounded: the message is committed, so a hung Redis must not hold back the ack.
        async_to_sync(asyncio.wait_for)(layer.group_send(group, event), FAN_OUT_TIMEOUT)
    except Exception as exc:
        # Persisted already: subscribers that miss the event fill the gap from the database
        # (seq tells them), and resuming clients read history.
        logger.warning("fan-out to %s failed: %s", group, type(exc).__name__)
