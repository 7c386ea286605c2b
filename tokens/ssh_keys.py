"""OpenSSH public keys and the raw signatures they make, including FIDO security keys.

A key is kept as its wire blob (RFC 4253 section 6.6); ``cryptography`` does the arithmetic.
Security keys (``sk-ssh-ed25519@openssh.com``, ``sk-ecdsa-sha2-nistp256@openssh.com``) are read
here field by field, because ``cryptography`` loads them as plain keys and drops their
application string, which every sk signature covers (OpenSSH's PROTOCOL.u2f): the key signs
SHA-256(application) || flags || counter || SHA-256(data), and sends the flags and counter
beside the signature. verify_signature() returns them; what to require of them (the key was
touched, a PIN was given, the counter went up) is policy, applied by tokens.security_keys.

The rules for blobs and signatures copy OpenSSH's sshkey.c, ssh-ed25519(-sk).c, ssh-ecdsa(-sk).c
and ssh-rsa.c; the SSHSIG envelope around them is tokens.ssh_signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokens.sshsig_wire import Reader, ssh_string

MIN_RSA_BITS = 2048

SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
SECURITY_KEY_TYPES = frozenset({SK_ED25519, SK_ECDSA})
# ssh-keygen refuses to enrol a security key for any other application (ssh-keygen.c).
SK_APPLICATION_PREFIX = b"ssh:"
# RFC 5656 section 6.2.1: the ECDSA hash is fixed by the curve size.
_ECDSA_HASHES = {
    "ecdsa-sha2-nistp256": hashes.SHA256,
    "ecdsa-sha2-nistp384": hashes.SHA384,
    "ecdsa-sha2-nistp521": hashes.SHA512,
}
_ECDSA_CURVES = {key_type: key_type.rsplit("-", 1)[1].encode() for key_type in _ECDSA_HASHES}
# Only the SHA-2 RSA signature algorithms; "ssh-rsa" (SHA-1) signatures are refused.
_RSA_SIGNATURE_HASHES = {b"rsa-sha2-256": hashes.SHA256, b"rsa-sha2-512": hashes.SHA512}
PLAIN_KEY_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", *_ECDSA_HASHES})
SUPPORTED_KEY_TYPES = PLAIN_KEY_TYPES | SECURITY_KEY_TYPES
# In a signature's embedded key, OpenSSH's key type table (sshkey_type_from_name) also names
# RSA keys after their signature algorithms.
_KEY_TYPE_NAMES = {"ssh-rsa": {b"ssh-rsa", b"rsa-sha2-256", b"rsa-sha2-512"}}

# U2F / CTAP2 authenticator data flags (PROTOCOL.u2f, ssh-sk.h).
FLAG_USER_PRESENT = 0x01
FLAG_USER_VERIFIED = 0x04


class SshKeyError(ValueError):
    """A public key that cannot be used (malformed, unsupported type, RSA < 2048 bits)."""


class SignatureError(ValueError):
    """A signature that is malformed or does not verify."""


@dataclass(frozen=True)
class SecurityKeySignature:
    """What a security key reports beside its signature (it signed them too)."""

    flags: int
    counter: int

    @property
    def user_present(self) -> bool:
        return bool(self.flags & FLAG_USER_PRESENT)

    @property
    def user_verified(self) -> bool:
        return bool(self.flags & FLAG_USER_VERIFIED)


@dataclass(frozen=True)
class PublicKey:
    """A parsed OpenSSH public key. Build it with parse_public_key() or decode_key()."""

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
    def is_security_key(self) -> bool:
        return self.key_type in SECURITY_KEY_TYPES

    @property
    def application(self) -> bytes:
        """A security key's FIDO application ("ssh:" unless chosen at enrolment); b"" otherwise."""
        return _read_fields(self.key_type, self.blob)[1] if self.is_security_key else b""

    @property
    def bits(self) -> int:
        key = load(self)
        if isinstance(key, ed25519.Ed25519PublicKey):
            return 256
        return key.curve.key_size if isinstance(key, ec.EllipticCurvePublicKey) else key.key_size


