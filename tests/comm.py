"""In-process websocket tests: channels' WebsocketCommunicator against the real routing."""

import json

from channels.testing import WebsocketCommunicator

from native_api.routing import websocket_application

PATH = "/api/ws/native"


async def open_socket(query: str = "", headers=None) -> WebsocketCommunicator:
    path = f"{PATH}?{query}" if query else PATH
    communicator = WebsocketCommunicator(websocket_application(), path, headers=headers or [])
    connected, _ = await communicator.connect(timeout=5)
    assert connected, "the server should accept the upgrade before deciding"
    return communicator


async def hello(query: str = "", headers=None) -> tuple[WebsocketCommunicator, dict]:
    communicator = await open_socket(query, headers)
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "hello", frame
    return communicator, frame


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 5) -> tuple[int, str]:
    """Read until the close; returns (code, reason)."""
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output.get("code"), output.get("reason", "")


async def frames_until(
    communicator: WebsocketCommunicator, frame_type: str, timeout: float = 5
) -> list[dict]:
    """Frames up to and including the first of ``frame_type``."""
    frames = []
    while True:
        output = await communicator.receive_output(timeout=timeout)
        assert output["type"] == "websocket.send", output
        frame = json.loads(output["text"])
        frames.append(frame)
        if frame["type"] == frame_type:
            return frames
