"""The one verifier. Every path that accepts a credential (REST, ws-ticket, websocket) calls
``verify_bearer`` or ``consume_ticket``; expiry, revocation, the deny-list and the checksum
are checked here and nowhere else.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Q, Subquery
from django.utils import timezone

from foundation.compiled_query import CompiledLookup
from tokens import crypto, service_tokens
from tokens.denylist import denylist
from tokens.exceptions import (
    ExpiredCredential,
    InactiveUser,
    LifetimeExceeded,
    MalformedCredential,
    RevokedCredential,
    UnknownCredential,
)
from tokens.models import NativeToken, WsTicket

LAST_USED_RESOLUTION = timedelta(seconds=60)

# The hot lookup, compiled once per database (foundation.compiled_query); order_by(): no ORDER BY
# to compile or sort for a lookup by a unique column.
_token_by_digest = CompiledLookup(
    lambda digest: NativeToken.objects.select_related("user").filter(digest=digest).order_by()[:1]
)


@dataclass(frozen=True)
class Credential:
    """Who is calling, and with which revocable credential."""

    kind: str  # "native" or "service"
    id: str  # the native token's public id, or the service token's jti
    user: object
    expires_at: datetime
    native_token: NativeToken | None = None
    # When the credential was minted (a native token's created_at, a service token's iat);
    # None for a service token minted before iat existed.
    issued_at: datetime | None = None

    @property
    def group(self) -> str:
        """The channel-layer group of sockets opened with this credential."""
        return f"cred.{self.id}"


def verify_bearer(raw: str) -> Credential:
    """A native (``nat_``) or service (``nst_``) token → Credential, or AuthenticationFailed."""
    if not isinstance(raw, str):
        raise MalformedCredential()
    if service_tokens.looks_like_service_token(raw):
        return _verify_service_token(raw)
    if not crypto.is_well_formed(raw, crypto.NATIVE_TOKEN_PREFIX):
        raise MalformedCredential()
    token = _token_by_digest.first(crypto.digest(raw))
    if token is None:
        raise UnknownCredential()
    return _check_native(token)


def consume_ticket(raw: str) -> Credential:
    """Burn a websocket ticket and return the credential that minted it, re-verified."""
    if not crypto.is_well_formed(raw, crypto.TICKET_PREFIX):
        raise MalformedCredential()
    ticket = WsTicket.objects.claim(crypto.digest(raw), **_change_head())
    if ticket is None:
        raise UnknownCredential()
    if ticket.native_token is not None:
        token = ticket.native_token
        token.user = ticket.user
        return _check_native(token)
    return _check_service_jti(
        ticket.service_jti,
        ticket.user,
        ticket.credential_expires_at,
        ticket.credential_issued_at,
        (ticket.change_epoch, ticket.change_head),
    )


def _check_native(token: NativeToken) -> Credential:
    now = timezone.now()
    if token.expires_at <= now:
        raise ExpiredCredential()
    if token.revoked_at is not None:
        raise RevokedCredential()
    _check_user(token.user)
    _touch(token, now)
    return Credential("native", token.public_id, token.user, token.expires_at, token, token.created_at)


def _change_head() -> dict:
    """Annotations for the change log's head (epoch, seq), read in the same statement as the
    credential (no extra query): the deny-list copy is synced up to it (tokens.denylist)."""
    from foundation.models import ChangeHead

    head = ChangeHead.objects.filter(pk=1)
    return {
        "change_epoch": Subquery(head.values("epoch")[:1]),
        "change_head": Subquery(head.values("seq")[:1]),
    }


def _verify_service_token(raw: str) -> Credential:
    claims = service_tokens.read(raw)
    found = list(get_user_model().objects.filter(pk=claims.user_id).annotate(**_change_head()).order_by()[:1])
    if not found:
        raise UnknownCredential()
    user = found[0]
    head = (user.change_epoch, user.change_head)
    return _check_service_jti(claims.jti, user, claims.expires_at, claims.issued_at, head)


def _check_service_jti(
    jti: str, user, expires_at: datetime, issued_at: datetime | None, head: tuple
) -> Credential:
    if expires_at <= timezone.now():
        raise ExpiredCredential()
    # Lowering NATIVE_SERVICE_TOKEN_MAX_TTL shortens every life; and since no token lives past
    # the ceiling, purging the floors and deny-list rows after it never revives one (tokens.purge).
    if issued_at is None or expires_at - issued_at > timedelta(seconds=service_tokens.longest_lifetime()):
        raise LifetimeExceeded()
    if denylist.refuses(jti, user.pk, issued_at, (head[0] or "", head[1] or 0)):
        raise RevokedCredential()
    _check_user(user)
    return Credential("service", jti, user, expires_at, issued_at=issued_at)


def _check_user(user) -> None:
    if not user.is_active:
        raise InactiveUser()


def _touch(token: NativeToken, now: datetime) -> None:
    """Record use at most once a minute per token, so authentication stays read-mostly."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at=None) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    NativeToken.objects.filter(pk=token.pk).filter(stale).update(last_used_at=now)
    token.last_used_at = now


def still_valid(credential: Credential) -> bool:
    """Re-check a credential already verified (closes the race with a revocation in between)."""
    if credential.expires_at <= timezone.now():
        return False
    if credential.native_token is not None:
        return NativeToken.objects.live().filter(pk=credential.native_token.pk).exists()
    return not denylist.refuses(credential.id, credential.user.pk, credential.issued_at, None)
