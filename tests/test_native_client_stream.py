"""Tail's reconnect rules, against a scripted websocket server for what a real one will not do
on cue (close with 1012 or 1013, replay messages already delivered, drop before the first
message). The server's own 1012 on SIGTERM is built separately; this fake closes the way
API.md says it will.

Tickets (and history, for ``last``) come from an httpx MockTransport; the websocket side is a
real websockets server that expects the contract's auth frame first.
"""

import asyncio
import json
import logging

import httpx
import pytest
from websockets.asyncio.server import serve

from native_client import (
    Backoff,
    ServersUnreachable,
    StreamForbidden,
    StreamProtocolError,
    StreamUnauthorized,
    Tail,
)

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


def tickets(statuses=(), history=None):
    """A ws-ticket endpoint answering ``statuses`` first, then 201s; records the calls.

    ``history``: the messages GET …/history answers with."""
    pending, calls = list(statuses), []

    def answer(request):
        if request.url.path.endswith("/history"):  # for Tail(last=N)
            return httpx.Response(200, json={"room": "general", "messages": history, "has_more": False})
        calls.append(request)
        status = pending.pop(0) if pending else 201
        if status == 201:
            return httpx.Response(201, json={"ticket": f"wst_{len(calls)}", "expires_in": 30})
        return httpx.Response(status, json={"error": "x", "detail": f"status {status}"})

    return httpx.MockTransport(answer), calls


class Script:
    """A websocket server playing one scripted coroutine per connection, in order.

    Like the real one, it reads the auth frame and says hello before the script runs; a
    script given as ``(before_hello, …)`` runs in place of that (e.g. to refuse the ticket).
    """

    def __init__(self, *connections):
        self.connections = list(connections)
        self.subscribes, self.paths, self.auths = [], [], []

    async def handle(self, ws):
        self.paths.append(ws.request.path)
        self.auths.append(json.loads(await ws.recv()))
        script = self.connections.pop(0)
        if isinstance(script, tuple):
            return await script[0](ws)
        await ws.send(json.dumps(HELLO))
        self.subscribes.append(json.loads(await ws.recv()))
        await script(ws)

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
    # A fresh single-use ticket for every connection, in the first frame and never in the URL.
    assert script.paths == ["/api/ws/native", "/api/ws/native"]
    assert script.auths == [{"type": "auth", "ticket": "wst_1"}, {"type": "auth", "ticket": "wst_2"}]
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
    with pytest.raises(StreamUnauthorized, match="log in again"):
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


# --- close codes (API.md's table) ---------------------------------------------------------------


async def test_a_1012_moves_to_the_next_server_and_resumes_without_gap_or_duplicate():
    async def restarting(ws):  # SIGTERM on this process: 1012 after some messages
        await send(ws, subscribed(0), message(1), message(2))
        await ws.close(1012, "restarting")

    async def other(ws):  # the other process replays 2 (sent before 1012 arrived), then goes on
        await send(ws, message(2), message(3), subscribed(3), message(4))
        await ws.wait_closed()

    transport, calls = tickets()
    events = []
    async with Script(restarting) as first, Script(other) as second:
        tail = Tail(
            "nat_x",
            [first.url, second.url],
            "general",
            backoff=FAST,
            http_transport=transport,
            on_event=events.append,
        )
        got = await collect(tail, 4)
    assert [m["id"] for m in got] == [1, 2, 3, 4]
    assert second.subscribes == [{"type": "subscribe", "room": "general", "after": 2}]
    (reconnect,) = [e for e in events if e.kind == "reconnecting"]
    assert reconnect.close_code == 1012 and reconnect.url == second.url
    assert reconnect.delay <= FAST.initial  # a restart is not a failure: no growing wait
    assert [str(c.url.port) for c in calls] == [first.url.rsplit(":", 1)[1], second.url.rsplit(":", 1)[1]]


async def test_a_1012_from_the_only_server_reconnects_to_it_and_resumes():
    async def restarting(ws):
        await send(ws, subscribed(5), message(6))
        await ws.close(1012)

    async def back(ws):
        await send(ws, message(7), subscribed(7))
        await ws.wait_closed()

    transport, _ = tickets()
    async with Script(restarting, back) as script:
        got = await collect(Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport), 2)
    assert [m["id"] for m in got] == [6, 7]
    assert script.subscribes[1] == {"type": "subscribe", "room": "general", "after": 6}


async def test_repeated_1013_closes_wait_longer_each_time():
    async def unavailable(ws):
        await send(ws, subscribed(0))
        await ws.close(1013, "unavailable")

    async def fine(ws):
        await send(ws, subscribed(0), message(1))
        await ws.wait_closed()

    transport, _ = tickets()
    events = []
    backoff = Backoff(initial=0.02, cap=1.0)
    async with Script(unavailable, unavailable, unavailable, fine) as script:
        tail = Tail(
            "nat_x", script.url, "general", backoff=backoff, http_transport=transport, on_event=events.append
        )
        await collect(tail, 1)
    delays = [e.delay for e in events if e.kind == "reconnecting"]
    # failures 1, 2, 3: waits in [0.02, 0.04], [0.04, 0.08], [0.08, 0.16]
    assert len(delays) == 3 and delays[0] <= 0.04 and 0.04 <= delays[1] <= 0.08 and delays[2] >= 0.08


