"""Fan-out throughput: messages sent over websockets, delivered to every subscribed socket.

Each sender (one of the load's posters) posts to one room over a few websockets, each paced
under the per-connection frame limit with ``window`` messages unacknowledged, for at most
``budget`` seconds or ``messages`` messages;
senders to different rooms run at once (one room's posts are serialized by its row lock, by
design: ids grow in commit order). Every subscriber of a room must get each of that room's
messages exactly once and in id order; the figures are messages and deliveries per second,
from the first send to the last arrival.
"""

import asyncio
import json
import time
from collections import deque

from deploy.drills.client import Subscriber, now, open_socket
from deploy.drills.load import Load

FRAME_RATE = 18.0  # sends per second per socket: under the server's 20 frames/s (NATIVE_RATE_WS_FRAMES)
CONNECTIONS = 3  # sockets per sender: a client may send this way, and it takes a room past 18/s


async def fan_out(
    load: Load, label: str, *, messages: int, window: int, budget: float, rooms: list[str] | None = None
) -> dict:
    rooms = rooms or load.rooms[:1]
    senders = load.named("poster")[: len(rooms)]
    if len(senders) < len(rooms):
        raise ValueError(f"{len(rooms)} rooms need as many posters, the plan has {len(senders)}")
    subscribers = [s for s in load.subscribers if s.ended is None]
    marks = {id(s): sum(len(log.frames) for log in s.sockets) for s in subscribers}
    tag = f"fan{int(time.time() * 1000) % 10**8}"
    first_send = now()
    sent = await asyncio.gather(
        *(
            _send(load, sender, room, tag, messages, window, first_send + budget)
            for sender, room in zip(senders, rooms, strict=True)
        )
    )
    wanted = {room: sorted(ids) for room, ids in zip(rooms, sent, strict=True)}

    def complete(subscriber: Subscriber) -> bool:
        got = _arrivals(subscriber, tag, marks[id(subscriber)])
        return all(set(got.get(room, [])) >= set(wanted[room]) for room in rooms if room in subscriber.rooms)

    deadline = now() + 60
    while now() < deadline and not all(complete(s) for s in subscribers):
        await asyncio.sleep(0.05)
    last_arrival, delivered, problems = first_send, 0, []
    for subscriber in subscribers:
        arrivals = _arrivals(subscriber, tag, marks[id(subscriber)], with_times=True)
        for room in rooms:
            if room not in subscriber.rooms:
                continue
            got = [message_id for _, message_id in arrivals.get(room, [])]
            if got != wanted[room]:
                problems.append(
                    f"{subscriber.name}: {room}: {len(got)} of {len(wanted[room])} (or out of order)"
                )
            delivered += len(got)
            if got:
                last_arrival = max(last_arrival, arrivals[room][-1][0])
    seconds = last_arrival - first_send
    total = sum(len(ids) for ids in wanted.values())
    load.event(
        f"{label}: {total} messages, {delivered} deliveries to {len(subscribers)} sockets in {seconds:.1f} s"
    )
    return {
        "fan_sockets": len(subscribers),
        "fan_rooms": len(rooms),
        "fan_messages": total,
        "fan_messages_per_second": round(total / seconds, 1) if seconds > 0 else None,
        "fan_deliveries_per_second": round(delivered / seconds) if seconds > 0 else None,
        "problem": "; ".join(problems[:3]) if problems else None,
    }


async def _send(
    load: Load, sender: str, room: str, tag: str, messages: int, window: int, until: float
) -> list[int]:
    """Post to ``room`` over CONNECTIONS websockets of one user, each paced under the server's
    frame limit with ``window`` sends unacknowledged; a send refused (rate_limited, unavailable)
    is sent again with the same client_id. The acknowledged ids."""
    user = load.users[sender]
    pending = deque(range(messages))
    acked: list[int] = []

    async def one_socket() -> None:
        ws, _ = await open_socket(user["api"], user["token"])
        in_flight = asyncio.Semaphore(window)
        outstanding: set[int] = set()

        async def read_replies():
            while True:
                frame = json.loads(await ws.recv())
                reference = frame.get("ref") or frame.get("client_id") or ""
                if not reference.startswith(f"{tag}-"):
                    continue
                number = int(reference.rsplit("-", 1)[-1])
                if frame.get("type") == "ack":
                    acked.append(frame["id"])
                elif frame.get("type") == "error":
                    pending.append(number)  # the same client_id again: never a second copy
                else:
                    continue
                outstanding.discard(number)
                in_flight.release()

        reader = asyncio.ensure_future(read_replies())
        try:
            while now() < until:
                await asyncio.wait_for(in_flight.acquire(), 30)
                if not pending:
                    in_flight.release()
                    if not outstanding:
                        break
                    await asyncio.sleep(0.05)
                    continue
                number = pending.popleft()
                client_id = f"{tag}-{room}-{number}"
                frame = {"type": "send", "room": room, "body": f"{tag} {now():.6f}", "client_id": client_id}
                outstanding.add(number)
                await ws.send(json.dumps({**frame, "ref": client_id}))
                await asyncio.sleep(1 / FRAME_RATE)
            deadline = now() + 30
            while outstanding and now() < deadline:
                await asyncio.sleep(0.01)
        finally:
            reader.cancel()
            await ws.close()

    await asyncio.gather(*(one_socket() for _ in range(CONNECTIONS)))
    return sorted(set(acked))


def _arrivals(subscriber: Subscriber, tag: str, mark: int, with_times: bool = False) -> dict:
    """room -> this fan-out's message ids (or (arrival, id)) on the subscriber's sockets, in order."""
    frames = [frame for log in subscriber.sockets for frame in log.frames][mark:]
    found: dict[str, list] = {}
    for arrived, frame in frames:
        if frame.get("type") != "message" or not frame["message"]["body"].startswith(f"{tag} "):
            continue
        message = frame["message"]
        found.setdefault(message["room"], []).append(
            (arrived, message["id"]) if with_times else message["id"]
        )
    return found
