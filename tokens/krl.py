"""OpenSSH key revocation lists (KRLs, `ssh-keygen -k`): parse one, and ask what it revokes.

No maintained Python library reads KRLs, so this follows OpenSSH's krl.c (PROTOCOL.krl)
section by section: certificates revoked by serial (lists, ranges and bitmaps) or by key ID,
for one CA or for any CA; plain keys revoked explicitly or by their SHA-1 or SHA-256 hash;
extension sections (an unknown critical one refuses the whole KRL, as OpenSSH does). A KRL
that OpenSSH refuses to load is refused here too (KrlError), and tests/test_krl_differential.py
checks both against `ssh-keygen -Q` on KRLs that `ssh-keygen -k` generates.

Signature sections are skipped without being checked, as current OpenSSH does (9.4 dropped
KRL signatures; PROTOCOL.krl recommends an SSHSIG over the file instead). A KRL is trusted
because an operator loads it, not because of what it carries.

Two places where we refuse what OpenSSH would load: a CA key of a type we cannot parse (DSA),
and a CA key blob that is not in canonical form. Both stop `load_krl` with a message, never
silently: a KRL we only partly understood would revoke less than its author meant.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field

from tokens.ssh_certificates import Certificate
from tokens.ssh_keys import PublicKey, SshKeyError, decode_key
from tokens.sshsig_wire import Reader

MAGIC = b"SSHKRL\n\0"
FORMAT_VERSION = 1

SECTION_CERTIFICATES = 1
SECTION_EXPLICIT_KEY = 2
SECTION_FINGERPRINT_SHA1 = 3
SECTION_SIGNATURE = 4
SECTION_FINGERPRINT_SHA256 = 5
SECTION_EXTENSION = 255

CERT_SERIAL_LIST = 0x20
CERT_SERIAL_RANGE = 0x21
CERT_SERIAL_BITMAP = 0x22
CERT_KEY_ID = 0x23
CERT_EXTENSION = 0x39

_U64_LIMIT = 2**64
_MAX_BITMAP_BYTES = 16384 // 8 + 1  # sshbuf_get_bignum2_bytes_direct's limit


class KrlError(ValueError):
    """A KRL that OpenSSH would refuse to load (or that we cannot read in full)."""


@dataclass
class CertificateRevocations:
    """Certificates of one CA (or of any CA) revoked by serial or by key ID."""

    serial_ranges: list[tuple[int, int]] = field(default_factory=list)  # merged, sorted
    key_ids: set[str] = field(default_factory=set)

    def add_range(self, low: int, high: int) -> None:
        if low == 0 or low > high:
            raise KrlError("invalid certificate serial range")  # ssh_krl_revoke_cert_by_serial_range
        self.serial_ranges.append((low, high))

    def merge(self) -> None:
        merged: list[tuple[int, int]] = []
        for low, high in sorted(self.serial_ranges):
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
            else:
                merged.append((low, high))
        self.serial_ranges = merged

    def revokes_serial(self, serial: int) -> bool:
        index = bisect.bisect_right(self.serial_ranges, (serial, _U64_LIMIT)) - 1
        return index >= 0 and self.serial_ranges[index][0] <= serial <= self.serial_ranges[index][1]

    @property
    def serial_count(self) -> int:
        return sum(high - low + 1 for low, high in self.serial_ranges)


@dataclass
class Krl:
    version: int = 0
    generated_at: int = 0  # Unix seconds
    comment: str = ""
    # By the CA's key blob (canonical); None: certificates of any CA.
    certificates: dict[bytes | None, CertificateRevocations] = field(default_factory=dict)
    keys: set[bytes] = field(default_factory=set)  # plain key blobs
    sha1s: set[bytes] = field(default_factory=set)
    sha256s: set[bytes] = field(default_factory=set)
    signatures_skipped: int = 0

    def revokes_key(self, key: PublicKey) -> str | None:
        """Why ``key`` (a plain key, or a certificate's key) is revoked, or None."""
        if hashlib.sha1(key.blob).digest() in self.sha1s:  # noqa: S324 - the KRL names keys by SHA-1
            return "its SHA-1 hash is in the KRL"
        if hashlib.sha256(key.blob).digest() in self.sha256s:
            return "its SHA-256 hash is in the KRL"
        if key.blob in self.keys:
            return "it is listed in the KRL"
        return None

    def revokes_certificate(self, certificate: Certificate) -> str | None:
        """Why ``certificate`` is revoked (itself, its key, or its CA's key), or None; as
        ssh_krl_check_key() decides."""
        reason = self.revokes_key(certificate.key)
        if reason:
            return f"the certified key is revoked: {reason}"
        for authority in (certificate.authority.blob, None):
            revoked = self.certificates.get(authority)
            if revoked is None:
                continue
            if certificate.key_id in revoked.key_ids:
                return "its key ID is revoked"
            # Serial 0 means "no serial": OpenSSH never revokes it by serial.
            if certificate.serial and revoked.revokes_serial(certificate.serial):
                return "its serial is revoked"
        reason = self.revokes_key(certificate.authority)
        return f"its CA key is revoked: {reason}" if reason else None

    def summary(self) -> dict[str, int]:
        """Counts for operators (load_krl's output, admin, /metrics)."""
        return {
            "certificate_authorities": sum(1 for ca in self.certificates if ca is not None),
            "any_ca_sections": int(None in self.certificates),
            "serials": sum(revoked.serial_count for revoked in self.certificates.values()),
            "key_ids": sum(len(revoked.key_ids) for revoked in self.certificates.values()),
            "keys": len(self.keys),
            "sha1_hashes": len(self.sha1s),
            "sha256_hashes": len(self.sha256s),
        }


def parse_krl(data: bytes) -> Krl:
    """Read a binary KRL as ssh_krl_from_blob() does; KrlError where OpenSSH refuses it."""
    if not data.startswith(MAGIC):
        raise KrlError("not an OpenSSH KRL (bad magic)")
    reader = Reader(data[len(MAGIC) :], KrlError)
    if reader.uint32() != FORMAT_VERSION:
        raise KrlError("unsupported KRL format version")
    krl = Krl(version=reader.uint64(), generated_at=reader.uint64())
    reader.uint64()  # flags: none defined
    reader.string()  # reserved
    krl.comment = reader.cstring().decode("utf-8", errors="replace")
    while not reader.at_end():
        section_type, section = reader.raw(1)[0], reader.string()
        if section_type == SECTION_CERTIFICATES:
            _certificate_section(Reader(section, KrlError), krl)
        elif section_type == SECTION_EXPLICIT_KEY:
            krl.keys.update(_blobs(section, None))
        elif section_type == SECTION_FINGERPRINT_SHA1:
            krl.sha1s.update(_blobs(section, 20))
        elif section_type == SECTION_FINGERPRINT_SHA256:
            krl.sha256s.update(_blobs(section, 32))
        elif section_type == SECTION_EXTENSION:
            _extension(Reader(section, KrlError))
        elif section_type == SECTION_SIGNATURE:
            reader.string()  # the signature itself; its key was `section`
            krl.signatures_skipped += 1
        else:
            raise KrlError(f"unsupported KRL section type {section_type}")
    for revoked in krl.certificates.values():
        revoked.merge()
    return krl


def _blobs(section: bytes, length: int | None) -> list[bytes]:
    reader, blobs = Reader(section, KrlError), []
    while not reader.at_end():
        blob = reader.string()
        if length is not None and len(blob) != length:
            raise KrlError("a key hash in the KRL has the wrong length")
        blobs.append(blob)
    return blobs


def _extension(reader: Reader) -> None:
    """An extension (sub)section: refused if critical, since none is supported (krl.c)."""
    name = reader.cstring()
    critical = reader.raw(1)[0]
    reader.string()
    reader.finish()
    if critical:
        raise KrlError(f"the KRL has an unsupported critical extension {name[:60]!r}")


def _authority(blob: bytes) -> bytes | None:
    if not blob:
        return None
    try:
        key_type = Reader(blob, SshKeyError).cstring().decode("ascii", errors="replace")
        return decode_key(key_type, blob).blob
    except SshKeyError as exc:
        raise KrlError(f"a CA key in the KRL cannot be read: {exc}") from None


def _certificate_section(reader: Reader, krl: Krl) -> None:
    authority = _authority(reader.string())
    reader.string()  # reserved
    revoked = krl.certificates.setdefault(authority, CertificateRevocations())
    while not reader.at_end():
        subsection_type, data = reader.raw(1)[0], Reader(reader.string(), KrlError)
        if subsection_type == CERT_SERIAL_LIST:
            while not data.at_end():
                serial = data.uint64()
                revoked.add_range(serial, serial)
        elif subsection_type == CERT_SERIAL_RANGE:
            revoked.add_range(data.uint64(), data.uint64())
        elif subsection_type == CERT_SERIAL_BITMAP:
            _bitmap(data, revoked)
        elif subsection_type == CERT_KEY_ID:
            while not data.at_end():
                revoked.key_ids.add(data.cstring().decode("utf-8", errors="replace"))
        elif subsection_type == CERT_EXTENSION:
            _extension(data)
        else:
            raise KrlError(f"unsupported KRL certificate section type {subsection_type}")
        data.finish()


def _bitmap(data: Reader, revoked: CertificateRevocations) -> None:
    """Serials offset + N for every bit N set in an mpint (sshbuf_get_bignum2_bytes_direct)."""
    offset, value = data.uint64(), data.string()
    if value and value[0] & 0x80:
        raise KrlError("negative serial bitmap")
    if len(value) > _MAX_BITMAP_BYTES or (len(value) == _MAX_BITMAP_BYTES and value[0] != 0):
        raise KrlError("serial bitmap is too large")
    bits = int.from_bytes(value, "big")
    if bits and offset + bits.bit_length() - 1 >= _U64_LIMIT:
        raise KrlError("serial bitmap wraps past 2^64")
    run_start = None
    for index in range(bits.bit_length() + 1):
        if (bits >> index) & 1:
            if run_start is None:
                run_start = index
        elif run_start is not None:
            revoked.add_range(offset + run_start, offset + index - 1)
            run_start = None
