"""One room's live stream inside one process: seq order, gap detection, who receives what.

The process receives each room event once (live.hub), whatever number of local sockets are
subscribed. Every message carries the room's next ``seq`` without gaps, so the feed releases
messages strictly in seq order; an event that arrives early is held until the ones before it
arrive or are read from the database (gap-fill, once per room per process, not per socket),
and a seq already released is a duplicate and dropped.

A subscription receives released messages with seq >= its ``start_seq`` once it is ``live``;
before that its socket is still sending its backlog (live.hub subscribe()).
"""

from dataclasses import dataclass, field

from rooms.visibility import may_see_event


class Subscription:
    """One socket's subscription to one room, from ``subscribe`` until it ends.

    A subscription ends once, for any reason (the client unsubscribed, the server told it
    ``unsubscribed`` because the right was taken away, the socket closed, or a new subscribe to
    the same room replaced it), and an ended subscription writes nothing: every path that writes
    a frame of the room (backlog, catch-up, live delivery, the ``subscribed`` reply) goes through
    ``write``, so after ``unsubscribed`` nothing of the room reaches the socket.
    """

    __slots__ = ("socket", "room_id", "slug", "start_seq", "live", "ended")

    def __init__(self, socket, room_id: int, slug: str):
        self.socket, self.room_id, self.slug = socket, room_id, slug
        self.start_seq = 0
        self.live = False
        self.ended = False

    def write(self, text: str) -> bool:
        """Queue a frame of this room for the socket, unless the subscription has ended."""
        if self.ended:
            return False
        self.socket.outbox.push(text)
        return True


@dataclass(eq=False)
class RoomFeed:
    room_id: int
    next_seq: int | None = None  # None until the first subscriber has read the room's head
    held: dict = field(default_factory=dict)  # seq → message dict (None: no such message)
    subscriptions: set = field(default_factory=set)
    by_user: dict = field(default_factory=dict)  # user id → set of Subscription
    filling: bool = False  # a gap-fill read is in flight
    stale_head: int | None = None  # a head the feed was behind at the last room-head check

    # --- who is subscribed --------------------------------------------------------------------

    def add(self, sub: Subscription) -> None:
        self.subscriptions.add(sub)
        self.by_user.setdefault(sub.socket.user_id, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        self.subscriptions.discard(sub)
        subs = self.by_user.get(sub.socket.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.by_user[sub.socket.user_id]
        if not self.subscriptions:
            self.next_seq, self.held, self.stale_head = None, {}, None

    def recipients(self, message: dict):
        """The live subscriptions that may see ``message`` (the visibility rule, once per event)."""
        targets = message["target_user_ids"]
        if not targets:
            return self.subscriptions
        sender = message["sender"]["id"]
        return [
            sub
            for user_id in {sender, *targets}
            for sub in self.by_user.get(user_id, ())
            if may_see_event(user_id, sender, targets)
        ]

    # --- ordering -------------------------------------------------------------------------------

    def start(self, head: int) -> None:
        """The first subscriber read the room's head: everything up to it is history."""
        if self.next_seq is None:
            self.next_seq = head + 1
            self.held = {seq: m for seq, m in self.held.items() if seq > head}

    def offer(self, seq: int, message: dict | None) -> bool:
        """Take an event; False when it is a duplicate (or nobody listens)."""
        if not self.subscriptions or (self.next_seq is not None and seq < self.next_seq) or seq in self.held:
            return False
        self.held[seq] = message
        return True

    def missing(self) -> tuple[int, int] | None:
        """The seq range to read from the database before held events can go out, or None."""
        if self.next_seq is None or not self.held or self.next_seq in self.held:
            return None
        return self.next_seq, min(self.held) - 1

    def fill(self, fetched: list[tuple[int, dict]], up_to: int) -> None:
        """Seqs ``next_seq..up_to`` were read from the database; seqs with no row stay empty."""
        if self.next_seq is None:
            return
        for seq, message in fetched:
            if seq >= self.next_seq:
                self.held[seq] = message
        for seq in range(self.next_seq, up_to + 1):
            self.held.setdefault(seq, None)

    def ready(self) -> list[tuple[int, dict]]:
        """Pop the contiguous run starting at ``next_seq``: (seq, message) to deliver, in order."""
        out = []
        if self.next_seq is None:
            return out
        while self.next_seq in self.held:
            message = self.held.pop(self.next_seq)
            if message is not None:
                out.append((self.next_seq, message))
            self.next_seq += 1
        return out

    @property
    def delivered_up_to(self) -> int | None:
        return None if self.next_seq is None else self.next_seq - 1
