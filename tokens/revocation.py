"""Revocation: the one place that kills credentials, whoever asks (API, admin, manage.py).

Every path has the same effect: the credential is refused by the verifier from the next
request on, its unused tickets die (a ticket's claim verifies the credential that minted it,
tokens.verifier.consume_ticket: nothing to burn here), and its live sockets close (4401) in
every process. The
last part is guaranteed by the change log (foundation.changelog): each revocation writes its change in
the same transaction, and every server process applies it from the database even when the push
through the channel layer is lost.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from foundation.changelog import record, record_ids
from foundation.models import Change
from tokens.models import CertificateAuthority, CredentialFloor, NativeToken, RevokedToken

# Rows per UPDATE: keeps a mass revocation's statements small (and under SQLite's variable limit).
UPDATE_BATCH = 5000


class UnknownTokenId(LookupError):
    """Neither a native token id nor a jti this server could have issued."""


@transaction.atomic
def revoke_native_tokens(tokens_qs, *, by=None, reason: str = "") -> int:
    """Revoke the live tokens in ``tokens_qs``; returns how many were live."""
    # Locked, so that a token that matches the queryset cannot slip between the read and the
    # update (PostgreSQL; SQLite's writes are serialised anyway).
    rows = list(tokens_qs.filter(revoked_at=None).select_for_update().values_list("pk", "public_id"))
    if not rows:
        return 0
    now, pks = timezone.now(), [pk for pk, _ in rows]
    for start in range(0, len(pks), UPDATE_BATCH):
        batch = pks[start : start + UPDATE_BATCH]
        NativeToken.objects.filter(pk__in=batch, revoked_at=None).update(
            revoked_at=now, revoked_by=by, revoked_reason=reason[:200]
        )
    record_ids(Change.Kind.TOKENS_REVOKED, [public_id for _, public_id in rows])
    return len(rows)


@transaction.atomic
def revoke_jti(jti: str, *, expires_at: datetime, by=None, reason: str = "") -> RevokedToken:
    """Put a service-token jti on the deny-list (idempotent: a repeat keeps the first record)."""
    entry, _ = RevokedToken.objects.get_or_create(
        jti=jti, defaults={"expires_at": expires_at, "revoked_by": by, "reason": reason[:200]}
    )  # the post_save receiver (tokens.signals) applies on_deny_listed
    return entry


def on_deny_listed(entry: RevokedToken) -> None:
    """Effects of a new deny-list row, however it was added (this module or admin)."""
    with transaction.atomic():
        # An operator may deny-list a native token id in admin: same effect as revoking it.
        revoke_native_tokens(NativeToken.objects.filter(public_id=entry.jti), reason="deny-listed")
        record_ids(Change.Kind.JTIS_DENIED, [entry.jti], expires_at=entry.expires_at.isoformat())


def revoke_credential(credential, *, by=None, reason: str = "") -> None:
    """Revoke the credential a request or socket authenticated with (logout)."""
    if credential.native_token is not None:
        revoke_native_tokens(NativeToken.objects.filter(pk=credential.native_token.pk), by=by, reason=reason)
    else:
        revoke_jti(credential.id, expires_at=credential.expires_at, by=by, reason=reason)


def revoke_by_id(
    token_id: str, *, expires_at: datetime | None = None, force_jti: bool = False, by=None, reason: str = ""
) -> str:
    """``manage.py revoke_token``: a native token id, or else a service-token jti.

    Returns "native" or "service". An id that is neither a native token id nor a jti this
    server could have issued raises UnknownTokenId, unless ``force_jti`` deny-lists it anyway
    (a jti minted before jtis carried their tag, or by a server with another key). A jti needs
    ``expires_at`` (when the token would expire anyway); without it we keep the entry for the
    lifetime ceiling, which no service token outlives (not the current maximum: a token minted
    before the maximum was lowered may live longer, and be accepted again if it is raised).
    """
    from tokens.service_tokens import is_issued_jti

    if revoke_native_tokens(NativeToken.objects.filter(public_id=token_id), by=by, reason=reason):
        return "native"
    if NativeToken.objects.filter(public_id=token_id).exists():
        return "native"  # already revoked: nothing more to do
    if not (force_jti or is_issued_jti(token_id)):
        raise UnknownTokenId(token_id)
    if expires_at is None:
        expires_at = timezone.now() + timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING)
    revoke_jti(token_id, expires_at=expires_at, by=by, reason=reason)
    return "service"


@transaction.atomic
def revoke_user(user, *, by=None, reason: str = "") -> int:
    """Every credential of ``user``: their native tokens (returns how many were live), every
    service token minted before now (and so every ticket any of them minted), and every live
    socket of theirs."""
    count = revoke_native_tokens(NativeToken.objects.filter(user=user), by=by, reason=reason)
    now = timezone.now()
    CredentialFloor.objects.update_or_create(user=user, defaults={"not_before": now})
    record(Change.Kind.USER_FLOOR, [{"user": user.pk, "not_before": now.isoformat()}])
    return count


def revoke_certificate_tokens(certificates, *, by=None, reason: str = "") -> int:
    """Every live token issued through one of ``certificates`` (SshCertificate rows)."""
    return revoke_native_tokens(
        NativeToken.objects.filter(certificate__in=certificates), by=by, reason=reason
    )


def revoke_authority_tokens(authorities, *, by=None, reason: str = "") -> int:
    """Every live token issued through a certificate of one of ``authorities``, by the CA's key
    (so a token survives neither the CA's removal nor its re-addition under another name)."""
    fingerprints = [authority.fingerprint for authority in authorities]
    tokens = NativeToken.objects.filter(certificate__authority_fingerprint__in=fingerprints)
    return revoke_native_tokens(tokens, by=by, reason=reason)


@transaction.atomic
def remove_authority(authority: CertificateAuthority, *, by=None, reason: str = "") -> int:
    """Stop trusting a CA and revoke every token issued through it; returns how many."""
    count = revoke_authority_tokens([authority], by=by, reason=reason or f"CA {authority.name} removed")
    authority.delete()
    return count
