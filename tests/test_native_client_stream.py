"""Tail's reconnect rules, against a scripted websocket server for what a real one will not do
on cue (close with 1013, replay messages already delivered, drop before the first message).

Tickets come from an httpx MockTransport; the websocket side is a real websockets server.
"""

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.server import serve

from native_client import Backoff, ServersUnreachable, StreamForbidden, StreamUnauthorized, Tail

FAST = Backoff(initial=0.01, cap=0.05, rate_limited=0.2)
HELLO = {"type": "hello", "user": {"id": 1, "username": "alice"}, "connection_id": "c1"}


def message(message_id: int, room: str = "general") -> dict:
    return {
        "type": "message",
        "message": {
            "id": message_id,
            "room": room,
            "sender": {"id": 2, "username": "bob"},
            "body": f"m{message_id}",
            "created_at": "2026-11-22T18:42:31Z",
            "client_id": None,
            "target_user_ids": [],
        },
    }


def subscribed(last_message_id) -> dict:
    return {"type": "subscribed", "room": "general", "last_message_id": last_message_id}


def tickets(statuses=()):
    """A ws-ticket endpoint answering ``statuses`` first, then 201s; records the calls."""
    pending, calls = list(statuses), []

    def answer(request):
        calls.append(request)
        status = pending.pop(0) if pending else 201
        if status == 201:
            return httpx.Response(201, json={"ticket": f"wst_{len(calls)}", "expires_in": 30})
        return httpx.Response(status, json={"error": "x", "detail": f"status {status}"})

    return httpx.MockTransport(answer), calls


class Script:
    """A websocket server playing one scripted coroutine per connection, in order."""

    def __init__(self, *connections):
        self.connections = list(connections)
        self.subscribes, self.paths = [], []

    async def handle(self, ws):
        self.paths.append(ws.request.path)
        await ws.send(json.dumps(HELLO))
        self.subscribes.append(json.loads(await ws.recv()))
        await self.connections.pop(0)(ws)

    async def __aenter__(self):
        self.server = await serve(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info):
        self.server.close()
        await self.server.wait_closed()


async def send(ws, *frames):
    for frame in frames:
        await ws.send(json.dumps(frame))


async def collect(tail: Tail, count: int, timeout=5.0) -> list[dict]:
    out = []

    async def drain():
        async for item in tail.messages():
            out.append(item)
            if len(out) == count:
                return

    await asyncio.wait_for(drain(), timeout)
    return out


async def test_it_resumes_after_a_1013_from_the_last_id_and_drops_replayed_messages():
    async def first(ws):
        await send(ws, subscribed(None), message(1), message(2), message(3))
        await ws.close(1013, "unavailable")

    async def second(ws):  # replays 2 and 3, which the client already has
        await send(ws, message(2), message(3), message(4), subscribed(4), message(5))
        await ws.wait_closed()

    transport, calls = tickets()
    async with Script(first, second) as script:
        events = []
        tail = Tail(
            "nat_x", script.url, "general", backoff=FAST, http_transport=transport, on_event=events.append
        )
        got = await collect(tail, 5)
    assert [m["id"] for m in got] == [1, 2, 3, 4, 5]
    assert script.subscribes == [
        {"type": "subscribe", "room": "general"},
        {"type": "subscribe", "room": "general", "after": 3},
    ]
    assert [e.close_code for e in events if e.kind == "reconnecting"] == [1013]
    # A fresh single-use ticket for every connection, sent in the query string.
    assert script.paths == ["/api/ws/native?ticket=wst_1", "/api/ws/native?ticket=wst_2"]
    assert [c.headers["Authorization"] for c in calls] == ["Bearer nat_x"] * 2


@pytest.mark.parametrize(("last_message_id", "resume_after"), [(None, 0), (7, 7)])
async def test_a_drop_before_any_message_resumes_from_the_subscribe_point(last_message_id, resume_after):
    async def first(ws):
        await send(ws, subscribed(last_message_id))
        await ws.close(1011)

    async def second(ws):
        await send(ws, message(resume_after + 1), subscribed(resume_after + 1))
        await ws.wait_closed()

    transport, _ = tickets()
    async with Script(first, second) as script:
        got = await collect(Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport), 1)
    assert script.subscribes[1]["after"] == resume_after
    assert [m["id"] for m in got] == [resume_after + 1]


async def test_messages_of_other_rooms_are_not_delivered():
    async def only(ws):
        await send(ws, subscribed(0), message(1, room="other"), message(2))
        await ws.wait_closed()

    transport, _ = tickets()
    async with Script(only) as script:
        got = await collect(Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport), 1)
    assert [(m["id"], m["room"]) for m in got] == [(2, "general")]


async def test_it_stops_when_removed_from_the_room_and_does_not_reconnect():
    async def only(ws):
        await send(ws, subscribed(0), message(1))
        await send(ws, {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"})
        await ws.wait_closed()

    transport, calls = tickets()
    async with Script(only) as script:
        tail = Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport)
        got = []
        with pytest.raises(StreamForbidden, match="removed"):
            async for item in tail.messages():
                got.append(item)
    assert [m["id"] for m in got] == [1] and len(calls) == 1


async def test_a_4429_close_waits_the_longer_backoff_before_coming_back():
    async def limited(ws):
        await ws.close(4429, "rate_limited")

    async def fine(ws):
        await send(ws, subscribed(0), message(1))
        await ws.wait_closed()

    transport, _ = tickets()
    events = []
    async with Script(limited, fine) as script:
        tail = Tail(
            "nat_x", script.url, "general", backoff=FAST, http_transport=transport, on_event=events.append
        )
        started = asyncio.get_running_loop().time()
        await collect(tail, 1)
        waited = asyncio.get_running_loop().time() - started
    assert events[0].close_code == 4429 and events[0].delay >= FAST.rate_limited
    assert waited >= FAST.rate_limited


async def test_ticket_failures_are_retried_but_a_401_stops_the_tail():
    async def fine(ws):
        await send(ws, subscribed(0), message(1))
        await ws.wait_closed()

    transport, calls = tickets([503, 502])
    async with Script(fine) as script:
        got = await collect(Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport), 1)
    assert [m["id"] for m in got] == [1] and len(calls) == 3

    refused, _ = tickets([401])
    with pytest.raises(StreamUnauthorized, match="Log in again"):
        await collect(Tail("nat_x", "http://127.0.0.1:9", "general", backoff=FAST, http_transport=refused), 1)


async def test_it_gives_up_after_max_failures_when_no_server_answers():
    transport, calls = tickets([503, 503, 503])
    tail = Tail(
        "nat_x",
        ["http://127.0.0.1:9", "http://127.0.0.1:10"],
        "general",
        backoff=FAST,
        max_failures=3,
        http_transport=transport,
    )
    with pytest.raises(ServersUnreachable):
        await collect(tail, 1)
    # Each failure moved on to the next server of the list.
    assert [str(c.url.port) for c in calls] == ["9", "10", "9"]


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    backoff = Backoff(initial=0.2, cap=5.0)
    for failures in range(12):
        base = min(5.0, 0.2 * 2**failures)
        delays = [backoff.delay(failures) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert backoff.delay(1000) <= 5.0


def test_being_rate_limited_waits_at_least_the_floor_or_retry_after():
    backoff = Backoff(initial=0.2, cap=5.0, rate_limited=5.0)
    assert all(5.0 <= backoff.delay(0, rate_limited=True) <= 7.5 for _ in range(100))
    assert all(12 <= backoff.delay(0, rate_limited=True, retry_after=12) <= 18 for _ in range(100))
