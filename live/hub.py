"""The per-process delivery hub: every live socket of this process, and what reaches it.

One hub per server process (per event loop). It holds
- one channel-layer channel for the whole process, joined to the group of every room that has a
  local subscriber and to the control group: each room event arrives once per process, its
  visibility is decided once and its frame encoded once, then written to each local socket's
  outbox (live.outbox), never one channel-layer message per socket;
- the registry of authenticated sockets by credential and by user, so that a change from the
  change log (revocation, deactivation, removed membership…) is applied with a dictionary
  lookup, at a cost per change and never per socket;
- the change-log poller (live.poller), which applies every committed change from the database
  even when no push arrived: the channel layer is only the fast path.

Everything here runs on the event loop and never blocks: database reads happen in threads.
"""

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections import deque

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from config import shutdown
from live import presence
from live.changes import CONTROL_GROUP, WAKE_EVENT, head_position
from live.feed import RoomFeed, Subscription
from live.models import Change
from live.poller import Poller
from native_api import metrics
from native_api.schemas import frames
from rooms.history import room_messages
from rooms.posting import room_group

logger = logging.getLogger(__name__)

RECENT_CHANGES = 10_000  # applied changes kept to replay for sockets that were connecting
GROUP_REFRESH = 600.0  # seconds between re-joins of every group (layer expiry, a restarted Redis)
FEED_LINGER = 30.0  # an empty room feed keeps its group this long, in case someone resubscribes
GAP_READ = 500  # messages per gap-fill read

K = Change.Kind
CREDENTIAL_KINDS = {K.TOKENS_REVOKED, K.JTIS_DENIED, K.USER_FLOOR, K.USER_DISABLED, K.USER_DELETED}
METRIC_KINDS = {  # native_control_events{kind}
    K.TOKENS_REVOKED: "credential_revoked",
    K.USER_FLOOR: "credential_revoked",
    K.JTIS_DENIED: "denylist_changed",
    K.USER_DISABLED: "user_changed",
    K.USER_DELETED: "user_changed",
    K.MEMBER_REMOVED: "membership_revoked",
    K.ROOM_DELETED: "membership_revoked",
}


