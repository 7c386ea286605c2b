"""Keys, a CA and a certificate for `bench auth`'s login phase, and SSHSIG signatures made in
Python (cryptography, Ed25519): signing thousands of challenges with ssh-keygen would cost the
client more than the server spends verifying them. The certificate is made by the real
`ssh-keygen -s`, as an organisation's CA would make it."""

import base64
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


@dataclass
class Signer:
    private: ed25519.Ed25519PrivateKey
    public_key: str  # what POST token presents: a key line, or a certificate line
    embedded: bytes  # the blob the SSHSIG carries: the key, or the whole certificate

    def sign(self, nonce: str, namespace: str) -> str:
        digest = hashlib.sha512(nonce.encode()).digest()
        fields = (namespace.encode(), b"", b"sha512", digest)
        signed = b"SSHSIG" + b"".join(_string(field) for field in fields)
        signature = _string(b"ssh-ed25519") + _string(self.private.sign(signed))
        envelope = [self.embedded, namespace.encode(), b"", b"sha512", signature]
        raw = b"SSHSIG" + (1).to_bytes(4, "big") + b"".join(_string(field) for field in envelope)
        body = base64.b64encode(raw).decode()
        lines = [body[i : i + 70] for i in range(0, len(body), 70)]
        return "\n".join(["-----BEGIN SSH SIGNATURE-----", *lines, "-----END SSH SIGNATURE-----"]) + "\n"


def _write_key(directory: Path, name: str) -> tuple[ed25519.Ed25519PrivateKey, Path]:
    private = ed25519.Ed25519PrivateKey.generate()
    path = directory / name
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    Path(f"{path}.pub").write_bytes(public + b"\n")
    return private, path


def make_identities(directory: Path, *, key_user: str, certificate_user: str) -> dict:
    """{"key": Signer, "certificate": Signer, "key_line", "ca_line"}: a plain key to register for
    ``key_user``, and a key with a one-day certificate for ``certificate_user`` from a new CA."""
    directory.mkdir(parents=True, exist_ok=True)
    plain, plain_path = _write_key(directory, "plain")
    _, ca_path = _write_key(directory, "ca")
    certified, certified_path = _write_key(directory, "certified")
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca_path), "-I", "bench", "-n", certificate_user, "-V", "-5m:+1d"]
        + ["-z", "4242", f"{certified_path}.pub"],
        check=True,
        capture_output=True,
    )
    key_line = Path(f"{plain_path}.pub").read_text().strip()
    certificate_line = Path(f"{certified_path}-cert.pub").read_text().strip()
    return {
        "key": Signer(plain, key_line, base64.b64decode(key_line.split()[1])),
        "certificate": Signer(certified, certificate_line, base64.b64decode(certificate_line.split()[1])),
        "key_line": key_line,
        "ca_line": Path(f"{ca_path}.pub").read_text().strip(),
    }
