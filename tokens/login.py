"""SSH-key login: hand out a challenge nonce, exchange a signature over it for a bearer token."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from tokens import crypto
from tokens.exceptions import LoginRejected
from tokens.models import LoginNonce, NativeToken, SshKey
from tokens.ssh_signatures import PublicKey, SignatureError, verify_sshsig

MAX_NONCE_LENGTH = 128


@dataclass(frozen=True)
class LoginRequest:
    public_key: PublicKey  # parsed by the caller, which needs its fingerprint for rate limiting
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
    nonce = crypto.random_nonce()
    LoginNonce.objects.create(
        digest=crypto.digest(nonce),
        expires_at=timezone.now() + timedelta(seconds=settings.NATIVE_CHALLENGE_TTL),
    )
    return nonce


def consume_nonce(nonce: str) -> bool:
    """First use wins, whatever happens next; a replay, an unknown or an expired nonce loses."""
    if not nonce or len(nonce) > MAX_NONCE_LENGTH:
        return False
    return LoginNonce.objects.claim(crypto.digest(nonce))


def exchange(request: LoginRequest) -> IssuedToken:
    """Verify the signed challenge and mint a token. The nonce must already be consumed."""
    key = request.public_key
    if request.public_key_fingerprint and request.public_key_fingerprint != key.fingerprint:
        raise LoginRejected("the fingerprint does not match the public key")
    try:
        verify_sshsig(
            key, request.nonce.encode("utf-8"), request.signature, settings.NATIVE_SIGNATURE_NAMESPACE
        )
    except SignatureError:
        raise LoginRejected("the signature does not verify") from None
    ssh_key = _key_owner(key)
    if not ssh_key.user.is_active:
        raise LoginRejected("the account is disabled")
    return issue_token(
        ssh_key.user,
        ssh_key=ssh_key,
        device_name=request.device_name,
        user_agent=request.user_agent,
        client_ip=request.client_ip,
    )


def _key_owner(key) -> SshKey:
    ssh_key = SshKey.objects.select_related("user").filter(fingerprint=key.fingerprint).first()
    if ssh_key is not None:
        return ssh_key
    if not settings.NATIVE_AUTO_REGISTER:
        raise LoginRejected("unknown key")
    return register_key(None, key, name=key.comment, create_user=True)


def register_key(user, key, *, name: str = "", create_user: bool = False) -> SshKey:
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
        )


def issue_token(
    user, *, ssh_key: SshKey | None = None, device_name: str = "", user_agent: str = "", client_ip=None
) -> IssuedToken:
    """Mint a native token for ``user``; the raw value exists only in the returned object."""
    raw = crypto.mint_secret(crypto.NATIVE_TOKEN_PREFIX)
    now = timezone.now()
    token = NativeToken.objects.create(
        public_id=crypto.public_id(),
        digest=crypto.digest(raw),
        user=user,
        ssh_key=ssh_key,
        device_name=device_name[:100],
        user_agent=user_agent[:255],
        created_ip=client_ip,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.NATIVE_TOKEN_TTL),
    )
    if ssh_key is not None:
        SshKey.objects.filter(pk=ssh_key.pk).update(last_used_at=now)
    return IssuedToken(raw, token)
