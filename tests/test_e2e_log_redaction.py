"""End-to-end: credentials stay out of every server's log, however the client encoded them.

The app reads query strings decoded (``urllib.parse.parse_qs``: percent-escapes and ``+`` in names
and values), while servers log the raw request line. A websocket connect whose credential is
written ``?%74icket=%77st_…`` is authenticated (the test proves it with hello), so the log must
not show it either: not whole, not by an 8-character head or tail, neither as written nor once
percent-decoded. Under uvicorn (its access and websocket lines), daphne (its access log) and
gunicorn (its access log, switched on), with Django's request log lines (404, 401) too.
"""

import asyncio
from urllib.parse import unquote, unquote_plus

import httpx
import pytest

from tests import ws
from tests.flows import login, ticket
from tests.secrets_scan import leaks

pytestmark = pytest.mark.e2e

ENV = {"LOG_LEVEL": "DEBUG", "NATIVE_WS_AUTH_TIMEOUT": "0.5"}


def escaped(text: str) -> str:
    """Every byte percent-encoded."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


def first_escaped(text: str) -> str:
    """Only the first character percent-encoded: ``%6Eat_…``."""
    return escaped(text[0]) + text[1:]


def decoded_views(log: str) -> list[str]:
    """The log as written, and percent-decoded once and twice (as a client may double-encode)."""
    once = unquote_plus(log)
    return [log, once, unquote(once)]


def http_requests(server, token: str) -> None:
    """Requests that HTTP refuses, carrying the token in the query and in the path."""
    for target in (
        f"/api/native/me?%74oken={first_escaped(token)}",
        f"/api/native/me?access_token={escaped(token)}",
        f"/api/native/{first_escaped(token)}",
        f"/api/native/rooms/{escaped(token)}/history",
    ):
        assert httpx.get(server.url + target).status_code in (401, 403, 404)


async def first_frame(url: str) -> str:
    socket = await ws.connect(url)
    try:
        return (await ws.recv_json(socket))["type"]
    except Exception:
        return "{}/{}".format(*await ws.close_code(socket))
    finally:
        await socket.close()


async def websocket_connects(server, token: str, tickets: list[str]) -> list[str]:
    accepted = [  # each credential as the app reads it: every one says hello
        f"?%74icket={escaped(tickets[0])}",
        f"?x=1&%54icket=ignored&%74%69%63%6B%65%74={first_escaped(tickets[1])}&ticket={token}",
        f"?%74oken={first_escaped(token)}",
        f"?token={escaped(token)}&token={escaped(tickets[2])}",
    ]
    refused = [  # credentials the app does not read, or reads as garbage
        f"?TICKET={first_escaped(tickets[2])}",
        f"?ticket=+{first_escaped(tickets[2])}",
        f"?a=1;token={first_escaped(token)}",
        f"?token=%256Eat_{token[4:]}",
    ]
    urls = [server.ws_url + query for query in accepted + refused]
    return [await first_frame(url) for url in urls]


@pytest.mark.parametrize("server_kind", ["uvicorn", "daphne"])
def test_percent_encoded_credentials_authenticate_and_never_reach_the_log(
    server_factory, keys, alice, server_kind
):
    server = server_factory(env=ENV, server=server_kind, name=f"redaction-{server_kind}")
    token = login(server.url, keys["alice"])["token"]
    tickets = [ticket(server.url, token) for _ in range(3)]

    frames = asyncio.run(websocket_connects(server, token, tickets))
    http_requests(server, token)

    assert frames[:4] == ["hello"] * 4, frames
    assert all(frame.startswith("44") for frame in frames[4:]), frames
    log = server.log()
    assert log.count("/api/ws/native") >= 8, "the server logs websocket connects"
    secrets = {"token": token, **{f"ticket {i}": raw for i, raw in enumerate(tickets)}}
    assert [leaks(view, secrets) for view in decoded_views(log)] == [[], [], []]


def test_gunicorns_access_log_is_redacted_too(server_factory, keys, alice):
    """gunicorn logs nothing per request by default; an operator who turns its access log on
    gets the same redaction (gunicorn.conf.py)."""
    env = {**ENV, "GUNICORN_CMD_ARGS": "--access-logfile -"}
    server = server_factory(env=env, server="gunicorn", name="redaction-gunicorn")
    token = login(server.url, keys["alice"])["token"]

    http_requests(server, token)

    log = server.log()
    assert log.count("GET /api/native/") >= 4, "the access log is on"
    assert [leaks(view, {"token": token}) for view in decoded_views(log)] == [[], [], []]
