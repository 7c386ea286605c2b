"""Rate limits and state caps, in-process: each limit triggers at its count, answers the
contract's 429 with Retry-After, and resets when its window ends (on a fake clock, so no test
sleeps); caps bound stored state; the cache failing closes login and leaves the rest open; a
flood of garbage tokens costs no database query.

The real-server versions (spoofed headers, proxies, two processes on Redis, cache down) are in
test_e2e_ratelimits.py.
"""

import threading
import time
import zlib

import django_ratelimit.core
import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

import native_api.ratelimits
from foundation.env import env_rate
from native_api import ratelimits
from native_api.frame_limiter import FrameLimiter
from tests.comm import closed_with, open_socket
from tests.conftest import auth_header, bearer
from tests.ssh_helpers import public_key_line
from tokens import crypto
from tokens.service_tokens import mint as mint_service_token

BASE_TIME = 1_800_000_000


class Clock:
    """Stands in for the ``time`` module where limits read the wall clock."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self):
        self.now = float(BASE_TIME)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def fresh_window(self, bucket: str, period: int) -> None:
        """Stand a quarter second into the first whole second of a window of ``bucket``.

        django-ratelimit ends the windows of a key at k * period + crc32(key) % period (a
        per-key jitter), so that is where a fresh one starts.
        """
        jitter = zlib.crc32(bucket.encode()) % period
        self.now = BASE_TIME - BASE_TIME % period + jitter + 1.25


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(django_ratelimit.core, "time", fake)
    monkeypatch.setattr(native_api.ratelimits, "time", fake)
    return fake


@pytest.fixture(autouse=True)
def _healthy_cache_again():
    """A test that breaks the cache must not leave the next one in the failure back-off."""
    ratelimits.reset_cache_state()
    yield
    ratelimits.reset_cache_state()


def assert_rate_limited(response, retry_after: int | None = None):
    assert response.status_code == 429, response.content
    assert response.json()["error"] == "rate_limited" and response.json()["detail"]
    assert response["Retry-After"].isdigit() and int(response["Retry-After"]) >= 1
    if retry_after is not None:
        assert int(response["Retry-After"]) == retry_after


def get_challenge(client, ip="198.51.100.1"):
    return client.get("/api/native/challenge", REMOTE_ADDR=ip)


def post_token(client, body, ip="198.51.100.1"):
    return client.post("/api/native/token", body, content_type="application/json", REMOTE_ADDR=ip)


# --- the counter ------------------------------------------------------------------------------


def test_a_limit_allows_its_count_then_refuses_until_the_window_ends(settings, clock):
    settings.NATIVE_RATE_CHALLENGE = "3/10s"
    clock.fresh_window("b", 10)
    assert [ratelimits.hit("challenge", "b") for _ in range(3)] == [None, None, None]
    retry_after = ratelimits.hit("challenge", "b")
    assert retry_after == 10
    start = clock.now
    clock.now = start + retry_after - 1  # one second short: still the same window
    assert ratelimits.hit("challenge", "b") is not None
    clock.now = start + retry_after  # what Retry-After promised: a fresh window
    assert ratelimits.hit("challenge", "b") is None


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.999])
def test_retry_after_is_enough_and_at_most_a_second_more_whatever_the_fraction(settings, clock, fraction):
    settings.NATIVE_RATE_CHALLENGE = "1/5s"
    clock.fresh_window("b", 5)
    clock.advance(3 + fraction - 0.25)
    ratelimits.hit("challenge", "b")
    retry_after = ratelimits.hit("challenge", "b")
    assert retry_after is not None and retry_after >= 1
    clock.advance(retry_after - 1)  # not more than a second too long either
    assert ratelimits.hit("challenge", "b") is not None
    clock.advance(1)
    assert ratelimits.hit("challenge", "b") is None


def test_a_per_second_limit_asks_for_at_least_one_second(settings, clock):
    settings.NATIVE_RATE_CHALLENGE = "1/s"
    clock.now = BASE_TIME + 0.9
    assert ratelimits.hit("challenge", "b") is None
    assert ratelimits.hit("challenge", "b") == 1


def test_buckets_and_limits_do_not_share_counters(settings, clock):
    settings.NATIVE_RATE_CHALLENGE = settings.NATIVE_RATE_TOKEN_IP = "1/m"
    clock.fresh_window("a", 60)
    assert ratelimits.hit("challenge", "a") is None
    assert ratelimits.hit("token-ip", "a") is None
    assert ratelimits.hit("challenge", "a") is not None


def test_an_upper_case_period_counts_per_minute_not_per_second(settings, clock):
    settings.NATIVE_RATE_CHALLENGE = "2/M"
    clock.fresh_window("b", 60)
    ratelimits.hit("challenge", "b")
    clock.advance(2)
    ratelimits.hit("challenge", "b")
    clock.advance(2)
    assert ratelimits.hit("challenge", "b") is not None


def test_zero_turns_a_limit_off(monkeypatch, settings, client, db):
    monkeypatch.setenv("NATIVE_RATE_CHALLENGE", "0")
    assert env_rate("NATIVE_RATE_CHALLENGE", "20/m") is None
    monkeypatch.setenv("NATIVE_RATE_CHALLENGE", "3/5s")
    assert env_rate("NATIVE_RATE_CHALLENGE", "20/m") == "3/5s"
    settings.NATIVE_RATE_CHALLENGE = None
    assert all(get_challenge(client).status_code == 200 for _ in range(30))


def test_concurrent_hits_never_let_more_than_the_limit_through(settings):
    """The counter is one atomic increment (locmem's lock, Redis's INCR): no lost updates."""
    settings.NATIVE_RATE_CHALLENGE = "100/h"
    bucket = f"concurrent-{time.time_ns()}"
    # Start well inside a window so the whole burst lands in one.
    jitter = zlib.crc32(bucket.encode()) % 3600
    while (time.time() - jitter) % 3600 > 3590:
        time.sleep(0.5)
    allowed = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(25):
            if ratelimits.hit("challenge", bucket) is None:
                allowed.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 100


# --- each limit through its entry point --------------------------------------------------------


@pytest.mark.django_db
def test_challenge_is_limited_per_client_ip(settings, client, clock):
    settings.NATIVE_RATE_CHALLENGE = "3/m"
    clock.fresh_window("198.51.100.1", 60)
    assert [get_challenge(client).status_code for _ in range(3)] == [200, 200, 200]
    assert_rate_limited(get_challenge(client), retry_after=60)
    assert get_challenge(client, ip="198.51.100.2").status_code == 200
    clock.advance(60)
    assert get_challenge(client).status_code == 200


@pytest.mark.django_db
def test_ipv6_clients_of_one_slash_64_share_a_challenge_bucket(settings, client, clock):
    settings.NATIVE_RATE_CHALLENGE = "2/m"
    clock.fresh_window("2001:db8:1:2::/64", 60)
    assert get_challenge(client, ip="2001:db8:1:2::1").status_code == 200
    assert get_challenge(client, ip="2001:db8:1:2::2").status_code == 200
    assert_rate_limited(get_challenge(client, ip="2001:db8:1:2:ffff::3"))
    assert get_challenge(client, ip="2001:db8:1:3::1").status_code == 200


@pytest.mark.django_db
def test_token_is_limited_per_client_ip_whatever_the_body(settings, client, clock):
    settings.NATIVE_RATE_TOKEN_IP = "3/m"
    clock.fresh_window("198.51.100.1", 60)
    assert [post_token(client, {"nonce": 1}).status_code for _ in range(3)] == [400, 400, 400]
    assert_rate_limited(post_token(client, {"nonce": 1}), retry_after=60)
    clock.advance(60)
    assert post_token(client, {"nonce": 1}).status_code == 400


def test_token_is_limited_per_key_fingerprint_across_addresses(settings, client, clock, alice, bob, keys):
    settings.NATIVE_RATE_TOKEN_KEY = "3/m"
    fingerprint = alice.ssh_keys.get().fingerprint
    clock.fresh_window(fingerprint, 60)

    def attempt(key, ip):
        return post_token(
            client, {"public_key": public_key_line(keys[key]), "nonce": "x", "signature": "x"}, ip
        )

    assert [attempt("alice", f"198.51.100.{i}").status_code for i in range(3)] == [401, 401, 401]
    assert_rate_limited(attempt("alice", "198.51.100.99"), retry_after=60)
    assert attempt("bob", "198.51.100.99").status_code == 401
    clock.advance(60)
    assert attempt("alice", "198.51.100.99").status_code == 401


def test_failed_bearer_auth_locks_the_address_out_even_for_valid_tokens(settings, client, clock, alice):
    settings.NATIVE_RATE_AUTH_FAILURES = "3/m"
    clock.fresh_window("198.51.100.1", 60)
    good = auth_header(bearer(alice))
    bad = auth_header(crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX))
    assert client.get("/api/native/me", REMOTE_ADDR="198.51.100.1", **good).status_code == 200
    statuses = [client.get("/api/native/me", REMOTE_ADDR="198.51.100.1", **bad).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    assert_rate_limited(client.get("/api/native/me", REMOTE_ADDR="198.51.100.1", **good), retry_after=60)
    assert_rate_limited(client.get("/api/native/rooms", REMOTE_ADDR="198.51.100.1", **good))
    assert client.get("/api/native/me", REMOTE_ADDR="198.51.100.2", **good).status_code == 200
    clock.advance(59)
    assert_rate_limited(client.get("/api/native/me", REMOTE_ADDR="198.51.100.1", **good), retry_after=1)
    clock.advance(1)
    assert client.get("/api/native/me", REMOTE_ADDR="198.51.100.1", **good).status_code == 200


def test_successful_requests_do_not_count_as_failures(settings, client, clock, alice):
    settings.NATIVE_RATE_AUTH_FAILURES = "3/m"
    clock.fresh_window("198.51.100.1", 60)
    good = auth_header(bearer(alice))
    assert all(
        client.get("/api/native/me", REMOTE_ADDR="198.51.100.1", **good).status_code == 200 for _ in range(10)
    )


def test_ws_tickets_are_limited_per_user(settings, client, clock, alice, bob):
    settings.NATIVE_RATE_WS_TICKET = "3/m"
    clock.fresh_window(f"user:{alice.pk}", 60)
    alice_header, bob_header = auth_header(bearer(alice)), auth_header(bearer(bob))
    assert [client.post("/api/native/ws-ticket", **alice_header).status_code for _ in range(3)] == [201] * 3
    limited = client.post("/api/native/ws-ticket", REMOTE_ADDR="198.51.100.50", **alice_header)
    assert_rate_limited(limited, retry_after=60)
    assert client.post("/api/native/ws-ticket", **bob_header).status_code == 201
    clock.advance(60)
    assert client.post("/api/native/ws-ticket", **alice_header).status_code == 201


# --- the cache fails --------------------------------------------------------------------------


@pytest.fixture
def cache_down(settings):
    """Point the cache at a closed port (Django resets its cache handlers on this change)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    for name in ratelimits.SETTINGS.values():
        setattr(settings, name, "100/m")


