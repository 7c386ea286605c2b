"""Small pure functions for minting and checking secrets.

Bearer tokens look like ``nat_<43 base62 chars of randomness><6 base62 chars of CRC32>``,
GitHub style: the checksum lets us refuse a mistyped or made-up token without a database
query, and the prefix lets secret scanners recognise a leaked one. Only SHA-256 digests of
these values are stored. (Websocket tickets are signed instead: tokens/tickets.py.)
"""

import hashlib
import hmac
import secrets
import zlib

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_BYTES = 32  # 256 bits
_BODY_LEN = 43  # ceil(256 / log2(62))
_CHECK_LEN = 6  # ceil(32 / log2(62))

NATIVE_TOKEN_PREFIX = "nat_"


def base62(number: int, width: int) -> str:
    chars = []
    while number:
        number, rem = divmod(number, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars)).rjust(width, "0")


def _checksum(text: str) -> str:
    return base62(zlib.crc32(text.encode("ascii")), _CHECK_LEN)


def mint_secret(prefix: str) -> str:
    body = base62(int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big"), _BODY_LEN)
    return f"{prefix}{body}{_checksum(prefix + body)}"


def is_well_formed(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape and checksum of a secret minted with ``prefix``."""
    expected_len = len(prefix) + _BODY_LEN + _CHECK_LEN
    if not isinstance(value, str) or len(value) != expected_len or not value.startswith(prefix):
        return False
    if not value.isascii() or not all(c in _ALPHABET for c in value[len(prefix) :]):
        return False
    payload, check = value[:-_CHECK_LEN], value[-_CHECK_LEN:]
    return hmac.compare_digest(_checksum(payload), check)


def digest(value: str) -> str:
    """The stored form of a secret: hex SHA-256."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def public_id() -> str:
    """A non-secret identifier for a credential (token_id, jti): 128 bits, base62."""
    return base62(int.from_bytes(secrets.token_bytes(16), "big"), 22)
