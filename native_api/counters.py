"""Expiring counters in the Django cache: a request's counts and reads in one atomic step.

Rate limits count events in keys that must expire: a counter left without a TTL is a permanent
lockout for its client. Counting as ``cache.add`` then ``cache.incr`` (django-ratelimit's way)
is neither one step nor cheap: Django's Redis ``incr`` is ``EXISTS`` then ``INCRBY``, a key that
expires between the two comes back from ``INCRBY`` with no TTL at all, and the three commands
are three round trips. Here:

- on Redis, one Lua script (``EVALSHA``, one round trip, run atomically on the primary)
  increments each counter it is given, gives it its TTL if it has none, and reads the others:
  a websocket connect counts its address and reads the address's failed-auth lockout in that
  one call, an authenticated request reads the lockout and counts its user's limit in it, and
  carries in the same round trip a read the view asked for (``along``, e.g. ``/me``'s
  live-socket count: foundation/redis_scripts.py);
- on the local-memory cache (the embedded default, one process), the same under one lock.

``incr`` (one counter) is the one-command case. The Redis client is made once per process
over the cache's shared pool: Django's cache builds a new client object for every call,
which cost a gunicorn worker a tenth of its ``/me`` time (docs/benchmarks.md).
"""

import threading
from collections.abc import Sequence

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache

from foundation.redis_scripts import PendingRead, Script, run_together

# KEYS: the counters to add to, then the counters to read. ARGV[1]: how many are added to; then
# per added counter its delta and its seconds to live. A counter without a TTL gets one (a new
# key, or one an older version of this code left without), so none lives forever. A value that
# is not a number (nothing of ours writes one) reads as 0.
_SCRIPT = Script(b"""
local added = tonumber(ARGV[1])
local out = {}
for i = 1, added do
    out[i] = redis.call('INCRBY', KEYS[i], ARGV[2 * i])
    if redis.call('TTL', KEYS[i]) < 0 then
        redis.call('EXPIRE', KEYS[i], ARGV[2 * i + 1])
    end
end
for i = added + 1, #KEYS do
    out[i] = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
end
return out
""")

_local_lock = threading.Lock()


def incr(key: str, *, ttl: int, delta: int = 1) -> int:
    """Add ``delta`` to the counter ``key`` (created at ``delta`` if absent, expiring ``ttl``
    seconds after its creation) and return the new count. Raises what the cache raises."""
    return count([(key, ttl, delta)])[0]


def count(
    added: Sequence[tuple[str, int, int]], read: Sequence[str] = (), *, along: PendingRead | None = None
) -> list[int]:
    """For each (key, ttl, delta) of ``added``, its count after adding; then for each key of
    ``read``, its count (0 when absent). One atomic step; raises what the cache raises.

    ``along``: another layer's read of the cache's Redis, sent in the same round trip when it
    can be (its reply is handed to it, errors included); otherwise, or when the round trip
    fails, it is left to make itself."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return _count_redis(backend, added, read, along)
    return _count_local(backend, added, read)


def _count_redis(backend: RedisCache, added, read, along: PendingRead | None) -> list[int]:
    keys = [backend.make_and_validate_key(key) for key, _, _ in added]
    keys += [backend.make_and_validate_key(key) for key in read]
    args = [len(added)]
    for _, ttl, delta in added:
        args += [delta, ttl]
    client = _client(backend)
    # The cache writes to its first server (Django's RedisCacheClient); a read of another Redis
    # must not be sent here.
    if along is None or along.call is None or along.url != backend._servers[0]:
        return _SCRIPT.run(client, keys, args)
    ours, theirs = run_together(client, [_SCRIPT.call(keys, args), along.call])
    along.carried(theirs)
    if isinstance(ours, Exception):
        raise ours
    return ours


_clients: dict = {}  # the cache's connection pool -> one redis client over it, for the process


def _client(backend: RedisCache):
    """One client per connection pool, over the cache's own pool (Django's RedisCacheClient,
    ``_cache`` since Django 4.0; one pool per process and URL, config/redis_pool.py): same
    keys, same connections, same Sentinel handling as every other cache call.

    Not one per cache object: Django keeps a cache object per async context (asgiref Local),
    so a websocket's admission hop makes one that lives as long as the socket, and a redis
    client (its own table of response callbacks, about 15 KB) kept on it cost every socket
    that much memory. A redis client is thread-safe; the pool hands each call a connection."""
    pool = backend._cache._get_connection_pool(True)
    client = _clients.get(pool)
    if client is None:
        client = _clients.setdefault(pool, backend._cache._client(connection_pool=pool))
    return client


def _count_local(backend: BaseCache, added, read) -> list[int]:
    with _local_lock:
        out = []
        for key, ttl, delta in added:
            if backend.add(key, delta, ttl):
                out.append(delta)
                continue
            try:
                out.append(backend.incr(key, delta))  # the local-memory cache keeps the expiry
            except ValueError:  # it expired after add() saw it
                backend.set(key, delta, ttl)
                out.append(delta)
        values = backend.get_many(read) if read else {}
        return out + [_number(values.get(key, 0)) for key in read]


def _number(value) -> int:
    return value if type(value) is int else 0
