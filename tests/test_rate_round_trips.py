"""What the rate limits cost a request: one round trip to the cache (native_api/counters.py), and
nothing at all for an address this process has already seen locked out.

On Redis the commands are counted at the client; on the local-memory cache the same calls are
checked for their counts. The limits' behaviour (counts, windows, Retry-After) is
tests/test_ratelimits.py's.
"""

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext

from native_api import counters, ratelimits
from tests.conftest import auth_header, bearer
from tokens import crypto

ADDRESS = "198.51.100.77"


@pytest.fixture
def redis_commands(monkeypatch):
    """Every command the process sends to Redis, but the live-socket registry's (live.presence),
    once the counting script is cached in Redis (on a fresh server the first call sends it)."""
    counters.count([], ["native:test:warm-up"])
    sent = []
    real = redis.Redis.execute_command

    def execute_command(self, *args, **options):
        if not any(":presence:" in str(arg) for arg in args[1:]):
            sent.append(args[0])
        return real(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
    return sent


@pytest.fixture
def limits_on(settings):
    settings.NATIVE_RATE_AUTH_FAILURES = "3/m"
    settings.NATIVE_RATE_WS_CONNECT = "100/m"
    settings.NATIVE_RATE_WS_TICKET = "100/m"


@pytest.mark.redis
def test_a_websocket_connect_counts_and_reads_the_lockout_in_one_round_trip(limits_on, redis_commands):
    assert ratelimits.ws_connect_refused(ADDRESS) is False
    assert redis_commands == ["EVALSHA"]


@pytest.mark.redis
@pytest.mark.django_db
def test_an_authenticated_request_costs_one_round_trip(limits_on, client, alice, redis_commands):
    raw = bearer(alice)
    assert client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **auth_header(raw)).status_code == 200
    assert redis_commands == ["EVALSHA"]  # the lockout read
    redis_commands.clear()
    assert client.post("/api/native/ws-ticket", REMOTE_ADDR=ADDRESS, **auth_header(raw)).status_code == 201
    assert redis_commands == ["EVALSHA"]  # the lockout read and the user's ws-ticket count


@pytest.mark.redis
@pytest.mark.django_db
def test_a_failed_authentication_costs_one_round_trip(limits_on, client, redis_commands):
    bad = auth_header(crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX))
    assert client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **bad).status_code == 401
    assert redis_commands == ["EVALSHA"]


@pytest.mark.redis
def test_every_counter_is_left_with_its_expiry(settings):
    from django.core.cache import cache

    counters.count([("native:test:a", 60, 1), ("native:test:b", 5, 3)], ["native:test:c"])
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key, most in (("native:test:a", 60), ("native:test:b", 5)):
        ttl = client.ttl(cache.make_and_validate_key(key))
        assert 0 < ttl <= most, (key, ttl)
    assert client.ttl(cache.make_and_validate_key("native:test:c")) == -2  # a read creates nothing


def test_counts_and_reads_in_one_step(db):
    assert counters.count([("native:test:x", 60, 1)], ["native:test:y"]) == [1, 0]
    both = [("native:test:y", 60, 2), ("native:test:x", 60, 1)]
    assert counters.count(both, ["native:test:x"]) == [2, 2, 2]
    assert counters.incr("native:test:x", ttl=60, delta=-1) == 1
    assert counters.count([], ["native:test:x", "native:test:y", "native:test:z"]) == [1, 2, 0]


@pytest.mark.django_db
def test_an_address_seen_locked_out_is_refused_without_cache_or_database(
    limits_on, client, alice, monkeypatch
):
    bad, good = auth_header(crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX)), auth_header(bearer(alice))
    statuses = [client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **bad).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]

    def no_cache(*args, **kwargs):
        raise AssertionError("the cache was asked")

    monkeypatch.setattr(counters, "count", no_cache)
    for headers in (good, bad):
        with CaptureQueriesContext(connection) as queries:
            refused = client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **headers)
        assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
        assert len(queries) == 0
    assert ratelimits.ws_connect_refused(ADDRESS) is True


@pytest.mark.django_db
def test_a_process_that_did_not_see_the_lockout_reads_it_with_the_request(limits_on, client, alice):
    bad, good = auth_header(crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX)), auth_header(bearer(alice))
    for _ in range(3):
        client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **bad)
    ratelimits.reset_cache_state()  # as another process: the counts are shared, the memory is not
    assert client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **good).status_code == 429
    ratelimits.reset_cache_state()
    assert ratelimits.ws_connect_refused(ADDRESS) is True


@pytest.mark.redis
def test_one_counter_client_per_process_not_one_per_socket():
    """Django keeps a cache object per async context, so every websocket's admission hop makes
    one that lives as long as the socket. A redis client kept on that object cost each socket
    about 15 KB (bench memory on PostgreSQL + Redis: 28 KB per socket became 44 KB)."""
    import asyncio
    import contextvars

    from asgiref.sync import sync_to_async
    from django.core.cache import caches

    def counter_client():
        backend = caches["default"]
        return backend, counters._client(backend)

    async def in_a_fresh_context():  # as a consumer's task would: its own context
        return await sync_to_async(counter_client)()

    def fresh():  # an empty context, as a server's new connection task starts with
        return contextvars.Context().run(asyncio.run, in_a_fresh_context())

    (first_cache, first), (second_cache, second) = fresh(), fresh()
    assert first_cache is not second_cache  # the per-context objects this test is about
    assert first is second
