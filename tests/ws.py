"""A small async websocket client for tests: JSON frames, close codes, timeouts."""

import asyncio
import json

import websockets


async def connect(url: str, **kwargs):
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("max_size", 2**22)
    return await websockets.connect(url, **kwargs)


async def recv_json(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def send_json(ws, frame: dict) -> None:
    await ws.send(json.dumps(frame))


async def recv_until(ws, frame_type: str, timeout: float = 5.0) -> tuple[dict, list[dict]]:
    """Read frames until one of ``frame_type``; return it and the frames before it."""
    before = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await recv_json(ws, max(0.01, deadline - loop.time()))
        if frame.get("type") == frame_type:
            return frame, before
        before.append(frame)


async def close_code(ws, timeout: float = 5.0) -> tuple[int, str]:
    """Wait for the server to close; return (code, reason). Frames before the close are dropped."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as closed:
        if closed.rcvd is None:
            return 1006, ""
        return closed.rcvd.code, closed.rcvd.reason


async def no_frame(ws, wait: float = 0.3) -> bool:
    """True when nothing arrives within ``wait`` seconds."""
    try:
        await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return True
    return False
