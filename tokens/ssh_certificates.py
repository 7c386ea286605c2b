"""OpenSSH certificates (PROTOCOL.certkeys): parse one, check its CA's signature, and decide
whether it may log in now, from here.

decode_certificate() reads the blob as sshkey.c's cert_parse() does and verifies the CA's
signature over it, so a Certificate only ever holds what its CA signed. check_certificate()
applies the login rules of API.md that need no database: a user certificate, valid now by the
server's clock (valid_after <= now < valid_before), with at least one principal, and no critical
option we do not enforce. Which CA is trusted, and which user a principal names, is decided by
tokens.certificate_login.

Stricter than `ssh-keygen -Y verify` (docs/security.md says why): CA signatures with SHA-1
(`ssh-rsa`), CAs on security keys, subject keys we would not register (RSA under 2048 bits),
critical options other than `source-address` and `verify-required` (OpenSSH's verify ignores
them all), and `source-address` itself, which the verify command has no client address to check.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from tokens.ssh_keys import (
    PLAIN_KEY_TYPES,
    SECURITY_KEY_TYPES,
    PublicKey,
    SignatureError,
    SshKeyError,
    check_key_policy,
    decode_key,
    split_key_line,
    verify_signature,
)
from tokens.sshsig_wire import Reader, ssh_string

CERT_SUFFIX = "-cert-v01@openssh.com"
# The certificate type name of each key type: "ssh-ed25519" -> "ssh-ed25519-cert-v01@openssh.com",
# "sk-ssh-ed25519@openssh.com" -> "sk-ssh-ed25519-cert-v01@openssh.com".
CERTIFICATE_TYPES = {
    key_type.removesuffix("@openssh.com") + CERT_SUFFIX: key_type
    for key_type in PLAIN_KEY_TYPES | SECURITY_KEY_TYPES
}
USER_CERTIFICATE, HOST_CERTIFICATE = 1, 2
MAX_PRINCIPALS = 256  # SSHKEY_CERT_MAX_PRINCIPALS
FOREVER = 2**64 - 1  # valid_before of a certificate that never expires
ENFORCED_OPTIONS = ("source-address", "verify-required")
# addr_match_cidr_list() refuses anything longer or made of other characters.
_CIDR_CHARACTERS = frozenset("0123456789abcdefABCDEF.:/")
_MAX_CIDR_ENTRY = 46 + 3  # INET6_ADDRSTRLEN + "/NN"


class CertificateError(ValueError):
    """A certificate that is malformed, or whose CA signature does not verify."""


class CertificateRefused(ValueError):
    """A well-formed certificate that may not log in (its type, time, principals or options)."""


@dataclass(frozen=True)
class Certificate:
    key_type: str  # "ssh-ed25519-cert-v01@openssh.com", …
    blob: bytes  # the whole certificate, as signed by the CA and embedded in a signature
    key: PublicKey  # the certified key, which signs logins
    serial: int
    kind: int  # USER_CERTIFICATE or HOST_CERTIFICATE
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical_options: tuple[tuple[str, bytes], ...]
    extensions: tuple[tuple[str, bytes], ...]
    authority: PublicKey  # the CA key that signed it
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """The certified key's fingerprint: what `ssh-keygen -lf KEY-cert.pub` prints."""
        return self.key.fingerprint

    @property
    def openssh(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"

    @property
    def is_security_key(self) -> bool:
        return self.key.is_security_key


@dataclass(frozen=True)
class CertificateAdmission:
    """What check_certificate() found the certificate asks of the login."""

    requires_user_verification: bool


def is_certificate_line(text: str) -> bool:
    fields = text.split(maxsplit=1)
    return bool(fields) and fields[0] in CERTIFICATE_TYPES


def parse_certificate(text: str) -> Certificate:
    """Parse one "TYPE-cert-v01@openssh.com BASE64 [COMMENT]" line (a KEY-cert.pub file)."""
    try:
        key_type, blob, comment = split_key_line(text)
    except SshKeyError as exc:
        raise CertificateError(str(exc)) from None
    return decode_certificate(key_type, blob, comment)


def _subject_key(reader: Reader, key_type: str) -> PublicKey:
    """The certified key's fields, rebuilt as the plain key's blob (checked and canonical)."""
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        material = ssh_string(reader.string())
    elif key_type == "ssh-rsa":
        e, n = reader.string(), reader.string()
        material = ssh_string(e) + ssh_string(n)
    else:
        curve, point = reader.cstring(), reader.string()
        material = ssh_string(curve) + ssh_string(point)
    if key_type in SECURITY_KEY_TYPES:
        material += ssh_string(reader.cstring())  # the application
    try:
        return check_key_policy(decode_key(key_type, ssh_string(key_type.encode()) + material))
    except SshKeyError as exc:
        raise CertificateError(f"certified key: {exc}") from None


def _pairs(data: bytes) -> tuple[tuple[str, bytes], ...]:
    """Critical options or extensions: (name, data) string pairs, as cert_parse() checks them."""
    reader, pairs = Reader(data, CertificateError), []
    while not reader.at_end():
        name, value = reader.string(), reader.string()
        pairs.append((name.decode("utf-8", errors="replace"), value))
    return tuple(pairs)


def decode_certificate(key_type: str, blob: bytes, comment: str = "") -> Certificate:
    """A certificate from its blob, once its CA's signature over it verifies."""
    plain_type = CERTIFICATE_TYPES.get(key_type)
    if plain_type is None:
        raise CertificateError(f"unsupported certificate type {key_type[:60]!r}")
    reader = Reader(blob, CertificateError)
    if reader.string() != key_type.encode():
        raise CertificateError("certificate type does not match the certificate data")
    reader.string()  # the nonce: makes the signed blob unpredictable, means nothing else
    key = _subject_key(reader, plain_type)
    serial, kind = reader.uint64(), reader.uint32()
    key_id = reader.cstring()
    principals_data = reader.string()
    valid_after, valid_before = reader.uint64(), reader.uint64()
    critical, extensions = reader.string(), reader.string()
    reader.string()  # reserved
    authority_blob = reader.string()
    signed = blob[: reader.position]
    signature = reader.string()
    reader.finish()
    if kind not in (USER_CERTIFICATE, HOST_CERTIFICATE):
        raise CertificateError("unknown certificate type")
    principals, names = [], Reader(principals_data, CertificateError)
    while not names.at_end():
        if len(principals) >= MAX_PRINCIPALS:
            raise CertificateError("too many principals")
        principals.append(names.cstring().decode("utf-8", errors="replace"))
    authority = _authority_key(authority_blob)
    try:
        verify_signature(authority, signature, signed)
    except (SignatureError, InvalidSignature, ValueError, TypeError, OverflowError):
        raise CertificateError("the CA signature on the certificate does not verify") from None
    return Certificate(
        key_type=key_type,
        blob=blob,
        key=key,
        serial=serial,
        kind=kind,
        key_id=key_id.decode("utf-8", errors="replace"),
        principals=tuple(principals),
        valid_after=valid_after,
        valid_before=valid_before,
        critical_options=_pairs(critical),
        extensions=_pairs(extensions),
        authority=authority,
        comment=comment,
    )


def _authority_key(blob: bytes) -> PublicKey:
    """The CA key: a plain key (a security key or a certificate cannot be our CA)."""
    try:
        key_type = Reader(blob, SshKeyError).cstring().decode("ascii", errors="replace")
        if key_type not in PLAIN_KEY_TYPES:
            raise SshKeyError(f"unsupported CA key type {key_type[:40]!r}")
        return decode_key(key_type, blob)
    except SshKeyError as exc:
        raise CertificateError(f"CA key: {exc}") from None


# --- may it log in? -------------------------------------------------------------------------------


def check_certificate(certificate: Certificate, *, now: int, client_ip: str | None) -> CertificateAdmission:
    """Refuse (CertificateRefused) a certificate that may not log in at ``now`` from ``client_ip``."""
    if certificate.kind != USER_CERTIFICATE:
        raise CertificateRefused("it is not a user certificate")
    if now < certificate.valid_after:
        raise CertificateRefused("the certificate is not valid yet")
    if now >= certificate.valid_before:
        raise CertificateRefused("the certificate has expired")
    if not certificate.principals:
        raise CertificateRefused("the certificate names no principal")
    requires_verification = False
    sources = None
    for name, data in certificate.critical_options:
        if name == "verify-required" and not data:
            requires_verification = True
        elif name == "source-address" and sources is None:
            sources = _source_networks(data)
        elif name == "source-address":
            raise CertificateRefused("the certificate has several source-address options")
        else:
            raise CertificateRefused(f"the certificate's critical option {name[:40]!r} is not supported")
    if sources is not None and not _address_in(client_ip, sources):
        raise CertificateRefused("the client address is not allowed by the certificate's source-address")
    return CertificateAdmission(requires_user_verification=requires_verification)


def _source_networks(data: bytes) -> list:
    """The networks of a source-address option, refused where addr_match_cidr_list() is."""
    reader = Reader(data, CertificateRefused)
    text = reader.cstring()
    reader.finish()
    networks = []
    for entry in text.decode("ascii", errors="replace").split(","):
        if not entry or len(entry) > _MAX_CIDR_ENTRY or not set(entry) <= _CIDR_CHARACTERS:
            raise CertificateRefused("the certificate's source-address is invalid")
        try:
            # strict: host bits set under the mask are refused, as addr_pton_cidr() does
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError:
            raise CertificateRefused("the certificate's source-address is invalid") from None
    return networks


def _address_in(client_ip: str | None, networks: list) -> bool:
    if not client_ip:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in network for network in networks)
