"""Redis addresses: the one reader of ``REDIS_URL`` and ``REDIS_LAYER_URLS``, and the one
builder of the connections made from them.

Two kinds of address (API.md, Configuration):

- ``redis://``, ``rediss://``, ``unix://``: one server, read by redis-py as it always was;
- ``redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB]``: the primary of a
  Redis group watched by Sentinel. The Sentinels are asked where the primary is whenever a
  connection is opened; PASSWORD authenticates to the primary (the Sentinels are asked without
  one), DB defaults to 0.

Every Redis user of the project gets its connections here: the cache's pool
(config/redis_pool.py), the channel layer's hosts (config/settings.py), the live-connection
registry (live/presence_redis.py) and the purge lock (tokens/purge_lock.py). So a failover moves
all of them the same way: redis-py's Sentinel-managed connections ask the Sentinels again when
they reconnect, and a connection to a primary that was demoted (a READONLY answer) is closed and
rediscovered rather than reused (foundation/redis_sentinel.py makes sure that every reconnection
asks). A Sentinel address also gets one immediate retry on a connection error, so the first
command after a failover reaches the new primary instead of failing. A command is retried at
most once, and ours tolerate that: a rate-limit count errs one high, a room event that arrives
twice is dropped by its seq, a wake-up twice wakes the change-log poller twice.
"""

import threading
from dataclasses import dataclass, field
from urllib.parse import unquote

import redis
import redis.asyncio.retry
import redis.connection
import redis.retry
import redis.sentinel
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from foundation.redis_sentinel import AsyncSentinelConnection, SentinelConnection

SENTINEL_SCHEME = "redis+sentinel://"
PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")
# A Sentinel answers SENTINEL MASTERS from memory: one that takes longer is skipped for the next.
SENTINEL_TIMEOUT = 1.0


@dataclass(frozen=True)
class RedisAddress:
    url: str = field(repr=False)  # may hold a password: never log it, log ``shown``
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    db: int = 0
    password: str | None = field(default=None, repr=False)

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def shown(self) -> str:
        """The address without its password, for logs and error messages."""
        if not self.uses_sentinel:
            return _without_password(self.url)
        hosts = ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.sentinels
        )
        return f"{SENTINEL_SCHEME}{hosts}/{self.master_name}/{self.db}"


def _without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def parse(url: str, *, setting: str = "REDIS_URL") -> RedisAddress:
    """Read one address; a malformed one raises ImproperlyConfigured naming ``setting``."""
    url = url.strip()
    if url.startswith(SENTINEL_SCHEME):
        return _parse_sentinel(url, setting)
    if not url.startswith(PLAIN_SCHEMES):
        scheme = url.partition("://")[0] if "://" in url else "no scheme"
        raise ImproperlyConfigured(  # not the URL itself: it may hold a password
            f"{setting} must start with redis://, rediss://, unix:// or redis+sentinel:// (it has {scheme})"
        )
    try:
        redis.connection.parse_url(url)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{setting} is not a usable Redis URL: {exc}") from None
    return RedisAddress(url)


def parse_list(value: str, *, setting: str) -> list[RedisAddress]:
    """A comma-separated list of addresses. Sentinel addresses have commas of their own, so an
    item that does not start with a scheme continues the Sentinel address before it."""
    items: list[str] = []
    for part in filter(None, (part.strip() for part in value.split(","))):
        if items and _continues_sentinel_hosts(items[-1], part):
            items[-1] += "," + part
        else:
            items.append(part)
    if not items:
        raise ImproperlyConfigured(f"{setting} is set but names no Redis URL")
    addresses = [parse(item, setting=setting) for item in items]
    shown = [address.shown for address in addresses]
    if len(set(shown)) != len(shown):
        raise ImproperlyConfigured(
            f"{setting} names the same Redis twice: every shard must be a different one"
        )
    return addresses


def _continues_sentinel_hosts(previous: str, part: str) -> bool:
    """``part`` is one more Sentinel of ``previous`` (whose master name has not come yet)."""
    return (
        previous.startswith(SENTINEL_SCHEME)
        and "/" not in previous[len(SENTINEL_SCHEME) :]
        and "://" not in part
    )


