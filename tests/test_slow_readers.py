"""A client that stops reading must not make the server buffer its messages without bound.

daphne gives the application no backpressure: ``websocket.send`` returns at once and twisted
keeps whatever the kernel will not take in the server's memory, so 20 sockets that subscribe to
a busy room and never read would grow the server by every message of the room, 20 times over
(measured without the guard: +150 MiB for the stream below). config/daphne_compat.py closes
such a socket (4429 ``slow_consumer``) once NATIVE_WS_SEND_BUFFER bytes have waited for it for
NATIVE_WS_SEND_GRACE seconds, and drops it when it does not answer the close. Under uvicorn,
``websocket.send`` waits while the client does not read, so the frames wait in the socket's
outbox instead, which applies the same bounds (live/outbox.py).
"""

import asyncio
import base64
import json
import os
import socket
import struct
import time
from types import SimpleNamespace

import psutil
import pytest
from channels.db import database_sync_to_async

from config import daphne_compat
from tests import ws
from tests.conftest import bearer

abearer = database_sync_to_async(bearer)

BODY = "\x1f" * 4000  # a control character, sent as \u001f: each message frame is about 24 KB
FRAME = 6 * len(BODY)
MESSAGES = 400
SENDERS = 4
STALLED = 20  # never-reading sockets
UNBOUNDED = MESSAGES * FRAME * STALLED  # 190 MB if everything were buffered
SERVER_ENV = {
    "NATIVE_RATE_WS_FRAMES": "0",  # the senders stream as fast as acks come back
    # The smallest budget: a stalled socket holds at most 16 x 64 KiB before it is cut off.
    "NATIVE_WS_SEND_BUFFER": str(64 * 1024),
    "NATIVE_WS_SEND_GRACE": "1",
}


def masked_frame(payload: bytes) -> bytes:
    """One client→server text frame (RFC 6455 requires clients to mask)."""
    mask = os.urandom(4)
    header = b"\x81" + (
        bytes([0x80 | len(payload)]) if len(payload) < 126 else b"\xfe" + struct.pack("!H", len(payload))
    )
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def never_reading_socket(server, token: str, room: str) -> socket.socket:
    """A websocket that subscribes to ``room``, sees ``subscribed``, then never reads again.

    A raw socket with a tiny receive buffer, so the kernel soon stops taking data for it and
    the rest piles up on the server's side, as with a stalled or hostile client.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/ws/native?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    seen = b""
    while b'"hello"' not in seen:
        seen += sock.recv(4096)
    sock.sendall(masked_frame(json.dumps({"type": "subscribe", "room": room}).encode()))
    while b'"subscribed"' not in seen:
        seen += sock.recv(4096)
    return sock


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Read what is left: True when the server ends the connection (EOF or reset)."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 16):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            continue
    return False


async def subscribed_reader(server, token: str):
    reader = await ws.connect(f"{server.ws_url}?token={token}")
    await ws.recv_until(reader, "hello")
    await ws.send_json(reader, {"type": "subscribe", "room": "general"})
    await ws.recv_until(reader, "subscribed")
    return reader


async def drain(reader, count: int) -> list[dict]:
    got = []
    while len(got) < count:
        frame = await ws.recv_json(reader, timeout=20)
        if frame["type"] == "message":
            got.append(frame["message"])
    return got


async def send_many(sender, prefix: str, count: int) -> None:
    for i in range(count):
        frame = {"type": "send", "room": "general", "body": BODY, "client_id": f"{prefix}{i}"}
        await ws.send_json(sender, frame)
        await ws.recv_until(sender, "ack")


async def sample_rss(process, samples: list[int]) -> None:
    while True:
        samples.append(process.memory_info().rss)
        await asyncio.sleep(0.05)


async def stream_past_stalled_sockets(server, alice, bob) -> tuple[list, list[dict], int]:
    """Open the stalled sockets and a normal reader, stream MESSAGES; (stalled, received, growth)."""
    process = psutil.Process(server.process.pid)
    bob_token, alice_token = await abearer(bob), await abearer(alice)
    stalled = [never_reading_socket(server, bob_token, "general") for _ in range(STALLED)]
    reader = await subscribed_reader(server, bob_token)
    reading = asyncio.create_task(drain(reader, MESSAGES))
    senders = [await ws.connect(f"{server.ws_url}?token={alice_token}") for _ in range(SENDERS)]
    for sender in senders:
        await ws.recv_until(sender, "hello")
    samples = [process.memory_info().rss]
    sampling = asyncio.create_task(sample_rss(process, samples))
    per_sender = MESSAGES // SENDERS
    await asyncio.gather(*(send_many(s, f"s{n}-", per_sender) for n, s in enumerate(senders)))
    received = await reading
    sampling.cancel()
    growth = max(samples) - samples[0]
    print(f"server rss growth {growth >> 20} MiB; buffering everything would hold {UNBOUNDED >> 20} MiB")
    await asyncio.gather(reader.close(), *(s.close() for s in senders))
    return stalled, received, growth


@pytest.mark.e2e
async def test_daphne_cuts_off_clients_that_never_read_and_its_memory_stays_bounded(
    server_factory, alice, bob, general
):
    server = server_factory(env=SERVER_ENV, name="slow-readers-daphne")
    stalled, received, growth = await stream_past_stalled_sockets(server, alice, bob)
    try:
        assert len({m["client_id"] for m in received}) == MESSAGES  # the reader missed nothing
        assert all(closed_by_server(sock) for sock in stalled)
        assert server.log().count("slow consumer") == STALLED
        # Measured: 25-35 MiB with the guard (at most 1 MiB unsent per socket), 150 without.
        assert growth < UNBOUNDED / 3
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.e2e
async def test_under_uvicorn_a_never_reading_client_stalls_only_itself_and_memory_stays_bounded(
    server_factory, alice, bob, general
):
    server = server_factory(env=SERVER_ENV, name="slow-readers-uvicorn", server="uvicorn")
    stalled, received, growth = await stream_past_stalled_sockets(server, alice, bob)
    try:
        assert len({m["client_id"] for m in received}) == MESSAGES  # the reader missed nothing
        # uvicorn's send waits for a client that does not read, so the frames wait in the
        # socket's outbox (live/outbox.py), which applies the same bounds as daphne_compat: each
        # stalled socket is closed 4429 and its queued frames dropped at once. (Its close frame
        # cannot reach a client that does not read: uvicorn's websockets layer then tears the
        # TCP connection down after its close timeouts, about 40 s, holding at most its 64 KiB
        # write buffer meanwhile: bounded, and too long to wait for here.)
        deadline = time.monotonic() + 10
        while server.log().count("slow consumer") < STALLED and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert server.log().count("slow consumer") == STALLED
        assert growth < UNBOUNDED / 3
    finally:
        for sock in stalled:
            sock.close()


# --- the guard's rule, in-process -----------------------------------------------------------


def protocol_holding(unsent: int) -> SimpleNamespace:
    """A stand-in for daphne's protocol whose TCP transport still holds ``unsent`` bytes."""
    transport = SimpleNamespace(dataBuffer=b"x" * unsent, offset=0, _tempDataLen=0)
    return SimpleNamespace(transport=SimpleNamespace(transport=transport), client_addr=["127.0.0.1", 1])


