"""Removes credentials from text on its way to a log line.

Servers log request lines as the client wrote them, while the app reads them decoded: a
websocket connect with ``?%74icket=%77st_…`` authenticates, because ``urllib.parse.parse_qs``
decodes percent-escapes and ``+`` in names and values. So every rule here decides on the decoded
text, whatever the encoding of the raw one, and removes the raw text:

1. ``Authorization: Bearer …`` as a header would be quoted.
2. A ``name=value`` pair whose name, percent-decoded (repeatedly) and lower-cased, ends in a
   credential word (``ticket`` and ``token``, which the app reads; ``nonce``, ``signature``,
   ``secret``, ``password``; and so ``access_token`` or ``csrfmiddlewaretoken``). Every such pair
   is redacted, repeated ones included, with ``&`` or ``;`` as the separator (the app only splits
   at ``&``; more is safer).
3. A part of a URL (between ``/ ? & ; = ,`` or whitespace) that holds a percent-escape and,
   decoded, contains something credential-shaped: ``/api/native/%6Eat_…``.
4. Anything credential-shaped as written: ``nat_``, ``nst_``, ``wst_`` and what follows, after a
   word boundary (even a short piece: an 8-character prefix is a leak too), or glued to other
   text when it is long enough to be a real one.

Over-redaction is cheap (a log line loses a value), a leak is not: when in doubt, redact.
"""

import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
_SECRET_PARAMETER = re.compile(r"(ticket|token|nonce|signature|secret|password)$")
_PAIR = re.compile(r"(?<![A-Za-z0-9%+._~\-])(?P<name>[A-Za-z0-9%+._~\-]+)=(?P<value>[^&;\s\"'<>]*)")
_ESCAPED_PART = re.compile(r"[^/?&;=,\s\"'<>]*%[0-9A-Fa-f]{2}[^/?&;=,\s\"'<>]*")
_BEARER = re.compile(r"\b(nat|nst|wst)_[A-Za-z0-9_.:\-]+")
_GLUED = re.compile(r"(?:nat|nst|wst)_[A-Za-z0-9]{16}[A-Za-z0-9_.:\-]*")
_SHAPED = re.compile(r"\b(?:nat|nst|wst)_[A-Za-z0-9]|(?:nat|nst|wst)_[A-Za-z0-9]{16}")
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*[:=,]\s*[\"']?bearer\s+)[^\s\"',]+")
_DECODE_ROUNDS = 4  # %2525…: each round peels one layer


def decoded(text: str) -> str:
    """``text`` percent-decoded (and ``+`` as a space) until it no longer changes."""
    for _ in range(_DECODE_ROUNDS):
        plain = unquote_plus(text)
        if plain == text:
            break
        text = plain
    return text


def _redact_pair(match: re.Match) -> str:
    name = decoded(match["name"]).strip().lower()
    if _SECRET_PARAMETER.search(name):
        return f"{match['name']}={REDACTED}"
    return match[0]


def _redact_escaped(match: re.Match) -> str:
    return REDACTED if _SHAPED.search(decoded(match[0])) else match[0]


def redact(text: str) -> str:
    text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
    if "=" in text:
        text = _PAIR.sub(_redact_pair, text)
    if "%" in text:
        text = _ESCAPED_PART.sub(_redact_escaped, text)
    text = _BEARER.sub(rf"\1_{REDACTED}", text)
    return _GLUED.sub(REDACTED, text)
