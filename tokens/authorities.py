"""Trusting a certificate authority (``add_ssh_ca``, admin). Removing one is a revocation:
tokens.revocation.remove_authority."""

from django.db import IntegrityError, transaction

from tokens.models import CertificateAuthority
from tokens.ssh_certificates import is_certificate_line
from tokens.ssh_keys import PublicKey, SshKeyError, parse_public_key


class AuthorityError(ValueError):
    """A CA that cannot be trusted as given (its key, its name, its principals)."""


def parse_authority_key(text: str) -> PublicKey:
    """A CA's public key: a plain key we would accept for logging in (not a security key, whose
    every certificate signature would need a touch, and not a certificate)."""
    if is_certificate_line(text):
        raise AuthorityError("a certificate cannot be a CA key: give the CA's public key")
    try:
        key = parse_public_key(text)
    except SshKeyError as exc:
        raise AuthorityError(f"invalid CA public key: {exc}") from None
    if key.is_security_key:
        raise AuthorityError("a CA key on a security key is not supported")
    return key


def clean_principals(text: str) -> str:
    """The principal restriction as stored: usernames separated by commas, no patterns."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if any(char.isspace() or char in "*?!" for char in name):
            raise AuthorityError(f"principal {name[:40]!r}: give exact usernames (no spaces or patterns)")
    return ",".join(dict.fromkeys(names))


def add_authority(
    name: str, key_text: str, *, principals: str = "", added_by: str = ""
) -> CertificateAuthority:
    name = name.strip()
    if not name or len(name) > 100:
        raise AuthorityError("a CA needs a name of 1 to 100 characters")
    key = parse_authority_key(key_text)
    existing = CertificateAuthority.objects.filter(fingerprint=key.fingerprint).first()
    if existing is not None:
        raise AuthorityError(f"this key is already trusted as CA {existing.name!r}")
    try:
        with transaction.atomic():
            return CertificateAuthority.objects.create(
                name=name,
                key_type=key.key_type,
                public_key=key.openssh,
                fingerprint=key.fingerprint,
                principals=clean_principals(principals),
                added_by=added_by[:150],
            )
    except IntegrityError:
        raise AuthorityError(f"a CA named {name!r} (or with this key) already exists") from None
