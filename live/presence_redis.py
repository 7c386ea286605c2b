"""The live-socket registry in Redis: every process's sockets, readable from every process.

Keys (under ``<REDIS_PREFIX>:presence``):
- ``procs``: SET of the processes that have registered sockets ("host:pid").
- ``alive:<process>``: a heartbeat key with a TTL (30 s): a process whose key expired is dead.
- ``proc:<process>``: HASH connection id -> the socket (JSON), this process's entries.
- ``cred:<credential id>`` and ``user:<user id>``: SETs of "<process>|<connection id>".

Writers: ``opened``/``closed`` run on the event loop, so they only record the change in memory
(this process's sockets, the truth, plus a bounded queue of pending changes) and a background
thread writes the queue in batches, one pipeline per flush. When Redis fails, or the queue
overflows, the queue is dropped, a warning is logged once, and the next successful flush
rewrites this process's entries from memory: nothing on the event loop ever waits for Redis.

Readers: sync code (HTTP views, admin) does two round trips whatever the number of sockets or
credentials asked about: the index sets, then the owning processes' heartbeats and hashes. One
credential's count (``count_read``, for ``GET /api/native/me``) is one script that does both in
Redis, sent in the round trip the request makes for its rate limits anyway
(foundation/redis_scripts.py), or alone when nothing carries it.
Entries of a process whose heartbeat expired are ignored at once and deleted by the next
janitor pass (every live process runs one with its heartbeat), so a ``kill -9`` leaves nothing
visible after the TTL. A reader that cannot reach Redis answers with this process's own
sockets and logs a warning (at most one a minute).
"""

import atexit
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime

import redis

from foundation import redis_urls
from foundation.redis_scripts import PendingRead, Script
from live.live_socket import PROCESS, LiveSocket

logger = logging.getLogger(__name__)

SEPARATOR = "|"  # between process and connection id in the index sets; in neither of them
CHUNK = 2000  # commands per pipeline when reading many index sets
WARN_EVERY = 60.0

# One credential's live sockets, as ``for_credentials`` counts them. KEYS[1]: its index set;
# ARGV[1], ARGV[2]: the prefixes of the heartbeat keys and of the processes' hashes. A member is
# "<process>|<connection id>" (SEPARATOR, split at the last one as ``_resolve`` does); it counts
# when its process's heartbeat is alive and the connection is in that process's hash.
_COUNT = Script(b"""
local alive = {}
local n = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local process, connection = string.match(member, '^(.*)|(.*)$')
    if process then
        if alive[process] == nil then
            alive[process] = redis.call('EXISTS', ARGV[1] .. process) == 1
        end
        if alive[process] and redis.call('HEXISTS', ARGV[2] .. process, connection) == 1 then
            n = n + 1
        end
    end
end
return n
""")


def _encode(live: LiveSocket) -> str:
    return json.dumps(
        [
            live.connection_id,
            live.credential_id,
            live.user_id,
            live.process,
            live.client_ip,
            live.opened_at.isoformat(),
        ]
    )


def _decode(raw: bytes) -> LiveSocket:
    connection_id, credential_id, user_id, process, client_ip, opened_at = json.loads(raw)
    return LiveSocket(
        connection_id, credential_id, user_id, process, client_ip, datetime.fromisoformat(opened_at)
    )


