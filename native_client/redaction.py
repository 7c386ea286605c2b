"""Keeps credentials out of the client's log records, at every level.

websockets logs each request line and, at DEBUG, each frame (elided to its first and last
characters). The ticket travels in the ``auth`` frame, so that frame would show it. Tail hands
websockets a logger that redacts every record first: the same ``websockets.client`` logger,
so whoever turns on DEBUG logging still sees the connection's story, minus the secrets.
"""

import logging
import re

# A credential by its prefix (native token, service token, ticket), and the value of a JSON
# "ticket"/"token" member up to its closing quote: a frame elided in the middle ("wst_ab...yz")
# still has its tail redacted.
_PREFIXED = re.compile(r"\b(?:nat|nst|wst)_[A-Za-z0-9_.:\-]*")
_JSON_SECRET = re.compile(r"""(["'](?:ticket|token)["']\s*:\s*["'])[^"']*""")
_QUERY_SECRET = re.compile(r"(?i)\b(ticket|token)=[^&\s\"']*")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    text = _JSON_SECRET.sub(rf"\g<1>{REDACTED}", text)
    text = _QUERY_SECRET.sub(rf"\1={REDACTED}", text)
    return _PREFIXED.sub(REDACTED, text)


class RedactingLogger(logging.LoggerAdapter):
    """Formats each record's message eagerly (only when the level is enabled) and redacts it."""

    def log(self, level, msg, *args, **kwargs):
        if not self.isEnabledFor(level):
            return
        msg, kwargs = self.process(msg, kwargs)
        text = str(msg) % args if args else str(msg)
        self.logger.log(level, "%s", redact(text), **kwargs)


def websocket_logger() -> RedactingLogger:
    return RedactingLogger(logging.getLogger("websockets.client"))
