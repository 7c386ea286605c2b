"""One timestamp shape everywhere: RFC 3339 in UTC, exactly three fractional digits, Z.

Every endpoint that answers a timestamp, the websocket's message frames and the operator
commands are walked, and every field that holds a timestamp must have exactly that shape (a
client configures one parser, e.g. Swift's ISO8601DateFormatter with fractional seconds).
"""

import re
from datetime import UTC, datetime, timedelta, timezone
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from foundation.timestamps import PATTERN, isoformat
from rooms.posting import post_message
from tests.comm import frames_until, hello
from tests.conftest import auth_header, bearer
from tests.ssh_helpers import public_key_line, sign

SHAPE = re.compile(PATTERN)


def timestamps_in(data, path="$"):
    """(path, value) of every field named *_at, at any depth."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key.endswith("_at"):
                yield f"{path}.{key}", value
            yield from timestamps_in(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from timestamps_in(value, f"{path}[{i}]")


def assert_shaped(found):
    found = list(found)
    assert found, "no timestamp was checked"
    for path, value in found:
        if value is not None:
            assert SHAPE.fullmatch(value), f"{path} = {value!r}"


@pytest.mark.parametrize(
    "value, expected",
    [
        (datetime(2026, 11, 22, 18, 42, 31, 120456, tzinfo=UTC), "2026-11-22T18:42:31.120Z"),
        (datetime(2026, 11, 22, 18, 42, 31, tzinfo=UTC), "2026-11-22T18:42:31.000Z"),
        (datetime(2026, 11, 22, 18, 42, 31, 999999, tzinfo=UTC), "2026-11-22T18:42:31.999Z"),
        (
            datetime(2026, 11, 22, 20, 42, 31, 5000, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-22T18:42:31.005Z",
        ),
    ],
)
def test_isoformat_gives_utc_with_exactly_three_fractional_digits(value, expected):
    assert isoformat(value) == expected and SHAPE.fullmatch(expected)


def test_isoformat_keeps_null_null():
    assert isoformat(None) is None


@pytest.mark.django_db
def test_every_timestamp_of_every_http_answer_has_the_one_shape(client, alice, bob, general, keys):
    from tokens.service_tokens import mint

    challenge = client.get("/api/native/challenge").json()
    login = client.post(
        "/api/native/token",
        {
            "public_key": public_key_line(keys["alice"]),
            "nonce": challenge["nonce"],
            "signature": sign(keys["alice"], challenge["nonce"].encode(), challenge["namespace"]),
        },
        content_type="application/json",
    )
    assert login.status_code == 201
    headers = auth_header(login.json()["token"])
    service, _ = mint(alice, name="bot")  # exp is whole seconds (.000), iat has its milliseconds
    client.get("/api/native/me", **headers)  # sets last_used_at
    posted = client.post(
        "/api/native/rooms/general/messages", {"body": "hi"}, content_type="application/json", **headers
    )
    answers = [
        login.json(),
        posted.json(),
        client.get("/api/native/me", **headers).json(),
        client.get("/api/native/me", **auth_header(service)).json(),
        client.get("/api/native/tokens", **headers).json(),
        client.get("/api/native/rooms/general/history", **headers).json(),
    ]
    assert_shaped(timestamps_in(answers))
    native_me = answers[2]["token"]
    assert all(native_me[f] is not None for f in ("created_at", "last_used_at", "expires_at"))


@pytest.mark.django_db(transaction=True)
async def test_message_frames_carry_the_one_shape(alice, general):
    await database_sync_to_async(post_message)(alice, "general", "backlog")
    raw = await database_sync_to_async(bearer)(alice)
    socket, _ = await hello(f"token={raw}")
    await socket.send_json_to({"type": "subscribe", "room": "general", "after": 0})
    backlog = await frames_until(socket, "subscribed")
    await database_sync_to_async(post_message)(alice, "general", "live")
    live = await socket.receive_json_from(timeout=5)
    await socket.disconnect()
    assert [f["message"]["body"] for f in backlog[:-1] + [live]] == ["backlog", "live"]
    assert_shaped(timestamps_in(backlog + [live]))


@pytest.mark.django_db
def test_mint_service_token_prints_expires_at_in_the_one_shape(alice):
    err = StringIO()
    call_command("mint_service_token", "alice", stdout=StringIO(), stderr=err)
    expires_at = re.fullmatch(r"jti=\S+ expires_at=(\S+)\n", err.getvalue()).group(1)
    assert SHAPE.fullmatch(expires_at), expires_at
