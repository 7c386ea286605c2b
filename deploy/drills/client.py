"""The drills' clients: HTTP and websockets through nginx, each from a client address of its own.

They behave as the product's client does (native_client): they log in by signing a challenge
with a real SSH key (``ssh-keygen -Y sign``), mint a ticket per connection, follow API.md's
close-code table (native_client.reconnect: 1012 move on, 1013 back off, 4401 a new ticket…) and
resume every room with ``after`` = the last id they got. Each socket's every frame is recorded,
with the time it arrived, in a SocketLog: the checker (deploy/drills/checker.py) reads them.
"""

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from deploy import topology
from native_client import signing
from native_client.reconnect import Action, Backoff, rule_for

API = f"{topology.PUBLIC_URL}/api/native/"
WS_URL = f"ws://{topology.PROXY.address('public')}/api/ws/native"
WS_OPTIONS = {
    "compression": None,
    "ping_interval": None,
    "open_timeout": 10,
    "max_size": 2**22,
    "max_queue": None,
}
BACKOFF = Backoff()  # the product client's waits between attempts


class DrillError(RuntimeError):
    """A client could not do what the drill needs within its deadline."""


class Unauthorized(DrillError):
    """The server refused the credential (401): expected only for a revoked one."""


def now() -> float:
    return time.monotonic()