# --- reading blobs -------------------------------------------------------------------------------


def _load_plain(key_type: str, blob: bytes):
    """The `cryptography` key for a plain key blob, or SshKeyError."""
    line = key_type.encode() + b" " + base64.b64encode(blob)
    try:
        return serialization.load_ssh_public_key(line)
    # On hostile blobs cryptography raises all of these (e.g. IndexError for an empty EC
    # point, NotImplementedError for a compressed one).
    except (ValueError, TypeError, IndexError, NotImplementedError, UnsupportedAlgorithm):
        raise SshKeyError("key data is invalid") from None


def _read_fields(key_type: str, blob: bytes):
    """(cryptography key, application) of a security-key blob, read as sshkey.c does."""
    reader = Reader(blob, SshKeyError)
    if reader.cstring() != key_type.encode():
        raise SshKeyError("key type does not match the key data")
    try:
        if key_type == SK_ED25519:
            raw = reader.string()
            if len(raw) != 32:
                raise SshKeyError("key data is invalid")
            key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        else:
            if reader.cstring() != b"nistp256":
                raise SshKeyError("key data is invalid")
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), reader.string())
    except (ValueError, TypeError, IndexError):
        raise SshKeyError("key data is invalid") from None
    application = reader.cstring()
    reader.finish()
    return key, application


def _sk_blob(key_type: str, key, application: bytes) -> bytes:
    if key_type == SK_ED25519:
        material = ssh_string(key.public_bytes_raw())
    else:
        point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        material = ssh_string(b"nistp256") + ssh_string(point)
    return ssh_string(key_type.encode()) + material + ssh_string(application)


def load(public_key: PublicKey):
    """The `cryptography` key that checks this key's signatures (a security key's inner key)."""
    if public_key.is_security_key:
        return _read_fields(public_key.key_type, public_key.blob)[0]
    return _load_plain(public_key.key_type, public_key.blob)


def decode_key(key_type: str, blob: bytes, comment: str = "") -> PublicKey:
    """A key of a supported type from its blob, in canonical form, with no policy on its size.

    Re-encoding refuses trailing bytes and non-canonical encodings, so equal keys always have
    equal blobs (and therefore equal fingerprints).
    """
    if key_type not in SUPPORTED_KEY_TYPES:
        raise SshKeyError(f"unsupported key type {key_type[:40]!r}")
    if key_type in SECURITY_KEY_TYPES:
        key, application = _read_fields(key_type, blob)
        canonical = _sk_blob(key_type, key, application)
    else:
        if Reader(blob, SshKeyError).string() != key_type.encode():
            raise SshKeyError("key type does not match the key data")
        key = _load_plain(key_type, blob)
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        canonical = base64.b64decode(line.split()[1])
    if canonical != blob:
        raise SshKeyError("key data is not in canonical form")
    return PublicKey(key_type=key_type, blob=blob, comment=comment)


def check_key_policy(key: PublicKey) -> PublicKey:
    """Refuse the keys we accept structurally but not for logging in (docs/security.md)."""
    if key.key_type == "ssh-rsa" and load(key).key_size < MIN_RSA_BITS:
        raise SshKeyError(f"RSA keys must be at least {MIN_RSA_BITS} bits")
    if key.is_security_key and not key.application.startswith(SK_APPLICATION_PREFIX):
        raise SshKeyError('a security key\'s application must begin with "ssh:"')
    return key


def split_key_line(text: str) -> tuple[str, bytes, str]:
    """(type, blob, comment) of one "TYPE BASE64 [COMMENT]" line, or SshKeyError."""
    line = text.strip()
    if not line:
        raise SshKeyError("empty public key")
    if "\n" in line or "\r" in line:
        raise SshKeyError("expected a single public key line")
    fields = line.split(maxsplit=2)
    if len(fields) < 2:
        raise SshKeyError("missing key data")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        raise SshKeyError("key data is not valid base64") from None
    return fields[0], blob, fields[2] if len(fields) > 2 else ""


