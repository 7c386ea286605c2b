"""A small client for the native rooms API (API.md): SSH-key login, rooms, history, send, live tail.

from native_client import NativeClient

with NativeClient("http://127.0.0.1:8000") as client:
    client.login("~/.ssh/id_ed25519", device_name="laptop")
    client.send("general", "hello")
    async for message in client.tail("general"):   # inside a coroutine
        ...
"""

from native_client.api import NativeClient
from native_client.errors import (
    ApiError,
    ClientError,
    NetworkError,
    NotLoggedIn,
    ServersUnreachable,
    SigningError,
    StreamForbidden,
    StreamProtocolError,
    StreamStopped,
    StreamUnauthorized,
)
from native_client.store import TokenStore
from native_client.stream import Backoff, StreamEvent, Tail, tail

__all__ = [
    "ApiError",
    "Backoff",
    "ClientError",
    "NativeClient",
    "NetworkError",
    "NotLoggedIn",
    "ServersUnreachable",
    "SigningError",
    "StreamEvent",
    "StreamForbidden",
    "StreamProtocolError",
    "StreamStopped",
    "StreamUnauthorized",
    "Tail",
    "TokenStore",
    "tail",
]
