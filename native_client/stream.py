"""Tail a room over the websocket: reconnect, fail over, resume, and deliver each message once.

The server's half of the guarantee (API.md): ``subscribe`` with ``after`` sends every visible
message with a larger id, then ``subscribed``, then live ones, with no gap and no duplicate. The
client's half, here: remember the last id delivered, resume from it on every new connection, and
drop anything not above it. The resume point exists even before the first message arrives: it
is the ``last_message_id`` of the first ``subscribed`` (0 for an empty room), so a drop before
any message still loses nothing.

Reconnects use exponential backoff with jitter. A connection that had subscribed and then
dropped is retried on the same server first (a restart); each failed attempt moves on to the
next server of the list (a dead server). Close codes the contract marks as final (4401, 4403,
4400, 1009) and a refused room stop the tail with a StreamStopped exception instead.
"""

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpx
import websockets
from websockets.asyncio.client import connect

from native_client.api import USER_AGENT, error_from_response, normalize_server
from native_client.errors import (
    ServersUnreachable,
    StreamForbidden,
    StreamProtocolError,
    StreamUnauthorized,
)

RATE_LIMITED = 4429
MAX_FRAME = 1024 * 1024
FINAL_CLOSE_CODES = {
    4401: (
        StreamUnauthorized,
        "The server ended this session (logged out, revoked or expired): log in again.",
    ),
    4403: (StreamForbidden, "The server refused this connection (origin not allowed, or user inactive)."),
    4400: (StreamProtocolError, "The server closed the connection for protocol violations."),
    1009: (StreamProtocolError, "The server refused a frame as too large."),
}


@dataclass(frozen=True)
class Backoff:
    """Waits between reconnect attempts: about ``initial * 2**n`` after n failures, up to ``cap``.

    Jitter keeps clients that lost the same server from all coming back at the same instant.
    Being told to slow down (4429, HTTP 429) waits at least ``rate_limited`` seconds, or the
    server's Retry-After if longer.
    """

    initial: float = 0.2
    cap: float = 5.0
    rate_limited: float = 5.0

    def delay(self, failures: int, *, rate_limited: bool = False, retry_after: int | None = None) -> float:
        if rate_limited:
            floor = max(self.rate_limited, retry_after or 0)
            return floor + random.uniform(0, floor / 2)
        base = min(self.cap, self.initial * 2 ** min(failures, 20))
        return base / 2 + random.uniform(0, base / 2)


@dataclass(frozen=True)
class StreamEvent:
    """What the tail is doing, for status lines: ``subscribed`` or ``reconnecting``."""

    kind: str
    url: str
    close_code: int | None = None
    detail: str = ""
    delay: float | None = None
    last_message_id: int | None = None


class _Retry(Exception):
    """This connection is over, but another may work."""

    def __init__(self, detail: str, *, close_code: int | None = None, rate_limited=False, retry_after=None):
        super().__init__(detail)
        self.detail, self.close_code = detail, close_code
        self.rate_limited, self.retry_after = rate_limited, retry_after


class _Servers:
    """Which server to try next: a fixed list walked round-robin on failure, or a caller's choice."""

    def __init__(self, servers: str | Sequence[str] | Callable[[], str]):
        self._choose = servers if callable(servers) else None
        urls = [] if callable(servers) else [servers] if isinstance(servers, str) else list(servers)
        if self._choose is None and not urls:
            raise ValueError("tail needs at least one server URL")
        self._urls = [normalize_server(url) for url in urls]
        self._index = 0

    def pick(self) -> str:
        return normalize_server(self._choose()) if self._choose else self._urls[self._index]

    def peek(self) -> str:
        """The server the next attempt will use, when known in advance ("" for a caller's choice)."""
        return "" if self._choose else self._urls[self._index]

    def failed(self) -> None:
        if self._urls:
            self._index = (self._index + 1) % len(self._urls)


def websocket_url(server: str, ticket: str) -> str:
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s) server URL: {server!r}")
    return f"{scheme}://{parts.netloc}/api/ws/native?ticket={quote(ticket, safe='')}"


