"""Parse OpenSSH public keys and verify SSHSIG signatures (`ssh-keygen -Y sign`).

The SSHSIG envelope (OpenSSH's PROTOCOL.sshsig) is parsed here directly on top of
`cryptography` instead of using the `sshsig` package, because `sshsig` raises
NotImplementedError for ECDSA keys. Doing it ourselves gives one code path for Ed25519,
ECDSA (P-256/384/521) and RSA, and lets every failure surface as SignatureError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_ARMORED_LENGTH = 16 * 1024
MIN_RSA_BITS = 2048

_ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_ARMOR_END = "-----END SSH SIGNATURE-----"
_MAGIC = b"SSHSIG"
_VERSION = 1
_MESSAGE_HASHES = {b"sha256": hashlib.sha256, b"sha512": hashlib.sha512}
# RFC 5656 section 6.2.1: the ECDSA hash is fixed by the curve size.
_ECDSA_HASHES = {
    "ecdsa-sha2-nistp256": hashes.SHA256,
    "ecdsa-sha2-nistp384": hashes.SHA384,
    "ecdsa-sha2-nistp521": hashes.SHA512,
}
# Only the SHA-2 RSA signature algorithms; "ssh-rsa" (SHA-1) signatures are refused.
_RSA_SIGNATURE_HASHES = {b"rsa-sha2-256": hashes.SHA256, b"rsa-sha2-512": hashes.SHA512}
SUPPORTED_KEY_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", *_ECDSA_HASHES})


class SshKeyError(ValueError):
    """A public key line that cannot be used (malformed, unsupported type, RSA < 2048 bits)."""


class SignatureError(ValueError):
    """An SSHSIG that is malformed or does not verify."""


class _Reader:
    """Reads SSH wire-format fields (RFC 4251 section 5), raising `error` on any overrun."""

    def __init__(self, data: bytes, error: type[ValueError]) -> None:
        self._data = data
        self._pos = 0
        self._error = error

    def raw(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise self._error("data is truncated")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint32(self) -> int:
        return int.from_bytes(self.raw(4), "big")

    def string(self) -> bytes:
        return self.raw(self.uint32())

    def mpint(self) -> int:
        value = self.string()
        if value and value[0] & 0x80:  # two's complement: the high bit means negative
            raise self._error("negative integer")
        return int.from_bytes(value, "big")

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise self._error("unexpected trailing data")


def _ssh_string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _load_key(key_type: str, blob: bytes):
    """Return the `cryptography` key object for a blob, or raise SshKeyError."""
    line = key_type.encode() + b" " + base64.b64encode(blob)
    try:
        return serialization.load_ssh_public_key(line)
    # On hostile blobs cryptography raises all of these (e.g. IndexError for an empty EC
    # point, NotImplementedError for a compressed one).
    except (ValueError, TypeError, IndexError, NotImplementedError, UnsupportedAlgorithm):
        raise SshKeyError("key data is invalid") from None


@dataclass(frozen=True)
class PublicKey:
    """A parsed OpenSSH public key. Build it with parse_public_key() to get validation."""

    key_type: str
    blob: bytes
    comment: str = ""

    def __post_init__(self) -> None:
        # Database drivers may hand back memoryview; keep equality and hashing on bytes.
        object.__setattr__(self, "blob", bytes(self.blob))

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint exactly as `ssh-keygen -lf` prints it."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).rstrip(b"=")
        return "SHA256:" + digest.decode()

    @property
    def openssh(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"

    @property
    def bits(self) -> int:
        key = _load_key(self.key_type, self.blob)
        if isinstance(key, ed25519.Ed25519PublicKey):
            return 256
        return key.curve.key_size if isinstance(key, ec.EllipticCurvePublicKey) else key.key_size


def parse_public_key(text: str) -> PublicKey:
    """Parse one OpenSSH public key line: "TYPE BASE64 [COMMENT]"."""
    line = text.strip()
    if not line:
        raise SshKeyError("empty public key")
    if "\n" in line or "\r" in line:
        raise SshKeyError("expected a single public key line")
    fields = line.split(maxsplit=2)
    key_type = fields[0]
    if key_type not in SUPPORTED_KEY_TYPES:
        if any(field in SUPPORTED_KEY_TYPES for field in line.split()[1:]):
            raise SshKeyError("key options before the key type are not allowed")
        raise SshKeyError(f"unsupported key type {key_type[:40]!r}")
    if len(fields) < 2:
        raise SshKeyError("missing key data")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        raise SshKeyError("key data is not valid base64") from None
    inner_type = _Reader(blob, SshKeyError).string()
    if inner_type != key_type.encode():
        raise SshKeyError("key type does not match the key data")
    key = _load_key(key_type, blob)
    # Re-encoding rejects trailing bytes and non-canonical encodings, so equal keys always
    # have equal blobs (and therefore equal fingerprints).
    canonical = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    if base64.b64decode(canonical.split()[1]) != blob:
        raise SshKeyError("key data is not in canonical form")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise SshKeyError(f"RSA keys must be at least {MIN_RSA_BITS} bits")
    comment = fields[2] if len(fields) > 2 else ""
    return PublicKey(key_type=key_type, blob=blob, comment=comment)


def _dearmor(armored: str) -> bytes:
    if len(armored) > MAX_ARMORED_LENGTH:
        raise SignatureError("signature is too large")
    if not armored.isascii():
        raise SignatureError("signature contains non-ASCII characters")
    text = armored.strip()
    if (
        not text.startswith(_ARMOR_BEGIN)
        or not text.endswith(_ARMOR_END)
        or len(text) < len(_ARMOR_BEGIN) + len(_ARMOR_END)
    ):
        raise SignatureError("missing SSH SIGNATURE armour")
    body = "".join(text[len(_ARMOR_BEGIN) : -len(_ARMOR_END)].split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature is not valid base64") from None


def _verify_raw(key, key_type: str, signature: bytes, data: bytes) -> None:
    """Check the inner signature blob (string(algorithm) + string(bytes)) against data."""
    reader = _Reader(signature, SignatureError)
    algorithm = reader.string()
    sig_bytes = reader.string()
    reader.finish()
    if key_type == "ssh-ed25519" and algorithm == b"ssh-ed25519":
        key.verify(sig_bytes, data)
    elif key_type in _ECDSA_HASHES and algorithm == key_type.encode():
        point = _Reader(sig_bytes, SignatureError)
        r, s = point.mpint(), point.mpint()
        point.finish()
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_ECDSA_HASHES[key_type]()))
    elif key_type == "ssh-rsa" and algorithm in _RSA_SIGNATURE_HASHES:
        key.verify(sig_bytes, data, padding.PKCS1v15(), _RSA_SIGNATURE_HASHES[algorithm]())
    else:
        raise SignatureError("signature algorithm not allowed for this key")


def _verify(public_key: PublicKey, message: bytes, armored: str, namespace: str) -> None:
    reader = _Reader(_dearmor(armored), SignatureError)
    if reader.raw(len(_MAGIC)) != _MAGIC:
        raise SignatureError("not an SSHSIG signature")
    if reader.uint32() != _VERSION:
        raise SignatureError("unsupported SSHSIG version")
    signer = reader.string()
    signed_namespace = reader.string()
    reserved = reader.string()  # PROTOCOL.sshsig: ignore its contents (it is still signed)
    hash_algorithm = reader.string()
    signature = reader.string()
    reader.finish()
    if not hmac.compare_digest(signer, public_key.blob):
        raise SignatureError("signature was made by a different key")
    if signed_namespace != namespace.encode():
        raise SignatureError("signature namespace does not match")
    if hash_algorithm not in _MESSAGE_HASHES:
        raise SignatureError("unsupported hash algorithm")
    digest = _MESSAGE_HASHES[hash_algorithm](message).digest()
    data = _MAGIC + b"".join(
        _ssh_string(field) for field in (signed_namespace, reserved, hash_algorithm, digest)
    )
    key = _load_key(public_key.key_type, public_key.blob)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise SignatureError("RSA key is too small")  # for PublicKeys not made by parse_public_key
    _verify_raw(key, public_key.key_type, signature, data)


def verify_sshsig(public_key: PublicKey, message: bytes, armored: str, namespace: str) -> None:
    """Verify an armoured SSHSIG over exactly `message`; raise SignatureError unless valid."""
    if not namespace:
        raise SignatureError("namespace must not be empty")
    if public_key.key_type not in SUPPORTED_KEY_TYPES:
        raise SignatureError("unsupported key type")
    try:
        _verify(public_key, message, armored, namespace)
    except SignatureError:
        raise
    except SshKeyError:
        raise SignatureError("public key is unusable") from None
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None
    except (ValueError, TypeError, UnicodeError, OverflowError, UnsupportedAlgorithm):
        raise SignatureError("malformed signature") from None
