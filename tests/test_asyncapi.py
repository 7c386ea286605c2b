"""The AsyncAPI 3.0 document: valid against the official schema, and true to the frames a real
server sends.

tests/vendor/asyncapi-3.0.0.json is the official AsyncAPI 3.0.0 JSON schema (see
tests/vendor/README.md for where it comes from); it is read from disk, never fetched.
"""

import asyncio
import copy
import json
from pathlib import Path

import httpx
import jsonschema
import pytest
from channels.db import database_sync_to_async

from native_api.schemas import asyncapi
from rooms.posting import post_message
from tests import ws
from tests.comm import open_socket
from tests.conftest import bearer
from tests.flows import ticket

OFFICIAL_SCHEMA = json.loads((Path(__file__).parent / "vendor" / "asyncapi-3.0.0.json").read_text())
abearer = database_sync_to_async(bearer)


def validation_errors(document) -> list[str]:
    validator = jsonschema.Draft7Validator(OFFICIAL_SCHEMA)
    return [jsonschema.exceptions.best_match([e]).message for e in validator.iter_errors(document)]


class FrameChecker:
    """Validates frames against the message payloads of the document, by their type."""

    def __init__(self, document):
        self.document = document
        messages = document["components"]["messages"]
        self.payloads = {message["name"]: message["payload"] for message in messages.values()}
        self.seen: list[str] = []

    def check(self, frame: dict) -> dict:
        assert frame.get("type") in self.payloads, f"a frame the document does not know: {frame}"
        schema = {"allOf": [self.payloads[frame["type"]]], "components": self.document["components"]}
        jsonschema.Draft7Validator(schema).validate(frame)
        self.seen.append(frame["type"])
        return frame

    def close(self, code: int, reason: str):
        closes = {c["code"]: c["reasons"] for c in self.document["channels"]["native"]["x-close-codes"]}
        assert reason in closes.get(code, []), f"close {code} {reason!r} is not documented"


def test_the_document_is_valid_asyncapi_3_0():
    document = asyncapi.document("localhost:8000")
    assert document["asyncapi"] == "3.0.0"
    assert validation_errors(document) == []


def test_the_official_schema_refuses_a_broken_document():
    """So that the test above can fail: an operation needs an action of send or receive."""
    broken = copy.deepcopy(asyncapi.document())
    broken["operations"]["receivePing"]["action"] = "subscribe"
    assert validation_errors(broken)


def test_every_frame_and_close_code_is_in_the_document():
    document = asyncapi.document()
    names = {message["name"] for message in document["components"]["messages"].values()}
    assert names == {"auth", "subscribe", "unsubscribe", "send", "ping"} | {
        "hello",
        "subscribed",
        "unsubscribed",
        "ack",
        "pong",
        "message",
        "error",
    }
    received = {
        op["messages"][0]["$ref"].rsplit("/", 1)[1]
        for op in document["operations"].values()
        if op["action"] == "receive"
    }
    assert received == {"auth", "subscribe", "unsubscribe", "send", "ping"}
    codes = {c["code"] for c in document["channels"]["native"]["x-close-codes"]}
    assert codes == {4400, 4401, 4403, 4408, 4429, 1009, 1012, 1013}


@pytest.mark.django_db
def test_the_document_is_served_without_authentication_naming_this_server(client, settings):
    settings.ALLOWED_HOSTS = ["chat.example.test"]
    response = client.get("/api/native/asyncapi.json", HTTP_HOST="chat.example.test")
    assert response.status_code == 200
    document = response.json()
    assert document["servers"]["this"] == {
        "host": "chat.example.test",
        "protocol": "ws",
        "description": "This server.",
    }
    assert document["channels"]["native"]["address"] == "/api/ws/native"


@pytest.mark.e2e
async def test_every_frame_a_real_server_sends_in_a_session_matches_the_document(server, alice, bob, general):
    checker = FrameChecker(httpx.get(f"{server.url}/api/native/asyncapi.json").json())
    assert validation_errors(checker.document) == []
    backlog = await database_sync_to_async(post_message)(bob, "general", "before alice came")

    socket = await ws.connect(server.ws_url)
    raw = await abearer(alice)
    await ws.send_json(
        socket, {"type": "auth", "ticket": await asyncio.to_thread(ticket, server.url, raw), "ref": "a1"}
    )
    checker.check(await ws.recv_json(socket))

    async def exchange(frame, until):
        await ws.send_json(socket, frame)
        reply, before = await ws.recv_until(socket, until)
        for seen in [*before, reply]:
            checker.check(seen)
        return reply, before

    subscribed, replayed = await exchange(
        {"type": "subscribe", "room": "general", "after": 0, "ref": "s1"}, "subscribed"
    )
    assert [m["message"]["id"] for m in replayed] == [backlog.message["id"]]
    await exchange(
        {"type": "send", "room": "general", "body": "hello", "client_id": "c1", "ref": "p1"}, "ack"
    )
    await exchange({"type": "send", "room": "general", "body": "for bob", "target_user_ids": [bob.pk]}, "ack")
    await exchange({"type": "ping", "ref": "x"}, "pong")
    await exchange({"type": "subscribe", "room": "general", "after": -1, "ref": "bad"}, "error")
    await exchange({"type": "send", "room": "general", "body": ""}, "error")
    await exchange({"type": "dance"}, "error")
    await exchange({"type": "subscribe", "room": "nobody-s-room"}, "error")
    await exchange({"type": "unsubscribe", "room": "general", "ref": "u1"}, "unsubscribed")
    await socket.close()
    assert set(checker.seen) >= {"hello", "message", "subscribed", "ack", "pong", "error", "unsubscribed"}

    refused = await ws.connect(f"{server.ws_url}?ticket=wst_not-a-ticket")
    checker.close(*await ws.close_code(refused))
    oversized = await ws.connect(server.ws_url, additional_headers={"Authorization": f"Bearer {raw}"})
    checker.check(await ws.recv_json(oversized))
    await oversized.send("x" * (64 * 1024 + 1))
    checker.close(*await ws.close_code(oversized))


@pytest.mark.e2e
async def test_a_membership_removal_frame_from_a_real_server_matches_the_document(
    server, alice, bob, general
):
    from rooms.membership import remove_member

    checker = FrameChecker(asyncapi.document())
    socket = await ws.connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {await abearer(bob)}"}
    )
    checker.check(await ws.recv_json(socket))
    await ws.send_json(socket, {"type": "subscribe", "room": "general"})
    checker.check((await ws.recv_until(socket, "subscribed"))[0])
    await database_sync_to_async(remove_member)(general, bob)  # reaches the server from the change log
    removed = checker.check(await ws.recv_json(socket, timeout=3))
    assert removed == {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"}
    await socket.close()


@pytest.mark.django_db(transaction=True)
async def test_hello_echoes_the_ref_of_the_auth_frame(alice):
    socket = await open_socket()
    await socket.send_json_to({"type": "auth", "token": await abearer(alice), "ref": "auth-1"})
    greeting = await socket.receive_json_from(timeout=5)
    await socket.disconnect()
    assert greeting["type"] == "hello" and greeting.get("ref") == "auth-1"
