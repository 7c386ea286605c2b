"""Differential test: tokens.ssh_signatures against the real `ssh-keygen -Y verify` (plain keys;
security keys and certificates: test_identity_differential.py).

Keys of every type ssh-keygen makes here, supported and refused, sign one message with
`ssh-keygen -Y sign`; each signature is then changed field by field (magic, version, embedded
key, namespace, reserved, hash algorithm, signature algorithm, every part of the signature
value, length fields, trailing bytes, armour) plus seeded random corruptions. Every variant goes
to both verifiers. They must agree, except for the stricter policies docs/security.md lists
("SSHSIG: agreement with OpenSSH"), each asserted the other way round (OpenSSH accepts, we
refuse), and for rules OpenSSH changed after the local ssh-keygen's version: there we do what
the current OpenSSH does, and the local one must do the opposite.

The cases are a fixed list (the random ones seeded); only the keys are fresh each session.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ssh_helpers import (
    Envelope,
    armor,
    load_private_key,
    make_keys,
    message_with_a_leading_zero_rsa_signature,
    openssh_version,
    public_key_line,
    read_strings,
    sign,
    sign_with_cryptography,
    signature_blob,
    ssh_keygen_verifies,
    ssh_string,
    sshsig_signed_data,
)
from tokens.ssh_signatures import PublicKey, SignatureError, verify_sshsig

MESSAGE = b"differential challenge 5c1d9e\n"
NAMESPACE = "sshsig-diff@example.com"
SUPPORTED_KINDS = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048", "rsa3072"]
REFUSED_KINDS = ["rsa1024", "dsa"]
ARMOUR_KINDS = ["ed25519", "ecdsa384", "rsa2048", *REFUSED_KINDS]  # three sizes of envelope
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493
ECDSA_ORDERS = {
    "ecdsa256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ecdsa384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
    ),
    "ecdsa521": int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A"
        "5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}
# OpenSSH's short key type names (as ssh-keygen -t takes them), by kind.
SHORT_NAMES = {
    "ed25519": b"ED25519",
    **{kind: b"ECDSA" for kind in ("ecdsa256", "ecdsa384", "ecdsa521")},
    **{kind: b"RSA" for kind in ("rsa2048", "rsa3072", "rsa1024")},
    "dsa": b"DSA",
}
BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
MAX_MPINT_BYTES = 16384 // 8 + 1  # OpenSSH's SSHBUF_MAX_BIGNUM, plus a leading zero byte

# Cases where OpenSSH accepts and we deliberately refuse (docs/security.md says why).
STRICTER_CASES = {"*/armour/over-16-kib": "armoured signatures over 16 KiB are refused before decoding"}
# Key types we refuse outright, whatever the signature: OpenSSH accepts their originals.
REFUSED_KIND_REASONS = {
    "rsa1024": "RSA keys under 2048 bits",
    "dsa": "DSA keys",
    "cert-ed25519": "certificates as registered keys",
}
# Where OpenSSH changed its mind we follow the current one; the local ssh-keygen may be older
# (Debian 12 has 9.2). Case pattern: (version of the change, whether OpenSSH accepts since).
OPENSSH_CHANGES = {
    # sshsig_dearmor() accepts CRLF after the header line.
    "*/armour/crlf": ((9, 5), True),
    # sshkey_type_from_name() no longer takes short names ("RSA", "ed25519") on the wire.
    "ed25519/publickey/type-short-name*": ((9, 9), False),
    "rsa*/publickey/type-short-name*": ((9, 9), False),
    # Ed25519 is verified by libcrypto (RFC 8032: S below the group order); OpenSSH's own code
    # only checked S's top three bits and reduced it.
    "ed25519/signature/s-plus-group-order": ((10, 3), False),
}


@dataclass(frozen=True)
class Variant:
    armored: str
    message: bytes = MESSAGE
    namespace: str = NAMESPACE


@dataclass(frozen=True)
class Signer:
    kind: str
    key_path: Path | None
    line: str
    armored: str

    @property
    def blob(self) -> bytes:
        return base64.b64decode(self.line.split()[1])

    @property
    def envelope(self) -> Envelope:
        return Envelope.parse(self.armored)


@dataclass(frozen=True)
class Outcome:
    case: str
    openssh: bool | None  # None: not asked (variants for key types we refuse whatever they carry)
    ours: bool


def other_of(kind: str) -> str:
    """The name of another key of the same type (one RSA 3072 key is slow enough to make)."""
    return "other-rsa2048" if kind == "rsa3072" else f"other-{kind}"


def matches(case: str, patterns) -> str | None:
    return next((pattern for pattern in patterns if fnmatch.fnmatchcase(case, pattern)), None)


def with_signature(envelope: Envelope, algorithm: bytes, value: bytes) -> str:
    return envelope.replace(signature=ssh_string(algorithm) + ssh_string(value)).armored()


def length_field_offsets(raw: bytes, start: int, count: int) -> list[int]:
    offsets, position = [], start
    for _ in range(count):
        offsets.append(position)
        position += 4 + int.from_bytes(raw[position : position + 4], "big")
    return offsets


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def with_key_type(blob: bytes, key_type: bytes) -> bytes:
    return ssh_string(key_type) + blob[4 + int.from_bytes(blob[:4], "big") :]


# --- variants of every field ---------------------------------------------------------------------


def envelope_variants(signer: Signer, others: dict[str, Signer]) -> dict[str, Variant]:
    env = signer.envelope
    algorithm, value = read_strings(env.signature)
    same_type = others[other_of(signer.kind)]
    another_type = others["ecdsa256" if signer.kind == "ed25519" else "ed25519"]
    raw = env.raw()
    v = {
        "original": Variant(signer.armored),
        "message/changed": Variant(signer.armored, message=MESSAGE[:-1] + b"!"),
        "message/empty": Variant(signer.armored, message=b""),
        "namespace/verified-against-another": Variant(signer.armored, namespace="other@example.com"),
        "magic/lowercase": Variant(env.replace(magic=b"sshsig").armored()),
        "magic/one-byte-off": Variant(env.replace(magic=b"SSHSIH").armored()),
        "magic/missing": Variant(env.replace(magic=b"").armored()),
        "publickey/other-key-same-type": Variant(env.replace(publickey=same_type.blob).armored()),
        "publickey/key-of-another-type": Variant(env.replace(publickey=another_type.blob).armored()),
        "publickey/relabelled-signature-of-another-key": Variant(
            same_type.envelope.replace(publickey=signer.blob).armored()
        ),
        "publickey/trailing-byte": Variant(env.replace(publickey=signer.blob + b"\0").armored()),
        "publickey/truncated": Variant(env.replace(publickey=signer.blob[:-1]).armored()),
        "publickey/empty": Variant(env.replace(publickey=b"").armored()),
        "publickey/type-with-trailing-nul": Variant(
            env.replace(publickey=with_key_type(signer.blob, read_strings(signer.blob)[0] + b"\0")).armored()
        ),
        "publickey/type-short-name": Variant(
            env.replace(publickey=with_key_type(signer.blob, SHORT_NAMES[signer.kind])).armored()
        ),
        "publickey/type-short-name-lowercase": Variant(
            env.replace(publickey=with_key_type(signer.blob, SHORT_NAMES[signer.kind].lower())).armored()
        ),
        "publickey/type-with-embedded-nul": Variant(
            env.replace(
                publickey=with_key_type(signer.blob, b"ssh\0" + read_strings(signer.blob)[0])
            ).armored()
        ),
        "reserved/set-after-signing": Variant(env.replace(reserved=b"x").armored()),
        "reserved/nul-after-signing": Variant(env.replace(reserved=b"\0").armored()),
        "reserved/long-after-signing": Variant(env.replace(reserved=b"r" * 300).armored()),
        "hash/other-allowed-name-unsigned": Variant(env.replace(hash_alg=b"sha256").armored()),
        "hash/trailing-nul": Variant(env.replace(hash_alg=env.hash_alg + b"\0").armored()),
        "hash/two-trailing-nuls": Variant(env.replace(hash_alg=env.hash_alg + b"\0\0").armored()),
        "hash/embedded-nul": Variant(env.replace(hash_alg=b"sha5\0" + env.hash_alg[4:]).armored()),
        "hash/uppercase": Variant(env.replace(hash_alg=env.hash_alg.upper()).armored()),
        "hash/pattern": Variant(env.replace(hash_alg=b"sha5*").armored()),
        "hash/empty": Variant(env.replace(hash_alg=b"").armored()),
        "sigalg/trailing-nul": Variant(with_signature(env, algorithm + b"\0", value)),
        "sigalg/embedded-nul": Variant(with_signature(env, algorithm[:3] + b"\0" + algorithm[3:], value)),
        "sigalg/uppercase": Variant(with_signature(env, algorithm.upper(), value)),
        "sigalg/empty": Variant(with_signature(env, b"", value)),
        "sigalg/another-type": Variant(
            with_signature(env, b"ecdsa-sha2-nistp256" if signer.kind == "ed25519" else b"ssh-ed25519", value)
        ),
        "sigalg/certificate-type": Variant(with_signature(env, algorithm + b"-cert-v01@openssh.com", value)),
        "signature/first-bit-flipped": Variant(with_signature(env, algorithm, flip(value, 0))),
        "signature/middle-bit-flipped": Variant(with_signature(env, algorithm, flip(value, len(value) // 2))),
        "signature/last-bit-flipped": Variant(with_signature(env, algorithm, flip(value, len(value) - 1))),
        "signature/truncated": Variant(with_signature(env, algorithm, value[:-1])),
        "signature/extended": Variant(with_signature(env, algorithm, value + b"\0")),
        "signature/value-empty": Variant(with_signature(env, algorithm, b"")),
        "signature/trailing-byte": Variant(env.replace(signature=env.signature + b"\0").armored()),
        "signature/trailing-string": Variant(
            env.replace(signature=env.signature + ssh_string(b"")).armored()
        ),
        "signature/empty": Variant(env.replace(signature=b"").armored()),
        "envelope/trailing-byte": Variant(armor(raw + b"\0")),
        "envelope/trailing-string": Variant(armor(raw + ssh_string(b"x"))),
        "envelope/truncated": Variant(armor(raw[:-1])),
        "envelope/empty": Variant(armor(b"")),
    }
    for version in (0, 2, 0x01000000, 0xFFFFFFFF):
        v[f"version/{version:#x}"] = Variant(env.replace(version=version).armored())
    namespaces = {
        "other": b"other@example.com",
        "empty": b"",
        "trailing-nul": env.namespace + b"\0",
        "two-trailing-nuls": env.namespace + b"\0\0",
        "leading-nul": b"\0" + env.namespace,
        "embedded-nul": env.namespace[:5] + b"\0" + env.namespace[5:],
        "uppercase": env.namespace.upper(),
        "prefix": env.namespace[:-1],
        "trailing-space": env.namespace + b" ",
        "pattern": env.namespace[:-3] + b"*",
    }
    for name, namespace in namespaces.items():
        v[f"namespace/{name}"] = Variant(env.replace(namespace=namespace).armored())
    # Each length field: one too long, one too short, absurd.
    fields = ["publickey", "namespace", "reserved", "hash", "signature"]
    for field, offset in zip(fields, length_field_offsets(raw, 10, 5), strict=True):
        length = int.from_bytes(raw[offset : offset + 4], "big")
        for name, wrong in {"plus-one": length + 1, "minus-one": length - 1, "huge": 0xFFFFFFFF}.items():
            if wrong >= 0:
                mutated = raw[:offset] + wrong.to_bytes(4, "big") + raw[offset + 4 :]
                v[f"length/{field}-{name}"] = Variant(armor(mutated))
    sig = env.signature
    for field, offset in zip(["sigalg", "value"], length_field_offsets(sig, 0, 2), strict=True):
        length = int.from_bytes(sig[offset : offset + 4], "big")
        for name, wrong in {"plus-one": length + 1, "minus-one": length - 1}.items():
            mutated = sig[:offset] + wrong.to_bytes(4, "big") + sig[offset + 4 :]
            v[f"length/{field}-{name}"] = Variant(env.replace(signature=mutated).armored())
    if signer.key_path is not None:
        certificate = others["certificates"].get(signer.kind)
        if certificate:
            v["publickey/certificate-of-the-same-key"] = Variant(env.replace(publickey=certificate).armored())
    return v


def resigned_variants(signer: Signer) -> dict[str, Variant]:
    """Signatures made here (not by ssh-keygen) over contents ssh-keygen never signs."""

    def resigned(**options) -> Variant:
        return Variant(sign_with_cryptography(signer.key_path, MESSAGE, NAMESPACE, **options))

    env = signer.envelope
    private = load_private_key(signer.key_path)
    v = {
        "resigned/sha512": resigned(),
        "resigned/sha256": resigned(hash_alg="sha256"),
        "resigned/hash-sha384": resigned(hash_alg="sha384"),
        "resigned/hash-sha1": resigned(hash_alg="sha1"),
        "resigned/hash-md5": resigned(hash_alg="md5"),
        "resigned/hash-empty": resigned(hash_alg=""),
        "resigned/version-0": resigned(version=0),
        "reserved/signed-non-empty": resigned(reserved=b"future"),
    }
    # Signed over a non-empty reserved field, sent with an empty one (and the other way round).
    data = sshsig_signed_data(NAMESPACE.encode(), "sha512", MESSAGE, reserved=b"x")
    v["reserved/signed-non-empty-sent-empty"] = Variant(
        env.replace(signature=signature_blob(private, data)).armored()
    )
    data = sshsig_signed_data(NAMESPACE.encode() + b"\0", "sha512", MESSAGE)
    v["namespace/signed-with-trailing-nul"] = Variant(
        env.replace(namespace=NAMESPACE.encode() + b"\0", signature=signature_blob(private, data)).armored()
    )
    data = sshsig_signed_data(NAMESPACE.encode(), "sha512\0", MESSAGE)
    v["hash/signed-with-trailing-nul"] = Variant(
        env.replace(hash_alg=b"sha512\0", signature=signature_blob(private, data)).armored()
    )
    return v


def ed25519_variants(signer: Signer) -> dict[str, Variant]:
    env = signer.envelope
    algorithm, value = read_strings(env.signature)
    r, s = value[:32], int.from_bytes(value[32:], "little")
    key = read_strings(signer.blob)[1]
    return {
        # Before 10.3 OpenSSH's own Ed25519 code reduced S modulo the group order: S + L verified.
        "signature/s-plus-group-order": Variant(
            with_signature(env, algorithm, r + (s + ED25519_ORDER).to_bytes(32, "little"))
        ),
        "signature/s-plus-twice-the-group-order": Variant(
            with_signature(env, algorithm, r + (s + 2 * ED25519_ORDER).to_bytes(32, "little"))
        ),
        "signature/r-flipped": Variant(with_signature(env, algorithm, flip(r, 0) + value[32:])),
        "publickey/31-byte-key": Variant(
            env.replace(publickey=ssh_string(algorithm) + ssh_string(key[:-1])).armored()
        ),
        "publickey/33-byte-key": Variant(
            env.replace(publickey=ssh_string(algorithm) + ssh_string(key + b"\0")).armored()
        ),
    }


def ecdsa_variants(signer: Signer) -> dict[str, Variant]:
    env = signer.envelope
    algorithm, value = read_strings(env.signature)
    r_bytes, s_bytes = read_strings(value)
    r, s = int.from_bytes(r_bytes, "big"), int.from_bytes(s_bytes, "big")
    order = ECDSA_ORDERS[signer.kind]

    def rs(r_part: bytes, s_part: bytes, extra: bytes = b"") -> Variant:
        return Variant(with_signature(env, algorithm, ssh_string(r_part) + ssh_string(s_part) + extra))

    def unsigned(n: int) -> bytes:
        return n.to_bytes(n.bit_length() // 8 + 1, "big") if n else b""

    key_type, curve, point = read_strings(signer.blob)
    compressed = bytes([2 + (point[-1] & 1)]) + point[1 : 1 + (len(point) - 1) // 2]

    def key(curve_name: bytes, key_point: bytes) -> Variant:
        blob = ssh_string(key_type) + ssh_string(curve_name) + ssh_string(key_point)
        return Variant(env.replace(publickey=blob).armored())

    return {
        "signature/r-extra-leading-zero": rs(b"\0" + r_bytes, s_bytes),
        "signature/s-extra-leading-zero": rs(r_bytes, b"\0" + s_bytes),
        "signature/r-zero-padded-to-the-mpint-limit": rs(r_bytes.rjust(MAX_MPINT_BYTES, b"\0"), s_bytes),
        "signature/r-zero-padded-past-the-mpint-limit": rs(
            r_bytes.rjust(MAX_MPINT_BYTES + 1, b"\0"), s_bytes
        ),
        "signature/r-negative": rs(b"\xff" + r_bytes, s_bytes),
        "signature/s-replaced-by-order-minus-s": rs(r_bytes, unsigned(order - s)),
        "signature/r-zero": rs(b"", s_bytes),
        "signature/s-zero": rs(r_bytes, b""),
        "signature/r-plus-order": rs(unsigned(r + order), s_bytes),
        "signature/r-and-s-swapped": rs(s_bytes, r_bytes),
        "signature/bytes-after-s": rs(r_bytes, s_bytes, b"\0"),
        "signature/s-missing": Variant(with_signature(env, algorithm, ssh_string(r_bytes))),
        "publickey/curve-with-trailing-nul": key(curve + b"\0", point),
        "publickey/another-curve-name": key(b"nistp384" if curve != b"nistp384" else b"nistp256", point),
        "publickey/compressed-point": key(curve, compressed),
        "publickey/point-off-the-curve": key(curve, flip(point, len(point) - 1)),
    }


def rsa_signature_without_leading_zero(signer: Signer) -> Variant:
    """A real ssh-keygen RSA signature whose top byte is zero, sent without it (as some signers do)."""
    message = message_with_a_leading_zero_rsa_signature(signer.key_path, NAMESPACE)
    env = Envelope.parse(sign(signer.key_path, message, NAMESPACE))
    algorithm, value = read_strings(env.signature)
    assert value[0] == 0 and len(value) == (load_private_key(signer.key_path).key_size + 7) // 8
    return Variant(with_signature(env, algorithm, value[1:]), message=message)


def rsa_variants(signer: Signer) -> dict[str, Variant]:
    env = signer.envelope
    algorithm, value = read_strings(env.signature)
    private = load_private_key(signer.key_path)
    numbers = private.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    modulus_bytes = (n.bit_length() + 7) // 8
    digest = hashlib.sha512(sshsig_signed_data(NAMESPACE.encode(), "sha512", MESSAGE)).digest()

    def raw_pkcs1(digest_info_prefix: str) -> bytes:
        """A PKCS#1 v1.5 signature made by hand, over a DigestInfo of our choosing."""
        digest_info = bytes.fromhex(digest_info_prefix) + digest
        encoded = b"\x00\x01" + b"\xff" * (modulus_bytes - len(digest_info) - 3) + b"\x00" + digest_info
        return pow(int.from_bytes(encoded, "big"), d, n).to_bytes(modulus_bytes, "big")

    _, e_bytes, n_bytes = read_strings(signer.blob)

    def key(e_part: bytes, n_part: bytes) -> Variant:
        blob = ssh_string(b"ssh-rsa") + ssh_string(e_part) + ssh_string(n_part)
        return Variant(env.replace(publickey=blob).armored())

    def resigned(sig_alg: str) -> Variant:
        return Variant(sign_with_cryptography(signer.key_path, MESSAGE, NAMESPACE, sig_alg=sig_alg))

    v = {
        "signature/extra-leading-zero": Variant(with_signature(env, algorithm, b"\0" + value)),
        "signature/equal-to-the-modulus": Variant(
            with_signature(env, algorithm, n.to_bytes(modulus_bytes, "big"))
        ),
        # The standard SHA-512 DigestInfo (a control for the hand-made path), then one that
        # leaves out the NULL parameters of the hash OID.
        "signature/hand-made-pkcs1": Variant(
            with_signature(env, algorithm, raw_pkcs1("3051300d060960864801650304020305000440"))
        ),
        "signature/digest-info-without-null": Variant(
            with_signature(env, algorithm, raw_pkcs1("304f300b06096086480165030402030440"))
        ),
        "sigalg/rsa-sha2-256-label-on-a-sha512-signature": Variant(
            with_signature(env, b"rsa-sha2-256", value)
        ),
        "sigalg/ssh-rsa-label": Variant(with_signature(env, b"ssh-rsa", value)),
        "resigned/rsa-sha2-256": resigned("rsa-sha2-256"),
        "resigned/ssh-rsa-sha1": resigned("ssh-rsa"),
        "publickey/type-rsa-sha2-256": Variant(
            env.replace(publickey=with_key_type(signer.blob, b"rsa-sha2-256")).armored()
        ),
        "publickey/type-rsa-sha2-512": Variant(
            env.replace(publickey=with_key_type(signer.blob, b"rsa-sha2-512")).armored()
        ),
        "publickey/e-with-leading-zero": key(b"\0" + e_bytes, n_bytes),
        "publickey/n-with-extra-leading-zero": key(e_bytes, b"\0" + n_bytes),
        "publickey/e-negative": key(b"\xff" + e_bytes, n_bytes),
        "publickey/other-e": key(b"\x03", n_bytes),
    }
    if signer.kind != "rsa3072":  # finding such a signature takes ~256 signings: 2 s with RSA 3072
        v["signature/without-its-leading-zero"] = rsa_signature_without_leading_zero(signer)
    return v


