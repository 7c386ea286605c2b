"""SIGTERM under load: every server process is gone within 10 s (API.md), websockets are closed
1012 "restart" so clients reconnect elsewhere, in-flight requests finish or fail cleanly.

Each server runs with its default options. The load: requests that finish within the drain
window (they must answer 200), one that sleeps far past it (it must fail, not hang the client
or the process), and, on the ASGI servers, open authenticated websockets.
"""

import asyncio
import signal
import time

import httpx
import pytest

from tests import ws
from tests.conftest import bearer

pytestmark = pytest.mark.e2e

EXIT_BOUND = 10.0
BASELINES = {"NATIVE_BENCH_BASELINES": "true"}


@pytest.fixture
def token(alice):
    return bearer(alice)


async def _get(client: httpx.AsyncClient, url: str, **kwargs):
    """The response, or the exception a client sees when the server goes away."""
    try:
        return await client.get(url, **kwargs)
    except httpx.HTTPError as exc:
        return exc


async def _stop_under_load(proc, token: str, *, sockets: int, quick: int):
    headers = {"Authorization": f"Bearer {token}"}
    opened = [await ws.connect(proc.ws_url, additional_headers=headers) for _ in range(sockets)]
    for socket in opened:
        assert (await ws.recv_json(socket))["type"] == "hello"
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(f"{proc.url}/api/native/me", headers=headers)).status_code == 200
        in_flight = [
            asyncio.create_task(_get(client, f"{proc.url}/bench/slow", params={"seconds": 1.5}))
            for _ in range(quick)
        ]
        stuck = asyncio.create_task(_get(client, f"{proc.url}/bench/slow", params={"seconds": 25}))
        await asyncio.sleep(0.5)  # every request has reached a view
        signalled = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        closes = await asyncio.gather(*(ws.close_code(socket, timeout=EXIT_BOUND) for socket in opened))
        exit_code = await asyncio.to_thread(proc.process.wait, EXIT_BOUND + 5)
        gone_after = time.monotonic() - signalled
        quick_answers = await asyncio.gather(*in_flight)
        stuck_answer = await asyncio.wait_for(stuck, 5)
    return gone_after, exit_code, closes, quick_answers, stuck_answer


@pytest.mark.parametrize("server_kind", ["daphne", "uvicorn"])
async def test_sigterm_under_load_ends_an_asgi_server_within_10_s_and_closes_sockets_1012(
    server_factory, token, server_kind
):
    proc = server_factory(env=BASELINES, server=server_kind, name=f"stop-{server_kind}")
    gone_after, _, closes, quick, stuck = await _stop_under_load(proc, token, sockets=3, quick=3)

    assert gone_after < EXIT_BOUND, proc.log()
    assert closes == [(1012, "restart")] * 3
    assert [getattr(answer, "status_code", answer) for answer in quick] == [200] * 3
    # Past the drain window the request is abandoned: the client sees the connection end.
    assert isinstance(stuck, httpx.HTTPError) or stuck.status_code >= 500


async def test_sigterm_under_load_ends_gunicorn_within_10_s(server_factory, token):
    proc = server_factory(env=BASELINES, server="gunicorn", name="stop-gunicorn", workers=3)
    gone_after, _, _, quick, stuck = await _stop_under_load(proc, token, sockets=0, quick=2)

    assert gone_after < EXIT_BOUND, proc.log()
    assert [getattr(answer, "status_code", answer) for answer in quick] == [200] * 2
    assert isinstance(stuck, httpx.HTTPError) or stuck.status_code >= 500


async def test_after_sigterm_a_draining_asgi_server_turns_new_work_away(server_factory, token):
    """While in-flight requests drain, a new request gets 503 and a new socket 1012: both tell
    the client to go to another process, instead of starting work that would be cut short."""
    proc = server_factory(env=BASELINES, name="stop-drain")
    async with httpx.AsyncClient(timeout=30) as client:
        slow = asyncio.create_task(_get(client, f"{proc.url}/bench/slow", params={"seconds": 3}))
        await asyncio.sleep(0.5)
        proc.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        refused = await client.get(f"{proc.url}/api/native/me", headers={"Authorization": f"Bearer {token}"})
        late = await ws.connect(proc.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
        assert await ws.close_code(late) == (1012, "restart")
        assert (await slow).status_code == 200
    assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
    assert refused.headers["Retry-After"] == "1"
    await asyncio.to_thread(proc.process.wait, EXIT_BOUND)
