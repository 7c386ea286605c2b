"""Who is connected right now: the registry of live websockets, shared by every process.

The websocket layer (live.hub) reports each socket once it has authenticated (``opened``) and
when it goes away (``closed``). Readers (GET /api/native/tokens, admin, metrics) ask by
credential or by user, from any process. ``GET /api/native/me`` asks for one credential's count
as a read that its authentication's round trip to Redis carries (``count_read``).

Two implementations, chosen on first use: in-process (the embedded default, one process) and
Redis (``REDIS_URL`` set: every process's sockets, visible from every process; see
live/presence_redis.py and docs/operations-admin.md). ``opened`` and ``closed`` are called on
the asyncio event loop: both are O(1) and never do network I/O on the caller's thread.
"""

import threading
from collections.abc import Iterable

from foundation.redis_scripts import PendingRead
from live.live_socket import PROCESS, LiveSocket  # noqa: F401  (callers name presence.PROCESS)


class InProcessRegistry:
    """The sockets of this process only: right when one process serves everything."""

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

    def count_read(self, credential_id: str) -> PendingRead:
        return _LocalCount(self, credential_id)

    def for_user(self, user_id: int) -> list[LiveSocket]:
        with self._lock:
            return [live for live in self._sockets.values() if live.user_id == user_id]

    def all_sockets(self) -> list[LiveSocket]:
        with self._lock:
            return list(self._sockets.values())


class _LocalCount(PendingRead):
    """A count that needs no Redis: nothing carries it, it is counted when asked."""

    def __init__(self, registry: InProcessRegistry, credential_id: str):
        self.registry, self.credential_id = registry, credential_id

    def alone(self) -> int:
        return len(self.registry.for_credentials([self.credential_id])[self.credential_id])


_registry = None
_registry_lock = threading.Lock()


def registry():
    """This process's registry, built on first use from settings.REDIS_URL."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                from django.conf import settings

                if settings.REDIS_URL:
                    from live.presence_redis import RedisRegistry

                    _registry = RedisRegistry(settings.REDIS_URL, prefix=f"{settings.REDIS_PREFIX}:presence")
                else:
                    _registry = InProcessRegistry()
    return _registry


def use_registry(new) -> None:
    """Replace this process's registry (tests); the old one stops its background thread."""
    global _registry
    with _registry_lock:
        old, _registry = _registry, new
    if old is not None and old is not new and hasattr(old, "stop"):
        old.stop()


def opened(live: LiveSocket) -> None:
    registry().opened(live)


def closed(connection_id: str) -> None:
    registry().closed(connection_id)


def for_credentials(credential_ids: Iterable[str]) -> dict[str, list[LiveSocket]]:
    return registry().for_credentials(credential_ids)


def counts_for_credentials(credential_ids: Iterable[str]) -> dict[str, int]:
    return {cid: len(found) for cid, found in for_credentials(credential_ids).items()}


def count_read(credential_id: str) -> PendingRead:
    """The number of live sockets of one credential, as a read another round trip to Redis may
    carry (foundation.redis_scripts): its ``value()`` is what ``counts_for_credentials`` says."""
    return registry().count_read(credential_id)


def for_user(user_id: int) -> list[LiveSocket]:
    return registry().for_user(user_id)


def all_sockets() -> list[LiveSocket]:
    """Every live socket in every process (a mass revocation's confirmation counts them)."""
    return registry().all_sockets()
