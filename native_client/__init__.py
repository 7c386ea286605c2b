"""A small client for the native rooms API (API.md): SSH-key login, rooms, history, send, live tail.

from native_client import NativeClient

with NativeClient("http://127.0.0.1:8000") as client:
    client.login("~/.ssh/id_ed25519", device_name="laptop")
    client.send("general", "hello", target_user_ids=client.user_ids("general", ["bob"]))
    async for message in client.tail("general"):   # inside a coroutine
        ...
"""

from native_client.api import NativeClient
from native_client.errors import (
    ApiError,
    ClientError,
    LoginRefused,
    NetworkError,
    NotLoggedIn,
    ServersUnreachable,
    SigningError,
    StreamForbidden,
    StreamProtocolError,
    StreamStopped,
    StreamUnauthorized,
    UnknownMembers,
)
from native_client.reconnect import Backoff
from native_client.store import TokenStore
from native_client.stream import StreamEvent, Tail, tail

__all__ = [
    "ApiError",
    "Backoff",
    "ClientError",
    "LoginRefused",
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
    "UnknownMembers",
    "tail",
]