class Tail:
    """Messages of one room, live, for as long as the caller iterates ``messages()``.

    ``last_seen`` is the id of the last message delivered (or the resume point): read it to
    persist progress, pass it back as ``after`` to continue later without gap or duplicate.
    """

    def __init__(
        self,
        token: str,
        servers: str | Sequence[str] | Callable[[], str],
        room: str,
        after: int | None = None,
        *,
        backoff: Backoff | None = None,
        max_failures: int | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        on_event: Callable[[StreamEvent], None] | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.token = token
        self.room = room
        self.last_seen = after
        self.backoff = backoff or Backoff()
        self.max_failures = max_failures
        self.open_timeout = open_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.on_event = on_event
        self.http_transport = http_transport
        self._servers = _Servers(servers)
        self._subscribed = False

    async def messages(self) -> AsyncIterator[dict]:
        failures = 0
        async with httpx.AsyncClient(
            timeout=self.open_timeout, headers={"User-Agent": USER_AGENT}, transport=self.http_transport
        ) as http:
            while True:
                url = self._servers.pick()
                self._subscribed = False
                try:
                    async for message in self._session(http, url):
                        yield message
                    retry = _Retry("the connection ended")
                except _Retry as exc:
                    retry = exc
                if self._subscribed:
                    failures = 0  # it worked until now: a restart, so try the same server again first
                else:
                    failures += 1
                    self._servers.failed()
                    if self.max_failures is not None and failures >= self.max_failures:
                        raise ServersUnreachable(
                            f"Gave up after {failures} failed attempts; last: {retry.detail}",
                            close_code=retry.close_code,
                        )
                delay = self.backoff.delay(
                    failures, rate_limited=retry.rate_limited, retry_after=retry.retry_after
                )
                self._emit(
                    "reconnecting",
                    self._servers.peek(),
                    close_code=retry.close_code,
                    detail=retry.detail,
                    delay=delay,
                )
                await asyncio.sleep(delay)

    async def _session(self, http: httpx.AsyncClient, url: str) -> AsyncIterator[dict]:
        ticket = await self._mint_ticket(http, url)
        try:
            async with connect(
                websocket_url(url, ticket),
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
                max_size=MAX_FRAME,
                user_agent_header=USER_AGENT,
            ) as ws:
                async for message in self._frames(ws, url):
                    yield message
        except websockets.ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
            final = FINAL_CLOSE_CODES.get(code)
            if final:
                raise final[0](final[1], close_code=code, reason=reason) from None
            raise _Retry(
                f"connection closed ({code}{' ' + reason if reason else ''})",
                close_code=code,
                rate_limited=code == RATE_LIMITED,
            ) from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise _Retry(f"cannot connect to {url}: {type(exc).__name__}") from None

    async def _mint_ticket(self, http: httpx.AsyncClient, url: str) -> str:
        try:
            response = await http.post(
                f"{url}/api/native/ws-ticket", headers={"Authorization": f"Bearer {self.token}"}
            )
        except httpx.TransportError as exc:
            raise _Retry(f"cannot reach {url}: {type(exc).__name__}") from None
        if response.status_code in (200, 201):
            try:
                return response.json()["ticket"]
            except (ValueError, KeyError, TypeError):
                raise _Retry("the server sent no ticket") from None
        error = error_from_response(response)
        if error.status == 401:
            raise StreamUnauthorized(f"{error.detail} Log in again.")
        if error.status == 403:
            raise StreamForbidden(error.detail)
        raise _Retry(
            f"ticket refused: {error.detail}", rate_limited=error.status == 429, retry_after=error.retry_after
        )

    async def _frames(self, ws, url: str) -> AsyncIterator[dict]:
        hello = await self._recv(ws)
        if hello.get("type") != "hello":
            raise _Retry("the server did not say hello")
        subscribe = {"type": "subscribe", "room": self.room}
        if self.last_seen is not None:
            subscribe["after"] = self.last_seen
        await ws.send(json.dumps(subscribe))
        while True:
            frame = await self._recv(ws)
            kind = frame.get("type")
            if kind == "message":
                message = frame.get("message")
                if not isinstance(message, dict) or message.get("room") != self.room:
                    continue
                message_id = message.get("id")
                if not isinstance(message_id, int) or (
                    self.last_seen is not None and message_id <= self.last_seen
                ):
                    continue  # already delivered (backlog and live overlap, or a replay after resume)
                self.last_seen = message_id
                yield message
            elif kind == "subscribed" and frame.get("room") == self.room:
                self._subscribed = True
                if self.last_seen is None:
                    self.last_seen = frame.get("last_message_id") or 0
                self._emit("subscribed", url, last_message_id=frame.get("last_message_id"))
            elif kind == "unsubscribed" and frame.get("room") == self.room:
                if frame.get("reason") == "membership_revoked":
                    raise StreamForbidden(
                        f"You were removed from room {self.room!r}.", reason="membership_revoked"
                    )
                raise _Retry("the server ended the subscription")
            elif kind == "error":
                self._on_error(frame)

    async def _recv(self, ws) -> dict:
        """The next JSON object frame. Until subscribed, a silent server counts as a failure."""
        while True:
            try:
                if self._subscribed:
                    raw = await ws.recv()
                else:
                    raw = await asyncio.wait_for(ws.recv(), self.open_timeout)
            except TimeoutError:
                raise _Retry("the server did not answer in time") from None
            try:
                frame = json.loads(raw)
            except ValueError:
                continue  # not ours to interpret; the contract only sends JSON objects
            if isinstance(frame, dict):
                return frame

    def _on_error(self, frame: dict) -> None:
        code = frame.get("code")
        detail = str(frame.get("detail") or code)
        if code == "forbidden":
            raise StreamForbidden(f"You may not read room {self.room!r}: not a member, or no such room.")
        if code == "invalid_request":
            raise StreamProtocolError(f"The server rejected our frame: {detail}")
        if code == "rate_limited":
            raise _Retry("rate limited", rate_limited=True)
        if code == "unavailable":
            raise _Retry(f"server unavailable: {detail}")

    def _emit(self, kind: str, url: str, **details) -> None:
        if self.on_event is not None:
            self.on_event(StreamEvent(kind, url, **details))


async def tail(token: str, servers, room: str, after: int | None = None, **options) -> AsyncIterator[dict]:
    """Functional form of ``Tail(...).messages()``."""
    async for message in Tail(token, servers, room, after, **options).messages():
        yield message