def padded_envelope(env: Envelope, pad_chars: int) -> str:
    """The same signature armoured so the base64 ends in `pad_chars` '=' (via the ignored reserved)."""
    for size in range(3):
        padded = env.replace(reserved=b"p" * size)
        if len(padded.raw()) % 3 == {0: 0, 1: 2, 2: 1}[pad_chars]:
            return padded.armored()
    raise AssertionError("unreachable")


def armour_variants(signer: Signer, others: dict[str, Signer]) -> dict[str, Variant]:
    text = signer.armored
    begin, end = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
    lines = text.rstrip("\n").split("\n")
    body = "".join(lines[1:-1])
    raw = signer.envelope.raw()

    def spaced(separator: str, every: int) -> str:
        return separator.join(body[i : i + every] for i in range(0, len(body), every))

    v = {
        "no-final-newline": text.rstrip("\n"),
        "text-after-the-footer": text + "trailing text\n",
        "text-glued-to-the-footer": text.rstrip("\n") + "XYZ\n",
        "non-ascii-after-the-footer": text + "é\n",
        "nul-after-the-footer": text + "\0",
        "second-signature-after": text + others[other_of(signer.kind)].armored,
        "leading-newline": "\n" + text,
        "leading-space": " " + text,
        "crlf": text.replace("\n", "\r\n"),
        "crlf-after-the-header-line": text.replace("\n", "\r\n").replace("\r\n", "\n", 1),
        "cr-only": text.replace("\n", "\r"),
        "body-on-one-line": armor(raw, width=10**6),
        "body-64-columns": armor(raw, width=64),
        "body-76-columns": armor(raw, width=76),
        "spaces-in-the-body": f"{begin}\n{spaced(' ', 7)}\n{end}\n",
        "tabs-vt-ff-in-the-body": f"{begin}\n{spaced(chr(9) + chr(11) + chr(12), 9)}\n{end}\n",
        "blank-lines-in-the-body": f"{begin}\n\n{spaced(chr(10) * 2, 30)}\n\n{end}\n",
        "nbsp-in-the-body": f"{begin}\n{spaced(chr(0xA0), 20)}\n{end}\n",
        "no-footer": "\n".join(lines[:-1]) + "\n",
        "footer-glued-to-the-body": f"{begin}\n{body}{end}\n",
        "no-header": "\n".join(lines[1:]) + "\n",
        "header-glued-to-the-body": f"{begin}{body}\n{end}\n",
        "header-with-trailing-space": f"{begin} \n{body}\n{end}\n",
        "lowercase-markers": text.replace("SSH SIGNATURE", "ssh signature"),
        "pgp-markers": text.replace("SSH SIGNATURE", "PGP SIGNATURE"),
        "footer-dashes-missing": text.replace(end, end[:-1]),
        "equals-in-the-middle": f"{begin}\n{body[:20]}={body[20:]}\n{end}\n",
        "nul-at-the-end-of-the-body": f"{begin}\n{body}\0\n{end}\n",
        "nul-in-the-body": f"{begin}\n{body[:20]}\0{body[20:]}\n{end}\n",
        "non-base64-character": f"{begin}\n{body[:20]}*{body[21:]}\n{end}\n",
        "non-ascii-in-the-body": f"{begin}\n{body[:20]}é{body[21:]}\n{end}\n",
        "body-missing-a-character": f"{begin}\n{body[:-1]}\n{end}\n",
        "empty-body": f"{begin}\n{end}\n",
        "nothing": "",
        "over-16-kib": text + "x" * (17 * 1024),
    }
    for pads in (1, 2):
        padded = padded_envelope(signer.envelope, pads)
        padded_lines = padded.rstrip("\n").split("\n")
        padded_body = "".join(padded_lines[1:-1])
        assert padded_body.endswith("=" * pads) and not padded_body.endswith("=" * (pads + 1))
        data, last = padded_body[: -pads - 1], padded_body[-pads - 1]
        v[f"{pads}-pad/as-is"] = padded
        v[f"{pads}-pad/padding-removed"] = f"{begin}\n{data}{last}\n{end}\n"
        v[f"{pads}-pad/extra-padding"] = f"{begin}\n{padded_body}=\n{end}\n"
        v[f"{pads}-pad/text-after-padding"] = f"{begin}\n{padded_body}A\n{end}\n"
        v[f"{pads}-pad/space-inside-padding"] = f"{begin}\n{padded_body[:-1]} =\n{end}\n"
        # The last character's unused low bits are zero; the next character sets one of them.
        nonzero = BASE64_ALPHABET[BASE64_ALPHABET.index(last) + 1]
        v[f"{pads}-pad/nonzero-pad-bits"] = f"{begin}\n{data}{nonzero}{'=' * pads}\n{end}\n"
    return {f"armour/{name}": Variant(armored) for name, armored in v.items()}


