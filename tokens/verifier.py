"""The one verifier. Every path that accepts a credential (REST, ws-ticket, websocket) calls
``verify_bearer`` or ``consume_ticket``; expiry, revocation, the deny-list and the checksum
are checked here and nowhere else.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from foundation.compiled_query import CompiledLookup
from tokens import crypto, service_tokens, ticket_claims, tickets
from tokens.denylist import denylist
from tokens.exceptions import (
    ExpiredCredential,
    InactiveUser,
    LifetimeExceeded,
    MalformedCredential,
    ReplayedCredential,
    RevokedCredential,
    UnknownCredential,
)
from tokens.models import CredentialFloor, NativeToken

LAST_USED_RESOLUTION = timedelta(seconds=60)


def _user_floor() -> Subquery:
    """The ``revoke_user_tokens`` floor of the row's user (CredentialFloor, by primary key), read in
    the same statement as the row: a native token created at or before it is refused, even one
    whose row the revocation could not see (a login that committed just after it read the rows)."""
    return Subquery(CredentialFloor.objects.filter(user_id=OuterRef("user_id")).values("not_before")[:1])


def _native_tokens():
    return NativeToken.objects.select_related("user").annotate(user_floor=_user_floor())


# The hot lookup, compiled once per database (foundation.compiled_query); order_by(): no ORDER BY
# to compile or sort for a lookup by a unique column.
_token_by_digest = CompiledLookup(lambda digest: _native_tokens().filter(digest=digest).order_by()[:1])

# What a ticket's claim reads with it (tokens.ticket_claims): the minting token, or for a service
# token its user and the change log's head; the "claiming" forms carry the claim's outcome.
_USER_MARK = -2_147_480_000  # a user pk no caller passes (a CompiledLookup mark), within int32


def _token_by(claiming: bool):
    extra = ticket_claims.CLAIMED if claiming else {}
    return lambda public_id: _native_tokens().filter(public_id=public_id).annotate(**extra).order_by()[:1]


def _user_by(claiming: bool):
    extra = {**ticket_claims.head_columns(), **(ticket_claims.CLAIMED if claiming else {})}
    return lambda pk: get_user_model().objects.filter(pk=pk).annotate(**extra).order_by()[:1]


_claiming_token, _token_by_public_id = CompiledLookup(_token_by(True)), CompiledLookup(_token_by(False))
_claiming_user = CompiledLookup(_user_by(True), marks=(_USER_MARK,))
_user_with_head = CompiledLookup(_user_by(False), marks=(_USER_MARK,))


@dataclass(frozen=True)
class Credential:
    """Who is calling, and with which revocable credential."""

    kind: str  # "native" or "service"
    id: str  # the native token's public id, or the service token's jti
    user: object
    expires_at: datetime
    native_token: NativeToken | None = None
    # When the credential was minted (a native token's created_at, a service token's iat, to
    # the microsecond); the verifier refuses a service token without iat, so it is always set.
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
    _check_native(token, token.user_floor)
    _touch(token, timezone.now())
    return _native_credential(token)


def consume_ticket(raw: str) -> Credential:
    """Claim a websocket ticket (single use, tokens.ticket_claims) and return the credential
    that minted it, verified now: a ticket dies with its credential, whatever killed that."""
    claims = tickets.read(raw)
    if claims.kind == tickets.NATIVE:
        token, claimed = ticket_claims.claim(
            _claiming_token, _token_by_public_id, claims, claims.credential_id
        )
        if not claimed:
            raise ReplayedCredential()
        if token is None or token.user_id != claims.user_id:
            raise UnknownCredential()
        _check_native(token, token.user_floor)
        _touch(token, timezone.now())
        return _native_credential(token)
    user, claimed = ticket_claims.claim(_claiming_user, _user_with_head, claims, claims.user_id)
    if not claimed:
        raise ReplayedCredential()
    if user is None:
        raise UnknownCredential()
    head = (user.change_epoch, user.change_head)
    return _check_service_jti(
        claims.credential_id, user, claims.credential_expires_at, claims.credential_issued_at, head
    )


def _check_native(token: NativeToken, floor: datetime | None) -> None:
    if token.expires_at <= timezone.now():
        raise ExpiredCredential()
    if token.revoked_at is not None or (floor is not None and token.created_at <= floor):
        raise RevokedCredential()
    _check_user(token.user)


def _native_credential(token: NativeToken) -> Credential:
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


def recheck(credential: Credential) -> None:
    """Verify again, from the database, a credential verified moments ago; raise what verifying
    it now would raise (InactiveUser for a deactivated user; RevokedCredential for a revoked one,
    one under its user's floor, or a deleted user's).

    For a socket that was still verifying while a change that may concern it was applied, when
    the hub cannot replay what it missed (native_api.consumer): every rule of the verifier, and
    the user's current state, not only the credential's row."""
    if credential.expires_at <= timezone.now():
        raise ExpiredCredential()
    if credential.native_token is not None:
        token = _native_tokens().filter(pk=credential.native_token.pk).first()
        if token is None:  # its user was deleted (the token went with them), or it was purged
            raise RevokedCredential()
        _check_native(token, token.user_floor)
        return
    users = get_user_model().objects.filter(pk=credential.user.pk).annotate(**_change_head()).order_by()
    user = users.first()
    if user is None:
        raise RevokedCredential()
    head = (user.change_epoch, user.change_head)
    _check_service_jti(credential.id, user, credential.expires_at, credential.issued_at, head)
