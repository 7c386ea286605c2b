"""Login challenges that cost nothing to hand out: nothing is stored until a nonce is used.

A nonce is ``<256 random bits, base64url>.<expiry, Unix milliseconds>:<HMAC-SHA256>``, signed by
``django.core.signing.Signer`` under a salt of its own: the key is derived from SECRET_KEY, and a
nonce signed with a key of SECRET_KEY_FALLBACKS still verifies during a key rotation. GET
challenge therefore writes nothing and shares nothing with other clients: no network, however
many addresses it holds, can use up something that others need to log in. (An earlier version
stored each nonce at GET challenge and capped the pending ones globally; one IPv6 /48, 65,536
rate-limit buckets of a /64, could fill that cap and lock everyone else out: issue 20.)

Single use is recorded where the nonce is used, at POST token: an INSERT of the digest of its
random part into the nonce table (tokens.models.LoginNonce), whose unique index makes a second
insert of the same nonce fail, in every process at once; on PostgreSQL a concurrent second
insert waits for the first to commit and then fails. Only nonces that verify get that far, so
a forged or expired one costs no query. A record is needed only while its nonce could still be
accepted: purge_tokens deletes it once the nonce has expired (tokens.purge.dead_nonces).
"""

import secrets
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from tokens import crypto
from tokens.models import LoginNonce

_SALT = "tokens.login-challenge.v1"
_RANDOM_BYTES = 32  # 256 bits, API.md's minimum
_ID_LENGTH = 43  # base64url of 32 bytes, unpadded
MAX_LENGTH = 128  # what we issue is about 101 characters; anything longer is not ours
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    """The clock every check reads (tests move it)."""
    return timezone.now()


def _signer() -> signing.Signer:
    # Built per call: SECRET_KEY and SECRET_KEY_FALLBACKS are read when used, not at import.
    return signing.Signer(salt=_SALT, algorithm="sha256")


def issue() -> str:
    """A fresh nonce that dies NATIVE_CHALLENGE_TTL seconds from now. No query."""
    nonce_id = secrets.token_urlsafe(_RANDOM_BYTES)
    expires_at = _now() + timedelta(seconds=settings.NATIVE_CHALLENGE_TTL)
    return _signer().sign(f"{nonce_id}.{(expires_at - _EPOCH) // timedelta(milliseconds=1)}")


def consume(nonce: str) -> bool:
    """Use ``nonce`` up. True only for the first use of a nonce this server issued (under its
    SECRET_KEY or a fallback) that has not expired; False for anything else: malformed, forged,
    expired, or used before, here or in any other process."""
    found = _read(nonce)
    if found is None:
        return False
    nonce_id, expires_at = found
    now = _now()
    if expires_at <= now:
        return False
    try:
        with transaction.atomic():
            LoginNonce.objects.create(
                digest=crypto.digest(nonce_id), created_at=now, used_at=now, expires_at=expires_at
            )
    except IntegrityError:
        return False
    return True


def _read(nonce) -> tuple[str, datetime] | None:
    """(the nonce's id, its expiry) when its signature verifies, else None. No query."""
    if not isinstance(nonce, str) or not nonce or len(nonce) > MAX_LENGTH or not nonce.isascii():
        return None
    try:
        value = _signer().unsign(nonce)
    except signing.BadSignature:
        return None
    nonce_id, _, expiry = value.partition(".")
    if len(nonce_id) != _ID_LENGTH or not (expiry.isdigit() and len(expiry) <= 15):
        return None  # signed with our key but not by issue(): refuse rather than guess
    return nonce_id, _EPOCH + timedelta(milliseconds=int(expiry))