class RedisRegistry:
    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "native:presence",
        process: str = PROCESS,
        ttl: float = 30.0,
        flush_interval: float = 0.1,
        max_pending: int = 100_000,
        client: redis.Redis | None = None,
    ):
        self.client = client or redis_urls.client(url, socket_connect_timeout=2, socket_timeout=2)
        self.url = url  # the Redis another round trip must go to for carrying a read of ours
        self.prefix = prefix
        self.process = process
        self.ttl = ttl
        self.heartbeat_every = ttl / 3
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._local: dict[str, LiveSocket] = {}  # this process's sockets: the truth
        self._pending: deque[tuple[bool, LiveSocket]] = deque()  # (opened?, socket)
        self._rewrite = True  # the first flush replaces whatever an earlier process of this name left
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._work = threading.Event()  # something to write: the flush thread wakes for it
        self._thread: threading.Thread | None = None
        self._next_heartbeat = 0.0
        self._warned_at: dict[str, float] = {}

    # --- keys ---------------------------------------------------------------------------

    def _key(self, *parts) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def _member(self, live: LiveSocket) -> str:
        return f"{live.process}{SEPARATOR}{live.connection_id}"

    # --- writers: the event loop ------------------------------------------------------------

    def opened(self, live: LiveSocket) -> None:
        with self._lock:
            self._local[live.connection_id] = live
            self._queue(True, live)
            if self._thread is None:
                self._start()
        self._work.set()

    def closed(self, connection_id: str) -> None:
        with self._lock:
            live = self._local.pop(connection_id, None)
            if live is not None:
                self._queue(False, live)
        self._work.set()

    def _queue(self, is_open: bool, live: LiveSocket) -> None:
        if self._rewrite:
            return  # the coming rewrite writes the whole state anyway
        if len(self._pending) >= self.max_pending:
            self._pending.clear()
            self._rewrite = True
            self._warn(
                "overflow", "presence: %d changes pending, rewriting this process's entries", self.max_pending
            )
            return
        self._pending.append((is_open, live))

    # --- the background thread ----------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="presence-flush", daemon=True)
        self._thread.start()
        atexit.register(self._forget_on_exit)

    def _run(self) -> None:
        # Idle, the thread sleeps until the heartbeat is due (a few wake-ups a minute, not ten a
        # second per process); a change wakes it, and it lets a burst of opens and closes gather
        # for flush_interval so that one pipeline carries them.
        while not self._stop.is_set():
            self._work.wait(max(0.0, self._next_heartbeat - time.monotonic()))
            if self._stop.wait(self.flush_interval):
                return
            self._work.clear()
            if not self.flush():
                self._work.set()  # Redis failed: try again after flush_interval

    def stop(self, *, forget: bool = True) -> None:
        """Stop the thread; with ``forget``, remove this process's entries (a clean shutdown)."""
        self._stop.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(5)
        if forget:
            self._forget_on_exit()

    def flush(self) -> bool:
        """Write pending changes (and the heartbeat when due); False when Redis failed."""
        with self._lock:
            rewrite, self._rewrite = self._rewrite, False
            batch = list(self._pending)
            self._pending.clear()
            snapshot = list(self._local.values()) if rewrite else None
        now = time.monotonic()
        try:
            if rewrite:
                self._delete_process(self.process)
            pipe = self.client.pipeline(transaction=False)
            for live in snapshot or ():
                self._write_open(pipe, live)
            for is_open, live in batch:
                (self._write_open if is_open else self._write_close)(pipe, live)
            heartbeat = rewrite or now >= self._next_heartbeat
            if heartbeat:
                pipe.set(self._key("alive", self.process), "1", ex=max(1, round(self.ttl)), get=True)
                pipe.sadd(self._key("procs"), self.process)
            results = pipe.execute() if len(pipe) else []
            if heartbeat:
                self._next_heartbeat = now + self.heartbeat_every
                if results[-2] is None and not rewrite:
                    # Our heartbeat had expired (a long stall, a partition): a janitor elsewhere
                    # may have deleted our entries; write them again.
                    with self._lock:
                        self._rewrite = True
                        self._pending.clear()
                    self._work.set()
                self.clean_dead_processes()
        except redis.RedisError as exc:
            with self._lock:
                self._rewrite = True
                self._pending.clear()
            self._warn("write", "presence: cannot write to Redis (%s); will catch up", type(exc).__name__)
            return False
        if self._warned_at.pop("write", None) is not None:
            logger.info("presence: Redis reachable again; this process's entries were rewritten")
        return True

    def _write_open(self, pipe, live: LiveSocket) -> None:
        member = self._member(live)
        pipe.hset(self._key("proc", live.process), live.connection_id, _encode(live))
        pipe.sadd(self._key("cred", live.credential_id), member)
        pipe.sadd(self._key("user", live.user_id), member)

    def _write_close(self, pipe, live: LiveSocket) -> None:
        member = self._member(live)
        pipe.hdel(self._key("proc", live.process), live.connection_id)
        pipe.srem(self._key("cred", live.credential_id), member)
        pipe.srem(self._key("user", live.user_id), member)

    def _delete_process(self, process: str) -> None:
        """Remove every entry of ``process`` (idempotent: janitors may race on a dead one)."""
        entries = self.client.hgetall(self._key("proc", process))
        sockets = [_decode(raw) for raw in entries.values()]
        for start in range(0, len(sockets), CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for live in sockets[start : start + CHUNK]:
                self._write_close(pipe, live)
            pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self._key("proc", process))
        if process != self.process:
            pipe.srem(self._key("procs"), process)
        pipe.execute()

    def clean_dead_processes(self) -> list[str]:
        """Delete the entries of registered processes whose heartbeat expired; returns them."""
        processes = [p.decode() for p in self.client.smembers(self._key("procs"))]
        if not processes:
            return []
        pipe = self.client.pipeline(transaction=False)
        for process in processes:
            pipe.exists(self._key("alive", process))
        dead = [p for p, alive in zip(processes, pipe.execute(), strict=True) if not alive]
        for process in dead:
            if process != self.process:
                self._delete_process(process)
                logger.info("presence: removed the entries of dead process %s", process)
        return [p for p in dead if p != self.process]

    def _forget_on_exit(self) -> None:
        try:
            self._delete_process(self.process)
            self.client.delete(self._key("alive", self.process))
            self.client.srem(self._key("procs"), self.process)
        except redis.RedisError:
            pass  # the heartbeat expires and a janitor cleans up instead

    # --- readers: sync code, a couple of round trips --------------------------------------

    def for_credentials(self, credential_ids: Iterable[str]) -> dict[str, list[LiveSocket]]:
        wanted = list(dict.fromkeys(credential_ids))
        found: dict[str, list[LiveSocket]] = {cid: [] for cid in wanted}
        if not wanted:
            return found
        try:
            members = self._read_sets([self._key("cred", cid) for cid in wanted])
            for live in self._resolve(set().union(*members)):
                found[live.credential_id].append(live)
        except redis.RedisError as exc:
            for live in self._only_local(exc):
                if live.credential_id in found:
                    found[live.credential_id].append(live)
        return found

    def count_read(self, credential_id: str) -> PendingRead:
        return _SocketCount(self, credential_id)

    def for_user(self, user_id: int) -> list[LiveSocket]:
        try:
            (members,) = self._read_sets([self._key("user", user_id)])
            return sorted(self._resolve(members), key=lambda live: live.opened_at)
        except redis.RedisError as exc:
            return [live for live in self._only_local(exc) if live.user_id == user_id]

    def all_sockets(self) -> list[LiveSocket]:
        try:
            processes = [p.decode() for p in self.client.smembers(self._key("procs"))]
            pipe = self.client.pipeline(transaction=False)
            for process in processes:
                pipe.exists(self._key("alive", process))
                pipe.hvals(self._key("proc", process))
            results = pipe.execute()
        except redis.RedisError as exc:
            return self._only_local(exc)
        return [
            _decode(raw)
            for alive, values in zip(results[::2], results[1::2], strict=True)
            if alive
            for raw in values
        ]

    def _read_sets(self, keys: list[str]) -> list[set[bytes]]:
        out: list[set[bytes]] = []
        for start in range(0, len(keys), CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[start : start + CHUNK]:
                pipe.smembers(key)
            out.extend(pipe.execute())
        return out

    def _resolve(self, members: set[bytes]) -> list[LiveSocket]:
        """The sockets behind index members, dropping those of dead processes and stale ones."""
        by_process: dict[str, list[str]] = {}
        for member in members:
            process, _, connection_id = member.decode().rpartition(SEPARATOR)
            by_process.setdefault(process, []).append(connection_id)
        if not by_process:
            return []
        pipe = self.client.pipeline(transaction=False)
        for process, connection_ids in by_process.items():
            pipe.exists(self._key("alive", process))
            pipe.hmget(self._key("proc", process), connection_ids)
        results = pipe.execute()
        sockets = []
        for alive, values in zip(results[::2], results[1::2], strict=True):
            if alive:
                sockets.extend(_decode(raw) for raw in values if raw is not None)
        return sockets

    def _local_copy(self) -> list[LiveSocket]:
        with self._lock:
            return list(self._local.values())

    def _only_local(self, error: Exception) -> list[LiveSocket]:
        """What a reader answers when Redis cannot be read: this process's own sockets (warned)."""
        self._warn(
            "read", "presence: cannot read Redis (%s); showing this process only", type(error).__name__
        )
        return self._local_copy()

    def _warn(self, what: str, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(what, -WARN_EVERY) >= WARN_EVERY:
            self._warned_at[what] = now
            logger.warning(message, *args)


class _SocketCount(PendingRead):
    """One credential's live sockets: one script, carried by another round trip or run alone;
    while Redis cannot be read, this process's own sockets, as ``for_credentials`` answers."""

    def __init__(self, registry: RedisRegistry, credential_id: str):
        self.registry, self.credential_id = registry, credential_id
        self.url = registry.url
        self.call = _COUNT.call(
            [registry._key("cred", credential_id)], [registry._key("alive", ""), registry._key("proc", "")]
        )

    def alone(self) -> int:
        try:
            return self.answer(_COUNT.run(self.registry.client, self.call.keys, self.call.args))
        except redis.RedisError as exc:
            return self.failed(exc)

    def answer(self, reply) -> int:
        return int(reply)

    def failed(self, error: Exception) -> int:
        if not isinstance(error, redis.RedisError):
            raise error
        return sum(live.credential_id == self.credential_id for live in self.registry._only_local(error))