def random_variants(signer: Signer, count: int = 16) -> dict[str, Variant]:
    """Seeded overwrites, deletions and insertions of a few bytes of the raw envelope."""
    raw = signer.envelope.raw()
    rng = random.Random(f"sshsig-differential-{signer.kind}")
    v = {}
    for index in range(count):
        mutated = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            position, roll = rng.randrange(len(mutated) + 1), rng.random()
            if roll < 0.5 and position < len(mutated):
                mutated[position] = rng.randrange(256)
            elif roll < 0.75:
                del mutated[position : position + rng.randint(1, 8)]
            else:
                mutated[position:position] = rng.randbytes(rng.randint(1, 8))
        v[f"random/{index}"] = Variant(armor(bytes(mutated)))
    return v


def variants_for(signer: Signer, others: dict[str, Signer]) -> dict[str, Variant]:
    v = {**envelope_variants(signer, others), **random_variants(signer)}
    if signer.kind in ARMOUR_KINDS:  # armour parsing does not depend on the key type
        v.update(armour_variants(signer, others))
    if signer.kind != "dsa":  # refused anyway, and cryptography deprecates DSA SSH keys
        v.update(resigned_variants(signer))
    if signer.kind == "ed25519":
        v.update(ed25519_variants(signer))
    elif signer.kind.startswith("ecdsa"):
        v.update(ecdsa_variants(signer))
    elif signer.kind.startswith("rsa"):
        v.update(rsa_variants(signer))
    return v


