"""This process's one channel on the channel layer, and the groups it belongs to.

One channel for the whole process, joined to the control group (wake-ups of the change-log
poller) and to the group of every room with a local subscriber: each room event arrives once
per process, never once per socket. Memberships expire in the layer and a restarted Redis
forgets them, so they are renewed now and then, and re-joined as soon as the layer is back
after trouble. The layer is only the fast path: while it is down, the poller's reads of the
log and of the rooms' heads deliver everything.
"""

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable

from channels.layers import InMemoryChannelLayer, get_channel_layer

from foundation.changelog import CONTROL_GROUP, WAKE_EVENT
from rooms.room_events import FAN_OUT_TIMEOUT, room_group

logger = logging.getLogger(__name__)

GROUP_REFRESH = 600.0  # seconds between re-joins of every group (layer expiry, a restarted Redis)
PUBLISH_BACKLOG = 10_000  # events waiting for the layer, per room, before the oldest are dropped


class LayerLink:
    def __init__(self, loop: asyncio.AbstractEventLoop, on_room_event: Callable, on_wake: Callable):
        self.loop = loop
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self._on_room_event, self._on_wake = on_room_event, on_wake
        self._joins: dict[int, asyncio.Task] = {}
        self._discards: dict[int, asyncio.Task] = {}
        self._down = self._down_logged = False
        # Processes started together would all re-join their groups (a round trip each) at the
        # same moment every GROUP_REFRESH: each takes its first turn at a random point of it.
        self._last_refresh = loop.time() - random.uniform(0, GROUP_REFRESH)
        self._receiver: asyncio.Task | None = None
        # An in-memory layer reaches no other process: nothing to publish to.
        self._publishes = self.layer is not None and not isinstance(self.layer, InMemoryChannelLayer)
        self._outgoing: dict[int, deque] = {}  # room id -> events waiting to be published, in order

    async def open(self) -> None:
        if self.layer is None:
            return
        # The default prefix: channels_redis serves all of a process's local channels from one
        # inbox and one receive loop, which the health probe's channel shares.
        self.channel = await self.layer.new_channel()
        await self._join(CONTROL_GROUP)
        self._receiver = self.loop.create_task(self._receive_events())

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()

    # --- room groups --------------------------------------------------------------------------

    def join_room(self, room_id: int) -> None:
        """Start joining a room's group (a new local feed)."""
        self._joins[room_id] = self.loop.create_task(self._join_room(room_id))

    def rejoin_room(self, room_id: int) -> None:
        """Join a room's group again: its feed fell behind, which may mean the membership is gone
        and nothing else would notice before GROUP_REFRESH (a layer shard that restarted empty or
        failed over before replicating it, while this process's own channel lives on another
        shard and saw no error). One write; a membership that was fine is only renewed."""
        if self.layer is not None and room_id not in self._joins:
            self.join_room(room_id)

    def pending_join(self, room_id: int) -> asyncio.Task | None:
        """The join still in flight for a room: a subscriber awaits it before reading the head."""
        return self._joins.get(room_id)

    def joining(self, room_id: int) -> bool:
        return room_id in self._joins

    def leave_room(self, room_id: int) -> None:
        self._discards[room_id] = self.loop.create_task(self._leave_room(room_id))

    async def _join_room(self, room_id: int) -> None:
        try:
            discard = self._discards.get(room_id)
            if discard is not None:  # a leave still in flight must not undo this join
                await asyncio.shield(discard)
            await self._join(room_group(room_id))
        finally:
            self._joins.pop(room_id, None)

    async def _leave_room(self, room_id: int) -> None:
        try:
            if self.layer is not None:
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(room_group(room_id), self.channel)
        finally:
            self._discards.pop(room_id, None)

    async def _join(self, group: str) -> bool:
        if self.layer is None:
            return True
        try:
            await self.layer.group_add(group, self.channel)
            return True
        except Exception as exc:  # Redis down: the poller's head checks deliver meanwhile
            self._trouble(exc)
            return False

    # --- publishing this process's room events ------------------------------------------------

    def publish(self, event: dict) -> None:
        """Send a room event committed here to the other processes, after the ones before it of
        the same room (one publisher task per room while events wait). A receiver drops its own
        copy (seq), and fills from the database whatever a lost or dropped event leaves out."""
        if not self._publishes:
            return
        room_id = event["room_id"]
        waiting = self._outgoing.get(room_id)
        if waiting is None:
            waiting = self._outgoing[room_id] = deque()
            self.loop.create_task(self._publish_room(room_id, waiting))
        elif len(waiting) >= PUBLISH_BACKLOG:
            waiting.popleft()  # a hung layer: the receivers read what they miss from the database
        waiting.append(event)

    async def _publish_room(self, room_id: int, waiting: deque) -> None:
        group = room_group(room_id)
        try:
            while waiting:
                event = waiting.popleft()
                try:
                    await asyncio.wait_for(self.layer.group_send(group, event), FAN_OUT_TIMEOUT)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Persisted already: subscribers elsewhere fill the gap from the database
                    # (seq tells them), and resuming clients read history.
                    logger.warning("fan-out to %s failed: %s", group, type(exc).__name__)
        finally:
            self._outgoing.pop(room_id, None)

    # --- events -------------------------------------------------------------------------------

    async def _receive_events(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._trouble(exc)
                await asyncio.sleep(1.0)
                continue
            try:
                kind = event.get("type")
                if kind == "room.message":
                    self._on_room_event(event)
                elif kind == WAKE_EVENT:
                    self._on_wake()
            except Exception:  # one bad event must never stop this process's deliveries
                logger.exception("could not handle a channel-layer event")

    def _trouble(self, exc: Exception) -> None:
        self._down = True
        if not self._down_logged:
            self._down_logged = True
            logger.warning(
                "channel layer unavailable (%s): live delivery continues from the database",
                type(exc).__name__,
            )

    # --- upkeep -------------------------------------------------------------------------------

    async def keep_joined(self, room_ids: list[int]) -> None:
        """Called every few seconds: re-join every group after trouble (a restarted Redis has
        forgotten them, and no event will arrive to say it is back), and now and then anyway."""
        if self.layer is None:
            return
        now = self.loop.time()
        if self._down:
            self._down = False
            if await self._rejoin_all(room_ids):
                self._last_refresh, self._down_logged = now, False
                logger.warning("channel layer reachable again; re-joined its groups")
        elif now - self._last_refresh >= GROUP_REFRESH:
            self._last_refresh = now
            await self._rejoin_all(room_ids)

    async def _rejoin_all(self, room_ids: list[int]) -> bool:
        joined = True
        for group in [CONTROL_GROUP, *(room_group(room_id) for room_id in room_ids)]:
            joined = await self._join(group) and joined
        return joined