# Each room message is encoded once per process, whatever the number of its recipients here.
encode_message = frames.encode_message_frame


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.ready = loop.create_future()
        self.sockets: weakref.WeakSet = weakref.WeakSet()  # every open socket, authenticated or not
        self.by_credential: dict[str, set] = {}
        self.by_user: dict[int, set] = {}
        self.feeds: dict[int, RoomFeed] = {}
        self._joins: dict[int, asyncio.Task] = {}
        self._discards: dict[int, asyncio.Task] = {}
        self._empty_since: dict[int, float] = {}
        self.epoch, self.applied_seq = "", 0
        self.recent: deque = deque(maxlen=RECENT_CHANGES)
        self.poller = Poller(self)
        self._tasks: list[asyncio.Task] = []
        self._layer_down = self._down_logged = False
        self.stopped = False

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            try:
                self.epoch, self.applied_seq = await database_sync_to_async(head_position)()
            except Exception:
                logger.warning("change log unreadable at start; the poller catches up when it can")
            self.poller.start((self.epoch, self.applied_seq))
            if self.layer is not None:
                # The default prefix: channels_redis serves all of a process's local channels from
                # one inbox and one receive loop, which the health probe's channel shares.
                self.channel = await self.layer.new_channel()
                await self._join(CONTROL_GROUP)
                self._tasks.append(self.loop.create_task(self._receive_events()))
            self._tasks.append(self.loop.create_task(self._maintain()))
        finally:
            if not self.ready.done():
                self.ready.set_result(None)

    def stop(self) -> None:
        self.stopped = True
        self.poller.stop()
        for task in self._tasks:
            task.cancel()

    async def close_all(self, code: int, reason: str) -> None:
        """Close every socket of this process (a restart: 1012 "restart")."""
        for socket in list(self.sockets):
            socket.close(code, reason)
        await asyncio.sleep(0)

    # --- sockets ------------------------------------------------------------------------------

    def connected(self, socket) -> None:
        self.sockets.add(socket)

    def register(self, socket) -> None:
        """An authenticated socket: reachable by its credential and its user from now on."""
        self.by_credential.setdefault(socket.credential_id, set()).add(socket)
        self.by_user.setdefault(socket.user_id, set()).add(socket)
        presence.opened(socket.presence_entry())
        metrics.socket_opened()

    def unregister(self, socket) -> None:
        for sub in list(socket.subscriptions.values()):
            self._drop_subscription(sub)
        if socket.user_id is None:
            return
        for index, key in ((self.by_credential, socket.credential_id), (self.by_user, socket.user_id)):
            members = index.get(key)
            if members is not None:
                members.discard(socket)
                if not members:
                    del index[key]
        presence.closed(socket.connection_id)
        metrics.socket_closed()

    def position(self) -> tuple[str, int]:
        return self.epoch, self.applied_seq

    def replay(self, socket, since: tuple[str, int]) -> bool | None:
        """Apply to a socket that just registered the credential changes applied since ``since``
        (it was verifying meanwhile). True if it was closed, False if not, None if the changes
        since then are no longer all known (the caller checks the database instead)."""
        epoch, since = since
        if epoch != self.epoch:
            return None
        if since >= self.applied_seq:
            return False
        if not self.recent or self.recent[0].seq > since + 1:
            return None
        for change in self.recent:
            if change.seq > since and change.kind in CREDENTIAL_KINDS and self._close_if_hit(change, socket):
                return True
        return False

    # --- subscriptions ------------------------------------------------------------------------

    async def subscribe(self, socket, room_id: int, slug: str) -> Subscription:
        """Register a (not yet live) subscription; live once ``go_live`` says so."""
        old = socket.subscriptions.get(room_id)
        if old is not None:
            self._drop_subscription(old)
        feed = self.feeds.get(room_id)
        if feed is None:
            feed = self.feeds[room_id] = RoomFeed(room_id)
            self._joins[room_id] = self.loop.create_task(self._join_room(room_id))
        self._empty_since.pop(room_id, None)
        sub = Subscription(socket, room_id, slug)
        feed.add(sub)
        socket.subscriptions[room_id] = sub
        metrics.subscription_added()
        join = self._joins.get(room_id)
        if join is not None:
            await asyncio.shield(join)  # the group is joined before the caller reads the head
        return sub

    def go_live(self, sub: Subscription, head: int) -> int | None:
        """The subscriber has sent everything up to seq ``head``. Returns None when it is live
        now, or the seq up to which it must read from the database first (the feed is ahead)."""
        feed = self.feeds.get(sub.room_id)
        if feed is None or sub.socket.subscriptions.get(sub.room_id) is not sub:
            return None  # ended meanwhile (membership removed)
        feed.start(head)
        if feed.delivered_up_to > head:
            return feed.delivered_up_to
        sub.start_seq, sub.live = head + 1, True
        return None

    def unsubscribe(self, sub: Subscription) -> None:
        self._drop_subscription(sub)

    def _drop_subscription(self, sub: Subscription) -> None:
        if sub.socket.subscriptions.get(sub.room_id) is sub:
            del sub.socket.subscriptions[sub.room_id]
            metrics.subscription_removed()
        feed = self.feeds.get(sub.room_id)
        if feed is not None:
            feed.remove(sub)
            if not feed.subscriptions:
                self._empty_since[sub.room_id] = self.loop.time()

    def _end_subscription(self, sub: Subscription, reason: str) -> None:
        self._drop_subscription(sub)
        sub.socket.outbox.push(frames.encode_frame(frames.UnsubscribedFrame(room=sub.slug, reason=reason)))

    # --- room events --------------------------------------------------------------------------

    def on_room_message(self, event: dict) -> None:
        feed = self.feeds.get(event["room_id"])
        if feed is not None and feed.offer(event["seq"], event["message"]):
            self._release(feed)

    def _release(self, feed: RoomFeed) -> None:
        if feed.missing() is not None:
            if not feed.filling:
                feed.filling = True
                self.loop.create_task(self._fill(feed))
            return
        for seq, message in feed.ready():
            self._deliver(feed, seq, message)

    def _deliver(self, feed: RoomFeed, seq: int, message: dict) -> None:
        text, count = None, 0
        for sub in feed.recipients(message):
            if sub.live and seq >= sub.start_seq:
                if text is None:
                    text = encode_message(message)
                sub.socket.outbox.push(text)
                count += 1
        if count:
            metrics.delivered(count)

    async def _fill(self, feed: RoomFeed, up_to: int | None = None) -> None:
        """Read missing seqs from the database, once for the whole process."""
        try:
            while self.feeds.get(feed.room_id) is feed and feed.next_seq is not None:
                gap = feed.missing()
                if gap is None and up_to is not None and feed.next_seq <= up_to:
                    gap = (feed.next_seq, up_to)
                if gap is None:
                    break
                first, last = gap[0], min(gap[1], gap[0] + GAP_READ - 1)
                fetched = await database_sync_to_async(room_messages)(feed.room_id, first, last)
                feed.fill(fetched, last)
                for seq, message in feed.ready():
                    self._deliver(feed, seq, message)
        except Exception as exc:  # a database outage: the next event or head check retries
            logger.warning("gap-fill for room %s failed: %s: %s", feed.room_id, type(exc).__name__, exc)
        finally:
            feed.filling = False

    def on_room_heads(self, heads: dict[int, int]) -> None:
        """The rooms' last seqs as the poller read them: a feed still behind a head it was already
        behind at the previous check lost an event (or its group), and reads the rest."""
        for room_id, head in heads.items():
            feed = self.feeds.get(room_id)
            if feed is None or feed.next_seq is None:
                continue
            if feed.stale_head is not None and feed.next_seq <= feed.stale_head and not feed.filling:
                feed.filling = True
                self.loop.create_task(self._fill(feed, up_to=feed.stale_head))
            feed.stale_head = head if head >= feed.next_seq else None

    def local_room_ids(self) -> list[int]:
        return [room_id for room_id, feed in self.feeds.items() if feed.subscriptions]

    # --- changes from the log -----------------------------------------------------------------

    def apply(self, changes) -> dict[int, tuple[int, int]]:
        """Apply prepared changes in seq order; returns {seq: (sockets closed, unsubscribed)}
        for the changes that did something here."""
        effects = {}
        for change in changes:
            if change.seq <= self.applied_seq:
                continue
            counts = self._apply_one(change)
            self.applied_seq = change.seq
            self.recent.append(change)
            metrics.control_event(METRIC_KINDS.get(change.kind, "other"), change.lag())
            if counts != (0, 0):
                effects[change.seq] = counts
        return effects

    def skip_to(self, epoch: str, seq: int) -> None:
        """The log was reset or purged past us: the poller reconciles from the tables instead."""
        self.epoch, self.applied_seq = epoch, seq
        self.recent.clear()

    def _apply_one(self, change) -> tuple[int, int]:
        kind, data = change.kind, change.data
        if kind in CREDENTIAL_KINDS:
            targets = set()
            for key in change.user_ids():
                targets |= self.by_user.get(key, set())
            for key in change.credential_ids():
                targets |= self.by_credential.get(key, set())
            return sum(self._close_if_hit(change, socket) for socket in targets), 0
        if kind == K.MEMBER_REMOVED and not change.still_member:
            feed = self.feeds.get(data["room"])
            subs = list(feed.by_user.get(data["user"], ())) if feed else []
        elif kind == K.ROOM_DELETED:
            feed = self.feeds.get(data["room"])
            subs = list(feed.subscriptions) if feed else []
        else:
            return 0, 0
        for sub in subs:
            self._end_subscription(sub, "membership_revoked")
        return 0, len(subs)

    @staticmethod
    def _close_if_hit(change, socket) -> bool:
        verdict = change.verdict_for(socket)
        if verdict is None or socket.closed:
            return False
        socket.close(*verdict)
        return True

    def snapshot(self) -> dict:
        """What the poller needs to reconcile this process against the tables."""
        credentials = {}
        for cid, sockets in self.by_credential.items():
            socket = next(iter(sockets))
            credentials[cid] = (socket.credential_kind, socket.user_id, socket.issued_at)
        return {
            "credentials": credentials,
            "users": list(self.by_user),
            "subscriptions": [
                (user_id, room_id) for room_id, feed in self.feeds.items() for user_id in feed.by_user
            ],
        }

    def apply_reconciliation(self, dead_credentials, disabled_users, deleted_users, lost_memberships) -> int:
        closed = 0
        # The user's state first: an inactive user's sockets close 4403, not 4401.
        verdicts = [(u, (4403, "inactive")) for u in disabled_users] + [
            (u, (4401, "revoked")) for u in deleted_users
        ]
        for user_id, verdict in verdicts:
            for socket in list(self.by_user.get(user_id, ())):
                socket.close(*verdict)
                closed += 1
        for cid in dead_credentials:
            for socket in list(self.by_credential.get(cid, ())):
                if not socket.closed:
                    socket.close(4401, "revoked")
                    closed += 1
        for user_id, room_id in lost_memberships:
            feed = self.feeds.get(room_id)
            for sub in list(feed.by_user.get(user_id, ())) if feed else []:
                self._end_subscription(sub, "membership_revoked")
        return closed

    def live_socket_count(self) -> int:
        return sum(len(sockets) for sockets in self.by_credential.values())

    # --- the channel layer --------------------------------------------------------------------

    async def _join(self, group: str) -> bool:
        if self.layer is None:
            return True
        try:
            await self.layer.group_add(group, self.channel)
            return True
        except Exception as exc:  # Redis down: the poller's head checks deliver meanwhile
            self._layer_trouble(exc)
            return False

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

    async def _receive_events(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._layer_trouble(exc)
                await asyncio.sleep(1.0)
                continue
            try:
                kind = event.get("type")
                if kind == "room.message":
                    self.on_room_message(event)
                elif kind == WAKE_EVENT:
                    self.poller.wake()
            except Exception:  # one bad event must never stop this process's deliveries
                logger.exception("could not handle a channel-layer event")

    def _layer_trouble(self, exc: Exception) -> None:
        self._layer_down = True
        if not self._down_logged:
            self._down_logged = True
            logger.warning(
                "channel layer unavailable (%s): live delivery continues from the database",
                type(exc).__name__,
            )

    async def _rejoin_all(self) -> bool:
        joined = True
        for group in [CONTROL_GROUP, *(room_group(room_id) for room_id in self.local_room_ids())]:
            joined = await self._join(group) and joined
        return joined

    async def _maintain(self) -> None:
        """Re-join groups now and then (the layer expires memberships; a restarted Redis has
        forgotten them) and leave the groups of rooms nobody here listens to any more."""
        last_refresh = self.loop.time()
        while True:
            await asyncio.sleep(5.0)
            now = self.loop.time()
            for room_id, since in list(self._empty_since.items()):
                feed = self.feeds.get(room_id)
                if feed is not None and feed.subscriptions:
                    self._empty_since.pop(room_id, None)
                elif now - since >= FEED_LINGER and room_id not in self._joins:
                    self._empty_since.pop(room_id, None)
                    self.feeds.pop(room_id, None)
                    self._discards[room_id] = self.loop.create_task(self._leave_room(room_id))
            if self.layer is None:
                continue
            if self._layer_down:
                # A restarted Redis has forgotten our groups, and no event will arrive to say
                # it is back: try to re-join until it works.
                self._layer_down = False
                if await self._rejoin_all():
                    last_refresh, self._down_logged = now, False
                    logger.warning("channel layer reachable again; re-joined its groups")
            elif now - last_refresh >= GROUP_REFRESH:
                last_refresh = now
                await self._rejoin_all()


_hub: Hub | None = None


async def get_hub() -> Hub:
    """This process's hub, started on first use (one per event loop: tests run many loops)."""
    global _hub
    loop = asyncio.get_running_loop()
    hub = _hub
    if hub is None or hub.loop is not loop:
        if hub is not None:
            hub.stop()
        hub = _hub = Hub(loop)
        await hub.start()
    elif not hub.ready.done():
        await asyncio.shield(hub.ready)
    return hub


def current_hub() -> Hub | None:
    return _hub


def deliver_locally(event: dict) -> bool:
    """A room event committed in this process, handed to this process's hub from any thread;
    False when this process has no hub (a gunicorn worker, a command)."""
    hub = _hub
    if hub is None or hub.stopped or hub.loop.is_closed():
        return False
    try:
        # A fresh context: the caller's (a thread inside sync_to_async) would make the hub's
        # own database reads look like a re-entrant call to asgiref, which refuses them.
        hub.loop.call_soon_threadsafe(hub.on_room_message, event, context=contextvars.Context())
    except RuntimeError:  # the loop closed meanwhile
        return False
    return True


async def close_all_for_restart() -> None:
    """SIGTERM (config/shutdown.py): every socket of this process closes 1012 "restart", so
    clients reconnect through the proxy to another process and resume with after."""
    hub = _hub
    if hub is not None and not hub.stopped:
        await hub.close_all(frames.CloseCode.RESTART, "restart")


shutdown.register(close_all_for_restart)
