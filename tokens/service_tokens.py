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


def mint(user, *, ttl: int | None = None, name: str = "") -> tuple[str, ServiceTokenClaims]:
    ttl = settings.NATIVE_SERVICE_TOKEN_TTL if ttl is None else ttl
    if not 0 < ttl <= settings.NATIVE_SERVICE_TOKEN_MAX_TTL:
        raise ValueError(f"ttl must be between 1 and {settings.NATIVE_SERVICE_TOKEN_MAX_TTL} seconds")
    expires_at = (timezone.now() + timedelta(seconds=ttl)).replace(microsecond=0)
    claims = ServiceTokenClaims(public_id(), user.pk, name[:100], expires_at)
    payload = {"jti": claims.jti, "sub": user.pk, "name": claims.name, "exp": int(expires_at.timestamp())}
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
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError, OverflowError):
        raise MalformedCredential() from None
    if claims.expires_at <= timezone.now():
        raise ExpiredCredential()
    return claims
