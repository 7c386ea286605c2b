"""Revocation: the one place that kills credentials, whoever asks (API, admin, manage.py).

Every path has the same effect: the credential is refused by the verifier from the next
request on, its unused tickets die, and its live sockets are told to close (4401).
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tokens.denylist import announce_change
from tokens.live import close_sockets_after_commit, credential_group, user_group
from tokens.models import NativeToken, RevokedToken, WsTicket


class UnknownTokenId(LookupError):
    """No native token with that id (and no jti was given an expiry to deny-list it)."""


@transaction.atomic
def revoke_native_tokens(tokens_qs, *, by=None, reason: str = "") -> int:
    """Revoke the live tokens in ``tokens_qs``; returns how many were live."""
    ids = list(tokens_qs.filter(revoked_at=None).values_list("pk", "public_id"))
    if not ids:
        return 0
    pks = [pk for pk, _ in ids]
    NativeToken.objects.filter(pk__in=pks, revoked_at=None).update(
        revoked_at=timezone.now(), revoked_by=by, revoked_reason=reason[:200]
    )
    WsTicket.objects.filter(native_token__in=pks).filter(used_at=None).update(used_at=timezone.now())
    close_sockets_after_commit(*(credential_group(public_id) for _, public_id in ids))
    return len(ids)


@transaction.atomic
def revoke_jti(jti: str, *, expires_at: datetime, by=None, reason: str = "") -> RevokedToken:
    """Put a service-token jti on the deny-list (idempotent: a repeat keeps the first record)."""
    entry, _ = RevokedToken.objects.get_or_create(
        jti=jti, defaults={"expires_at": expires_at, "revoked_by": by, "reason": reason[:200]}
    )  # the post_save receiver (tokens.signals) applies on_deny_listed
    return entry


def on_deny_listed(jti: str) -> None:
    """Effects of a new deny-list row, however it was added (this module or admin)."""
    WsTicket.objects.kill_unused(service_jti=jti)
    # An operator may deny-list a native token id in admin: same effect as revoking it.
    revoke_native_tokens(NativeToken.objects.filter(public_id=jti), reason="deny-listed")
    announce_change()
    close_sockets_after_commit(credential_group(jti))


def revoke_credential(credential, *, by=None, reason: str = "") -> None:
    """Revoke the credential a request or socket authenticated with (logout)."""
    if credential.native_token is not None:
        revoke_native_tokens(NativeToken.objects.filter(pk=credential.native_token.pk), by=by, reason=reason)
    else:
        revoke_jti(credential.id, expires_at=credential.expires_at, by=by, reason=reason)


def revoke_by_id(token_id: str, *, expires_at: datetime | None = None, by=None, reason: str = "") -> str:
    """``manage.py revoke_token``: a native token id, or else a service-token jti.

    Returns "native" or "service". A jti needs ``expires_at`` (when the token would expire
    anyway); without it we keep the entry for the longest service-token lifetime.
    """
    if revoke_native_tokens(NativeToken.objects.filter(public_id=token_id), by=by, reason=reason):
        return "native"
    if NativeToken.objects.filter(public_id=token_id).exists():
        return "native"  # already revoked: nothing more to do
    if expires_at is None:
        expires_at = timezone.now() + timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_MAX_TTL)
    revoke_jti(token_id, expires_at=expires_at, by=by, reason=reason)
    return "service"


@transaction.atomic
def revoke_user(user, *, by=None, reason: str = "") -> int:
    """Every native token of ``user``, and every live socket of theirs (service tokens included)."""
    count = revoke_native_tokens(NativeToken.objects.filter(user=user), by=by, reason=reason)
    WsTicket.objects.kill_unused(user=user)
    close_sockets_after_commit(user_group(user.pk))
    return count
