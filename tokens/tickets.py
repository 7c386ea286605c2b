"""Websocket tickets: single-use, 30-second credentials, signed by the server.

A ticket is ``wst_`` + Django's signing of a small claim set: the ticket's own random id and
expiry, the user, and the credential that minted it (a native token's public id or a service
token's jti; for a service token also when it expires and when it was minted, since it has no
row to read them from). The signature is HMAC-SHA256 under a key derived from SECRET_KEY (one
of SECRET_KEY_FALLBACKS still verifies during a key rotation), so minting one costs a
verification of the caller and no database write at all.

Single use is recorded once, at claim: the verifier inserts the ticket's claim key into
tokens.UsedTicket, whose primary key refuses a second insert (tokens/verifier.py). The claim
also re-verifies the minting credential through the one verifier, so a ticket dies with its
credential (logout, revocation, deny-listing, a deactivated user) without any write at
revocation time. docs/security.md says why this shape and not a row per minted ticket.
"""

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.utils import timezone

from tokens.crypto import base62
from tokens.exceptions import ExpiredCredential, MalformedCredential

PREFIX = "wst_"
_SALT = "tokens.ws-ticket.v2"
_MAX_LENGTH = 512
NATIVE, SERVICE = "native", "service"
_KINDS = {"n": NATIVE, "s": SERVICE}
_CODES = {kind: code for code, kind in _KINDS.items()}


@dataclass(frozen=True)
class TicketClaims:
    """What a ticket says, once its signature has been checked."""

    random_id: str  # 128 random bits, base62
    expires_ms: int  # the ticket's expiry, in milliseconds since the epoch (as signed)
    user_id: int
    kind: str  # NATIVE or SERVICE
    credential_id: str  # the native token's public id, or the service token's jti
    # A service token's own expiry and iat (None for one minted before iat existed).
    credential_expires_at: datetime | None = None
    credential_issued_at: datetime | None = None

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires_ms / 1000, tz=UTC)

    @property
    def claim_key(self) -> str:
        """The key its single use is recorded under (tokens.UsedTicket): the expiry first, so
        keys sort by expiry and purge_tokens deletes spent claims by key range; then the random
        id, which makes it unique."""
        return _expiry_hex(self.expires_ms) + self.random_id


def claim_keys_before(moment: datetime) -> str:
    """Every claim key of a ticket that expired before ``moment`` sorts below this one."""
    return _expiry_hex(_millis(moment))


def _expiry_hex(millis: int) -> str:
    return f"{millis:012x}"  # fixed width, so text order is time order (until the year 10889)


def mint(credential) -> str:
    """A ticket for ``credential`` (a tokens.verifier.Credential just verified)."""
    expires_at = timezone.now() + timedelta(seconds=settings.NATIVE_TICKET_TTL)
    payload = {
        "r": base62(int.from_bytes(secrets.token_bytes(16), "big"), 22),
        "x": _millis(expires_at),
        "u": credential.user.pk,
        "k": _CODES[credential.kind],
        "c": credential.id,
    }
    if credential.kind == SERVICE:
        payload["ce"] = int(credential.expires_at.timestamp())
        issued = credential.issued_at
        payload["ci"] = int(issued.timestamp()) if issued is not None else None
    return PREFIX + _signer().sign_object(payload, compress=False)


def read(raw: str) -> TicketClaims:
    """Check the signature, the shape and the ticket's own expiry; no I/O. Whether it was used
    before and whether its credential still holds are the verifier's claim (tokens.verifier)."""
    if not isinstance(raw, str) or len(raw) > _MAX_LENGTH or not raw.isascii() or not raw.startswith(PREFIX):
        raise MalformedCredential()
    try:
        payload = _signer().unsign_object(raw[len(PREFIX) :])
        claims = _claims(payload)
    except (signing.BadSignature, json.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
        raise MalformedCredential() from None
    if claims.expires_at <= timezone.now():
        raise ExpiredCredential()
    return claims


def _claims(payload: dict) -> TicketClaims:
    kind = _KINDS[payload["k"]]
    random_id, credential_id = payload["r"], payload["c"]
    if not (isinstance(random_id, str) and isinstance(credential_id, str) and type(payload["u"]) is int):
        raise TypeError("ticket fields of the wrong type")
    if len(random_id) != 22 or not (random_id.isascii() and random_id.isalnum()):
        raise ValueError("not a ticket id")
    service = kind == SERVICE
    issued = payload.get("ci") if service else None
    expires_ms = payload["x"]
    if type(expires_ms) is not int or not 0 < expires_ms < 16**12:
        raise ValueError("expiry out of range")
    return TicketClaims(
        random_id=random_id,
        expires_ms=expires_ms,
        user_id=payload["u"],
        kind=kind,
        credential_id=credential_id,
        credential_expires_at=datetime.fromtimestamp(int(payload["ce"]), tz=UTC) if service else None,
        credential_issued_at=datetime.fromtimestamp(int(issued), tz=UTC) if issued is not None else None,
    )


def _signer() -> signing.Signer:
    # Built per call: settings (and so the keys) are read when used, never at import.
    return signing.Signer(salt=_SALT, fallback_keys=settings.SECRET_KEY_FALLBACKS)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
