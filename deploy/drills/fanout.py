"""Fan-out throughput: messages sent over websockets, delivered to every subscribed socket.

Each sender (one of the load's posters) posts to one room over its own websocket, ``window``
messages unacknowledged at a time, for at most ``budget`` seconds or ``messages`` messages;
senders to different rooms run at once (one room's posts are serialized by its row lock, by
design: ids grow in commit order). Every subscriber of a room must get each of that room's
messages exactly once and in id order; the figures are messages and deliveries per second,
from the first send to the last arrival.
"""

import asyncio
import json
import time

from deploy.drills.client import Subscriber, now, open_socket
from deploy.drills.load import Load


async def fan_out(
    load: Load, label: str, *, messages: int, window: int, budget: float, rooms: list[str] | None = None
) -> dict:
    rooms = rooms or load.rooms[:1]
    senders = [name for name in load.users if "-p" in name][: len(rooms)]
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
    """Post to ``room`` over one websocket, ``window`` in flight; the acknowledged ids."""
    user = load.users[sender]
    acked: list[int] = []
    ws, _ = await open_socket(user["api"], user["token"])
    async with ws:
        in_flight = asyncio.Semaphore(window)

        async def read_acks():
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "ack":
                    acked.append(frame["id"])
                    in_flight.release()

        reader = asyncio.ensure_future(read_acks())
        sent = 0
        while sent < messages and now() < until:
            await in_flight.acquire()
            client_id = f"{tag}-{room}-{sent}"
            await ws.send(
                json.dumps(
                    {"type": "send", "room": room, "body": f"{tag} {now():.6f}", "client_id": client_id}
                )
            )
            sent += 1
        deadline = now() + 60
        while len(acked) < sent and now() < deadline:
            await asyncio.sleep(0.01)
        reader.cancel()
    return acked


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
