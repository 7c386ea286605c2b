"""Verify SSHSIG signatures (`ssh-keygen -Y sign`) by a public key or a certificate.

The SSHSIG envelope (OpenSSH's PROTOCOL.sshsig) is parsed here directly on top of
`cryptography` instead of using the `sshsig` package, because `sshsig` raises
NotImplementedError for ECDSA keys and knows nothing of security keys or certificates. Doing it
ourselves gives one code path for every key type, and lets every failure surface as
SignatureError.

verify_sshsig() accepts exactly what `ssh-keygen -Y verify` of the current OpenSSH accepts
(sshsig.c), minus our stricter policies: no DSA keys, no RSA key under 2048 bits, no webauthn
signatures, armour at most 16 KiB. docs/security.md ("SSHSIG: agreement with OpenSSH") lists the
rules; tests/test_sshsig_differential.py checks them against ssh-keygen. A security key's flags
and counter are returned, not judged (tokens.security_keys does); a certificate's validity is
judged by tokens.ssh_certificates. Keys and raw signatures are tokens.ssh_keys; the armour and
the wire-format readers live in tokens/sshsig_armor.py and tokens/sshsig_wire.py.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from tokens.ssh_certificates import Certificate
from tokens.ssh_keys import (
    MIN_RSA_BITS,
    SUPPORTED_KEY_TYPES,
    PublicKey,
    SecurityKeySignature,
    SignatureError,
    SshKeyError,
    is_same_key,
    load,
    parse_public_key,
    verify_signature,
)
from tokens.sshsig_armor import MAX_ARMORED_LENGTH, dearmor
from tokens.sshsig_wire import Reader, ssh_string

__all__ = [
    "MAX_ARMORED_LENGTH",
    "MIN_RSA_BITS",
    "SUPPORTED_KEY_TYPES",
    "PublicKey",
    "SecurityKeySignature",
    "SignatureError",
    "SshKeyError",
    "parse_public_key",
    "verify_sshsig",
]

_MAGIC = b"SSHSIG"
_VERSION = 1
_MESSAGE_HASHES = {b"sha256": hashlib.sha256, b"sha512": hashlib.sha512}


def _verify(signer: PublicKey | Certificate, message: bytes, armored: str, namespace: str):
    # Field by field as sshsig_verifyb() reads them (sshsig.c).
    reader = Reader(dearmor(armored, SignatureError), SignatureError)
    if reader.raw(len(_MAGIC)) != _MAGIC:
        raise SignatureError("not an SSHSIG signature")
    if reader.uint32() > _VERSION:
        raise SignatureError("unsupported SSHSIG version")
    embedded = reader.string()
    signed_namespace = reader.cstring()
    reader.string()  # reserved: OpenSSH ignores its contents and verifies over an empty one
    hash_algorithm = reader.cstring()
    signature = reader.string()
    reader.finish()
    if signed_namespace != namespace.encode():
        raise SignatureError("signature namespace does not match")
    if hash_algorithm not in _MESSAGE_HASHES:
        raise SignatureError("unsupported hash algorithm")
    if isinstance(signer, Certificate):
        # sshkey_equal() compares two certificates as whole blobs: the very one presented.
        if embedded != signer.blob:
            raise SignatureError("signature was made by a different key")
        key = signer.key
    else:
        key = signer
        if key.key_type == "ssh-rsa" and load(key).key_size < MIN_RSA_BITS:
            raise SignatureError("RSA key is too small")  # for PublicKeys not made by parse_public_key
        if not is_same_key(embedded, key):
            raise SignatureError("signature was made by a different key")
    digest = _MESSAGE_HASHES[hash_algorithm](message).digest()
    # What the signer signed, rebuilt from what we expect rather than from what was sent.
    fields = (namespace.encode(), b"", hash_algorithm, digest)
    data = _MAGIC + b"".join(ssh_string(field) for field in fields)
    return verify_signature(key, signature, data)


def verify_sshsig(
    signer: PublicKey | Certificate, message: bytes, armored: str, namespace: str
) -> SecurityKeySignature | None:
    """Verify an armoured SSHSIG over exactly `message`; raise SignatureError unless valid.

    ``signer`` is the key, or the certificate, the client says signed (a certificate must be
    embedded whole, as `ssh-keygen -Y sign -f KEY-cert.pub` does). Returns a security key's
    flags and counter for the caller's policy, None for other keys."""
    if not namespace:
        raise SignatureError("namespace must not be empty")
    if isinstance(signer, PublicKey) and signer.key_type not in SUPPORTED_KEY_TYPES:
        raise SignatureError("unsupported key type")
    try:
        return _verify(signer, message, armored, namespace)
    except SignatureError:
        raise
    except SshKeyError:
        raise SignatureError("public key is unusable") from None
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None
    except (ValueError, TypeError, UnicodeError, OverflowError, UnsupportedAlgorithm):
        raise SignatureError("malformed signature") from None