async def test_a_4401_gets_a_fresh_ticket_at_once_and_goes_on():
    async def refused(ws):  # e.g. the ticket died in flight
        await ws.close(4401, "unauthorized")

    async def fine(ws):
        await send(ws, subscribed(0), message(1))
        await ws.wait_closed()

    transport, calls = tickets()
    events = []
    async with Script((refused,), fine) as script:
        tail = Tail(
            "nat_x", script.url, "general", backoff=FAST, http_transport=transport, on_event=events.append
        )
        got = await collect(tail, 1)
    assert [m["id"] for m in got] == [1]
    assert [a["ticket"] for a in script.auths] == ["wst_1", "wst_2"] and len(calls) == 2
    assert [(e.close_code, e.delay) for e in events if e.kind == "reconnecting"] == [(4401, 0.0)]


async def test_a_4401_whose_token_is_dead_stops_with_log_in_again():
    async def revoked(ws):  # a live socket whose token was revoked
        await send(ws, subscribed(0), message(1))
        await ws.close(4401, "unauthorized")

    transport, calls = tickets([201, 401])
    async with Script(revoked) as script:
        tail = Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport)
        got = []
        with pytest.raises(StreamUnauthorized, match="log in again") as stopped:
            async for item in tail.messages():
                got.append(item)
    assert [m["id"] for m in got] == [1] and len(calls) == 2
    assert stopped.value.close_code == 4401


async def test_a_second_4401_in_a_row_stops_instead_of_looping():
    async def refused(ws):
        await ws.close(4401, "unauthorized")

    transport, calls = tickets()
    async with Script((refused,), (refused,), (refused,)) as script:
        with pytest.raises(StreamUnauthorized):
            await collect(Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport), 1)
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("code", "stopped_with"),
    [(4403, StreamForbidden), (4400, StreamProtocolError), (1009, StreamProtocolError)],
)
async def test_final_close_codes_stop_without_reconnecting(code, stopped_with):
    async def final(ws):
        await send(ws, subscribed(0))
        await ws.close(code)

    transport, calls = tickets()
    async with Script(final) as script:
        with pytest.raises(stopped_with) as stopped:
            await collect(Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport), 1)
    assert stopped.value.close_code == code and len(calls) == 1


async def test_a_4408_is_retried_with_a_fresh_ticket():
    async def timed_out(ws):
        await ws.close(4408, "auth_timeout")

    async def fine(ws):
        await send(ws, subscribed(0), message(1))
        await ws.wait_closed()

    transport, calls = tickets()
    async with Script((timed_out,), fine) as script:
        got = await collect(Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport), 1)
    assert [m["id"] for m in got] == [1] and [a["ticket"] for a in script.auths] == ["wst_1", "wst_2"]


# --- last N -------------------------------------------------------------------------------------


async def test_last_delivers_the_latest_history_then_live_ones_without_gap_or_duplicate():
    async def live(ws):  # 3 was posted after the history call: it comes in the backlog, once
        await send(ws, message(3), subscribed(3), message(3), message(4))
        await ws.wait_closed()

    history = [message(1)["message"], message(2)["message"]]
    transport, _ = tickets(history=history)
    async with Script(live) as script:
        got = await collect(
            Tail("nat_x", script.url, "general", last=2, backoff=FAST, http_transport=transport), 4
        )
    assert [m["id"] for m in got] == [1, 2, 3, 4]
    assert script.subscribes == [{"type": "subscribe", "room": "general", "after": 2}]


async def test_last_on_an_empty_room_subscribes_after_0_so_nothing_posted_meanwhile_is_lost():
    async def live(ws):
        await send(ws, message(1), subscribed(1))
        await ws.wait_closed()

    transport, _ = tickets(history=[])
    async with Script(live) as script:
        got = await collect(
            Tail("nat_x", script.url, "general", last=10, backoff=FAST, http_transport=transport), 1
        )
    assert [m["id"] for m in got] == [1]
    assert script.subscribes == [{"type": "subscribe", "room": "general", "after": 0}]


def test_last_is_bounded_by_the_history_page_limit():
    with pytest.raises(ValueError, match="200"):
        Tail("nat_x", "http://127.0.0.1:9", "general", last=201)


# --- credentials stay out of logs -------------------------------------------------------------


async def test_the_websockets_debug_log_shows_no_credential(caplog):
    async def fine(ws):
        await send(ws, subscribed(0), message(1))
        await ws.wait_closed()

    transport, _ = tickets()
    caplog.set_level(logging.DEBUG)
    async with Script(fine) as script:
        await collect(Tail("nat_x", script.url, "general", backoff=FAST, http_transport=transport), 1)
    client_lines = [r.getMessage() for r in caplog.records if r.name == "websockets.client"]
    assert "> GET /api/ws/native HTTP/1.1" in client_lines
    assert any('"type": "auth"' in line for line in client_lines)  # the frame was logged, redacted
    # Everything the client side logged (the fake server's own records aside: it does see the ticket).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "websockets.server")
    assert "wst_" not in logged and "nat_" not in logged
