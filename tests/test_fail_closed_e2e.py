"""A server process that cannot read the change log fails closed (API.md, Enforcement).

Found from outside: with the push lost as well (the operator's command could not reach Redis),
a process whose database traffic was partitioned (packets dropped, nothing refused) never
learned of a revocation, and the revoked socket stayed open for as long as it was watched.

Here the server reaches PostgreSQL through a proxy that the test cuts (tests/tcp_proxy.py),
the revocation is made by a command that reaches PostgreSQL directly but not Redis, and the
revoked socket must close (1013, or 4401 if the server learned of it) within 2 s of the commit;
new sockets are refused 1013 until the link heals, then accepted again.
"""

import asyncio
import time

import httpx
import pytest
from channels.db import database_sync_to_async
from django.db import connection

from foundation.models import Change
from tests import ws
from tests.conftest import bearer
from tests.server import database_url_for_tests, free_port, run_manage
from tests.tcp_proxy import CuttableProxy
from tokens.verifier import verify_bearer

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

BOUND = 2.0


@pytest.fixture
def proxy(transactional_db):
    """Torn down (healed, its connections closed) before the test database is flushed: a
    server's session left behind the cut could otherwise hold a lock the flush waits for."""
    conf = connection.settings_dict
    link = CuttableProxy(conf.get("HOST") or "127.0.0.1", int(conf.get("PORT") or 5432))
    yield link
    link.heal()
    link.close()


def through(proxy, url: str) -> str:
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    return url.replace(host_port, f"127.0.0.1:{proxy.port}", 1)


async def open_socket(url: str, raw: str):
    return await ws.connect(url, additional_headers={"Authorization": f"Bearer {raw}"})


async def closed_at(socket) -> tuple[int, str, float]:
    code, reason = await ws.close_code(socket, timeout=20)
    return code, reason, time.time()


async def first_frame_or_close(socket) -> tuple[str, int | None]:
    try:
        return (await ws.recv_json(socket, timeout=5))["type"], None
    except ws.websockets.ConnectionClosed as closed:
        return "closed", closed.rcvd.code if closed.rcvd else 1006


async def test_a_server_cut_off_from_its_database_closes_a_revoked_socket_within_the_bound(
    proxy, server_factory, alice
):
    server = server_factory(
        env={"DATABASE_URL": through(proxy, database_url_for_tests()), "DB_QUERY_DEADLINE": "4"},
        name="partitioned",
    )
    raw, spare = await database_sync_to_async(bearer)(alice), await database_sync_to_async(bearer)(alice)
    socket = await open_socket(server.ws_url, raw)
    assert (await ws.recv_json(socket))["type"] == "hello"
    token_id = await database_sync_to_async(lambda: verify_bearer(raw).id)()

    proxy.cut()
    cut_at = time.time()
    watching = asyncio.create_task(closed_at(socket))
    # Through PostgreSQL directly, while Redis is unreachable for the command: no push at all.
    result = await asyncio.to_thread(
        run_manage, "revoke_token", token_id, env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    )
    assert result.returncode == 0, result.stderr
    code, reason, closed = await watching
    committed = await database_sync_to_async(
        lambda: Change.objects.filter(kind="tokens_revoked").latest("seq").created_at.timestamp()
    )()

    assert (code, reason) in {(1013, "unavailable"), (4401, "revoked")}
    assert closed - committed < BOUND
    assert closed - cut_at < BOUND + 0.5  # it failed closed: nothing told it of the revocation

    # While cut off, a new socket is refused 1013 at once, whatever its credential.
    refused = await open_socket(server.ws_url, spare)
    assert await first_frame_or_close(refused) == ("closed", 1013)
    metrics = await asyncio.to_thread(httpx.get, f"{server.url}/metrics", timeout=5)
    assert "native_failing_closed 1.0" in metrics.text
    assert "failing closed" in server.log()

    proxy.heal()
    deadline = time.monotonic() + 10
    while True:  # the server reads the log again within its poll interval of the link's return
        again = await open_socket(server.ws_url, spare)
        kind, _ = await first_frame_or_close(again)
        if kind == "hello" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert kind == "hello"
    assert "accepting websockets" in server.log()
    revoked = await open_socket(server.ws_url, raw)
    assert await first_frame_or_close(revoked) == ("closed", 4401)
    await again.close()
