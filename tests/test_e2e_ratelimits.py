"""Rate limits against real daphne processes: the client IP as a real socket reports it, real
X-Forwarded-For headers, Redis shared by two processes, and a cache that is not there.

One module-wide server trusts 127.0.0.1 as its proxy, so a test on loopback can speak for any
client address through X-Forwarded-For, while a socket bound to 127.0.0.2 is an untrusted peer
whose headers must be ignored. Each test uses its own client addresses, so their counters never
meet even when the server keeps them in its own memory (embedded configuration).
"""

import asyncio
import math
import os
import subprocess
import time
import zlib

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async

from tests import ws
from tests.conftest import bearer
from tests.server import (
    QUIET_ENV,
    ROOT,
    VENV_BIN,
    ServerProcess,
    database_url_for_tests,
    free_port,
    start_server,
)
from tests.ssh_helpers import public_key_line, sign
from tokens import crypto

pytestmark = pytest.mark.e2e

LIMITS = {
    "NATIVE_TRUSTED_PROXIES": "127.0.0.1/32",
    "NATIVE_RATE_CHALLENGE": "3/3s",
    "NATIVE_RATE_AUTH_FAILURES": "3/3s",
    "NATIVE_RATE_TOKEN_IP": "3/m",
    "NATIVE_RATE_TOKEN_KEY": "3/m",
    "NATIVE_RATE_WS_TICKET": "3/m",
    "NATIVE_RATE_WS_CONNECT": "3/m",
}


@pytest.fixture(scope="module")
def limited(django_db_setup, django_db_blocker, server_logs):
    proc = start_server(server_logs, env=LIMITS, name="limited")
    yield proc
    proc.stop()


@pytest.fixture
def limited_server(limited, transactional_db):
    """The limited server, with this test's data committed so that it can see it."""
    return limited


def fresh_window(bucket: str, period: int, need: float = 1.5) -> None:
    """Wait, if needed, until the current window of ``bucket`` has ``need`` seconds left.

    django-ratelimit ends a key's windows at whole seconds k * period + crc32(key) % period,
    so a test that must land N requests in one window can tell where the window ends.
    """
    now = time.time()
    last_second = math.floor(now) + (zlib.crc32(bucket.encode()) % period - math.floor(now)) % period
    remaining = last_second + 1 - now
    if remaining < need:
        time.sleep(remaining + 0.05)


def via(ip: str) -> dict:
    return {"X-Forwarded-For": ip}