def parse_public_key(text: str) -> PublicKey:
    """Parse one OpenSSH public key line ("TYPE BASE64 [COMMENT]") of a type users log in with."""
    key_type = text.split(maxsplit=1)[0] if text.strip() else ""
    if key_type and key_type not in SUPPORTED_KEY_TYPES:
        if any(field in SUPPORTED_KEY_TYPES for field in text.split()[1:]):
            raise SshKeyError("key options before the key type are not allowed")
        raise SshKeyError(f"unsupported key type {key_type[:40]!r}")
    key_type, blob, comment = split_key_line(text)
    return check_key_policy(decode_key(key_type, blob, comment))


# --- comparing keys and checking signatures ----------------------------------------------------------


def is_same_key(blob: bytes, public_key: PublicKey) -> bool:
    """Whether the key blob embedded in a signature is `public_key`, compared by value as
    sshkey_equal() does.

    OpenSSH parses the embedded blob and compares the numbers, so an encoding that differs
    byte for byte (an RSA exponent with a leading zero byte, a type name ending in NUL or
    "rsa-sha2-512" for "ssh-rsa") is still the same key; a certificate of the key is not.
    """
    key_type, key = public_key.key_type, load(public_key)
    reader = Reader(blob, SignatureError)
    if reader.cstring() not in _KEY_TYPE_NAMES.get(key_type, {key_type.encode()}):
        return False
    if isinstance(key, ed25519.Ed25519PublicKey):
        same = reader.string() == key.public_bytes_raw()
    elif isinstance(key, ec.EllipticCurvePublicKey):
        # The uncompressed point (the only form OpenSSH reads) is unique to the key.
        point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        curve = b"nistp256" if key_type == SK_ECDSA else _ECDSA_CURVES[key_type]
        same = reader.cstring() == curve and reader.string() == point
    else:
        numbers = key.public_numbers()
        same = (reader.mpint(), reader.mpint()) == (numbers.e, numbers.n)
    if same and public_key.is_security_key:
        same = reader.cstring() == public_key.application
    reader.finish()
    return same


def verify_signature(public_key: PublicKey, signature: bytes, data: bytes) -> SecurityKeySignature | None:
    """Check a signature blob (string(algorithm) + string(bytes), and for security keys the
    flags and counter) over `data`. Returns the security key's report, None for plain keys.

    Raises SignatureError, or cryptography's InvalidSignature when the arithmetic fails.
    """
    key_type, key = public_key.key_type, load(public_key)
    reader = Reader(signature, SignatureError)
    algorithm = reader.cstring()
    sig_bytes = reader.string()
    report = None
    if public_key.is_security_key:
        # "webauthn-sk-ecdsa-sha2-nistp256@openssh.com" (browser-made) is refused here.
        if algorithm != key_type.encode():
            raise SignatureError("signature algorithm not allowed for this key")
        report = SecurityKeySignature(flags=reader.raw(1)[0], counter=reader.uint32())
        reader.finish()
        data = (
            hashlib.sha256(public_key.application).digest()
            + bytes([report.flags])
            + report.counter.to_bytes(4, "big")
            + hashlib.sha256(data).digest()
        )
    else:
        reader.finish()
    if key_type in ("ssh-ed25519", SK_ED25519) and algorithm == key_type.encode():
        if len(sig_bytes) > 64:
            raise SignatureError("Ed25519 signature is too long")
        key.verify(sig_bytes, data)
    elif key_type in (*_ECDSA_HASHES, SK_ECDSA) and algorithm == key_type.encode():
        integers = Reader(sig_bytes, SignatureError)
        r, s = integers.mpint(), integers.mpint()
        integers.finish()
        hash_class = hashes.SHA256 if key_type == SK_ECDSA else _ECDSA_HASHES[key_type]
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_class()))
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
    return report
