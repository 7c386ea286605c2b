"""When a tail reconnects, where to, and how long it waits first.

CLOSE_RULES is API.md's close-code table ("client should") as data: Tail looks a close code up
here and nowhere else. Backoff is the wait between attempts, _Servers the order of servers.
"""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from native_client.errors import StreamForbidden, StreamProtocolError, StreamStopped
from native_client.server import normalize_server


class Action(Enum):
    """What to do when a connection closes."""

    STOP = "stop"  # retrying cannot help: raise the StreamStopped subclass of the rule
    NEW_TICKET = "new ticket"  # mint a fresh ticket at once; a dead token fails to mint one
    MOVE = "move"  # this server is going away: the next server, soon, resuming with after
    BACK_OFF = "back off"  # a dependency is down: every such close counts as a failure
    RATE_LIMITED = "rate limited"  # wait at least Backoff.rate_limited
    RETRY = "retry"  # reconnect; a connection that had subscribed tries the same server first


@dataclass(frozen=True)
class CloseRule:
    action: Action
    stop_with: type[StreamStopped] | None = None
    message: str = ""


CLOSE_RULES = {
    4400: CloseRule(
        Action.STOP,
        StreamProtocolError,
        "The server closed the connection for repeated protocol violations: a bug in this client.",
    ),
    1009: CloseRule(
        Action.STOP, StreamProtocolError, "The server refused a frame as too large: a bug in this client."
    ),
    4403: CloseRule(
        Action.STOP,
        StreamForbidden,
        "The server refused this connection: the account is disabled, or this origin is not allowed. "
        "Ask an operator.",
    ),
    4401: CloseRule(Action.NEW_TICKET),  # "log in again / mint a new ticket"
    4408: CloseRule(Action.RETRY),  # "reconnect with one": every connection sends its ticket first
    4429: CloseRule(Action.RATE_LIMITED),  # "back off"
    1012: CloseRule(Action.MOVE),  # "reconnect (another process), resume with after"
    1001: CloseRule(Action.MOVE),  # going away: a shutdown, handled like a restart
    1013: CloseRule(Action.BACK_OFF),  # "reconnect with back-off"
}
DEFAULT_RULE = CloseRule(Action.RETRY)  # 1006 (killed, network), 1011, 1000, ...


def rule_for(close_code: int) -> CloseRule:
    return CLOSE_RULES.get(close_code, DEFAULT_RULE)


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


class Servers:
    """Which server to try next: a fixed list walked round-robin, or a caller's choice."""

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

    def advance(self) -> None:
        if self._urls:
            self._index = (self._index + 1) % len(self._urls)
