"""One purger at a time, across processes and machines.

- PostgreSQL: a session-level advisory lock, held on a connection of its own. Django's
  connection may be closed and reopened between batches (CONN_MAX_AGE, health checks,
  close_old_connections), which would silently drop a session lock taken on it; a dedicated
  autocommit connection lives exactly as long as the purge, and the server frees the lock
  by itself if the purger dies. Advisory locks are per database. Behind PgBouncer in
  transaction mode that connection goes direct (DATABASE_DIRECT_URL, foundation/direct_db.py).
- Otherwise, with REDIS_URL: a Redis lock with an expiry (redis-py's Lock: token-checked
  extend and release in Lua), extended after every batch, so a purger that died frees it
  within LOCK_TTL seconds.
- Otherwise (embedded SQLite, one process by design): a lock local to this process, which
  keeps the server's own loop and a ``purge_tokens`` run inside it apart.

Deletes are idempotent, so the lock saves work and noise rather than guarding correctness.
"""

import logging
import threading
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from foundation.direct_db import session_connection_params

logger = logging.getLogger(__name__)

# Any fixed 64-bit number; it only has to differ from other advisory locks in this database.
ADVISORY_KEY = 0x6E61745F70757267  # b"nat_purg"
LOCK_TTL = 120  # seconds; far longer than one batch takes
BUSY_MESSAGE = "another purge_tokens is running; skipping"


class LockLost(Exception):
    """The purge lock was lost while purging (connection dropped or expiry passed)."""


class PostgresAdvisoryLock:
    description = "PostgreSQL advisory lock"

    def __init__(self):
        self._conn = None

    def acquire(self) -> bool:
        with connection.wrap_database_errors:  # psycopg errors surface as django.db errors
            conn = connection.Database.connect(**session_connection_params(), autocommit=True)
            try:
                got = conn.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY]).fetchone()[0]
            except Exception:
                conn.close()
                raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def refresh(self) -> None:
        try:
            self._conn.execute("SELECT 1")
        except Exception as exc:
            raise LockLost(f"the advisory lock's connection failed: {exc}") from exc

    def release(self) -> None:
        conn, self._conn = self._conn, None
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])
        except Exception:
            logger.warning("could not unlock the purge advisory lock; closing its connection frees it")
        finally:
            conn.close()


class RedisLock:
    description = "Redis lock"

    def __init__(self):
        from foundation import redis_urls

        self._client = redis_urls.client(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        self._lock = self._client.lock(f"{settings.REDIS_PREFIX}:purge_tokens:lock", timeout=LOCK_TTL)

    def acquire(self) -> bool:
        try:
            got = self._lock.acquire(blocking=False)
        except Exception:
            self._client.close()
            raise
        if not got:
            self._client.close()
        return bool(got)

    def refresh(self) -> None:
        try:
            self._lock.reacquire()  # back to a full LOCK_TTL, only if we still own it
        except Exception as exc:
            raise LockLost(f"the Redis lock was lost: {exc}") from exc

    def release(self) -> None:
        try:
            self._lock.release()
        except Exception:
            logger.warning("could not release the purge lock in Redis; it expires in %s s", LOCK_TTL)
        finally:
            self._client.close()


_process_lock = threading.Lock()


class ProcessLock:
    description = "process-local lock"

    def acquire(self) -> bool:
        return _process_lock.acquire(blocking=False)

    def refresh(self) -> None:
        pass

    def release(self) -> None:
        _process_lock.release()


def make_lock():
    if connection.vendor == "postgresql":
        return PostgresAdvisoryLock()
    if settings.REDIS_URL:
        return RedisLock()
    return ProcessLock()


@contextmanager
def purge_lock():
    """Yield a held lock (call ``.refresh()`` after each batch), or None when another purger
    holds it. Failing to reach the lock's backend raises (django.db.Error, redis.RedisError)."""
    lock = make_lock()
    if not lock.acquire():
        yield None
        return
    try:
        yield lock
    finally:
        lock.release()
