"""Service tokens: signed, stateless bearer tokens for bots and server-side workers.

``nst_`` + ``django.core.signing.dumps(payload)`` under our own salt, so a token is checked
without a database row and ``SECRET_KEY_FALLBACKS`` makes key rotation painless. The payload
carries a ``jti`` so one token can be put on the deny-list (tokens.denylist).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.utils import timezone

from tokens.crypto import public_id
from tokens.exceptions import ExpiredCredential, MalformedCredential

PREFIX = "nst_"
_SALT = "tokens.service-token.v1"
_MAX_LENGTH = 1024


@dataclass(frozen=True)
class ServiceTokenClaims:
    jti: str
    user_id: int
    name: str
    expires_at: datetime
    # None for tokens minted before ``iat`` was added: treated as older than any revocation.
    issued_at: datetime | None = None


def mint(user, *, ttl: int | None = None, name: str = "") -> tuple[str, ServiceTokenClaims]:
    ttl = settings.NATIVE_SERVICE_TOKEN_TTL if ttl is None else ttl
    if not 0 < ttl <= settings.NATIVE_SERVICE_TOKEN_MAX_TTL:
        raise ValueError(f"ttl must be between 1 and {settings.NATIVE_SERVICE_TOKEN_MAX_TTL} seconds")
    issued_at = timezone.now().replace(microsecond=0)
    expires_at = issued_at + timedelta(seconds=ttl)
    claims = ServiceTokenClaims(public_id(), user.pk, name[:100], expires_at, issued_at)
    payload = {
        "jti": claims.jti,
        "sub": user.pk,
        "name": claims.name,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return PREFIX + signing.dumps(payload, salt=_SALT, compress=False), claims


def looks_like_service_token(value: str) -> bool:
    return value.startswith(PREFIX)


def read(value: str) -> ServiceTokenClaims:
    """Check signature and expiry; the deny-list is the verifier's job, not this function's."""
    if len(value) > _MAX_LENGTH or not value.isascii() or not value.startswith(PREFIX):
        raise MalformedCredential()
    try:
        payload = signing.loads(value[len(PREFIX) :], salt=_SALT)
        claims = ServiceTokenClaims(
            jti=str(payload["jti"]),
            user_id=int(payload["sub"]),
            name=str(payload.get("name", "")),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=UTC),
            issued_at=datetime.fromtimestamp(int(payload["iat"]), tz=UTC) if "iat" in payload else None,
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError, OverflowError):
        raise MalformedCredential() from None
    if claims.expires_at <= timezone.now():
        raise ExpiredCredential()
    return claims
