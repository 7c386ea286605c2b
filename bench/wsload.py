"""Websocket client helpers shared by the scenarios (websockets' asyncio client).

Compression is off (native clients rarely negotiate it and it would make the client, not the
server, the bottleneck), and so are keep-alive pings (idle sockets must stay idle).
"""

import asyncio
import json
import time

from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

OPTIONS = {
    "compression": None,
    "ping_interval": None,
    "open_timeout": 20,
    "max_size": 2**20,
    "max_queue": 4096,
}


async def open_socket(url: str, token: str | None = None, timeout: float = 20.0):
    """Connect and wait for the hello frame; returns the socket."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    ws = await ws_connect(url, additional_headers=headers, **OPTIONS)
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    if frame.get("type") != "hello":
        await ws.close()
        raise RuntimeError(f"expected hello, got {frame}")
    return ws


async def recv_type(ws, frame_type: str, timeout: float = 20.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - loop.time())))
        if frame.get("type") == frame_type:
            return frame


def stamp_close_frames() -> None:
    """From now on, each client connection of this process records when the server's close
    frame reached it (``ws.close_frame_at``, ``time.time()``, None before). ``recv()`` raises,
    and ``close_code`` returns, only once the TCP connection is closed too: after this client's
    reply and the server's drop, a round trip through two busy processes later."""
    if getattr(Connection, "stamps_close_frames", False):
        return
    receive = Connection.data_received

    def data_received(self, data: bytes) -> None:
        receive(self, data)
        if self.protocol.close_rcvd is not None and getattr(self, "close_frame_at", None) is None:
            self.close_frame_at = time.time()

    Connection.data_received = data_received
    Connection.stamps_close_frames = True


async def close_code(ws, timeout: float) -> int | None:
    """Wait for the server to close; the close code, or None on timeout."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006
    except TimeoutError:
        return None


async def gather_limited(coros, limit: int):
    semaphore = asyncio.Semaphore(limit)

    async def one(coro):
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))
