"""What the rate limits cost a request: one round trip to the cache (native_api/counters.py), and
nothing at all for an address this process has already seen locked out. ``/me`` reads its
credential's live-socket count (live/presence_redis.py) in that same round trip.

On Redis the round trips are counted on the wire, every Redis user of the process included; on
the local-memory cache the same calls are checked for their counts. The limits' behaviour
(counts, windows, Retry-After) is tests/test_ratelimits.py's.
"""

import itertools
import threading
import time

import pytest
import redis
import redis.connection
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from foundation.redis_scripts import PendingRead, Script
from live import presence
from native_api import counters, ratelimits
from tests.conftest import auth_header, bearer
from tokens import crypto
from tokens.models import NativeToken

ADDRESS = "198.51.100.77"


def command_names(packed) -> list[str]:
    """The name of every command in what one send puts on the wire (RESP arrays of strings)."""
    data = packed if isinstance(packed, bytes) else b"".join(bytes(chunk) for chunk in packed)
    names, at = [], 0
    while at < len(data):
        end = data.index(b"\r\n", at)
        items, at = int(data[at + 1 : end]), end + 2
        for item in range(items):
            end = data.index(b"\r\n", at)
            length, at = int(data[at + 1 : end]), end + 2
            if item == 0:
                names.append(data[at : at + length].decode().upper())
            at += length + 2
    return names


@pytest.fixture
def redis_commands(monkeypatch):
    """Every round trip this thread makes to Redis, as the names of the commands sent in it (a
    pipeline is one round trip of several), whoever sends them: the rate-limit counters, the
    live-socket registry (live.presence), anything else. Counted on the wire (redis-py's
    connection), once the counting script is cached in Redis (on a fresh server the first call
    sends it); a connection opened meanwhile would show its own handshake."""
    counters.count([], ["native:test:warm-up"])
    sent = []
    real = redis.connection.AbstractConnection.send_packed_command
    thread = threading.get_ident()  # not the registry's background writer

    def send_packed_command(self, command, *args, **kwargs):
        if threading.get_ident() == thread:
            sent.append(command_names(command))
        return real(self, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send_packed_command)
    return sent


@pytest.fixture
def limits_on(settings):
    settings.NATIVE_RATE_AUTH_FAILURES = "3/m"
    settings.NATIVE_RATE_WS_CONNECT = "100/m"
    settings.NATIVE_RATE_WS_TICKET = "100/m"


@pytest.mark.redis
def test_a_websocket_connect_counts_and_reads_the_lockout_in_one_round_trip(limits_on, redis_commands):
    assert ratelimits.ws_connect_refused(ADDRESS) is False
    assert redis_commands == [["EVALSHA"]]


@pytest.mark.redis
@pytest.mark.django_db
def test_an_authenticated_request_costs_one_round_trip(limits_on, client, alice, redis_commands):
    raw = bearer(alice)
    assert client.post("/api/native/ws-ticket", REMOTE_ADDR=ADDRESS, **auth_header(raw)).status_code == 201
    assert redis_commands == [["EVALSHA"]]  # the lockout read and the user's ws-ticket count


@pytest.mark.redis
@pytest.mark.django_db
def test_a_failed_authentication_costs_one_round_trip(limits_on, client, redis_commands):
    bad = auth_header(crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX))
    assert client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **bad).status_code == 401
    assert redis_commands == [["EVALSHA"]]


_connection_ids = itertools.count()


def open_sockets(credential_id: str, user_id: int, count: int) -> None:
    """Register live websockets of the credential, as the websocket layer does, and write them
    to Redis at once (the registry's writer would within 100 ms)."""
    for _ in range(count):
        connection_id = f"c{next(_connection_ids)}"
        live = presence.LiveSocket(
            connection_id, credential_id, user_id, presence.PROCESS, None, timezone.now()
        )
        presence.opened(live)
    presence.registry().flush()


