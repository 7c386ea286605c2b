"""The KRL in force: loading one (it replaces the last and revokes what it names), and the
parsed copy each process checks logins against.

Loading is one transaction: the new row, and the revocation of every token issued through a
key or certificate the KRL revokes (tokens.revocation, so live sockets close 4401 within the
enforcement bound in every process). Logins read the KRL's row id (one indexed query) and
re-parse only when it changed, so a KRL loaded by `manage.py` in another process is in force
for the very next login everywhere.
"""

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tokens.krl import Krl, parse_krl
from tokens.models import NativeToken, RevocationList, SshCertificate, SshKey
from tokens.revocation import revoke_native_tokens
from tokens.ssh_certificates import CertificateError, parse_certificate
from tokens.ssh_keys import SshKeyError, parse_public_key

MAX_KRL_BYTES = 64 * 1024 * 1024
_CHUNK = 500  # values per IN (...) list


@dataclass
class KrlLoad:
    """What load() did, for the operator."""

    row: RevocationList
    krl: Krl
    keys: list[str] = field(default_factory=list)  # "SHA256:… (alice)"
    certificates: list[str] = field(default_factory=list)  # "serial 7, key ID 'x', CA corp"
    tokens_revoked: int = 0


class _Cache:
    """This process's parsed copy of the KRL in force, keyed by its row id and load time (SQLite
    may give a new row the id of the deleted one)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._version: tuple | None = None
        self._krl = Krl()

    def current(self) -> Krl:
        version = RevocationList.objects.order_by("-pk").values_list("pk", "loaded_at").first()
        if version == self._version:
            return self._krl
        with self._lock:
            data = None
            if version is not None:
                data = RevocationList.objects.filter(pk=version[0]).values_list("data", flat=True).first()
            self._krl = parse_krl(bytes(data)) if data is not None else Krl()
            self._version = version if data is not None else None
            return self._krl


_cache = _Cache()


def current_krl() -> Krl:
    """The KRL in force (an empty one when none is loaded)."""
    return _cache.current()


def krl_in_force() -> RevocationList | None:
    """The row of the KRL in force, without its bytes (admin, /metrics)."""
    return RevocationList.objects.defer("data").order_by("-pk").first()


def load(data: bytes, *, source: str = "", loaded_by: str = "") -> KrlLoad:
    """Put the KRL in ``data`` in force (KrlError if it does not parse) and revoke the tokens
    issued through what it names."""
    krl = parse_krl(data)
    with transaction.atomic():
        RevocationList.objects.all().delete()
        row = RevocationList.objects.create(
            data=data,
            source=source[:255],
            loaded_by=loaded_by[:150],
            version=str(krl.version),
            generated_at=datetime.fromtimestamp(krl.generated_at, tz=UTC)
            if krl.generated_at < 2**37
            else None,
            comment=krl.comment[:255],
            summary=krl.summary(),
        )
        result = KrlLoad(row=row, krl=krl)
        fingerprints = _revoked_key_fingerprints(krl, result)
        certificate_ids = _revoked_certificates(krl, result)
        result.tokens_revoked = revoke_tokens_issued_through(
            fingerprints, certificate_ids, reason="revoked by the KRL"
        )
    return result


def revoke_tokens_issued_through(fingerprints: set[str], certificate_ids: list[int], *, reason: str) -> int:
    count = 0
    fingerprint_list = sorted(fingerprints)
    for start in range(0, len(fingerprint_list), _CHUNK):
        chunk = fingerprint_list[start : start + _CHUNK]
        keys = SshKey.objects.filter(fingerprint__in=chunk)
        tokens = NativeToken.objects.filter(Q(ssh_key_fingerprint__in=chunk) | Q(ssh_key__in=keys))
        count += revoke_native_tokens(tokens, reason=reason)
    for start in range(0, len(certificate_ids), _CHUNK):
        chunk = certificate_ids[start : start + _CHUNK]
        count += revoke_native_tokens(NativeToken.objects.filter(certificate__in=chunk), reason=reason)
    return count


def _revoked_key_fingerprints(krl: Krl, result: KrlLoad) -> set[str]:
    """Fingerprints of the plain keys the KRL revokes: registered keys checked one by one
    (SHA-1 needs the key itself), plus every SHA-256 hash and explicit key it names (which
    also reach the tokens of deleted keys and of certified keys)."""
    fingerprints = {"SHA256:" + base64.b64encode(digest).decode().rstrip("=") for digest in krl.sha256s}
    for blob in krl.keys:
        fingerprints.add(_fingerprint_of_blob(blob))
    if not (krl.keys or krl.sha1s or krl.sha256s):
        return fingerprints
    registered = SshKey.objects.select_related("user").only("public_key", "fingerprint", "user__username")
    for key in registered.iterator(chunk_size=2000):
        try:
            parsed = parse_public_key(key.public_key)
        except SshKeyError:
            continue
        if krl.revokes_key(parsed):
            fingerprints.add(key.fingerprint)
            result.keys.append(f"{key.fingerprint} ({key.user.username})")
    return fingerprints


def _fingerprint_of_blob(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _revoked_certificates(krl: Krl, result: KrlLoad) -> list[int]:
    """Certificates that logged in and could still be valid, which the KRL revokes."""
    live = SshCertificate.objects.filter(Q(valid_before=None) | Q(valid_before__gt=timezone.now()))
    revoked = []
    for record in live.select_related("authority").iterator(chunk_size=500):
        try:
            certificate = parse_certificate(record.certificate)
        except CertificateError:
            continue
        if krl.revokes_certificate(certificate):
            revoked.append(record.pk)
            authority = record.authority.name if record.authority else record.authority_fingerprint
            result.certificates.append(f"serial {record.serial}, key ID {record.key_id!r}, CA {authority}")
    return revoked