def test_login_endpoints_fail_closed_with_503_when_the_cache_is_down(cache_down, client, alice, keys):
    started = time.monotonic()
    refused = [
        get_challenge(client),
        post_token(client, {"public_key": public_key_line(keys["alice"]), "nonce": "x", "signature": "x"}),
    ]
    for response in refused:
        assert response.status_code == 503
        assert response.json() == {"error": "unavailable", "detail": ratelimits.LOGIN_UNAVAILABLE}
        assert response["Retry-After"] == "3"
    assert time.monotonic() - started < 2


def test_authenticated_limits_fail_open_when_the_cache_is_down(cache_down, client, alice):
    good = auth_header(bearer(alice))
    assert client.get("/api/native/me", **good).status_code == 200
    assert client.post("/api/native/ws-ticket", **good).status_code == 201
    assert client.get("/api/native/me", **auth_header("nat_garbage")).status_code == 401


# --- garbage tokens cost no query ---------------------------------------------------------------


def _malformed_tokens(valid: str) -> list[str]:
    body = valid[len("nat_") :]
    shapes = [
        "",
        "garbage",
        "nat_",
        "nat_" + "A" * 49,
        "nat_" + body[:-1],
        valid + "A",
        "pat_" + body,
        "NAT_" + body,
        "nat_" + body[:10] + "é" + body[11:],
        "nat_" + body[:10] + "-" + body[11:],
        "nat_" + "\x00" * 49,
        "nst_" + body,
        "nst_not.a.signature",
        "wst_" + body,
        "x" * 5000,
    ]
    for position in range(len("nat_"), len(valid)):  # every single-character typo
        replacement = "0" if valid[position] != "0" else "1"
        shapes.append(valid[:position] + replacement + valid[position + 1 :])
    return shapes


