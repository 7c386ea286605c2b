"""A seeded websocket frame fuzzer against a real daphne server.

alice (a member of "general") and mallory (a member of nothing) each send a few hundred hostile
frames: random bytes, binary frames, JSON nested past the recursion limit, frames just under
and over 64 KiB, every field with every JSON type, lone surrogates, NUL, RTL marks and 4-byte
emoji, refs of every type, subscribe/unsubscribe churn. After each frame the socket must answer
a ping, or be closed with a contract code (4400, 1009, 4429) and the fuzzer reconnects. Every
frame the server sends must be one the contract knows. Meanwhile bob reads "general" and must
keep receiving, and mallory must never see a message of it, on any socket, nor through history.
"""

import asyncio
import json
import random

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from tests import ws
from tests.conftest import bearer

pytestmark = pytest.mark.e2e

abearer = database_sync_to_async(bearer)

SEED = 20261122
FRAMES_PER_FUZZER = 250
TIME_BUDGET = 60.0  # seconds for the whole fuzzing phase
MAX_FRAME = 64 * 1024
CONTRACT_CLOSES = {4400, 1009, 4429}
SERVER_FRAMES = {"hello", "pong", "error", "subscribed", "unsubscribed", "message", "ack"}
ERROR_CODES = {"invalid_request", "forbidden", "rate_limited"}  # never "unavailable": the DB is up
TYPES = ["subscribe", "unsubscribe", "send", "ping", "auth", "hello", "", "SUBSCRIBE", "message"]
ODD_STRINGS = [
    "\ud800",  # lone high surrogate (JSON escape; json.loads hands it to Python as is)
    "\udfff",  # lone low surrogate
    "a\x00b",  # NUL
    "\u202egeneral",  # right-to-left override
    "😀" * 16,  # 4-byte UTF-8
    "general\x00",
    "ɡeneral",  # a confusable of "general"
    "../general",
    "general ",
    "GENERAL",
    "%67eneral",
    "\ufeff",
    "e\u0301" * 32,  # combining marks
    "",
]


