"""One Redis connection pool per process for Django's cache.

Django keeps a cache client per async context (asgiref Local), and its Redis backend gives
every client its own ConnectionPool that it never closes. Under ASGI that meant a new Redis
connection for every HTTP request, and one held for the whole life of every websocket that
touched the cache (its rate-limit counter): 10,000 sockets hit Redis's default maxclients
(10,000) and every socket cost the memory of a client and a pool. Sharing one pool per
process and URL keeps the number of connections at the number of concurrent cache calls.

Django's RedisCache has no Sentinel support of its own; its ``pool_class`` hook is enough to
give it one: ``from_url`` builds the pool through foundation.redis_urls, which understands
``redis+sentinel://`` (a pool whose connections follow the primary through a failover).
"""

from redis import ConnectionPool

from foundation.redis_urls import shared_pool


class SharedConnectionPool(ConnectionPool):
    @classmethod
    def from_url(cls, url, **kwargs):
        return shared_pool(url, **kwargs)
