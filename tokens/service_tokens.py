"""Service tokens: signed, stateless bearer tokens for bots and server-side workers.

``nst_`` + ``django.core.signing.dumps(payload)`` under our own salt, so a token is checked
without a database row and ``SECRET_KEY_FALLBACKS`` makes key rotation painless. The payload
carries a ``jti`` so one token can be put on the deny-list (tokens.denylist), and its issue time
so that ``revoke_user_tokens`` can kill every token of a user minted before a moment, and the
verifier can refuse a token whose lifetime (``exp - iat``) is longer than the maximum allows now.

The issue time is ``iat`` in whole seconds (as JWT writes it, and as tokens of earlier versions
carry it alone) plus ``iat_us``, its microseconds: the per-user floor is kept to the microsecond,
and a token minted in the same second as a ``revoke_user_tokens``, but after it, must work.

A jti ends with a short HMAC tag under SECRET_KEY: an operator who mistypes a jti for
``revoke_token`` is told so, instead of deny-listing an id that matches nothing.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from tokens.crypto import base62, public_id
from tokens.exceptions import ExpiredCredential, MalformedCredential

PREFIX = "nst_"
_SALT = "tokens.service-token.v1"
_JTI_SALT = "tokens.service-token.jti.v1"
_MAX_LENGTH = 1024
_JTI_BODY = 22  # public_id()'s 128 random bits
_JTI_TAG = 6  # 32 bits of HMAC, base62


@dataclass(frozen=True)
class ServiceTokenClaims:
    jti: str
    user_id: int
    name: str
    expires_at: datetime
    # None for tokens minted before ``iat`` was added: the verifier refuses them (their lifetime
    # cannot be bounded); whole seconds for tokens minted before ``iat_us`` was added.
    issued_at: datetime | None = None


def longest_lifetime() -> int:
    """Seconds a service token may live, now: NATIVE_SERVICE_TOKEN_MAX_TTL, and never more than
    the ceiling that purging counts on (settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING)."""
    return min(settings.NATIVE_SERVICE_TOKEN_MAX_TTL, settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING)


def mint(user, *, ttl: int | None = None, name: str = "") -> tuple[str, ServiceTokenClaims]:
    ttl = settings.NATIVE_SERVICE_TOKEN_TTL if ttl is None else ttl
    longest = longest_lifetime()
    if not 0 < ttl <= longest:
        raise ValueError(f"ttl must be between 1 and {longest} seconds")
    issued_at = timezone.now()
    # exp in whole seconds, rounded down: exp - iat never exceeds the ttl asked for.
    expires_at = (issued_at + timedelta(seconds=ttl)).replace(microsecond=0)
    claims = ServiceTokenClaims(new_jti(), user.pk, name[:100], expires_at, issued_at)
    payload = {
        "jti": claims.jti,
        "sub": user.pk,
        "name": claims.name,
        "iat": _whole_seconds(issued_at),
        "iat_us": issued_at.microsecond,
        "exp": _whole_seconds(expires_at),
    }
    return PREFIX + signing.dumps(payload, salt=_SALT, compress=False), claims


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _whole_seconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(seconds=1)  # exact: no float on the way


def _instant(seconds, microseconds=0) -> datetime:
    """A claim's time; ValueError for anything but integers in range."""
    for value in (seconds, microseconds):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("a time claim must be an integer")
    if not 0 <= microseconds < 1_000_000:
        raise ValueError("iat_us must be below one second")
    return _EPOCH + timedelta(seconds=seconds, microseconds=microseconds)


def _jti_tag(body: str, secret) -> str:
    digest = salted_hmac(_JTI_SALT, body, secret=secret, algorithm="sha256").digest()
    return base62(int.from_bytes(digest[:4], "big"), _JTI_TAG)


def new_jti() -> str:
    body = public_id()
    return body + _jti_tag(body, settings.SECRET_KEY)


def is_issued_jti(value: str) -> bool:
    """True when ``value`` is a jti this server (its SECRET_KEY or a fallback) could have minted."""
    if (
        not isinstance(value, str)
        or len(value) != _JTI_BODY + _JTI_TAG
        or not (value.isascii() and value.isalnum())
    ):
        return False
    body, tag = value[:_JTI_BODY], value[_JTI_BODY:]
    return any(
        constant_time_compare(_jti_tag(body, secret), tag)
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    )


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
            expires_at=_instant(payload["exp"]),
            issued_at=_instant(payload["iat"], payload.get("iat_us", 0)) if "iat" in payload else None,
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError, OverflowError):
        raise MalformedCredential() from None
    if claims.expires_at <= timezone.now():
        raise ExpiredCredential()
    return claims