@pytest.mark.redis
@pytest.mark.django_db
@pytest.mark.parametrize("sockets", [0, 3])
@pytest.mark.parametrize("limits", ["on", "off"])
def test_me_costs_one_round_trip_with_the_live_registrys_commands(
    limits, sockets, settings, client, alice, redis_commands
):
    """The lockout read and the credential's live-socket count in one round trip, whatever the
    number of sockets; with the limits off, the count alone is that one round trip."""
    if limits == "on":
        settings.NATIVE_RATE_AUTH_FAILURES = "3/m"
    headers = auth_header(bearer(alice))
    open_sockets(NativeToken.objects.get().public_id, alice.pk, sockets)
    open_sockets("another-credential", alice.pk, 1)  # counted under that credential only
    client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **headers)  # connections open, scripts cached
    redis_commands.clear()
    response = client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **headers)
    assert response.status_code == 200
    assert response.json()["token"]["live_sockets"] == sockets
    assert redis_commands == [["EVALSHA", "EVALSHA"] if limits == "on" else ["EVALSHA"]]


@pytest.mark.redis
@pytest.mark.django_db
def test_a_locked_out_address_gets_429_from_me_in_that_one_round_trip(
    limits_on, client, alice, redis_commands
):
    """The count rides along, but a refused request reveals nothing of it: the same 429 and
    Retry-After as any authenticated request from that address."""
    bad, good = auth_header(crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX)), auth_header(bearer(alice))
    open_sockets(NativeToken.objects.get().public_id, alice.pk, 1)
    for _ in range(3):
        client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **bad)
    ratelimits.reset_cache_state()  # as another process: it has not seen the lockout
    redis_commands.clear()
    refused = client.get("/api/native/me", REMOTE_ADDR=ADDRESS, **good)
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert refused.json()["detail"] == "Too many failed authentications from your address."
    assert "live_sockets" not in refused.text
    assert len(redis_commands) == 1


class Probe(PendingRead):
    """Another layer's read, as the counters see one: a script call and how its value came."""

    def __init__(self, url: str | None, source: bytes = b"return 7"):
        self.url, self.call, self.how = url, Script(source).call([]), None

    def alone(self):
        self.how = "alone"
        return 0

    def answer(self, reply):
        self.how = "carried"
        return reply

    def failed(self, error):
        self.how = f"failed: {error}"
        return -1


@pytest.mark.redis
def test_the_counters_carry_a_read_of_their_redis_and_only_of_theirs(settings, redis_commands):
    here, elsewhere = Probe(settings.REDIS_URL), Probe("redis://elsewhere.invalid:6379/0")
    Script(b"return 7").run(redis.Redis.from_url(settings.REDIS_URL), [])  # cached in Redis
    redis_commands.clear()
    assert counters.count([], ["native:test:x"], along=here) == [0]
    assert counters.count([], ["native:test:x"], along=elsewhere) == [0]
    assert redis_commands == [["EVALSHA", "EVALSHA"], ["EVALSHA"]]
    assert (here.value(), here.how) == (7, "carried")
    assert (elsewhere.value(), elsewhere.how) == (0, "alone")  # it makes itself, on its own Redis


@pytest.mark.redis
def test_a_carried_script_that_redis_does_not_have_yet_is_sent_again_in_full(settings, redis_commands):
    fresh = Probe(settings.REDIS_URL, f"return 8 -- {time.time_ns()}".encode())  # as after a restart
    assert counters.count([], ["native:test:x"], along=fresh) == [0]
    assert redis_commands == [["EVALSHA", "EVALSHA"], ["EVAL"]]
    assert (fresh.value(), fresh.how) == (8, "carried")


@pytest.mark.redis
def test_an_error_answered_to_the_carried_read_is_its_own(settings):
    broken = Probe(settings.REDIS_URL, b"return redis.error_reply('BROKEN here')")
    assert counters.count([], ["native:test:x"], along=broken) == [0]  # the counters' reply stands
    assert broken.value() == -1 and broken.how == "failed: BROKEN here"


@pytest.mark.redis
def test_when_the_shared_round_trip_fails_the_lockout_fails_open_and_the_read_makes_itself(
    limits_on, settings, monkeypatch
):
    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(counters, "run_together", unreachable)
    read = Probe(settings.REDIS_URL)
    assert ratelimits.authenticated(ADDRESS, along=read) is None  # as before: it fails open
    assert ratelimits._cache_is_down()
    assert (read.value(), read.how) == (0, "alone")  # with its own fallback, as before


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