def test_malformed_bearer_tokens_cost_no_database_query(settings, client, alice):
    settings.NATIVE_RATE_AUTH_FAILURES = "100000/m"  # counting the failures costs no query either
    valid = bearer(alice)
    shapes = _malformed_tokens(valid)
    assert len(shapes) > 60
    for raw in shapes:
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/api/native/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.status_code == 401, raw
        assert len(queries) == 0, (raw, [q["sql"] for q in queries])


def test_an_unknown_token_with_a_valid_checksum_costs_exactly_one_query(client, db):
    unknown = crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX)
    assert crypto.is_well_formed(unknown, crypto.NATIVE_TOKEN_PREFIX)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/native/me", **auth_header(unknown))
    assert response.status_code == 401
    assert len(queries) == 1


def test_a_forged_service_token_costs_no_query(client, alice):
    genuine, _ = mint_service_token(alice)
    forged = genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB")
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/native/me", **auth_header(forged)).status_code == 401
    assert len(queries) == 0


# --- websocket connects and frames --------------------------------------------------------------


async def open_from(ip: str, query: str = ""):
    from channels.testing import WebsocketCommunicator

    from native_api.routing import websocket_application

    communicator = WebsocketCommunicator(websocket_application(), f"/api/ws/native?{query}")
    communicator.scope["client"] = [ip, 50000]
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_websocket_connects_are_limited_per_ip_with_close_4429(settings, clock):
    settings.NATIVE_RATE_WS_CONNECT = "3/m"
    clock.fresh_window("198.51.100.7", 60)
    sockets = [await open_from("198.51.100.7") for _ in range(3)]
    for communicator in sockets:
        assert await communicator.receive_nothing(timeout=0.05)
    assert await closed_with(await open_from("198.51.100.7")) == (4429, "rate_limited")
    other = await open_from("198.51.100.8")
    assert await other.receive_nothing(timeout=0.05)
    clock.advance(60)
    fresh = await open_from("198.51.100.7")
    assert await fresh.receive_nothing(timeout=0.05)
    for communicator in [*sockets, other, fresh]:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_failed_websocket_auth_counts_toward_the_address_lockout(settings, clock, client, alice):
    settings.NATIVE_RATE_AUTH_FAILURES = "2/m"
    clock.fresh_window("198.51.100.9", 60)
    for _ in range(2):
        bad = await open_from("198.51.100.9", f"ticket={crypto.mint_secret('wst_')}")
        assert await closed_with(bad) == (4401, "unauthorized")
    raw = await database_sync_to_async(bearer)(alice)
    locked = await open_from("198.51.100.9", f"token={raw}")
    assert await closed_with(locked) == (4429, "rate_limited")
    response = await database_sync_to_async(client.get)(
        "/api/native/me", REMOTE_ADDR="198.51.100.9", **auth_header(raw)
    )
    assert_rate_limited(response)


