"""A socket's outbox (live.outbox): FIFO, no task for a send that completes at once, a send that
suspends finished correctly, and a client that stops reading closed 4429 without slowing others."""

import asyncio

import pytest

from live.outbox import Outbox


class FakeServer:
    """An ASGI ``send`` whose transport can be paused, like uvicorn's when the client is behind."""

    def __init__(self):
        self.sent: list[dict] = []
        self.writable = asyncio.Event()
        self.writable.set()

    def pause(self):
        self.writable.clear()

    def resume(self):
        self.writable.set()

    async def send(self, message):
        lock = asyncio.Lock()
        async with lock:  # like websockets' drain lock, around the wait for the transport
            await self.writable.wait()
        self.sent.append(message)


def texts(server):
    return [m["text"] for m in server.sent if m["type"] == "websocket.send"]


@pytest.fixture
def limits(settings):
    settings.NATIVE_WS_SEND_QUEUE = 100
    settings.NATIVE_WS_SEND_BUFFER = 64 * 1024
    settings.NATIVE_WS_SEND_GRACE = 0.2


async def test_a_send_that_completes_at_once_needs_no_task(limits):
    server = FakeServer()
    outbox = Outbox(server.send)
    before = len(asyncio.all_tasks())

    for i in range(5):
        outbox.push(f"m{i}")

    assert texts(server) == [f"m{i}" for i in range(5)]  # sent synchronously, in order
    assert len(asyncio.all_tasks()) == before and outbox.queued == 0


async def test_a_send_that_suspends_is_finished_and_what_followed_goes_out_in_order(limits):
    server = FakeServer()
    outbox = Outbox(server.send)
    outbox.push("first")
    server.pause()
    outbox.push("stuck")  # suspends inside the server's send
    for i in range(3):
        outbox.push(f"after{i}")
    assert texts(server) == ["first"] and outbox.queued == 4

    server.resume()
    for _ in range(5):
        await asyncio.sleep(0)

    assert texts(server) == ["first", "stuck", "after0", "after1", "after2"]
    assert outbox.queued == 0


async def test_a_client_that_stays_behind_is_closed_4429_and_its_frames_dropped(limits):
    server = FakeServer()
    closed = []
    outbox = Outbox(server.send, on_close=lambda: closed.append(True))
    server.pause()
    for i in range(150):  # over the 100-frame bound
        outbox.push(f"m{i}")

    await asyncio.sleep(0.4)  # the grace passes with the client still not reading

    assert closed and outbox.closing and outbox.queued == 0
    server.resume()  # the close frame waits for the transport like anything else
    await asyncio.sleep(0.05)
    assert texts(server) == []  # the queued frames were dropped, not sent late
    assert server.sent == [{"type": "websocket.close", "code": 4429, "reason": "slow_consumer"}]


async def test_a_burst_that_drains_within_the_grace_is_forgiven(limits):
    server = FakeServer()
    outbox = Outbox(server.send)
    server.pause()
    for i in range(150):
        outbox.push(f"m{i}")
    await asyncio.sleep(0.05)
    server.resume()
    await asyncio.sleep(0.4)

    assert not outbox.closing
    assert texts(server) == [f"m{i}" for i in range(150)]
