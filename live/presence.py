"""Who is connected right now: the registry of live websockets, shared by every process.

The websocket layer (live.hub) reports each socket once it has authenticated (``opened``) and
when it goes away (``closed``). Readers (GET /api/native/tokens, admin, metrics) ask by
credential or by user, from any process.

This module is the interface and the embedded (single-process) implementation. ``opened`` and
``closed`` are called on the asyncio event loop: they must stay O(1) and never do network I/O on
the caller's thread.
"""

import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

PROCESS = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LiveSocket:
    connection_id: str
    credential_id: str  # a native token's public id, or a service token's jti
    user_id: int
    process: str  # "host:pid" of the server process that holds the socket
    client_ip: str | None
    opened_at: datetime


class InProcessRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self._sockets: dict[str, LiveSocket] = {}

    def opened(self, live: LiveSocket) -> None:
        with self._lock:
            self._sockets[live.connection_id] = live

    def closed(self, connection_id: str) -> None:
        with self._lock:
            self._sockets.pop(connection_id, None)

    def for_credentials(self, credential_ids: Iterable[str]) -> dict[str, list[LiveSocket]]:
        wanted = set(credential_ids)
        found: dict[str, list[LiveSocket]] = {cid: [] for cid in wanted}
        with self._lock:
            for live in self._sockets.values():
                if live.credential_id in wanted:
                    found[live.credential_id].append(live)
        return found

    def for_user(self, user_id: int) -> list[LiveSocket]:
        with self._lock:
            return [live for live in self._sockets.values() if live.user_id == user_id]


registry = InProcessRegistry()


def opened(live: LiveSocket) -> None:
    registry.opened(live)


def closed(connection_id: str) -> None:
    registry.closed(connection_id)


def for_credentials(credential_ids: Iterable[str]) -> dict[str, list[LiveSocket]]:
    return registry.for_credentials(credential_ids)


def counts_for_credentials(credential_ids: Iterable[str]) -> dict[str, int]:
    return {cid: len(found) for cid, found in for_credentials(credential_ids).items()}


def for_user(user_id: int) -> list[LiveSocket]:
    return registry.for_user(user_id)