@pytest.mark.django_db(transaction=True)
async def test_a_frame_flood_gets_rate_limited_errors_then_close_4429(alice):
    raw = await database_sync_to_async(bearer)(alice)
    communicator = await open_socket(f"token={raw}")
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    for i in range(200):
        await communicator.send_json_to({"type": "ping", "ref": str(i)})
    replies = []
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            break
        replies.append(output["text"])
    kinds = ["pong" if '"pong"' in r else "rate_limited" if '"rate_limited"' in r else r for r in replies]
    assert kinds[:40] == ["pong"] * 40  # the burst is served
    # A few more tokens and faded strikes trickle in while the flood is read; nothing else.
    assert set(kinds[40:]) <= {"pong", "rate_limited"}
    assert 40 <= kinds.count("pong") <= 60 and 40 <= kinds.count("rate_limited") <= 60
    assert output["code"] == 4429 and output.get("reason") == "rate_limited"


@pytest.mark.django_db(transaction=True)
async def test_with_the_frame_limit_off_a_burst_is_served(settings, alice):
    settings.NATIVE_RATE_WS_FRAMES = None
    raw = await database_sync_to_async(bearer)(alice)
    communicator = await open_socket(f"token={raw}")
    await communicator.receive_json_from(timeout=5)
    for _ in range(100):
        await communicator.send_json_to({"type": "ping"})
    replies = [await communicator.receive_json_from(timeout=5) for _ in range(100)]
    assert {frame["type"] for frame in replies} == {"pong"}
    await communicator.disconnect()


