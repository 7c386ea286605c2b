"""SSH-key login: hand out a challenge nonce, exchange a signature over it for a bearer token.

The signer is a registered key (plain or security key) or a certificate of a trusted CA
(tokens.certificate_login). Either way the KRL in force is checked (tokens.krl_store), and a
security key's signature must pass tokens.security_keys' rules before a token is issued.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from tokens import certificate_login, challenges, crypto
from tokens.exceptions import LoginRejected
from tokens.krl_store import current_krl
from tokens.models import NativeToken, SecurityKeyCounter, SshCertificate, SshKey
from tokens.security_keys import SecurityKeyRefused, check_flags
from tokens.ssh_certificates import Certificate
from tokens.ssh_signatures import PublicKey, SecurityKeySignature, SignatureError, verify_sshsig


@dataclass(frozen=True)
class LoginRequest:
    # parsed by the caller, which needs its fingerprint for rate limiting
    public_key: PublicKey | Certificate
    nonce: str
    signature: str
    public_key_fingerprint: str | None = None
    device_name: str = ""
    user_agent: str = ""
    client_ip: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    raw: str  # shown to the client once, never stored
    token: NativeToken


def issue_challenge() -> str:
    """A login nonce; nothing is stored (tokens.challenges)."""
    return challenges.issue()


def consume_nonce(nonce: str) -> bool:
    """First use wins, whatever happens next; a replay, an unknown or an expired nonce loses."""
    return challenges.consume(nonce)


def exchange(request: LoginRequest) -> IssuedToken:
    """Verify the signed challenge and mint a token. The nonce must already be consumed."""
    signer = request.public_key
    if request.public_key_fingerprint and request.public_key_fingerprint != signer.fingerprint:
        raise LoginRejected("the fingerprint does not match the public key")
    try:
        report = verify_sshsig(
            signer, request.nonce.encode("utf-8"), request.signature, settings.NATIVE_SIGNATURE_NAMESPACE
        )
    except SignatureError:
        raise LoginRejected("the signature does not verify") from None
    krl = current_krl()
    if isinstance(signer, Certificate):
        revoked = krl.revokes_certificate(signer)
        if revoked:
            raise LoginRejected(f"the certificate is revoked ({revoked})")
        admitted = certificate_login.admit(signer, client_ip=request.client_ip)
        user, ssh_key, certificate = admitted.user, None, admitted.record
        require_verification, not_after = admitted.requires_user_verification, admitted.expires_at
    else:
        if krl.revokes_key(signer):
            raise LoginRejected("the key is revoked")
        ssh_key = _key_owner(signer)
        user, certificate = ssh_key.user, None
        require_verification, not_after = ssh_key.verify_required, None
    if not user.is_active:
        raise LoginRejected("the account is disabled")
    if report is not None:
        _check_security_key(signer.fingerprint, report, require_verification)
    return issue_token(
        user,
        ssh_key=ssh_key,
        certificate=certificate,
        key_fingerprint=signer.fingerprint,
        not_after=not_after,
        device_name=request.device_name,
        user_agent=request.user_agent,
        client_ip=request.client_ip,
    )


def _check_security_key(fingerprint: str, report: SecurityKeySignature, require_verification: bool) -> None:
    try:
        check_flags(report, require_verification=require_verification)
    except SecurityKeyRefused as exc:
        raise LoginRejected(str(exc)) from None
    if not SecurityKeyCounter.objects.advance(fingerprint, report.counter):
        raise LoginRejected("the security key's signature counter did not go up (a cloned key?)")


def _key_owner(key) -> SshKey:
    ssh_key = SshKey.objects.select_related("user").filter(fingerprint=key.fingerprint).first()
    if ssh_key is not None:
        return ssh_key
    if not settings.NATIVE_AUTO_REGISTER:
        raise LoginRejected("unknown key")
    return register_key(None, key, name=key.comment, create_user=True)


def register_key(
    user, key, *, name: str = "", create_user: bool = False, verify_required: bool = False
) -> SshKey:
    """Attach a parsed public key to ``user`` (or to a new user named after the key)."""
    with transaction.atomic():
        if user is None and create_user:
            username = "key-" + key.fingerprint.removeprefix("SHA256:")[:16].replace("/", "_").replace(
                "+", "-"
            )
            user, _ = get_user_model().objects.get_or_create(username=username)
        return SshKey.objects.create(
            user=user,
            name=name[:100],
            key_type=key.key_type,
            public_key=key.openssh,
            fingerprint=key.fingerprint,
            verify_required=verify_required,
        )


def issue_token(
    user,
    *,
    ssh_key: SshKey | None = None,
    certificate: SshCertificate | None = None,
    key_fingerprint: str = "",
    not_after: datetime | None = None,
    device_name: str = "",
    user_agent: str = "",
    client_ip=None,
) -> IssuedToken:
    """Mint a native token for ``user``; the raw value exists only in the returned object.

    It remembers how it was issued (the key's fingerprint, the certificate) and expires no
    later than ``not_after`` (a certificate's valid_before)."""
    raw = crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX)
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.NATIVE_TOKEN_TTL)
    if not_after is not None:
        expires_at = min(expires_at, not_after)
    token = NativeToken.objects.create(
        public_id=crypto.public_id(),
        digest=crypto.digest(raw),
        user=user,
        ssh_key=ssh_key,
        ssh_key_fingerprint=key_fingerprint or (ssh_key.fingerprint if ssh_key is not None else ""),
        certificate=certificate,
        device_name=device_name[:100],
        user_agent=user_agent[:255],
        created_ip=client_ip,
        created_at=now,
        expires_at=expires_at,
    )
    if ssh_key is not None:
        SshKey.objects.filter(pk=ssh_key.pk).update(last_used_at=now)
    return IssuedToken(raw, token)
