"""One Redis connection pool per process for Django's cache.

Django keeps a cache client per async context (asgiref Local), and its Redis backend gives
every client its own ConnectionPool that it never closes. Under ASGI that meant a new Redis
connection for every HTTP request, and one held for the whole life of every websocket that
touched the cache (its rate-limit counter): 10,000 sockets hit Redis's default maxclients
(10,000) and every socket cost the memory of a client and a pool. Sharing one pool per
process and URL keeps the number of connections at the number of concurrent cache calls.
"""

import threading

from redis import ConnectionPool

_pools: dict[tuple, ConnectionPool] = {}
_lock = threading.Lock()


class SharedConnectionPool(ConnectionPool):
    @classmethod
    def from_url(cls, url, **kwargs):
        key = (url, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = ConnectionPool.from_url(url, **kwargs)
            return pool