@pytest.fixture
def clock(monkeypatch, settings):
    settings.NATIVE_WS_SEND_BUFFER = 1000
    settings.NATIVE_WS_SEND_GRACE = 5.0
    now = [100.0]
    monkeypatch.setattr(daphne_compat.time, "monotonic", lambda: now[0])
    return now


def test_a_burst_that_drains_within_the_grace_period_is_not_a_slow_consumer(clock):
    protocol = protocol_holding(4000)
    assert not daphne_compat._is_slow_consumer(protocol)
    clock[0] += 4.9
    protocol.transport.transport.dataBuffer = b"x" * 500  # drained below the limit: forgiven
    assert not daphne_compat._is_slow_consumer(protocol)
    protocol.transport.transport.dataBuffer = b"x" * 4000
    clock[0] += 4.9
    assert not daphne_compat._is_slow_consumer(protocol)


def test_a_backlog_that_stays_over_the_limit_past_the_grace_period_is_a_slow_consumer(clock):
    protocol = protocol_holding(1001)
    assert not daphne_compat._is_slow_consumer(protocol)
    clock[0] += 5.0
    assert daphne_compat._is_slow_consumer(protocol)


def test_sixteen_times_the_limit_is_a_slow_consumer_at_once(clock):
    assert not daphne_compat._is_slow_consumer(protocol_holding(16_000))
    assert daphne_compat._is_slow_consumer(protocol_holding(16_001))


def test_unsent_bytes_count_what_twisted_has_not_handed_to_the_kernel():
    transport = SimpleNamespace(dataBuffer=b"x" * 100, offset=30, _tempDataLen=50)
    assert daphne_compat._unsent_bytes(transport) == 120
    assert daphne_compat._unsent_bytes(SimpleNamespace(transport=None)) == 0