def odd_value(rng: random.Random, depth: int = 0):
    """Any JSON value, biased towards the ones a sloppy parser chokes on."""
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, 2**80, -(2**63) - 1])
    if choice == 3:
        return rng.choice([0.5, -0.0, 1e308, 3.0])
    if choice == 4:
        return rng.choice(ODD_STRINGS)
    if choice == 5:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    if choice == 6:
        return "x" * rng.choice([63, 64, 65, 4000, 4001, 20000])
    if choice == 7 and depth < 3:
        return [odd_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 8 and depth < 3:
        return {rng.choice(["type", "room", "a"]): odd_value(rng, depth + 1)}
    if choice == 9:
        return "general"
    if choice == 10:
        return rng.choice([1, 2, 3, 999])
    return "alice-only"


def structured_frame(rng: random.Random) -> dict:
    frame = {"type": rng.choice(TYPES) if rng.random() < 0.8 else odd_value(rng)}
    for field in ("room", "after", "body", "client_id", "target_user_ids", "ref", "ticket", "token"):
        if rng.random() < 0.5:
            frame[field] = odd_value(rng)
    return frame


def near_limit(rng: random.Random, over: bool) -> str:
    skeleton = json.dumps({"type": "send", "room": "general", "body": ""})
    size = MAX_FRAME - len(skeleton) + (rng.randrange(1, 100) if over else -rng.randrange(0, 100))
    return json.dumps({"type": "send", "room": "general", "body": "b" * size})


def deep(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


def fuzz_frames(rng: random.Random, count: int):
    """(label, payload): payload is str (text frame) or bytes (binary frame)."""
    for n in range(count):
        pick = rng.randrange(14)
        if pick == 0:
            yield "random bytes", rng.randbytes(rng.randrange(1, 3000))
        elif pick == 1:
            yield "random text", "".join(chr(rng.randrange(1, 0xD7FF)) for _ in range(rng.randrange(1, 500)))
        elif pick == 2:
            depth = rng.choice([1000, 5000, 12000, 30000])  # all under 64 KiB, all past recursion
            yield f"nested {depth}", deep(depth, "list" if depth > 12000 else rng.choice(["list", "dict"]))
        elif pick == 3:
            yield "nested 100000", deep(100_000, "list")  # 200 KB: over the frame limit
        elif pick == 4:
            yield "just under 64 KiB", near_limit(rng, over=False)
        elif pick == 5:
            yield "just over 64 KiB", near_limit(rng, over=True)
        elif pick == 6:
            yield "ref types", json.dumps({"type": "ping", "ref": odd_value(rng)})
        elif pick == 7:
            room = rng.choice(["general", "alice-only", *ODD_STRINGS])
            churn = [{"type": rng.choice(["subscribe", "unsubscribe"]), "room": room} for _ in range(5)]
            yield "subscribe churn", "\n".join(json.dumps(frame) for frame in churn)
        elif pick == 8:
            yield "subscribe", json.dumps({"type": "subscribe", "room": "general", "after": odd_value(rng)})
        elif pick == 9:
            body = rng.choice(ODD_STRINGS) or "empty"
            frame = {"type": "send", "room": "general", "body": f"fuzz {n} {body}", "ref": str(n)}
            if rng.random() < 0.3:
                frame["target_user_ids"] = odd_value(rng)
            yield "send", json.dumps(frame)
        elif pick == 10:
            yield "json scalar", json.dumps(odd_value(rng))
        else:
            yield "fields", json.dumps(structured_frame(rng))


async def messages_until(socket, body: str) -> list[dict]:
    """Every message the socket receives, up to the one with ``body``."""
    got = []
    while not got or got[-1]["body"] != body:
        frame = json.loads(await socket.recv())
        if frame["type"] == "message":
            got.append(frame["message"])
    return got


class Fuzzer:
    """One user's fuzzing session: reconnects whenever the server closes with a contract code."""

    def __init__(self, server, token: str, name: str):
        self.server, self.token, self.name = server, token, name
        self.socket = None
        self.seen: list[dict] = []
        self.closes: list[int] = []
        self.probes = 0

    async def connect(self):
        self.socket = await ws.connect(f"{self.server.ws_url}?token={self.token}")
        self.check(await ws.recv_json(self.socket, timeout=10))

    def check(self, frame) -> None:
        assert isinstance(frame, dict) and frame.get("type") in SERVER_FRAMES, (self.name, frame)
        if frame["type"] == "error":
            assert frame.get("code") in ERROR_CODES, (self.name, frame)
        self.seen.append(frame)

    async def alive_or_closed_by_contract(self, label: str) -> None:
        """Ping and read up to the pong; a close must carry a contract code."""
        self.probes += 1
        ref = f"probe-{self.probes}"
        try:
            await ws.send_json(self.socket, {"type": "ping", "ref": ref})
            while True:
                frame = json.loads(await asyncio.wait_for(self.socket.recv(), 10))
                self.check(frame)
                if frame == {"type": "pong", "ref": ref}:
                    return
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            assert code in CONTRACT_CLOSES, f"{self.name}: {label!r} → close {code}"
            self.closes.append(code)
            await self.connect()

    async def run(self, rng: random.Random, deadline: float) -> None:
        await self.connect()
        loop = asyncio.get_running_loop()
        for label, payload in fuzz_frames(rng, FRAMES_PER_FUZZER):
            if loop.time() > deadline:
                break
            for part in payload.split("\n") if label == "subscribe churn" else [payload]:
                try:
                    await self.socket.send(part)
                except websockets.ConnectionClosed:
                    break
            await self.alive_or_closed_by_contract(label)
        await self.socket.close()


async def test_hostile_frames_never_crash_a_socket_or_leak_a_room(
    server_factory, alice, bob, mallory, general
):
    # Frames unthrottled, so that the fuzzers reach the parser instead of the rate limiter.
    server = server_factory(env={"NATIVE_RATE_WS_FRAMES": "0"}, name="ws-fuzz")
    alice_token, bob_token, mallory_token = await abearer(alice), await abearer(bob), await abearer(mallory)
    observer = await ws.connect(f"{server.ws_url}?token={bob_token}")
    await ws.recv_until(observer, "hello")
    await ws.send_json(observer, {"type": "subscribe", "room": "general"})
    await ws.recv_until(observer, "subscribed")
    observed = asyncio.create_task(messages_until(observer, "still here"))

    deadline = asyncio.get_running_loop().time() + TIME_BUDGET
    fuzzers = [Fuzzer(server, alice_token, "alice"), Fuzzer(server, mallory_token, "mallory")]
    await asyncio.gather(*(f.run(random.Random(SEED + n), deadline) for n, f in enumerate(fuzzers)))
    alice_fuzzer, mallory_fuzzer = fuzzers

    # The server stayed responsive: bob, who kept reading throughout, gets a fresh message.
    sender = await ws.connect(f"{server.ws_url}?token={alice_token}")
    await ws.recv_until(sender, "hello")
    await ws.send_json(sender, {"type": "send", "room": "general", "body": "still here"})
    await ws.recv_until(sender, "ack")
    bob_saw = await asyncio.wait_for(observed, 15)
    await asyncio.gather(sender.close(), observer.close())

    posted = [f for f in alice_fuzzer.seen if f["type"] == "ack"]
    for fuzzer in fuzzers:
        print(f"{fuzzer.name}: {fuzzer.probes} frames, close codes {sorted(set(fuzzer.closes))}")
    assert alice_fuzzer.probes >= 100 and mallory_fuzzer.probes >= 100, "the fuzzers ran out of time"
    assert posted, "alice's fuzzing posted nothing, so there was nothing for mallory to leak"
    assert [m["id"] for m in bob_saw] == sorted(m["id"] for m in bob_saw)
    assert {m["id"] for m in bob_saw} >= {f["id"] for f in posted}
    # Nothing of "general" ever reached mallory: no message frame, no subscription.
    assert not [f for f in mallory_fuzzer.seen if f["type"] in ("message", "subscribed", "ack")]
    response = httpx.get(
        f"{server.url}/api/native/rooms/general/history", headers={"Authorization": f"Bearer {mallory_token}"}
    )
    assert response.status_code == 403
    assert httpx.get(f"{server.url}/api/native/health").status_code == 200
    log = server.log()
    assert "Traceback" not in log and "Exception inside application" not in log, log[-3000:]
