"""What the clients saw, judged against the database: lost, duplicated, leaked, late.

The truth is each user's own history of each room, read through the API after the drill (the
server's one visibility rule decides what it contains). For every subscriber and every room it
stayed subscribed to, every message of that history must have arrived exactly once over its
sockets (all of them: a resumed socket continues where the last one stopped), in id order on
each socket. Leaks are frames a client must never get: a message it may not see (a targeted
message at a non-target), a frame of a room after ``unsubscribed``, a frame more than the
enforcement bound after its credential was revoked, or a new socket accepted with a revoked
credential. Every acknowledged post must be in the history, and no client_id twice.
"""

from collections import Counter
from dataclasses import dataclass, field

EXPECTED_CLOSES = {1000, 1001, 1006, 1011, 1012, 1013, -1}  # -1: the connection attempt failed
REVOCATION_BOUND = 2.0  # API.md: within 2 s at worst


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    lost_writes: list[str] = field(default_factory=list)
    duplicate_writes: list[str] = field(default_factory=list)
    unacked: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    closes: Counter = field(default_factory=Counter)
    sockets: int = 0
    refused: int = 0

    @property
    def passed(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.out_of_order
            or self.leaked
            or self.lost_writes
            or self.duplicate_writes
            or self.unacked
            or self.unexpected
        )

    def summary(self) -> dict:
        late = self.latencies
        return {
            "passed": self.passed,
            "delivered": self.delivered,
            "sockets": self.sockets,
            "refused_connects": self.refused,
            "closes": {str(code): count for code, count in sorted(self.closes.items())},
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "out_of_order": len(self.out_of_order),
            "leaked": len(self.leaked),
            "lost_writes": len(self.lost_writes),
            "duplicate_writes": len(self.duplicate_writes),
            "unacked_posts": len(self.unacked),
            "unexpected": len(self.unexpected),
            "latency_p50": percentile(late, 0.5),
            "latency_p99": percentile(late, 0.99),
            "latency_max": max(late) if late else None,
            "late_over_1s": sum(1 for x in late if x > 1.0),
            "late_over_5s": sum(1 for x in late if x > 5.0),
            "examples": {
                name: getattr(self, name)[:5]
                for name in (
                    "lost",
                    "duplicated",
                    "out_of_order",
                    "leaked",
                    "lost_writes",
                    "duplicate_writes",
                    "unacked",
                    "unexpected",
                )
                if getattr(self, name)
            },
        }


def sent_at(message: dict) -> float | None:
    """The poster's clock when it sent the message (written into the body)."""
    parts = message["body"].split()
    try:
        return float(parts[1])
    except (IndexError, ValueError):
        return None


def judge(subscribers, posters, truth: dict[tuple[int, str], list[dict]]) -> Verdict:
    """``truth[(user id, room)]``: that user's history of the room after the drill."""
    verdict = Verdict()
    for subscriber in subscribers:
        _judge_subscriber(verdict, subscriber, truth)
    for poster in posters:
        _judge_poster(verdict, poster, truth)
        for log in poster.sockets:
            _count_close(verdict, log, poster.name, revoked_at=None)
    stored: dict[str, dict[int, dict]] = {}  # room -> id -> message, over every user's history
    for (_, room), messages in truth.items():
        stored.setdefault(room, {}).update((m["id"], m) for m in messages)
    for room, messages in stored.items():
        copies = Counter((m["sender"]["id"], m["client_id"]) for m in messages.values() if m.get("client_id"))
        for (sender, client_id), count in copies.items():
            if count > 1:
                verdict.duplicate_writes.append(
                    f"{room}: client_id {client_id} of user {sender} stored {count}x"
                )
    return verdict


def _count_close(verdict: Verdict, log, owner: str, revoked_at: float | None) -> None:
    verdict.sockets += 1
    verdict.refused += int(log.refused)
    code = log.close_code if log.close_code is not None else 1006
    verdict.closes[code] += 1
    if code in EXPECTED_CLOSES:
        return
    if code == 4401 and revoked_at is not None:
        return
    if code == 4429:
        verdict.unexpected.append(f"{owner}: a socket closed 4429 {log.close_reason} (rate limited)")
        return
    verdict.unexpected.append(f"{owner}: a socket closed {code} {log.close_reason}")


