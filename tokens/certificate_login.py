"""Who a certificate logs in as: its CA must be trusted for it, one principal must name one
active user, and the certificate must pass tokens.ssh_certificates' checks (API.md, Identity).

The certificate is recorded (SshCertificate, once per certificate) so that the tokens issued
through it remember its serial, key ID and CA, and can be revoked by any of them.
"""

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from tokens.exceptions import LoginRejected
from tokens.models import CertificateAuthority, SshCertificate
from tokens.ssh_certificates import FOREVER, Certificate, CertificateRefused, check_certificate

# A datetime holds years up to 9999; certificates valid "forever" say 2^64 - 1.
_MAX_TIMESTAMP = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class CertificateLogin:
    user: object
    record: SshCertificate
    requires_user_verification: bool
    expires_at: datetime | None  # the certificate's valid_before; None: never


def identity(certificate: Certificate) -> str:
    """What tells one certificate from another: the SHA-256 of its whole blob, as a fingerprint."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(certificate.blob).digest()).decode().rstrip("=")


def timestamp(value: int) -> datetime | None:
    if value >= FOREVER or value >= _MAX_TIMESTAMP:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def admit(certificate: Certificate, *, client_ip: str | None) -> CertificateLogin:
    """The user ``certificate`` logs in as, or LoginRejected saying why (never a secret)."""
    authority = CertificateAuthority.objects.filter(fingerprint=certificate.authority.fingerprint).first()
    if authority is None:
        raise LoginRejected("the certificate's CA is not trusted")
    try:
        admission = check_certificate(certificate, now=int(timezone.now().timestamp()), client_ip=client_ip)
    except CertificateRefused as exc:
        raise LoginRejected(str(exc)) from None
    user = _user_for(certificate, authority)
    return CertificateLogin(
        user=user,
        record=_record(certificate, authority),
        requires_user_verification=admission.requires_user_verification,
        expires_at=timestamp(certificate.valid_before),
    )


def _user_for(certificate: Certificate, authority: CertificateAuthority):
    names = [name for name in dict.fromkeys(certificate.principals) if authority.may_certify(name)]
    if not names:
        raise LoginRejected("the CA is not trusted for the certificate's principals")
    users = list(get_user_model().objects.filter(username__in=names, is_active=True)[:2])
    if not users:
        raise LoginRejected("no active user is named by the certificate's principals")
    if len(users) > 1:
        raise LoginRejected("the certificate's principals name more than one user")
    return users[0]


def _record(certificate: Certificate, authority: CertificateAuthority) -> SshCertificate:
    key = identity(certificate)
    found = SshCertificate.objects.filter(identity=key).first()
    if found is not None:
        return found
    fields = {
        "authority": authority,
        "authority_fingerprint": authority.fingerprint,
        "serial": str(certificate.serial),
        "key_id": certificate.key_id[:255],
        "principals": ",".join(certificate.principals),
        "key_type": certificate.key_type,
        "key_fingerprint": certificate.fingerprint,
        "valid_after": timestamp(certificate.valid_after) or datetime.max.replace(tzinfo=UTC),
        "valid_before": timestamp(certificate.valid_before),
        "certificate": certificate.openssh,
    }
    try:
        with transaction.atomic():
            return SshCertificate.objects.create(identity=key, **fields)
    except IntegrityError:  # its first two logins raced
        return SshCertificate.objects.get(identity=key)
