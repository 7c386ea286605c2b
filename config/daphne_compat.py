"""Fixes for daphne, installed only when daphne is the server.

1. daphne drops the ASGI close ``reason`` and, through autobahn, refuses every close code
   outside 1000 and 3000-4999, so the contract's 1009 (frame too big) would raise instead of
   closing. We send the close frame ourselves with the code and reason the app asked for,
   still refusing codes that RFC 6455 forbids on the wire.
2. daphne's access log prints the raw request URI, query string included; a client that puts
   a credential in a query string must not find it in the log.
3. twisted parses every POST form body (urlencoded or multipart) before daphne sees it, and
   answers a malformed multipart body with a bare 400 of its own, outside the JSON error
   format. The app never reads form fields, so that parsing is turned off.
4. daphne gives the app no backpressure: ``websocket.send`` returns at once and twisted keeps
   whatever the kernel will not take, in memory, without limit. A client that stops reading
   would make the server hold every message of its rooms. Before each frame we look at what
   twisted still holds for the socket: more than NATIVE_WS_SEND_BUFFER bytes for longer than
   NATIVE_WS_SEND_GRACE seconds (a burst such as a resume backlog may drain meanwhile), or 16
   times that at any moment, and the socket is closed 4429 ``slow_consumer``; autobahn drops
   it a second later if the client does not answer the close, freeing the buffer.

5. twisted never writes at once: every ``transport.write`` queues the bytes, registers the
   socket for writability (an epoll_ctl), and sends on the next reactor turn, then unregisters
   it (another epoll_ctl). A fan-out writes one frame to each of hundreds of sockets, so that
   dance was most of daphne's cost per delivery. When nothing is queued ahead, we send the
   bytes at once and queue only what the kernel did not take (twisted's own writeSomeData, so
   errors are handled as it would; ordering is kept because the queue was empty).

6. autobahn formats every new connection's configuration with ``pprint.pformat`` for a debug
   line that is never printed: about a tenth of a websocket handshake's CPU (py-spy, bench
   connect). The formatting now happens only if the line is written.

7. daphne walks every connection every second or two for its reaping, pings and timeouts;
   config/daphne_timers.py runs that work only for the connections it is due for.

8. a finished connection stays held in reference cycles (autobahn, twisted's HTTP channel) until
   a garbage collection finds it; config/daphne_cycles.py cuts them when daphne forgets the
   connection, which lets live.heap freeze long-lived objects out of the collector's walk.

uvicorn needs none of this: it passes code and reason through and its ``websocket.send`` waits
while the client is not reading. Its loggers do print websocket query strings; settings.LOGGING
routes them through the same redaction.
"""

import logging
import sys
import time

from django.conf import settings

from config import daphne_timers
from live import heap
from native_api.redaction import redact

logger = logging.getLogger(__name__)

_SENDABLE = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))
_HARD_LIMIT_FACTOR = 16


def _unsent_bytes(transport) -> int:
    """Bytes twisted holds for this socket that the kernel has not taken yet (0 if unknown)."""
    # Under TLS the protocol writes to a wrapper; the buffer that grows is the TCP one below.
    while transport is not None and not hasattr(transport, "dataBuffer"):
        transport = getattr(transport, "transport", None)
    if transport is None:
        return 0
    return len(transport.dataBuffer) - transport.offset + getattr(transport, "_tempDataLen", 0)


def _is_slow_consumer(protocol) -> bool:
    limit = settings.NATIVE_WS_SEND_BUFFER
    unsent = _unsent_bytes(protocol.transport)
    if unsent <= limit:
        protocol._native_backlogged_since = None
        return False
    now = time.monotonic()
    since = getattr(protocol, "_native_backlogged_since", None) or now
    protocol._native_backlogged_since = since
    if unsent > _HARD_LIMIT_FACTOR * limit or now - since >= settings.NATIVE_WS_SEND_GRACE:
        logger.warning("websocket %s closed: slow consumer, %d bytes unsent", protocol.client_addr, unsent)
        return True
    return False


def install() -> None:
    if "daphne.server" not in sys.modules:
        return
    from daphne.access import AccessLogGenerator
    from daphne.http_protocol import WebRequest
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_native_compat", False):
        return
    original_handle_reply = WebSocketProtocol.handle_reply

    def handle_reply(self, message):
        if message.get("type") == "websocket.send" and self.state != self.STATE_CONNECTING:
            if self.state != self.STATE_OPEN:
                return  # closing: the client will not get it (and autobahn would raise)
            if _is_slow_consumer(self):
                self.sendCloseFrame(code=4429, reasonUtf8=b"slow_consumer", isReply=False)
                return
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            code = message.get("code") or 1000
            if code not in _SENDABLE:
                code = 1011
            reason = (message.get("reason") or "").encode("utf-8")[:123]
            self.sendCloseFrame(code=code, reasonUtf8=reason or None, isReply=False)
            return
        original_handle_reply(self, message)

    original_access_call = AccessLogGenerator.__call__

    def access_call(self, protocol, action, details):
        if details.get("path"):
            details = {**details, "path": redact(details["path"])}
        return original_access_call(self, protocol, action, details)

    original_request_init = WebRequest.__init__

    def request_init(self, *args, **kwargs):
        original_request_init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = request_init
    daphne_timers.install()
    heap.connections_end_without_cycles()
    _install_immediate_writes()
    _install_lazy_debug_format()
    WebSocketProtocol.handle_reply = handle_reply
    WebSocketProtocol._native_compat = True
    AccessLogGenerator.__call__ = access_call


class _LazyFormat:
    """pformat(value), computed when (if ever) the log line is rendered."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __str__(self) -> str:
        import pprint

        return pprint.pformat(self.value)

    __format__ = lambda self, spec: format(str(self), spec)  # noqa: E731


def _install_lazy_debug_format() -> None:
    import pprint

    from autobahn.websocket import protocol

    if getattr(protocol, "pformat", None) is pprint.pformat:
        protocol.pformat = _LazyFormat
        # The module's one other use must still return a str.
        protocol.Timings.__str__ = lambda self: pprint.pformat(self._timings)


def _install_immediate_writes() -> None:
    from twisted.internet import tcp

    if getattr(tcp.Connection, "_native_immediate", False):
        return
    queued_write = tcp.Connection.write

    def write(self, data):
        if (
            data
            and not self.TLS
            and self.connected
            and not self._writeDisconnected
            and not self._tempDataBuffer
            and len(self.dataBuffer) == self.offset
        ):
            sent = self.writeSomeData(data)
            if sent == len(data):
                return
            if isinstance(sent, int):
                data = data[sent:]  # the rest waits for writability, as twisted would do it
        queued_write(self, data)

    tcp.Connection.write = write
    tcp.Connection._native_immediate = True