def bearer_header(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


def assert_rate_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "rate_limited" and response.json()["detail"]
    assert response.headers["Retry-After"].isdigit()
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 61
    return retry_after


# --- HTTP limits, and whose address counts -------------------------------------------------------


def test_the_challenge_limit_triggers_at_its_count_and_resets_after_retry_after(limited_server):
    fresh_window("198.51.100.10", 3, need=1.0)
    url = f"{limited_server.url}/api/native/challenge"
    assert [httpx.get(url, headers=via("198.51.100.10")).status_code for _ in range(3)] == [200] * 3
    retry_after = assert_rate_limited(httpx.get(url, headers=via("198.51.100.10")))
    assert retry_after <= 3
    time.sleep(retry_after)
    assert httpx.get(url, headers=via("198.51.100.10")).status_code == 200


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_does_not_evade_the_limit(limited_server):
    fresh_window("127.0.0.2", 3, need=1.0)
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as untrusted:
        spoofs = ["203.0.113.1", "203.0.113.2, 127.0.0.1", "127.0.0.1"]
        statuses = [
            untrusted.get(f"{limited_server.url}/api/native/challenge", headers=via(spoof)).status_code
            for spoof in spoofs
        ]
        assert statuses == [200] * 3
        assert_rate_limited(
            untrusted.get(f"{limited_server.url}/api/native/challenge", headers=via("203.0.113.4"))
        )


def test_behind_the_trusted_proxy_the_rightmost_untrusted_hop_is_the_bucket(limited_server):
    fresh_window("198.51.100.20", 3, need=1.0)
    url = f"{limited_server.url}/api/native/challenge"
    # Each client wrote its own X-Forwarded-For; the proxy appended the real address on the right.
    for spoof in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        assert httpx.get(url, headers=via(f"{spoof}, 198.51.100.20")).status_code == 200
    assert_rate_limited(httpx.get(url, headers=via("203.0.113.4, 198.51.100.20")))
    assert httpx.get(url, headers=via("198.51.100.20, 198.51.100.21")).status_code == 200
    assert httpx.get(url, headers=via("198.51.100.22, 127.0.0.1")).status_code == 200  # two proxies


def test_the_token_endpoint_is_limited_per_client_ip(limited_server):
    fresh_window("198.51.100.30", 60)
    url = f"{limited_server.url}/api/native/token"
    assert [httpx.post(url, json={}, headers=via("198.51.100.30")).status_code for _ in range(3)] == [400] * 3
    assert_rate_limited(httpx.post(url, json={}, headers=via("198.51.100.30")))
    assert httpx.post(url, json={}, headers=via("198.51.100.31")).status_code == 400


def test_one_ipv6_slash_48_cannot_shut_other_networks_out_of_login(server_factory, alice, keys):
    """Per-address limits count a /64, so one /48 holds 65,536 buckets. Challenges keep no state
    (tokens.challenges): however many of them that /48 takes, no shared pool runs dry, and a
    client of another network still gets a challenge and logs in. Earlier versions capped
    pending nonces globally (NATIVE_MAX_PENDING_NONCES, 100,000): a small cap here made the
    attack take 60 requests instead of 100,000; the setting is gone and changes nothing."""
    server = server_factory(
        env={
            "NATIVE_TRUSTED_PROXIES": "127.0.0.1/32",
            "NATIVE_RATE_CHALLENGE": "5/m",
            "NATIVE_RATE_TOKEN_IP": "5/m",
            "NATIVE_MAX_PENDING_NONCES": "40",
        },
        name="slash-48",
    )
    url = f"{server.url}/api/native/challenge"
    with httpx.Client() as client:
        attack = [  # 12 /64s of 2001:db8:48::/48, each up to its limit and one more
            [client.get(url, headers=via(f"2001:db8:48:{subnet:x}::1")).status_code for _ in range(6)]
            for subnet in range(12)
        ]

    other = via("2001:db8:99::7")  # another network
    challenge = httpx.get(url, headers=other)
    assert challenge.status_code == 200, challenge.text
    nonce, namespace = challenge.json()["nonce"], challenge.json()["namespace"]
    body = {
        "public_key": public_key_line(keys["alice"]),
        "nonce": nonce,
        "signature": sign(keys["alice"], nonce.encode(), namespace),
    }
    assert httpx.post(f"{server.url}/api/native/token", json=body, headers=other).status_code == 201
    assert attack == [[200] * 5 + [429]] * 12  # the per-/64 limit still holds


def test_the_token_endpoint_is_limited_per_key_fingerprint_from_any_address(limited_server, alice, keys):
    fresh_window(alice.ssh_keys.get().fingerprint, 60)
    body = {"public_key": public_key_line(keys["alice"]), "nonce": "x", "signature": "x"}
    url = f"{limited_server.url}/api/native/token"
    statuses = [httpx.post(url, json=body, headers=via(f"198.51.100.{32 + i}")).status_code for i in range(3)]
    assert statuses == [401] * 3
    assert_rate_limited(httpx.post(url, json=body, headers=via("198.51.100.39")))


def test_failed_bearer_auth_locks_out_the_address_for_valid_tokens_too_until_the_window_ends(
    limited_server, alice
):
    fresh_window("198.51.100.40", 3, need=1.0)
    url = f"{limited_server.url}/api/native/me"
    good = {**bearer_header(bearer(alice)), **via("198.51.100.40")}
    bad = {**bearer_header(crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX)), **via("198.51.100.40")}
    assert [httpx.get(url, headers=bad).status_code for _ in range(3)] == [401] * 3
    retry_after = assert_rate_limited(httpx.get(url, headers=good))
    assert httpx.get(url, headers={**good, **via("198.51.100.41")}).status_code == 200
    time.sleep(retry_after)
    assert httpx.get(url, headers=good).status_code == 200


def test_ws_tickets_are_limited_per_user_whatever_the_address(limited_server, alice):
    fresh_window(f"user:{alice.pk}", 60)
    token = bearer(alice)
    url = f"{limited_server.url}/api/native/ws-ticket"
    statuses = [
        httpx.post(url, headers={**bearer_header(token), **via(f"198.51.100.{50 + i}")}).status_code
        for i in range(3)
    ]
    assert statuses == [201] * 3
    assert_rate_limited(httpx.post(url, headers={**bearer_header(token), **via("198.51.100.59")}))


# --- websockets -----------------------------------------------------------------------------------


async def test_websocket_connects_are_limited_per_ip_with_close_4429(limited_server):
    fresh_window("198.51.100.60", 60)
    sockets = [
        await ws.connect(limited_server.ws_url, additional_headers=via("198.51.100.60")) for _ in range(3)
    ]
    for socket in sockets:
        assert await ws.no_frame(socket, 0.1)  # accepted, waiting for an auth frame
    refused = await ws.connect(limited_server.ws_url, additional_headers=via("198.51.100.60"))
    assert await ws.close_code(refused) == (4429, "rate_limited")
    other = await ws.connect(limited_server.ws_url, additional_headers=via("198.51.100.61"))
    assert await ws.no_frame(other, 0.1)
    for socket in [*sockets, other]:
        await socket.close()


