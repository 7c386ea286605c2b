"""The per-process engine: every live socket of this process, and what reaches it.

One hub per server process (per event loop), made of
- the socket registry (live.registry): authenticated sockets by credential and by user;
- room delivery (live.delivery): one feed per room with a local subscriber, each event's frame
  encoded once by the wire's encoder and written to each local socket's outbox;
- the change applier (live.control): changes from the log close sockets and end subscriptions;
- the link to the channel layer (live.layer_link): one channel for the process, the fast path;
- the change-log poller (live.poller), which applies every committed change from the database
  even when no push arrived, and the watch that fails closed when it cannot (live.fail_closed).

The engine knows the domain, not the wire: the consumer hands it the encoder of its frames
(``get_hub(encoder)``) and the close codes it decides are API.md's (live.verdicts). Room events
committed in this process arrive through the seam the domain offers (rooms.room_events), and
the change log learns that this process tails it through foundation.changelog's.

Everything here runs on the event loop and never blocks: database reads happen in threads.
"""

import asyncio
import contextvars
import logging
import time
from typing import Protocol

from django.conf import settings

from foundation import changelog, shutdown
from foundation.db_health import database_sync_to_async
from live import heap, verdicts
from live.control import ChangeApplier
from live.delivery import RoomDelivery
from live.fail_closed import FailClosed
from live.feed import Subscription
from live.layer_link import LayerLink
from live.poller import Poller
from live.registry import SocketRegistry
from rooms import room_events

logger = logging.getLogger(__name__)

MAINTENANCE_EVERY = 5.0  # seconds


class FrameEncoder(Protocol):
    """What the engine needs of the wire: the text of the frames it writes itself."""

    def message(self, message: dict) -> str: ...

    def unsubscribed(self, room: str, reason: str) -> str: ...


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop, encoder: FrameEncoder):
        self.loop = loop
        self.ready = loop.create_future()
        self.link = LayerLink(loop, self.on_room_message, self.wake_poller)
        self.registry = SocketRegistry()
        self.delivery = RoomDelivery(loop, encoder, self.link)
        self.control = ChangeApplier(self.registry, self.delivery)
        self.poller = Poller(self)
        self.fail_closed = FailClosed(self.poller, self.registry)
        self._tasks: list[asyncio.Task] = []
        self.stopped = False
        self.heap: heap.Heap | None = None

    @property
    def channel(self) -> str | None:
        return self.link.channel

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            started = time.monotonic()
            try:
                self.control.skip_to(*await database_sync_to_async(changelog.head_position)())
                self.poller.read_at = started
            except Exception:
                logger.warning("change log unreadable at start; the poller catches up when it can")
            self.heap = heap.start(settings.NATIVE_GC_FREEZE)
            self.poller.start(self.control.position())
            self._tasks.append(self.loop.create_task(self.fail_closed.watch()))
            await self.link.open()
            self._tasks.append(self.loop.create_task(self._maintain()))
        finally:
            if not self.ready.done():
                self.ready.set_result(None)

    def stop(self) -> None:
        self.stopped = True
        self.poller.stop()
        self.link.stop()
        for task in self._tasks:
            task.cancel()

    async def close_all(self, code: int, reason: str) -> None:
        """Close every socket of this process (a restart: 1012 "restart")."""
        for socket in list(self.registry.sockets):
            socket.close(code, reason)
        await asyncio.sleep(0)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_EVERY)
            self.delivery.forget_idle_feeds()
            if self.heap is not None:
                self.heap.maintain(len(self.registry.sockets))
            heap.export_pauses()
            await self.link.keep_joined(self.delivery.local_room_ids())

    def wake_poller(self) -> None:
        self.poller.wake()

    @property
    def failing_closed(self) -> bool:
        """This process cannot read the change log: it accepts no websocket (live.fail_closed)."""
        return self.fail_closed.active

    # --- what a socket does -------------------------------------------------------------------

    def connected(self, socket) -> None:
        self.registry.connected(socket)

    def register(self, socket) -> None:
        self.registry.register(socket)

    def unregister(self, socket) -> None:
        for sub in list(socket.subscriptions.values()):
            self.delivery.drop(sub)
        self.registry.unregister(socket)

    def position(self) -> tuple[str, int]:
        return self.control.position()

    def replay(self, socket, since: tuple[str, int]) -> bool | None:
        return self.control.replay(socket, since)

    async def subscribe(self, socket, room_id: int, slug: str) -> Subscription:
        return await self.delivery.subscribe(socket, room_id, slug)

    def go_live(self, sub: Subscription, head: int) -> int | None:
        return self.delivery.go_live(sub, head)

    def unsubscribe(self, sub: Subscription) -> None:
        self.delivery.drop(sub)

    def on_room_message(self, event: dict) -> None:
        self.delivery.on_room_message(event)

    def on_local_room_message(self, event: dict) -> None:
        """A room event committed in this process: its subscribers here, then the others."""
        self.delivery.on_room_message(event)
        self.link.publish(event)


_hub: Hub | None = None


async def get_hub(encoder: FrameEncoder) -> Hub:
    """This process's hub, started on first use (one per event loop: tests run many loops)."""
    global _hub
    loop = asyncio.get_running_loop()
    hub = _hub
    if hub is None or hub.loop is not loop:
        if hub is not None:
            hub.stop()
        hub = _hub = Hub(loop, encoder)
        room_events.set_local_handler(deliver_locally)
        changelog.set_local_reader(_tails_the_log)
        await hub.start()
    elif not hub.ready.done():
        await asyncio.shield(hub.ready)
    return hub


def current_hub() -> Hub | None:
    return _hub


def _tails_the_log() -> bool:
    hub = _hub
    return hub is not None and not hub.stopped


def deliver_locally(event: dict) -> bool:
    """A room event committed in this process, handed to this process's hub from any thread (it
    delivers and publishes it); False when this process has no hub (a gunicorn worker, a
    command), which then publishes it itself."""
    hub = _hub
    if hub is None or hub.stopped or hub.loop.is_closed():
        return False
    try:
        # A fresh context: the caller's (a thread inside sync_to_async) would make the hub's
        # own database reads look like a re-entrant call to asgiref, which refuses them.
        hub.loop.call_soon_threadsafe(hub.on_local_room_message, event, context=contextvars.Context())
    except RuntimeError:  # the loop closed meanwhile
        return False
    return True


async def close_all_for_restart() -> None:
    """SIGTERM (foundation/shutdown.py): every socket of this process closes 1012 "restart", so
    clients reconnect through the proxy to another process and resume with after."""
    hub = _hub
    if hub is not None and not hub.stopped:
        await hub.close_all(*verdicts.RESTART)


shutdown.register(close_all_for_restart)