def certificate_as_registered_key(ed25519_signer: Signer, certificate: bytes) -> Signer:
    """The ed25519 signature with its certificate embedded, checked against that certificate."""
    envelope = ed25519_signer.envelope.replace(publickey=certificate)
    line = f"{read_strings(certificate)[0].decode()} {base64.b64encode(certificate).decode()}"
    return Signer("cert-ed25519", None, line, envelope.armored())


# --- running both verifiers ------------------------------------------------------------------------


def ours_accepts(signer: Signer, variant: Variant) -> bool:
    key_type = signer.line.split()[0]
    try:
        verify_sshsig(PublicKey(key_type, signer.blob), variant.message, variant.armored, variant.namespace)
    except SignatureError:
        return False
    return True  # anything but SignatureError propagates and fails the test


@pytest.fixture(scope="session")
def signers(tmp_path_factory) -> dict[str, Signer]:
    directory = tmp_path_factory.mktemp("sshsig-differential")
    kinds = SUPPORTED_KINDS + REFUSED_KINDS
    others = {other_of(kind): other_of(kind).removeprefix("other-") for kind in kinds}
    keys = make_keys(directory, {**{kind: kind for kind in kinds}, **others})

    def signer(kind: str) -> Signer:
        key_path = keys[kind]
        return Signer(kind, key_path, public_key_line(key_path), sign(key_path, MESSAGE, NAMESPACE))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(keys, pool.map(signer, keys), strict=True))


