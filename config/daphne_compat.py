"""Two fixes for daphne, installed only when daphne is the server.

1. daphne drops the ASGI close ``reason`` and, through autobahn, refuses every close code
   outside 1000 and 3000-4999, so the contract's 1009 (frame too big) would raise instead of
   closing. We send the close frame ourselves with the code and reason the app asked for,
   still refusing codes that RFC 6455 forbids on the wire.
2. daphne's access log prints the raw request URI, query string included; a client that puts
   a credential in a query string must not find it in the log.

uvicorn needs neither: it passes code and reason through and logs no query strings we accept.
"""

import sys

from native_api.redaction import redact

_SENDABLE = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))


def install() -> None:
    if "daphne.server" not in sys.modules:
        return
    from daphne.access import AccessLogGenerator
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_native_compat", False):
        return
    original_handle_reply = WebSocketProtocol.handle_reply

    def handle_reply(self, message):
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

    WebSocketProtocol.handle_reply = handle_reply
    WebSocketProtocol._native_compat = True
    AccessLogGenerator.__call__ = access_call