# --- the frame limiter on its own clock ---------------------------------------------------------


class Ticks:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def send_at(limiter: FrameLimiter, ticks: Ticks, per_second: float, seconds: float) -> tuple[int, int, bool]:
    """Send frames evenly for ``seconds``; (allowed, refused, closed)."""
    allowed = refused = 0
    for _ in range(int(per_second * seconds)):
        ticks.now += 1 / per_second
        if limiter.allow():
            allowed += 1
        else:
            refused += 1
            if limiter.should_close:
                return allowed, refused, True
    return allowed, refused, False


def test_a_client_at_the_sustained_rate_is_never_refused():
    ticks = Ticks()
    assert send_at(FrameLimiter(20, 40, clock=ticks), ticks, 20, 60) == (1200, 0, False)


def test_a_burst_of_forty_passes_and_the_forty_first_frame_is_refused():
    ticks = Ticks()
    limiter = FrameLimiter(20, 40, clock=ticks)
    assert all(limiter.allow() for _ in range(40))
    assert not limiter.allow() and not limiter.should_close
    ticks.now += 0.05
    assert limiter.allow()


def test_an_occasional_overshoot_gets_errors_but_keeps_the_connection():
    ticks = Ticks()
    limiter = FrameLimiter(20, 40, clock=ticks)
    for _ in range(10):  # a burst of 60 every ten seconds
        refused = sum(not limiter.allow() for _ in range(60))
        assert refused >= 1 and not limiter.should_close
        ticks.now += 10


def test_flooding_at_twice_the_rate_is_closed_within_seconds():
    """Every other frame is allowed at twice the rate: refusals in a row alone would never close."""
    ticks = Ticks()
    allowed, refused, closed = send_at(FrameLimiter(20, 40, clock=ticks), ticks, 40, 10)
    assert closed and ticks.now < 6
    assert refused > 40


def test_a_flood_is_closed_after_about_a_burst_of_refusals():
    ticks = Ticks()
    allowed, refused, closed = send_at(FrameLimiter(20, 40, clock=ticks), ticks, 10_000, 1)
    assert closed and allowed in range(40, 43) and refused in range(41, 44)