@pytest.fixture(scope="session")
def certificates(signers, tmp_path_factory) -> dict[str, bytes]:
    """An OpenSSH certificate of each signing key, by kind (signed by another ed25519 key)."""
    directory = tmp_path_factory.mktemp("sshsig-certificates")
    ca = signers["other-ed25519"].key_path

    def certify(kind: str) -> bytes:
        subject = directory / f"{kind}.pub"
        subject.write_text(signers[kind].line + "\n")
        args = ["ssh-keygen", "-q", "-s", str(ca), "-I", "id", "-n", "signer@tests", str(subject)]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
        return base64.b64decode((directory / f"{kind}-cert.pub").read_text().split()[1])

    kinds = SUPPORTED_KINDS + REFUSED_KINDS
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(kinds, pool.map(certify, kinds), strict=True))


@pytest.fixture(scope="session")
def outcomes(signers, certificates, tmp_path_factory) -> dict[str, Outcome]:
    """Every case, keyed "kind/group/name", with what each verifier said."""
    directory = tmp_path_factory.mktemp("sshsig-verify")
    others = {**signers, "certificates": certificates}
    cases: dict[str, tuple[Signer, Variant]] = {}
    for kind in SUPPORTED_KINDS + REFUSED_KINDS:
        for name, variant in variants_for(signers[kind], others).items():
            cases[f"{kind}/{name}"] = (signers[kind], variant)
    certificate_signer = certificate_as_registered_key(signers["ed25519"], certificates["ed25519"])
    cases["cert-ed25519/original"] = (certificate_signer, Variant(certificate_signer.armored))

    # We refuse every variant for a refused key type; OpenSSH is asked only about the originals.
    asked = [case for case in cases if case.split("/")[0] in SUPPORTED_KINDS or case.endswith("/original")]

    def openssh(case: str) -> bool:
        signer, variant = cases[case]
        return ssh_keygen_verifies(
            signer.line, variant.message, variant.armored, variant.namespace, directory
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = dict(zip(asked, pool.map(openssh, asked), strict=True))
    return {case: Outcome(case, verdicts.get(case), ours_accepts(*cases[case])) for case in cases}


def describe(outcomes: list[Outcome]) -> str:
    def verdict(accepted: bool | None, third_person: bool) -> str:
        word = {True: "accept", False: "refuse", None: "not asked"}[accepted]
        return word + "s" if third_person and accepted is not None else word

    return "\n".join(
        f"  {o.case}: OpenSSH {verdict(o.openssh, True)}, we {verdict(o.ours, False)}" for o in outcomes
    )


# --- the tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def changes_after_local_openssh() -> list[str]:
    """The OPENSSH_CHANGES patterns made after the local ssh-keygen's version."""
    local = openssh_version()
    return [pattern for pattern, (version, _) in OPENSSH_CHANGES.items() if local < version]


@pytest.mark.parametrize("kind", SUPPORTED_KINDS)
def test_the_verifier_agrees_with_ssh_keygen_on_every_variant(outcomes, changes_after_local_openssh, kind):
    disagreements = [
        outcome
        for case, outcome in outcomes.items()
        if case.startswith(f"{kind}/")
        and not matches(case, STRICTER_CASES)
        and not matches(case, changes_after_local_openssh)
        and outcome.openssh != outcome.ours
    ]
    assert not disagreements, "disagreements with ssh-keygen -Y verify:\n" + describe(disagreements)


def test_every_listed_stricter_case_is_one_openssh_accepts_and_we_refuse(outcomes):
    for pattern, reason in STRICTER_CASES.items():
        listed = [
            outcome
            for case, outcome in outcomes.items()
            if fnmatch.fnmatchcase(case, pattern) and case.split("/")[0] in SUPPORTED_KINDS
        ]
        assert listed, f"no case matches {pattern!r}"
        wrong = [outcome for outcome in listed if not outcome.openssh or outcome.ours]
        assert not wrong, f"{reason}: expected OpenSSH to accept and us to refuse:\n" + describe(wrong)


@pytest.mark.parametrize("kind", sorted(REFUSED_KIND_REASONS))
def test_refused_key_types_are_refused_although_openssh_accepts_them(outcomes, kind):
    mine = {case: outcome for case, outcome in outcomes.items() if case.startswith(f"{kind}/")}
    assert outcomes[f"{kind}/original"].openssh, f"ssh-keygen should accept a {kind} signature"
    accepted = [outcome for outcome in mine.values() if outcome.ours]
    assert not accepted, f"{REFUSED_KIND_REASONS[kind]} must be refused:\n" + describe(accepted)


def test_where_openssh_changed_we_do_what_the_current_one_does(outcomes, changes_after_local_openssh):
    for pattern, (version, accepted_since) in OPENSSH_CHANGES.items():
        listed = [
            outcome
            for case, outcome in outcomes.items()
            if fnmatch.fnmatchcase(case, pattern) and case.split("/")[0] in SUPPORTED_KINDS
        ]
        assert listed, f"no case matches {pattern!r}"
        assert all(outcome.ours == accepted_since for outcome in listed), describe(listed)
        if pattern in changes_after_local_openssh:  # else the agreement test covers them
            assert all(outcome.openssh != accepted_since for outcome in listed), (
                f"OpenSSH before {version} should do the opposite:\n" + describe(listed)
            )


@pytest.mark.parametrize(
    "case",
    [
        *(f"{kind}/{name}" for kind in SUPPORTED_KINDS for name in ["original", "resigned/sha256"]),
        *(f"{kind}/reserved/set-after-signing" for kind in SUPPORTED_KINDS),
        "ecdsa256/namespace/trailing-nul",
        "rsa3072/version/0x0",
        "ecdsa521/publickey/type-with-trailing-nul",
        "rsa2048/publickey/e-with-leading-zero",
        "rsa3072/signature/hand-made-pkcs1",
        "ecdsa384/signature/r-zero-padded-to-the-mpint-limit",
        "ed25519/armour/text-after-the-footer",
        "rsa2048/armour/2-pad/space-inside-padding",
    ],
)
def test_both_accept_what_a_conforming_signer_makes_and_what_openssh_tolerates(outcomes, case):
    # Guards against a vacuous pass: an oracle that refused everything would agree with a
    # verifier that refused everything.
    assert outcomes[case] == Outcome(case, True, True)


def test_both_accept_an_rsa_signature_sent_without_its_leading_zero(outcomes):
    case = "rsa2048/signature/without-its-leading-zero"
    assert outcomes[case] == Outcome(case, True, True)


@pytest.mark.parametrize("kind", SUPPORTED_KINDS)
def test_both_refuse_a_signature_made_over_a_non_empty_reserved_field(outcomes, kind):
    case = f"{kind}/reserved/signed-non-empty"
    assert outcomes[case] == Outcome(case, False, False)
