"""Per-subscription ordering: deliver a room's messages in seq order, exactly once.

Fan-out events from several server processes can arrive out of order, or (when a slow
socket's channel is full) not at all. Every message has the room's next ``seq``, without gaps,
so a subscriber that sees seq 12 while expecting 10 knows 10 and 11 exist and fetches them
from the database before delivering 12. Seqs below the expected one are duplicates (already in
the backlog, or already fetched) and are dropped.
"""

from dataclasses import dataclass, field


@dataclass
class RoomStream:
    room_id: int
    slug: str
    next_seq: int
    held: dict[int, dict | None] = field(default_factory=dict)  # seq → message dict (None: not visible)

    def offer(self, seq: int, message: dict | None) -> bool:
        """Take an event; True if it can be delivered now or later (False: a duplicate)."""
        if seq < self.next_seq or seq in self.held:
            return False
        self.held[seq] = message
        return True

    def missing(self) -> tuple[int, int] | None:
        """The seq range to fetch before the held events can go out, or None."""
        if not self.held or self.next_seq in self.held:
            return None
        return self.next_seq, min(self.held) - 1

    def fill(self, fetched: list[tuple[int, dict]], up_to: int) -> None:
        """Seqs ``next_seq..up_to`` were read from the database; invisible ones are absent."""
        for seq in range(self.next_seq, up_to + 1):
            self.held.setdefault(seq, None)
        for seq, message in fetched:
            self.held[seq] = message

    def ready(self) -> list[dict]:
        """Pop the contiguous run starting at ``next_seq``: the messages to send, in order."""
        out = []
        while self.next_seq in self.held:
            message = self.held.pop(self.next_seq)
            if message is not None:
                out.append(message)
            self.next_seq += 1
        return out
