"""Tail a room over the websocket: reconnect, fail over, resume, and deliver each message once.

The server's half of the guarantee (API.md): ``subscribe`` with ``after`` sends every visible
message with a larger id, then ``subscribed``, then live ones, with no gap and no duplicate. The
client's half, here: remember the last id delivered, resume from it on every new connection, and
drop anything not above it. The resume point exists even before the first message arrives: it
is the id of the newest message shown from history (``last``), else the ``last_message_id`` of
the first ``subscribed`` (0 for an empty room), so a drop before any message still loses nothing.

Each connection mints its own single-use ticket and sends it in the first frame
(``{"type": "auth", "ticket": …}``), never in the URL: URLs end up in access logs and in the
websockets library's DEBUG log. What happens when a connection closes is decided by
native_client.reconnect.CLOSE_RULES, API.md's close-code table.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpx
import websockets
from websockets.asyncio.client import connect

from native_client.errors import (
    ServersUnreachable,
    StreamForbidden,
    StreamProtocolError,
    StreamUnauthorized,
    error_from_response,
)
from native_client.reconnect import Action, Backoff, Servers, rule_for
from native_client.redaction import websocket_logger
from native_client.server import USER_AGENT

MAX_FRAME = 1024 * 1024
MAX_LAST = 200  # the largest history page API.md allows
SESSION_ENDED = "The server refused this session's token (logged out, revoked or expired): log in again."
ROOM_FORBIDDEN = "You may not read room {room!r}: you are not a member, or there is no such room."


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
    """This connection is over, but another may work; ``action`` says how to go about it."""

    def __init__(self, detail: str, *, close_code: int | None = None, action=Action.RETRY, retry_after=None):
        super().__init__(detail)
        self.detail, self.close_code, self.action, self.retry_after = detail, close_code, action, retry_after


def websocket_url(server: str) -> str:
    """The websocket endpoint of ``server``. It carries no credential: that goes in a frame."""
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s) server URL: {server!r}")
    return f"{scheme}://{parts.netloc}/api/ws/native"


class Tail:
    """Messages of one room, live, for as long as the caller iterates ``messages()``.

    ``last`` (with no ``after``): first deliver up to that many of the newest messages from
    history, then the live ones, with no gap and no duplicate between them.
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
        last: int = 0,
        backoff: Backoff | None = None,
        max_failures: int | None = None,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        on_event: Callable[[StreamEvent], None] | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ):
        if not 0 <= last <= MAX_LAST:
            raise ValueError(f"last must be between 0 and {MAX_LAST} (the history page limit)")
        self.token = token
        self.room = room
        self.last_seen = after
        self.last = last
        self.backoff = backoff or Backoff()
        self.max_failures = max_failures
        self.open_timeout = open_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.on_event = on_event
        self.http_transport = http_transport
        self._servers = Servers(servers)
        self._subscribed = False
        self._refused_in_a_row = 0  # 4401 closes since the last hello

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
                failures = self._count(retry, failures)
                if self.max_failures is not None and failures >= self.max_failures:
                    raise ServersUnreachable(
                        f"Gave up after {failures} failed attempts; last: {retry.detail}",
                        close_code=retry.close_code,
                    )
                if retry.action is Action.NEW_TICKET:
                    delay = 0.0
                else:
                    delay = self.backoff.delay(
                        failures,
                        rate_limited=retry.action is Action.RATE_LIMITED,
                        retry_after=retry.retry_after,
                    )
                self._emit(
                    "reconnecting",
                    self._servers.peek(),
                    close_code=retry.close_code,
                    detail=retry.detail,
                    delay=delay,
                )
                await asyncio.sleep(delay)

    def _count(self, retry: _Retry, failures: int) -> int:
        """Failures in a row after this attempt, moving on to the next server where called for."""
        if retry.action is Action.NEW_TICKET:
            self._refused_in_a_row += 1
            if self._refused_in_a_row > 1:  # a fresh ticket refused too: the token is no good
                raise StreamUnauthorized(SESSION_ENDED, close_code=retry.close_code)
            return failures  # the same server, at once, with a fresh ticket
        if retry.action is Action.MOVE:
            self._servers.advance()
            return 0 if self._subscribed else failures + 1
        if retry.action is Action.BACK_OFF or not self._subscribed:
            self._servers.advance()
            return failures + 1
        return 0  # it worked until now: a restart, so try the same server again first

    async def _session(self, http: httpx.AsyncClient, url: str) -> AsyncIterator[dict]:
        if self.last_seen is None and self.last > 0:
            for message in await self._recent(http, url):
                if self._is_new(message):
                    yield message
            if self.last_seen is None:
                self.last_seen = 0  # nothing to show: everything from now on is new
        ticket = await self._mint_ticket(http, url)
        try:
            async with connect(
                websocket_url(url),
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
                max_size=MAX_FRAME,
                user_agent_header=USER_AGENT,
                logger=websocket_logger(),
            ) as ws:
                await ws.send(json.dumps({"type": "auth", "ticket": ticket}))
                async for message in self._frames(ws, url):
                    yield message
        except websockets.ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
            rule = rule_for(code)
            if rule.action is Action.STOP:
                raise rule.stop_with(rule.message, close_code=code, reason=reason) from None
            detail = f"connection closed ({code}{' ' + reason if reason else ''})"
            raise _Retry(detail, close_code=code, action=rule.action) from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise _Retry(f"cannot connect to {url}: {type(exc).__name__}") from None

    async def _recent(self, http: httpx.AsyncClient, url: str) -> list[dict]:
        page = await self._get_json(
            http, "GET", f"{url}/api/native/rooms/{quote(self.room, safe='')}/history?limit={self.last}"
        )
        messages = page.get("messages") if isinstance(page, dict) else None
        if not isinstance(messages, list):
            raise _Retry("the server sent no history")
        return [m for m in messages if isinstance(m, dict)]

    async def _mint_ticket(self, http: httpx.AsyncClient, url: str) -> str:
        answer = await self._get_json(http, "POST", f"{url}/api/native/ws-ticket")
        ticket = answer.get("ticket") if isinstance(answer, dict) else None
        if not isinstance(ticket, str):
            raise _Retry("the server sent no ticket")
        return ticket

    async def _get_json(self, http: httpx.AsyncClient, method: str, url: str):
        """One authenticated HTTP call: its JSON, or the stop or retry its failure calls for."""
        try:
            response = await http.request(method, url, headers={"Authorization": f"Bearer {self.token}"})
        except httpx.TransportError as exc:
            raise _Retry(f"cannot reach {url.split('/api/')[0]}: {type(exc).__name__}") from None
        if response.status_code in (200, 201):
            try:
                return response.json()
            except ValueError:
                raise _Retry("the server sent a non-JSON answer") from None
        error = error_from_response(response)
        if error.status == 401:
            raise StreamUnauthorized(SESSION_ENDED, close_code=4401 if self._refused_in_a_row else None)
        if error.status == 403:
            raise StreamForbidden(ROOM_FORBIDDEN.format(room=self.room) if "/rooms/" in url else error.detail)
        if error.status in (400, 413):
            raise StreamProtocolError(f"The server refused our request ({error.detail}): a client bug.")
        raise _Retry(
            f"{error.detail} (HTTP {error.status})",
            action=Action.RATE_LIMITED if error.status == 429 else Action.RETRY,
            retry_after=error.retry_after,
        )

    async def _frames(self, ws, url: str) -> AsyncIterator[dict]:
        hello = await self._recv(ws)
        if hello.get("type") != "hello":
            raise _Retry("the server did not say hello")
        self._refused_in_a_row = 0
        subscribe = {"type": "subscribe", "room": self.room}
        if self.last_seen is not None:
            subscribe["after"] = self.last_seen
        await ws.send(json.dumps(subscribe))
        while True:
            frame = await self._recv(ws)
            kind = frame.get("type")
            if kind == "message":
                message = frame.get("message")
                if isinstance(message, dict) and message.get("room") == self.room and self._is_new(message):
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

    def _is_new(self, message: dict) -> bool:
        """True (and remembered) for a message above the resume point; the rest are replays."""
        message_id = message.get("id")
        if not isinstance(message_id, int) or (self.last_seen is not None and message_id <= self.last_seen):
            return False
        self.last_seen = message_id
        return True

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
            raise StreamForbidden(ROOM_FORBIDDEN.format(room=self.room))
        if code == "invalid_request":
            raise StreamProtocolError(f"The server rejected our frame: {detail} (a bug in this client)")
        if code == "rate_limited":
            raise _Retry("rate limited", action=Action.RATE_LIMITED)
        if code == "unavailable":
            raise _Retry(f"server unavailable: {detail}", action=Action.BACK_OFF)

    def _emit(self, kind: str, url: str, **details) -> None:
        if self.on_event is not None:
            self.on_event(StreamEvent(kind, url, **details))


async def tail(token: str, servers, room: str, after: int | None = None, **options) -> AsyncIterator[dict]:
    """Functional form of ``Tail(...).messages()``."""
    async for message in Tail(token, servers, room, after, **options).messages():
        yield message