def _parse_sentinel(url: str, setting: str) -> RedisAddress:
    def bad(reason: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(
            f"{setting} is not a usable Sentinel URL ({reason}); expected "
            "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB]"
        )

    rest = url[len(SENTINEL_SCHEME) :]
    if "?" in rest or "#" in rest:
        raise bad("it takes no query string or fragment")
    netloc, slash, path = rest.partition("/")
    password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        if not userinfo.startswith(":") or len(userinfo) < 2:
            raise bad("the password goes as :PASSWORD@, with no user name")
        password = unquote(userinfo[1:])
    sentinels = tuple(_host_port(item, bad) for item in netloc.split(","))
    if not slash or not path:
        raise bad("the master name is missing")
    master_name, _, db_part = path.partition("/")
    if not master_name:
        raise bad("the master name is missing")
    db = 0
    if db_part:
        if not db_part.isdigit():
            raise bad(f"the database must be a number, not {db_part!r}")
        db = int(db_part)
    return RedisAddress(url, sentinels, unquote(master_name), db, password)


def _host_port(item: str, bad) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:PORT
        host, _, port = item[1:].partition("]:")
    else:
        host, _, port = item.rpartition(":")
    if not host or not port:
        raise bad(f"each Sentinel is HOST:PORT, not {item!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise bad(f"{port!r} is not a port")
    return host, int(port)


# --- connections ------------------------------------------------------------------------------


def _sentinel_options(retry_class) -> dict:
    # No retry and a short timeout: a dead Sentinel costs one refused or timed-out connection,
    # then the next one is asked (redis-py's default would retry it three times with back-off).
    return {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
        "retry": retry_class(NoBackoff(), 0),
    }


def _failover_retry(retry_class):
    """One immediate retry on a connection error, which is also what redis-py raises for a
    READONLY answer from a demoted primary (after closing that connection): the retry opens a
    new connection, which asks the Sentinels where the primary is now."""
    return retry_class(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def connection_pool(address: RedisAddress, **options) -> redis.ConnectionPool:
    """A synchronous pool to the address (to the current primary for a Sentinel address)."""
    if not address.uses_sentinel:
        return redis.ConnectionPool.from_url(address.url, **options)
    sentinel = redis.sentinel.Sentinel(
        list(address.sentinels), sentinel_kwargs=_sentinel_options(redis.retry.Retry)
    )
    return redis.sentinel.SentinelConnectionPool(
        address.master_name,
        sentinel,
        db=address.db,
        password=address.password,
        retry=_failover_retry(redis.retry.Retry),
        connection_class=SentinelConnection,
        **options,
    )


def client(url: str, *, setting: str = "REDIS_URL", **options) -> redis.Redis:
    """A synchronous client with its own pool, which ``close()`` closes too."""
    return redis.Redis.from_pool(connection_pool(parse(url, setting=setting), **options))


_shared: dict[tuple, redis.ConnectionPool] = {}
_shared_lock = threading.Lock()


def shared_pool(url: str, **options) -> redis.ConnectionPool:
    """One pool per process for each (url, options): see config/redis_pool.py for why."""
    key = (url, tuple(sorted((name, repr(value)) for name, value in options.items())))
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None:
            pool = _shared[key] = connection_pool(parse(url), **options)
        return pool


def layer_host(address: RedisAddress, **options) -> dict:
    """One entry of channels-redis's ``hosts``: its own Sentinel support for a Sentinel address
    (channels_redis.utils.create_pool builds redis-py's asyncio SentinelConnectionPool)."""
    if not address.uses_sentinel:
        return {"address": address.url, **options}
    return {
        "sentinels": list(address.sentinels),
        "master_name": address.master_name,
        "sentinel_kwargs": _sentinel_options(redis.asyncio.retry.Retry),
        "db": address.db,
        "password": address.password,
        "retry": _failover_retry(redis.asyncio.retry.Retry),
        "connection_class": AsyncSentinelConnection,
        **options,
    }
