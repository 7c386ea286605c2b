"""daphne's periodic checks, run for the connections they concern instead of for every one.

daphne's Server walks every connection once a second (``application_checker``: reap finished
application instances, forget closed connections) and every two seconds (``timeout_checker``:
each connection's ``check_timeouts``, which sends the websocket pings and enforces the
timeouts). With tens of thousands of idle sockets those walks were the server's idle CPU
(``bench scale``, py-spy: about 13 µs per socket per second, more than a core at 100,000).
Here the same per-connection work runs only where something is due:

- Reaping: a connection is visited when its application instance finishes (a done callback)
  or the connection closes (``protocol_disconnected``), and then once a second while it is
  closed with its application still running, to cancel it after ``application_close_timeout``.
- Timeouts: each connection waits in the one-second bucket of its next deadline (its next
  ping, its connect or websocket timeout, its HTTP timeout; filed again when its websocket
  opens); a tick once a second runs
  ``check_timeouts`` for the connections of the buckets that are due and files each again at
  its next deadline. An idle socket costs one check per ping interval, the ping itself.

The per-connection work is daphne's own (``check_timeouts``; ``application_checker``'s body is
copied from daphne 4.2.3, which requirements.txt pins), so what happens to a connection, and
when, is unchanged to within the one-second tick daphne has too.
"""

import asyncio
import heapq
import logging
import math
import time
from concurrent.futures import CancelledError

from config import daphne_cycles

# daphne's own logger, so that its warnings read as they always did.
logger = logging.getLogger("daphne.server")

TICK_SECONDS = 1.0


class _Schedule:
    """One server's due work: connections to reap, and connections filed by next deadline."""

    def __init__(self):
        self.to_reap = set()
        self.buckets = {}  # whole second -> the connections whose next check falls in it
        self.keys = []  # heap of the buckets' seconds

    def file(self, protocol, deadline: float | None) -> None:
        """File (or move) ``protocol`` to the bucket of ``deadline``; None: nothing will fall due."""
        previous = getattr(protocol, "_native_due_at", None)
        if previous is not None and previous in self.buckets:
            self.buckets[previous].discard(protocol)
        protocol._native_due_at = None
        if deadline is None:
            return
        key = math.floor(deadline) + 1  # the first tick strictly after the deadline
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = set()
            heapq.heappush(self.keys, key)
        bucket.add(protocol)
        protocol._native_due_at = key

    def pop_due(self, now: float) -> list:
        due = []
        while self.keys and self.keys[0] <= now:
            due.extend(self.buckets.pop(heapq.heappop(self.keys)))
        for protocol in due:
            protocol._native_due_at = None
        return due


def _schedule(server) -> _Schedule:
    schedule = server.__dict__.get("_native_schedule")
    if schedule is None:
        schedule = server._native_schedule = _Schedule()
    return schedule


def _next_deadline(server, protocol, now: float) -> float | None:
    """When ``check_timeouts`` could next do something for this connection."""
    from daphne.ws_protocol import WebSocketProtocol

    if isinstance(protocol, WebSocketProtocol):
        opened = getattr(protocol, "socket_opened", now)  # not yet set inside onConnect
        deadlines = []
        if protocol.state == protocol.STATE_CONNECTING:
            deadlines.append(opened + server.websocket_connect_timeout)
        elif protocol.state == protocol.STATE_OPEN:
            deadlines.append(getattr(protocol, "last_ping", now) + server.ping_interval)
        if server.websocket_timeout >= 0:
            deadlines.append(opened + server.websocket_timeout)
        return min(deadlines, default=None)
    if server.http_timeout:
        return getattr(protocol, "request_start", now) + server.http_timeout
    return None


def _check_application(server, protocol, details) -> None:
    """daphne 4.2.3's ``application_checker`` body, for one connection."""
    disconnected = details.get("disconnected", None)
    application_instance = details.get("application_instance", None)
    overdue = disconnected and time.time() - disconnected > server.application_close_timeout
    if overdue and application_instance and not application_instance.done():
        logger.warning(
            "Application instance %r for connection %s took too long to shut down and was killed.",
            application_instance,
            repr(protocol),
        )
        application_instance.cancel()
    if application_instance and application_instance.done():
        try:
            exception = application_instance.exception()
        except (CancelledError, asyncio.CancelledError):
            pass
        else:
            if exception:
                if isinstance(exception, KeyboardInterrupt):
                    server.stop()
                else:
                    logger.error("Exception inside application: %s", exception, exc_info=exception)
                    if not disconnected:
                        protocol.handle_exception(exception)
        del server.connections[protocol]["application_instance"]
        application_instance = None
    if not application_instance and disconnected:
        del server.connections[protocol]
        daphne_cycles.release(protocol)


def _call_later(delay: float, function) -> None:
    from twisted.internet import reactor  # daphne installed its reactor before calling us

    reactor.callLater(delay, function)


def on_connected(server, protocol) -> None:
    """A new connection, or a websocket that just opened (its next deadline is now its ping)."""
    _schedule(server).file(protocol, _next_deadline(server, protocol, time.time()))


def on_disconnected(server, protocol) -> None:
    _schedule(server).to_reap.add(protocol)
    daphne_cycles.handshake_done(protocol)


def on_application_started(server, protocol) -> None:
    instance = server.connections.get(protocol, {}).get("application_instance")
    if instance is not None:
        to_reap = _schedule(server).to_reap
        instance.add_done_callback(lambda _done: to_reap.add(protocol))


def application_checker(server) -> None:
    try:
        schedule = _schedule(server)
        to_reap = schedule.to_reap
        for protocol in list(to_reap):
            details = server.connections.get(protocol)
            if details is not None:
                _check_application(server, protocol, details)
                details = server.connections.get(protocol)
            if details is None:
                schedule.file(protocol, None)  # forgotten: its bucket must not keep it alive
            # Still wanted only while closed with its application running.
            if details is None or not details.get("disconnected"):
                to_reap.discard(protocol)
    finally:
        _call_later(TICK_SECONDS, server.application_checker)


def timeout_checker(server) -> None:
    try:
        schedule = _schedule(server)
        for protocol in schedule.pop_due(time.time()):
            if protocol not in server.connections:
                continue  # reaped since it was filed
            try:
                protocol.check_timeouts()
            except Exception:  # one connection's failure must not stop everyone's pings
                logger.exception("timeout check failed for %r", protocol)
            if protocol in server.connections:
                schedule.file(protocol, _next_deadline(server, protocol, time.time()))
    finally:
        _call_later(TICK_SECONDS, server.timeout_checker)


def install() -> None:
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(Server, "_native_timers", False):
        return
    original_on_open = WebSocketProtocol.onOpen
    original_connected = Server.protocol_connected
    original_disconnected = Server.protocol_disconnected
    original_create_application = Server.create_application

    def protocol_connected(self, protocol):
        original_connected(self, protocol)
        on_connected(self, protocol)

    def protocol_disconnected(self, protocol):
        original_disconnected(self, protocol)
        on_disconnected(self, protocol)

    def create_application(self, protocol, scope):
        queue = original_create_application(self, protocol, scope)
        on_application_started(self, protocol)
        return queue

    def on_open(self):
        original_on_open(self)
        on_connected(self.server, self)

    WebSocketProtocol.onOpen = on_open
    Server.protocol_connected = protocol_connected
    Server.protocol_disconnected = protocol_disconnected
    Server.create_application = create_application
    Server.application_checker = application_checker
    Server.timeout_checker = timeout_checker
    Server._native_timers = True