class Api:
    """HTTP through nginx from one client address; every call retries within a deadline, as a
    client would through a failover (connection errors, 5xx, 429 with its Retry-After)."""

    def __init__(self, address: str, stats: "HttpStats"):
        self.address = address
        self.stats = stats
        self.http = httpx.AsyncClient(
            base_url=API,
            transport=httpx.AsyncHTTPTransport(local_address=address),
            timeout=httpx.Timeout(10.0, connect=3.0),
            headers={"User-Agent": "native-drill/1.0"},
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, *, token: str | None = None, patience: float = 60.0, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = now() + patience
        failures = 0
        while True:
            started = now()
            try:
                response = await self.http.request(method, path, headers=headers, **kw)
            except httpx.TransportError as exc:
                self.stats.failed(type(exc).__name__)
                problem = type(exc).__name__
                wait = BACKOFF.delay(failures)
            else:
                self.stats.answered(response.status_code, now() - started)
                if response.status_code < 400:
                    return response
                if response.status_code == 401:
                    raise Unauthorized(f"{method} {path}: 401 {response.text[:200]}")
                if response.status_code not in (429, 502, 503, 504):
                    raise DrillError(f"{method} {path}: {response.status_code} {response.text[:200]}")
                problem = f"HTTP {response.status_code}"
                retry_after = response.headers.get("Retry-After", "")
                wait = BACKOFF.delay(
                    failures,
                    rate_limited=response.status_code == 429,
                    retry_after=int(retry_after) if retry_after.isdigit() else None,
                )
            failures += 1
            if now() + wait > deadline:
                raise DrillError(f"{method} {path}: still failing after {patience:.0f} s ({problem})")
            await asyncio.sleep(wait)

    async def login(self, key: Path, device: str) -> dict:
        """A real login: sign a fresh challenge with the key; a retry signs a new one."""
        public_key = signing.public_key_line(key)
        deadline = now() + 60
        while True:
            challenge = (await self.call("GET", "challenge")).json()
            nonce = challenge["nonce"]
            signature = await asyncio.to_thread(signing.sign, nonce.encode(), challenge["namespace"], key)
            body = {"public_key": public_key, "nonce": nonce, "signature": signature, "device_name": device}
            try:
                return (
                    await self.call("POST", "token", json=body, patience=max(1.0, deadline - now()))
                ).json()
            except DrillError:
                if now() > deadline:
                    raise

    async def ticket(self, token: str, patience: float = 60.0) -> str:
        return (await self.call("POST", "ws-ticket", token=token, patience=patience)).json()["ticket"]

    async def history(self, token: str, room: str) -> list[dict]:
        """Every message of ``room`` the caller may see, oldest first (the truth, from the database)."""
        messages, after = [], 0
        while True:
            page = await self.call(
                "GET", f"rooms/{room}/history", token=token, params={"after": after, "limit": 200}
            )
            body = page.json()
            messages += body["messages"]
            if not body["has_more"] or not body["messages"]:
                return messages
            after = body["messages"][-1]["id"]


@dataclass
class HttpStats:
    """Every HTTP answer the clients got, by status, and the failures that had none."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    slowest: float = 0.0

    def answered(self, status: int, seconds: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.slowest = max(self.slowest, seconds)

    def failed(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass
class SocketLog:
    """One websocket, as its client saw it: every frame with its arrival time, and the close."""

    owner: str
    opened_at: float
    connection_id: str | None = None
    frames: list[tuple[float, dict]] = field(default_factory=list)
    closed_at: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    refused: bool = False  # closed before hello: the server would not take it (1013, 1012…)
    subscribed: bool = False  # it got at least one ``subscribed`` frame
    host: str | None = None  # the app host that held it (from the live-connection registry)

    def to_json(self) -> dict:
        return {
            "owner": self.owner,
            "opened_at": self.opened_at,
            "connection_id": self.connection_id,
            "host": self.host,
            "closed_at": self.closed_at,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "frames": self.frames,
        }


class Subscriber:
    """A user's live stream of some rooms, kept up through every close until told to stop.

    ``revoked_at`` is set by the drill when it revokes this subscriber's token: from then on a
    4401 is the expected end; any other end, or a new socket accepted, is for the checker to judge.
    """

    def __init__(self, name: str, user: dict, token: str, rooms: list[str], api: Api):
        self.name, self.user, self.token, self.rooms, self.api = name, user, token, list(rooms), api
        self.sockets: list[SocketLog] = []
        self.last_id: dict[str, int] = dict.fromkeys(rooms, 0)
        self.unsubscribed: dict[str, float] = {}  # room -> when we asked
        self.leaves: str | None = None  # the room this subscriber will leave halfway, if any
        self.revoking = False  # the drill is revoking its token: a 4401 is now expected
        self.revoked_at: float | None = None  # when the revocation call returned
        self.ended: str | None = None  # why it stopped before the drill did
        self.errors: list[str] = []
        self._ws = None
        self._failures = 0

    @property
    def current(self) -> SocketLog | None:
        return self.sockets[-1] if self.sockets else None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and self.ended is None:
            wait = await self._one_connection(stop)
            if wait and not stop.is_set():
                await _sleep_or_stop(stop, wait)

    async def _one_connection(self, stop: asyncio.Event) -> float:
        """Open, subscribe and read one socket until it closes; the wait before the next."""
        try:
            ticket = await self.api.ticket(self.token, patience=30)
        except Unauthorized:
            self.ended = "token refused"
            if not self.revoking:
                self.errors.append("ticket refused (401) for a credential that was not revoked")
            return 0
        except DrillError as exc:
            self.errors.append(f"no ticket: {exc}")
            self._failures += 1
            return BACKOFF.delay(self._failures)
        log = SocketLog(self.name, now())
        self.sockets.append(log)
        try:
            async with ws_connect(WS_URL, local_addr=(self.api.address, 0), **WS_OPTIONS) as ws:
                self._ws = ws
                await ws.send(json.dumps({"type": "auth", "ticket": ticket}))  # never in the URL
                await self._read(ws, log, stop)
        except ConnectionClosed as closed:
            _record_close(log, closed)
        except (OSError, InvalidHandshake, InvalidStatus, TimeoutError) as exc:
            log.closed_at, log.close_code, log.close_reason = now(), -1, type(exc).__name__
            log.refused = True
        finally:
            self._ws = None
            if log.closed_at is None:
                log.closed_at = now()
        return self._after_close(log)

    async def _read(self, ws, log: SocketLog, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            first = True
            while True:
                receive = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    receive.cancel()
                    await ws.close()
                    log.closed_at, log.close_code = now(), 1000
                    return
                frame = json.loads(receive.result())
                log.frames.append((now(), frame))
                if first:
                    first = False
                    if frame.get("type") != "hello":
                        self.errors.append(f"first frame was not hello: {frame}")
                        return
                    log.connection_id = frame.get("connection_id")
                    for room in self.rooms:
                        if room not in self.unsubscribed:
                            subscribe = {"type": "subscribe", "room": room, "after": self.last_id[room]}
                            await ws.send(json.dumps(subscribe))
                    continue
                if frame.get("type") == "subscribed":
                    log.subscribed = True
                if frame.get("type") == "message":
                    message = frame["message"]
                    room = message["room"]
                    self.last_id[room] = max(self.last_id.get(room, 0), message["id"])
        finally:
            stopping.cancel()

    def _after_close(self, log: SocketLog) -> float:
        """The wait before the next attempt, by native_client's rules (native_client/stream.py):
        a socket that had subscribed and is told to move on comes back at once; failures in a
        row (refused, a dependency down, nothing subscribed yet) back off exponentially."""
        if log.connection_id is None:
            log.refused = True
        code = log.close_code or 1006
        rule = rule_for(code)
        if code == 4401:
            if self.revoking:
                self.ended = "revoked"
            else:
                self.errors.append("closed 4401 without a revocation")
            return 0  # a fresh ticket at once: a dead token fails to mint one
        if rule.action is Action.STOP:
            self.ended = f"closed {code}"
            self.errors.append(f"closed {code} {log.close_reason}")
            return 0
        if rule.action is Action.MOVE:
            self._failures = 0 if log.subscribed else self._failures + 1
        elif rule.action in (Action.BACK_OFF, Action.RATE_LIMITED) or not log.subscribed:
            self._failures += 1
        else:
            self._failures = 0
        return BACKOFF.delay(self._failures, rate_limited=rule.action is Action.RATE_LIMITED)

    async def unsubscribe(self, room: str) -> None:
        """Leave ``room`` for good: the checker expects nothing of it after ``unsubscribed``."""
        self.unsubscribed[room] = now()
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(json.dumps({"type": "unsubscribe", "room": room}))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()


def _record_close(log: SocketLog, closed: ConnectionClosed) -> None:
    log.closed_at = now()
    if closed.rcvd is None:
        log.close_code, log.close_reason = 1006, ""
    else:
        log.close_code, log.close_reason = closed.rcvd.code, closed.rcvd.reason


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


@dataclass
class Post:
    """One message a poster sent, and what the server said about it."""

    client_id: str
    room: str
    targets: list[int]
    path: str  # "rest" or "ws"
    started_at: float
    acked_at: float | None = None
    id: int | None = None
    attempts: int = 0


class Poster:
    """Posts ``count`` messages at ``rate`` per second (bounded by ``until``), REST and websocket
    sends in turn; a post that gets no answer is retried with the same client_id until acked."""

    def __init__(self, name: str, user: dict, token: str, rooms: list[str], api: Api, targets_for):
        self.name, self.user, self.token, self.rooms, self.api = name, user, token, rooms, api
        self.targets_for = targets_for  # (n, room) -> [user ids] or []
        self.posts: list[Post] = []
        self.errors: list[str] = []
        self.sockets: list[SocketLog] = []
        self._ws = None

    async def run(self, count: int, rate: float, until: float) -> None:
        started = now()
        for n in range(count):
            at = started + n / rate
            if at > until:
                break
            if at > now():
                await asyncio.sleep(at - now())
            room = self.rooms[n % len(self.rooms)]
            post = Post(f"{self.name}-{n}", room, self.targets_for(n, room), "ws" if n % 2 else "rest", now())
            self.posts.append(post)
            try:
                await (self._send_ws(post, until) if post.path == "ws" else self._send_rest(post, until))
            except DrillError as exc:
                self.errors.append(str(exc))
        if self._ws is not None:
            await self._ws.close()
            log = self.sockets[-1]
            log.closed_at, log.close_code = now(), 1000

    def body(self, post: Post) -> dict:
        # The send time travels in the body: every receiver can tell how late it is.
        body = {"body": f"{post.client_id} {post.started_at:.6f}", "client_id": post.client_id}
        if post.targets:
            body["target_user_ids"] = post.targets
        return body

    async def _send_rest(self, post: Post, until: float) -> None:
        post.attempts += 1
        response = await self.api.call(
            "POST",
            f"rooms/{post.room}/messages",
            token=self.token,
            json=self.body(post),
            patience=max(5.0, until - now() + 30),
        )
        post.id, post.acked_at = response.json()["id"], now()

    async def _send_ws(self, post: Post, until: float) -> None:
        frame = {"type": "send", "room": post.room, **self.body(post)}
        deadline = max(now() + 5.0, until + 30)
        failures = 0
        while now() < deadline:
            post.attempts += 1
            try:
                if self._ws is None:
                    await self._connect()
                await self._ws.send(json.dumps(frame))
                while True:
                    reply = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
                    self.sockets[-1].frames.append((now(), reply))
                    if reply.get("type") == "ack" and reply.get("client_id") == post.client_id:
                        post.id, post.acked_at = reply["id"], now()
                        return
                    if reply.get("type") == "error":
                        break  # unavailable: resend the same client_id after a pause
            except (ConnectionClosed, OSError, InvalidHandshake, InvalidStatus, TimeoutError) as exc:
                if self.sockets and self.sockets[-1].closed_at is None:
                    log = self.sockets[-1]
                    if isinstance(exc, ConnectionClosed):
                        _record_close(log, exc)
                    else:
                        log.closed_at, log.close_code, log.close_reason = now(), -1, type(exc).__name__
                if self._ws is not None:
                    await self._ws.close()
                self._ws = None
            failures += 1
            await asyncio.sleep(BACKOFF.delay(failures))
        raise DrillError(f"{post.client_id}: no ack before the drill's deadline")

    async def _connect(self) -> None:
        log = SocketLog(self.name, now())
        self.sockets.append(log)
        self._ws, hello = await open_socket(self.api, self.token)
        log.frames.append((now(), hello))
        log.connection_id = hello["connection_id"]


async def open_socket(api: Api, token: str):
    """(websocket, hello frame): a fresh ticket, sent in the auth frame (never in the URL)."""
    ticket = await api.ticket(token, patience=30)
    ws = await ws_connect(WS_URL, local_addr=(api.address, 0), **WS_OPTIONS)
    await ws.send(json.dumps({"type": "auth", "ticket": ticket}))
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if hello.get("type") != "hello":
        await ws.close()
        raise ConnectionError(f"expected hello, got {hello}")
    return ws, hello
