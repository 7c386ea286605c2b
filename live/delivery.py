"""Room delivery in one process: one feed per room with a local subscriber, each event's
visibility decided and its frame encoded once, then written to every local socket that may see
it (through its outbox, never blocking).

Events come from this process's posts (rooms.room_events) and from the channel layer
(live.layer_link); a feed orders them by seq and reads what is missing from the database, once
per room per process (live.feed). A subscription receives nothing until its socket has sent its
backlog (``go_live``), so that resume is gapless.
"""

import asyncio
import logging

from foundation import metrics
from foundation.db_health import database_sync_to_async
from live.feed import RoomFeed, Subscription
from rooms.history import room_messages

logger = logging.getLogger(__name__)

FEED_LINGER = 30.0  # an empty room feed keeps its group this long, in case someone resubscribes
GAP_READ = 500  # messages per gap-fill read


class RoomDelivery:
    def __init__(self, loop: asyncio.AbstractEventLoop, encoder, link):
        self.loop = loop
        self.encoder = encoder  # the wire's: message(dict) -> str, unsubscribed(slug, reason) -> str
        self.link = link  # live.layer_link.LayerLink: the rooms' groups
        self.feeds: dict[int, RoomFeed] = {}
        self._empty_since: dict[int, float] = {}

    # --- subscriptions ------------------------------------------------------------------------

    async def subscribe(self, socket, room_id: int, slug: str) -> Subscription:
        """Register a (not yet live) subscription; live once ``go_live`` says so."""
        old = socket.subscriptions.get(room_id)
        if old is not None:
            self.drop(old)
        feed = self.feeds.get(room_id)
        if feed is None:
            feed = self.feeds[room_id] = RoomFeed(room_id)
            self.link.join_room(room_id)
        self._empty_since.pop(room_id, None)
        sub = Subscription(socket, room_id, slug)
        feed.add(sub)
        socket.subscriptions[room_id] = sub
        metrics.subscription_added()
        join = self.link.pending_join(room_id)
        if join is not None:
            await asyncio.shield(join)  # the group is joined before the caller reads the head
        return sub

    def go_live(self, sub: Subscription, head: int) -> int | None:
        """The subscriber has sent everything up to seq ``head``. Returns None when it is live
        now, or the seq up to which it must read from the database first (the feed is ahead)."""
        feed = self.feeds.get(sub.room_id)
        if feed is None or sub.ended:
            return None  # ended meanwhile (membership removed)
        feed.start(head)
        if feed.delivered_up_to > head:
            return feed.delivered_up_to
        sub.start_seq, sub.live = head + 1, True
        return None

    def drop(self, sub: Subscription) -> None:
        """End a subscription (whatever the cause): it writes nothing from now on."""
        sub.ended = True
        if sub.socket.subscriptions.get(sub.room_id) is sub:
            del sub.socket.subscriptions[sub.room_id]
            metrics.subscription_removed()
        feed = self.feeds.get(sub.room_id)
        if feed is not None:
            feed.remove(sub)
            if not feed.subscriptions:
                self._empty_since[sub.room_id] = self.loop.time()

    def end(self, sub: Subscription, reason: str) -> None:
        """The server ends a subscription (its right was taken away): the client is told."""
        if sub.ended:
            return
        self.drop(sub)
        sub.socket.outbox.push(self.encoder.unsubscribed(sub.slug, reason))

    def of_user_in_room(self, user_id: int, room_id: int) -> list[Subscription]:
        feed = self.feeds.get(room_id)
        return list(feed.by_user.get(user_id, ())) if feed else []

    def of_room(self, room_id: int) -> list[Subscription]:
        feed = self.feeds.get(room_id)
        return list(feed.subscriptions) if feed else []

    def pairs(self) -> list[tuple[int, int]]:
        """(user id, room id) of every local subscription."""
        return [(user_id, room_id) for room_id, feed in self.feeds.items() for user_id in feed.by_user]

    def local_room_ids(self) -> list[int]:
        return [room_id for room_id, feed in self.feeds.items() if feed.subscriptions]

    def forget_idle_feeds(self) -> None:
        """Leave the groups of rooms nobody here has listened to for FEED_LINGER seconds."""
        now = self.loop.time()
        for room_id, since in list(self._empty_since.items()):
            feed = self.feeds.get(room_id)
            if feed is not None and feed.subscriptions:
                self._empty_since.pop(room_id, None)
            elif now - since >= FEED_LINGER and not self.link.joining(room_id):
                self._empty_since.pop(room_id, None)
                self.feeds.pop(room_id, None)
                self.link.leave_room(room_id)

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
                    text = self.encoder.message(message)
                count += sub.write(text)
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
                self.link.rejoin_room(room_id)  # the lost event may mean a lost membership
            feed.stale_head = head if head >= feed.next_seq else None
