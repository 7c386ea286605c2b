"""Removes credentials from text on its way to a log line.

Query strings may carry ``ticket`` or ``token`` (websocket connects), and any text may quote
a bearer token (``nat_…``, ``nst_…``). Neither may reach a log, not even as a prefix.
"""

import re

_QUERY_SECRET = re.compile(r"(?i)\b(ticket|token|nonce|signature)=[^&\s\"']*")
_BEARER = re.compile(r"\b(nat|nst|wst)_[A-Za-z0-9_.:\-]+")
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*[:=,]\s*[\"']?bearer\s+)[^\s\"',]+")


def redact(text: str) -> str:
    text = _QUERY_SECRET.sub(r"\1=[redacted]", text)
    text = _AUTH_HEADER.sub(r"\1[redacted]", text)
    return _BEARER.sub(r"\1_[redacted]", text)