async def test_a_frame_flood_gets_rate_limited_errors_then_4429_while_others_stay_served(
    limited_server, alice, bob
):
    alice_token, bob_token = await sync_to_async(bearer)(alice), await sync_to_async(bearer)(bob)
    flooder = await ws.connect(
        limited_server.ws_url, additional_headers={**bearer_header(alice_token), **via("198.51.100.70")}
    )
    neighbour = await ws.connect(
        limited_server.ws_url, additional_headers={**bearer_header(bob_token), **via("198.51.100.71")}
    )
    assert (await ws.recv_json(flooder))["type"] == "hello"
    assert (await ws.recv_json(neighbour))["type"] == "hello"

    async def flood():
        try:
            for _ in range(400):
                await ws.send_json(flooder, {"type": "ping"})
        except websockets.ConnectionClosed:
            pass  # closed mid-flood: exactly what should happen

    flooding = asyncio.create_task(flood())
    started = time.monotonic()
    await ws.send_json(neighbour, {"type": "ping", "ref": "still-there"})
    assert await ws.recv_json(neighbour, timeout=2) == {"type": "pong", "ref": "still-there"}
    assert time.monotonic() - started < 2
    await flooding

    types = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            frame = await ws.recv_json(flooder)
            types.append(frame["type"] if frame["type"] != "error" else frame["code"])
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4429, "rate_limited")
    assert types.count("pong") >= 40 and types.count("rate_limited") >= 1
    assert types.index("rate_limited") >= 40  # the burst is served first
    await ws.send_json(neighbour, {"type": "ping"})
    assert (await ws.recv_json(neighbour))["type"] == "pong"
    assert httpx.get(f"{limited_server.url}/api/native/health").status_code == 200
    await neighbour.close()


# --- several processes, and no cache ------------------------------------------------------------


@pytest.mark.redis
async def test_two_processes_on_redis_share_every_counter(server_factory):
    env = {"NATIVE_RATE_CHALLENGE": "3/m", "NATIVE_RATE_WS_CONNECT": "3/m"}
    first, second = server_factory(env=env, name="redis-a"), server_factory(env=env, name="redis-b")
    fresh_window("127.0.0.1", 60, need=3)
    statuses = [httpx.get(f"{s.url}/api/native/challenge").status_code for s in (first, second, first)]
    assert statuses == [200] * 3
    assert_rate_limited(httpx.get(f"{second.url}/api/native/challenge"))
    assert_rate_limited(httpx.get(f"{first.url}/api/native/challenge"))

    sockets = [await ws.connect(s.ws_url) for s in (first, second, first)]
    for socket in sockets:
        assert await ws.no_frame(socket, 0.1)
    assert await ws.close_code(await ws.connect(second.ws_url)) == (4429, "rate_limited")
    for socket in sockets:
        await socket.close()


def start_without_cache(log_dir) -> ServerProcess:
    """A daphne whose Redis is a closed port: health answers 503, so start_server's wait for a
    200 does not apply; wait for any answer instead."""
    port = free_port()
    env = {
        **os.environ,
        **QUIET_ENV,
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "NATIVE_RATE_CHALLENGE": "20/m",
        "NATIVE_RATE_TOKEN_IP": "10/m",
        "NATIVE_RATE_AUTH_FAILURES": "20/m",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log_path = log_dir / f"no-cache-{port}.log"
    log_file = open(log_path, "w")  # noqa: SIM115 - the process writes to it until stop()
    cmd = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    proc = ServerProcess(
        port, log_path, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{proc.url}/api/native/health", timeout=5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"server did not answer:\n{proc.log()}")


@pytest.fixture
def cacheless(server_logs, transactional_db):
    proc = start_without_cache(server_logs)
    yield proc
    proc.stop()


def test_with_the_cache_down_login_answers_503_fast_and_the_rest_still_works(cacheless, alice, keys):
    health = httpx.get(f"{cacheless.url}/api/native/health", timeout=10)
    assert health.status_code == 503
    assert health.json()["cache"] == "down" and health.json()["channel_layer"] == "down"
    for _ in range(2):  # the first request meets the failure, the second the back-off
        started = time.monotonic()
        challenge = httpx.get(f"{cacheless.url}/api/native/challenge", timeout=10)
        token = httpx.post(
            f"{cacheless.url}/api/native/token",
            json={"public_key": public_key_line(keys["alice"]), "nonce": "x", "signature": "x"},
            timeout=10,
        )
        assert time.monotonic() - started < 3
        for response in (challenge, token):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "unavailable" and "unavailable" in response.json()["detail"]
    me = httpx.get(f"{cacheless.url}/api/native/me", headers=bearer_header(bearer(alice)), timeout=10)
    assert me.status_code == 200  # authenticated limits fail open
    assert "Traceback" not in cacheless.log()