def _judge_subscriber(verdict: Verdict, subscriber, truth) -> None:
    user_id = subscriber.user["id"]
    revoked_at = subscriber.revoked_at
    for error in subscriber.errors:
        if not (revoked_at is not None and "4401" in error):
            verdict.unexpected.append(f"{subscriber.name}: {error}")
    received: dict[str, list[int]] = {room: [] for room in subscriber.rooms}
    for log in subscriber.sockets:
        _count_close(verdict, log, subscriber.name, revoked_at)
        if revoked_at is not None and log.opened_at > revoked_at and log.connection_id is not None:
            verdict.leaked.append(
                f"{subscriber.name}: a socket opened after its token was revoked said hello"
            )
        # room -> when this socket got its unsubscribed frame; a socket opened after the
        # subscriber left a room never subscribed to it, so it is owed nothing of it at all
        left = {room: at for room, at in subscriber.unsubscribed.items() if at < log.opened_at}
        last_on_socket: dict[str, int] = {}
        for arrived, frame in log.frames:
            kind = frame.get("type")
            if revoked_at is not None and arrived > revoked_at + REVOCATION_BOUND and kind != "hello":
                after = arrived - revoked_at
                verdict.leaked.append(
                    f"{subscriber.name}: {kind} frame {after:.2f} s after its token was revoked"
                )
            if kind == "unsubscribed":
                left[frame["room"]] = arrived
                continue
            if kind != "message":
                continue
            message = frame["message"]
            room = message["room"]
            if room in left:
                verdict.leaked.append(
                    f"{subscriber.name}: message {message['id']} of {room} after unsubscribed"
                )
            targets = message.get("target_user_ids") or []
            if targets and user_id not in targets and message["sender"]["id"] != user_id:
                verdict.leaked.append(f"{subscriber.name}: message {message['id']} targeted at {targets}")
            if room in last_on_socket and message["id"] <= last_on_socket[room]:
                verdict.out_of_order.append(
                    f"{subscriber.name}: {room} {message['id']} after {last_on_socket[room]} on one socket"
                )
            last_on_socket[room] = max(last_on_socket.get(room, 0), message["id"])
            received.setdefault(room, []).append(message["id"])
            verdict.delivered += 1
            started = sent_at(message)
            if started is not None:
                verdict.latencies.append(arrived - started)
        if revoked_at is not None and log.opened_at <= revoked_at and log.close_code == 4401:
            late = log.closed_at - revoked_at
            if late > REVOCATION_BOUND:
                verdict.leaked.append(f"{subscriber.name}: closed 4401 {late:.2f} s after the revocation")
    for room, ids in received.items():
        copies = Counter(ids)
        for message_id, count in copies.items():
            if count > 1:
                verdict.duplicated.append(f"{subscriber.name}: {room} message {message_id} arrived {count}x")
        if revoked_at is not None or room in subscriber.unsubscribed:
            continue  # it left on purpose: nothing after that is owed to it
        history = truth.get((user_id, room))
        if history is None:
            verdict.unexpected.append(f"{subscriber.name}: no history of {room} to compare with")
            continue
        visible = {m["id"] for m in history}
        for message_id in sorted(visible - copies.keys()):
            verdict.lost.append(f"{subscriber.name}: {room} message {message_id} never arrived")
        for message_id in sorted(copies.keys() - visible):
            verdict.leaked.append(f"{subscriber.name}: {room} message {message_id} is not in its history")


def _judge_poster(verdict: Verdict, poster, truth) -> None:
    for error in poster.errors:
        verdict.unexpected.append(f"{poster.name}: {error}")
    for post in poster.posts:
        if post.id is None:
            verdict.unacked.append(f"{poster.name}: {post.client_id} was never acknowledged")
            continue
        history = truth.get((poster.user["id"], post.room))
        if history is None:
            continue
        stored = [m for m in history if m["id"] == post.id]
        if not stored or stored[0].get("client_id") != post.client_id:
            verdict.lost_writes.append(
                f"{poster.name}: {post.client_id} acked as {post.id}, not in the history"
            )
