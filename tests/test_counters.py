"""Rate-limit and cap counters: each count is one atomic step that always leaves the key with an
expiry, on Redis and on the local-memory cache.

The race these tests force: a counter key that expires between two steps of an update. Counting
as ``cache.add`` then ``cache.incr`` (django-ratelimit's way) lost it both ways: on Redis, Django's
incr is EXISTS then INCRBY, and a key that expired between the two came back from INCRBY with no
TTL, counting that address's failures forever (a permanent lockout); a key that expired between
add and incr made the count fail, which the login limits read as "cache down" (503 for everyone
on that process for 3 s). The hooks below expire the key right after the n-th step, whatever the
steps are, so the tests hold any implementation to the same rule.
"""

import time
import zlib

import pytest
import redis
from django.core.cache import caches
from django.core.cache.backends import locmem
from django_ratelimit import ALL
from django_ratelimit.core import _get_window, _make_cache_key

from native_api import counters, ratelimits

BUCKET = "198.51.100.7"
RATE = (20, 60)  # NATIVE_RATE_AUTH_FAILURES below: the lockout limit


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.NATIVE_RATE_AUTH_FAILURES = "20/m"
    ratelimits.reset_cache_state()
    yield
    ratelimits.reset_cache_state()


def counter_key() -> str:
    """The cache key (before the cache's own prefix) of BUCKET's current auth-failure window."""
    window = _get_window(BUCKET, RATE[1])
    return _make_cache_key("native:auth-failures", window, RATE, BUCKET, ALL)


def away_from_window_edge():
    """Not within 2 s of the bucket's window boundary, so the whole test counts in one window."""
    jitter = zlib.crc32(BUCKET.encode()) % RATE[1]
    while (time.time() - jitter) % RATE[1] > RATE[1] - 2:
        time.sleep(0.5)


def count_one_failure():
    """One failed authentication from BUCKET, as the verifier counts it; None: not locked out."""
    return ratelimits.hit("auth-failures", BUCKET)


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_cache():
    cache = caches["default"]
    client = cache._cache.get_client(write=True)
    return cache, client


@pytest.fixture
def expire_after_step(monkeypatch):
    """expire_after_step(key, n): ``key`` expires (is deleted) right after the n-th Redis command
    that names it, in this process."""
    real = redis.Redis.execute_command
    plan = {"key": None, "n": 0, "seen": 0}

    def execute_command(self, *args, **options):
        result = real(self, *args, **options)
        key = plan["key"]
        if key is not None and any(arg in (key, key.encode()) for arg in args[1:]):
            plan["seen"] += 1
            if plan["seen"] == plan["n"]:
                real(self, "DEL", key)
        return result

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)

    def arm(key: str, n: int):
        plan.update(key=key, n=n, seen=0)

    return arm


@pytest.mark.redis
@pytest.mark.parametrize("step", [1, 2, 3])
def test_on_redis_a_counter_that_expires_mid_update_is_never_left_without_an_expiry(
    redis_cache, expire_after_step, step
):
    cache, client = redis_cache
    away_from_window_edge()
    key = cache.make_and_validate_key(counter_key())
    client.set(key, 3, ex=60)  # three failures so far in this window
    expire_after_step(key, step)

    assert count_one_failure() is None  # counted, not locked out, and not "cache down"
    assert not ratelimits._cache_is_down()

    expire_after_step(None, 0)
    assert client.ttl(key) != -1  # -1: a key without expiry, a lockout that never ends
    for _ in range(30):
        count_one_failure()
    assert 0 < client.ttl(key) <= RATE[1] + 5


@pytest.mark.redis
def test_on_redis_a_counter_left_without_an_expiry_gets_one_at_its_next_count(redis_cache):
    """A key an older version left without a TTL (the race above) heals at the next failure."""
    cache, client = redis_cache
    away_from_window_edge()
    key = cache.make_and_validate_key(counter_key())
    client.set(key, 25)  # over the limit, no expiry

    assert count_one_failure() is not None  # still locked out for this window…
    assert 0 < client.ttl(key) <= RATE[1] + 5  # …but no longer forever


@pytest.mark.redis
def test_on_redis_a_count_is_one_round_trip_and_survives_a_server_without_the_script(
    redis_cache, monkeypatch
):
    cache, client = redis_cache
    commands = []
    real = redis.Redis.execute_command
    monkeypatch.setattr(
        redis.Redis, "execute_command", lambda self, *a, **o: commands.append(a[0]) or real(self, *a, **o)
    )
    counters.incr("counter-test", ttl=30)
    commands.clear()
    assert counters.incr("counter-test", ttl=30) == 2
    assert commands == ["EVALSHA"]

    # A new primary after a failover (or a restarted Redis) has not seen the script yet.
    monkeypatch.setattr(counters._SCRIPT, "sha", "0" * 40)
    assert counters.incr("counter-test", ttl=30) == 3
    assert 0 < client.ttl(cache.make_and_validate_key("counter-test")) <= 30


# --- the local-memory cache (embedded default) ------------------------------------------------


class JumpingClock:
    """locmem's clock: real time until its n-th reading, then far in the future (every key has
    expired), as if the process had stalled between two steps."""

    def __init__(self, n: int):
        self.n, self.readings = n, 0

    def time(self) -> float:
        self.readings += 1
        return time.time() + (3600 if self.readings > self.n else 0)


@pytest.fixture
def local_cache(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "c"}
    }
    return caches["default"]


@pytest.mark.parametrize("step", [1, 2, 3])
def test_on_the_local_cache_a_counter_that_expires_mid_update_starts_again_with_an_expiry(
    local_cache, monkeypatch, step
):
    away_from_window_edge()
    local_cache.set(counter_key(), 3, 60)
    monkeypatch.setattr(locmem, "time", JumpingClock(step))

    assert count_one_failure() is None  # counted, not locked out, and not "cache down"
    assert not ratelimits._cache_is_down()
    full_key = local_cache.make_and_validate_key(counter_key())
    assert full_key not in local_cache._cache or local_cache._expire_info[full_key] is not None


def test_on_the_local_cache_counts_add_up_and_expire(local_cache):
    assert [counters.incr("k", ttl=30) for _ in range(3)] == [1, 2, 3]
    assert counters.incr("k", ttl=30, delta=-1) == 2
    full_key = local_cache.make_and_validate_key("k")
    assert 0 < local_cache._expire_info[full_key] - time.time() <= 30
