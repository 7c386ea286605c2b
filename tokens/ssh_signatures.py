"""Parse OpenSSH public keys and verify SSHSIG signatures (`ssh-keygen -Y sign`).

The SSHSIG envelope (OpenSSH's PROTOCOL.sshsig) is parsed here directly on top of
`cryptography` instead of using the `sshsig` package, because `sshsig` raises
NotImplementedError for ECDSA keys. Doing it ourselves gives one code path for Ed25519,
ECDSA (P-256/384/521) and RSA, and lets every failure surface as SignatureError.

verify_sshsig() accepts exactly what `ssh-keygen -Y verify` of the current OpenSSH accepts
(sshsig.c), minus our stricter policies: no DSA, security-key or certificate keys, no RSA key
under 2048 bits, armour at most 16 KiB. docs/security.md ("SSHSIG: agreement with OpenSSH")
lists the rules; tests/test_sshsig_differential.py checks them against ssh-keygen.
The armour and the wire-format readers live in tokens/sshsig_armor.py and tokens/sshsig_wire.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokens.sshsig_armor import MAX_ARMORED_LENGTH, dearmor
from tokens.sshsig_wire import Reader, ssh_string

__all__ = [
    "MAX_ARMORED_LENGTH",
    "MIN_RSA_BITS",
    "SUPPORTED_KEY_TYPES",
    "PublicKey",
    "SignatureError",
    "SshKeyError",
    "parse_public_key",
    "verify_sshsig",
]

MIN_RSA_BITS = 2048

_MAGIC = b"SSHSIG"
_VERSION = 1
_MESSAGE_HASHES = {b"sha256": hashlib.sha256, b"sha512": hashlib.sha512}
# RFC 5656 section 6.2.1: the ECDSA hash is fixed by the curve size.
_ECDSA_HASHES = {
    "ecdsa-sha2-nistp256": hashes.SHA256,
    "ecdsa-sha2-nistp384": hashes.SHA384,
    "ecdsa-sha2-nistp521": hashes.SHA512,
}
_ECDSA_CURVES = {key_type: key_type.rsplit("-", 1)[1].encode() for key_type in _ECDSA_HASHES}
# Only the SHA-2 RSA signature algorithms; "ssh-rsa" (SHA-1) signatures are refused.
_RSA_SIGNATURE_HASHES = {b"rsa-sha2-256": hashes.SHA256, b"rsa-sha2-512": hashes.SHA512}
SUPPORTED_KEY_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", *_ECDSA_HASHES})
# In a signature's embedded key, OpenSSH's key type table (sshkey_type_from_name) also names
# RSA keys after their signature algorithms.
_KEY_TYPE_NAMES = {"ssh-rsa": {b"ssh-rsa", b"rsa-sha2-256", b"rsa-sha2-512"}}


class SshKeyError(ValueError):
    """A public key line that cannot be used (malformed, unsupported type, RSA < 2048 bits)."""


class SignatureError(ValueError):
    """An SSHSIG that is malformed or does not verify."""


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
    inner_type = Reader(blob, SshKeyError).string()
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


def _is_same_key(blob: bytes, key_type: str, key) -> bool:
    """Whether the key embedded in a signature is `key`, compared by value as sshkey_equal() does.

    OpenSSH parses the embedded blob and compares the numbers, so an encoding that differs
    byte for byte (an RSA exponent with a leading zero byte, a type name ending in NUL or
    "rsa-sha2-512" for "ssh-rsa") is still the same key; a certificate of the key is not.
    """
    reader = Reader(blob, SignatureError)
    if reader.cstring() not in _KEY_TYPE_NAMES.get(key_type, {key_type.encode()}):
        return False
    if isinstance(key, ed25519.Ed25519PublicKey):
        same = reader.string() == key.public_bytes_raw()
    elif isinstance(key, ec.EllipticCurvePublicKey):
        # The uncompressed point (the only form OpenSSH reads) is unique to the key.
        point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        same = reader.cstring() == _ECDSA_CURVES[key_type] and reader.string() == point
    else:
        numbers = key.public_numbers()
        same = (reader.mpint(), reader.mpint()) == (numbers.e, numbers.n)
    reader.finish()
    return same


def _verify_raw(key, key_type: str, signature: bytes, data: bytes) -> None:
    """Check the inner signature blob (string(algorithm) + string(bytes)) against data."""
    reader = Reader(signature, SignatureError)
    algorithm = reader.cstring()
    sig_bytes = reader.string()
    reader.finish()
    if key_type == "ssh-ed25519" and algorithm == b"ssh-ed25519":
        key.verify(sig_bytes, data)
    elif key_type in _ECDSA_HASHES and algorithm == key_type.encode():
        integers = Reader(sig_bytes, SignatureError)
        r, s = integers.mpint(), integers.mpint()
        integers.finish()
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_ECDSA_HASHES[key_type]()))
    elif key_type == "ssh-rsa" and algorithm in _RSA_SIGNATURE_HASHES:
        # Like OpenSSH (and RFC 8332), left-pad a short signature to the modulus length: some
        # signers drop leading zero bytes. A longer one is refused.
        modulus_bytes = (key.key_size + 7) // 8
        if len(sig_bytes) > modulus_bytes:
            raise SignatureError("RSA signature is longer than the modulus")
        sig_bytes = sig_bytes.rjust(modulus_bytes, b"\0")
        key.verify(sig_bytes, data, padding.PKCS1v15(), _RSA_SIGNATURE_HASHES[algorithm]())
    else:
        raise SignatureError("signature algorithm not allowed for this key")


def _verify(public_key: PublicKey, message: bytes, armored: str, namespace: str) -> None:
    # Field by field as sshsig_verifyb() reads them (sshsig.c).
    reader = Reader(dearmor(armored, SignatureError), SignatureError)
    if reader.raw(len(_MAGIC)) != _MAGIC:
        raise SignatureError("not an SSHSIG signature")
    if reader.uint32() > _VERSION:
        raise SignatureError("unsupported SSHSIG version")
    signer = reader.string()
    signed_namespace = reader.cstring()
    reader.string()  # reserved: OpenSSH ignores its contents and verifies over an empty one
    hash_algorithm = reader.cstring()
    signature = reader.string()
    reader.finish()
    if signed_namespace != namespace.encode():
        raise SignatureError("signature namespace does not match")
    if hash_algorithm not in _MESSAGE_HASHES:
        raise SignatureError("unsupported hash algorithm")
    key = _load_key(public_key.key_type, public_key.blob)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise SignatureError("RSA key is too small")  # for PublicKeys not made by parse_public_key
    if not _is_same_key(signer, public_key.key_type, key):
        raise SignatureError("signature was made by a different key")
    digest = _MESSAGE_HASHES[hash_algorithm](message).digest()
    # What the signer signed, rebuilt from what we expect rather than from what was sent.
    fields = (namespace.encode(), b"", hash_algorithm, digest)
    data = _MAGIC + b"".join(ssh_string(field) for field in fields)
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
