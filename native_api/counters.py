"""Expiring counters in the Django cache, each update one atomic step with its expiry always set.

Rate limits and caps count events in keys that must expire: a counter left without a TTL is a
permanent lockout for its client. Counting as ``cache.add`` then ``cache.incr`` (what
django-ratelimit does) is not one step: Django's Redis ``incr`` is ``EXISTS`` then ``INCRBY``,
and a key that expires between the two is recreated by ``INCRBY`` with no TTL at all. Here:

- on Redis, one Lua script (``EVALSHA``, one round trip) increments the key and gives it its
  TTL if it has none; Redis runs a script atomically, and on the primary, so a failover never
  splits the two steps either;
- on the local-memory cache (the embedded default, one process), add / incr under one lock, and a
  key that expired between the two starts again at ``delta`` with its TTL.

One call is one command, so callers can later queue several in one pipeline.
"""

import hashlib
import threading

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import NoScriptError

# KEYS[1]: the counter; ARGV[1]: delta; ARGV[2]: seconds to live. A key that has no TTL gets
# one (a new key, or one an older version of this code left without), so none lives forever.
_INCR_SCRIPT = b"""
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return count
"""
_INCR_SHA = hashlib.sha1(_INCR_SCRIPT, usedforsecurity=False).hexdigest()  # Redis names scripts by SHA-1

_local_lock = threading.Lock()


def incr(key: str, *, ttl: int, delta: int = 1) -> int:
    """Add ``delta`` to the counter ``key`` (created at ``delta`` if absent, expiring ``ttl``
    seconds after its creation) and return the new count. Raises what the cache raises."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return _incr_redis(backend, key, ttl, delta)
    return _incr_local(backend, key, ttl, delta)


def _incr_redis(backend: RedisCache, key: str, ttl: int, delta: int) -> int:
    full_key = backend.make_and_validate_key(key)
    # The cache's own client and pool (Django's RedisCacheClient, ``_cache`` since Django 4.0):
    # same keys, same connections, same Sentinel handling as every other cache call.
    client = backend._cache.get_client(full_key, write=True)
    try:
        return client.evalsha(_INCR_SHA, 1, full_key, delta, ttl)
    except NoScriptError:  # a fresh server (a restart, a new primary): EVAL caches it there
        return client.eval(_INCR_SCRIPT, 1, full_key, delta, ttl)


def _incr_local(backend: BaseCache, key: str, ttl: int, delta: int) -> int:
    with _local_lock:
        if backend.add(key, delta, ttl):
            return delta
        try:
            return backend.incr(key, delta)  # the local-memory cache keeps the key's expiry
        except ValueError:  # it expired after add() saw it
            backend.set(key, delta, ttl)
            return delta
