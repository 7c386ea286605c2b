"""Make real OpenSSH keys and SSHSIG signatures in tests, using ssh-keygen, ssh-agent, ssh-add.

Typical use::

    key = make_key(tmp_path, "ed25519")
    armored = sign(key, b"hello", "example-namespace")
    public_line = public_key_line(key)              # contents of key + ".pub"

    with ssh_agent(key) as env:                     # a real agent holding the key
        armored = sign_with_agent(pub_path(key), b"hello", "example-namespace", env)

For hostile and unusual signatures: Envelope (the SSHSIG fields, to change one and re-armour),
sign_with_cryptography() (signatures ssh-keygen will not make, e.g. over a non-empty reserved
field) and ssh_keygen_verifies() (what the real `ssh-keygen -Y verify` says about a signature).

Passphrases are fed to ssh-keygen/ssh-add through SSH_ASKPASS (SSH_ASKPASS_REQUIRE=force), so
nothing ever waits on a terminal. Every command runs with the caller's agent variables
removed, so a developer's own ssh-agent never leaks into a test.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

KEY_KINDS: dict[str, list[str]] = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa2048": ["-t", "rsa", "-b", "2048"],
    "rsa1024": ["-t", "rsa", "-b", "1024"],
    "rsa3072": ["-t", "rsa", "-b", "3072"],
    "dsa": ["-t", "dsa"],  # OpenSSH 10 dropped DSA: make_key raises RuntimeError there
}
_TIMEOUT = 30
_askpass_dir: str | None = None


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
    env.pop("SSH_ASKPASS", None)
    return env


def _askpass_env(env: dict[str, str], passphrase: str) -> dict[str, str]:
    """Make ssh-keygen/ssh-add read `passphrase` from an askpass script instead of a tty."""
    global _askpass_dir
    if _askpass_dir is None:
        _askpass_dir = tempfile.mkdtemp(prefix="askpass-")
        atexit.register(shutil.rmtree, _askpass_dir, True)
        script = Path(_askpass_dir, "askpass.sh")
        script.write_text('#!/bin/sh\nprintf "%s\\n" "$SSH_HELPERS_PASSPHRASE"\n')
        script.chmod(0o700)
    return {
        **env,
        "SSH_ASKPASS": str(Path(_askpass_dir, "askpass.sh")),
        "SSH_ASKPASS_REQUIRE": "force",
        "SSH_HELPERS_PASSPHRASE": passphrase,
        "DISPLAY": env.get("DISPLAY", ":0"),  # older OpenSSH only uses askpass with DISPLAY set
    }


def _run(args: list[str], *, env: dict[str, str], data: bytes | None = None) -> str:
    result = subprocess.run(args, input=data, capture_output=True, env=env, timeout=_TIMEOUT, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{' '.join(args[:3])} failed ({result.returncode}): {stderr}")
    return result.stdout.decode()


def pub_path(key_path: Path | str) -> Path:
    return Path(f"{key_path}.pub")


def public_key_line(key_path: Path | str) -> str:
    """The OpenSSH public key line ("type base64 comment") for a private key made here."""
    return pub_path(key_path).read_text().strip()


def _unused_path(directory: Path, kind: str) -> Path:
    # ssh-keygen asks before overwriting, so never reuse a name.
    path = directory / f"id_{kind}"
    counter = 1
    while path.exists() or pub_path(path).exists():
        counter += 1
        path = directory / f"id_{kind}_{counter}"
    return path


def _write_rsa1024_with_cryptography(path: Path, passphrase: str, comment: str) -> None:
    """Fallback for OpenSSH builds that refuse `ssh-keygen -t rsa -b 1024`.

    The files have the same formats ssh-keygen writes (OpenSSH private key, one-line public
    key), so they can still be used with sign() and ssh-add.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.write_bytes(private)
    path.chmod(0o600)
    pub_path(path).write_text(f"{public.decode()} {comment}\n")


def make_key(directory: Path | str, kind: str, passphrase: str = "", comment: str = "") -> Path:
    """Generate a key of `kind` (see KEY_KINDS) in `directory`; return the private key path.

    The public key is at path + ".pub".
    """
    directory = Path(directory)
    path = _unused_path(directory, kind)
    comment = comment or f"{kind}@tests"
    args = ["ssh-keygen", "-q", *KEY_KINDS[kind], "-N", passphrase, "-C", comment, "-f", str(path)]
    try:
        _run(args, env=_base_env())
    except RuntimeError:
        if kind != "rsa1024":
            raise
        _write_rsa1024_with_cryptography(path, passphrase, comment)
    return path


def sign(
    key_path: Path | str,
    data: bytes,
    namespace: str,
    *,
    passphrase: str = "",
    hashalg: str | None = None,
) -> str:
    """Sign `data` with a private key file via `ssh-keygen -Y sign`; return the armoured text.

    `hashalg` ("sha256"/"sha512") selects the SSHSIG message hash; ssh-keygen's default is
    sha512. For RSA keys ssh-keygen always uses the rsa-sha2-512 signature algorithm.
    """
    args = ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key_path)]
    if hashalg:
        args += ["-O", f"hashalg={hashalg}"]
    env = _askpass_env(_base_env(), passphrase) if passphrase else _base_env()
    return _run(args, env=env, data=data)


def add_key(env: dict[str, str], key_path: Path | str, passphrase: str = "") -> None:
    """Add a private key to the agent whose socket is env["SSH_AUTH_SOCK"]."""
    add_env = _askpass_env(env, passphrase) if passphrase else env
    _run(["ssh-add", "-q", str(key_path)], env=add_env)


@contextlib.contextmanager
def ssh_agent(*key_paths: Path | str, passphrase: str = "") -> Iterator[dict[str, str]]:
    """Run a real `ssh-agent -D` holding `key_paths`; yield an env with SSH_AUTH_SOCK set."""
    # A short directory: unix socket paths are limited to ~108 bytes and pytest's are long.
    socket_dir = tempfile.mkdtemp(prefix="agent-", dir="/tmp" if os.path.isdir("/tmp") else None)
    socket_path = os.path.join(socket_dir, "agent.sock")
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", socket_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_base_env(),
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(socket_path):
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ssh-agent did not start")
            time.sleep(0.01)
        env = {**_base_env(), "SSH_AUTH_SOCK": socket_path}
        for key_path in key_paths:
            add_key(env, key_path, passphrase)
        yield env
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=5)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)


def sign_with_agent(pub_key_path: Path | str, data: bytes, namespace: str, env: dict) -> str:
    """Sign through the agent in `env`: ssh-keygen uses the agent when given the .pub file."""
    args = ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(pub_key_path)]
    return _run(args, env=env, data=data)


def fingerprint(pub_key_path: Path | str) -> str:
    """The "SHA256:..." fingerprint as printed by `ssh-keygen -lf`."""
    output = _run(["ssh-keygen", "-E", "sha256", "-lf", str(pub_key_path)], env=_base_env())
    return output.split()[1]


def make_keys(directory: Path | str, kinds_by_name: dict[str, str]) -> dict[str, Path]:
    """make_key() for several keys at once, in parallel threads (RSA 3072 takes a while).

    Keys are named by the caller ({"alice": "ed25519", ...}); each gets its own subdirectory,
    so two threads never race for the same file name.
    """

    def make(name: str) -> Path:
        subdirectory = Path(directory, name)
        subdirectory.mkdir(parents=True, exist_ok=True)
        return make_key(subdirectory, kinds_by_name[name])

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(kinds_by_name, pool.map(make, kinds_by_name), strict=True))


def openssh_version() -> tuple[int, int]:
    """The (major, minor) version of the local OpenSSH client tools, e.g. (9, 2)."""
    result = subprocess.run(["ssh", "-V"], capture_output=True, env=_base_env(), timeout=_TIMEOUT)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr.decode(errors="replace"))
    if match is None:
        raise RuntimeError(f"cannot tell the OpenSSH version from {result.stderr!r}")
    return int(match[1]), int(match[2])


def ssh_keygen_verifies(
    allowed_key_line: str, message: bytes, armored: str | bytes, namespace: str, directory: Path | str
) -> bool:
    """Whether `ssh-keygen -Y verify` accepts `armored` over `message` by the one allowed key.

    The signature is written to a fresh file in `directory` (so threads can call this at
    once); the allowed_signers file names the key for a single principal.
    """
    workdir = Path(tempfile.mkdtemp(dir=directory))
    try:
        allowed = workdir / "allowed_signers"
        allowed.write_text(f"signer@tests {' '.join(allowed_key_line.split()[:2])}\n")
        signature = workdir / "message.sig"
        signature.write_bytes(armored.encode() if isinstance(armored, str) else armored)
        args = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "signer@tests"]
        args += ["-n", namespace, "-s", str(signature)]
        result = subprocess.run(args, input=message, capture_output=True, env=_base_env(), timeout=_TIMEOUT)
        return result.returncode == 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- SSHSIG envelopes (PROTOCOL.sshsig), for building hostile and unusual signatures ----------


def ssh_string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def ssh_mpint(value: int) -> bytes:
    """An SSH mpint (RFC 4251 section 5) in its minimal form, for a non-negative value."""
    return ssh_string(value.to_bytes(value.bit_length() // 8 + 1, "big") if value else b"")


def read_strings(data: bytes) -> list[bytes]:
    fields = []
    while data:
        n = int.from_bytes(data[:4], "big")
        fields.append(data[4 : 4 + n])
        data = data[4 + n :]
    return fields


def armor(raw: bytes, width: int = 70) -> str:
    """Armour like ssh-keygen does (70 columns, trailing newline)."""
    body = base64.b64encode(raw).decode()
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    return "\n".join(["-----BEGIN SSH SIGNATURE-----", *lines, "-----END SSH SIGNATURE-----"]) + "\n"


def dearmor(armored: str) -> bytes:
    lines = armored.strip().splitlines()
    return base64.b64decode("".join(lines[1:-1]))


@dataclasses.dataclass(frozen=True)
class Envelope:
    """The fields of an SSHSIG blob; replace() one and armored() it to get a variant."""

    publickey: bytes
    namespace: bytes
    reserved: bytes
    hash_alg: bytes
    signature: bytes
    magic: bytes = b"SSHSIG"
    version: int = 1

    @classmethod
    def parse(cls, armored: str) -> Envelope:
        raw = dearmor(armored)
        assert raw[:6] == b"SSHSIG", raw[:6]
        publickey, namespace, reserved, hash_alg, signature = read_strings(raw[10:])
        version = int.from_bytes(raw[6:10], "big")
        return cls(publickey, namespace, reserved, hash_alg, signature, raw[:6], version)

    def raw(self) -> bytes:
        fields = (self.publickey, self.namespace, self.reserved, self.hash_alg, self.signature)
        return self.magic + self.version.to_bytes(4, "big") + b"".join(ssh_string(f) for f in fields)

    def armored(self) -> str:
        return armor(self.raw())

    def replace(self, **changes) -> Envelope:
        return dataclasses.replace(self, **changes)


def sshsig_signed_data(namespace: bytes, hash_alg: str, message: bytes, reserved: bytes = b"") -> bytes:
    """The bytes an SSHSIG signer signs. Unknown hash names hash with SHA-512 (for hostile tests)."""
    digest = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}.get(hash_alg, hashlib.sha512)(message)
    fields = (namespace, reserved, hash_alg.encode(), digest.digest())
    return b"SSHSIG" + b"".join(ssh_string(field) for field in fields)


_ECDSA_HASHES = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}
_RSA_HASHES = {"ssh-rsa": hashes.SHA1, "rsa-sha2-256": hashes.SHA256, "rsa-sha2-512": hashes.SHA512}


def signature_blob(private_key, data: bytes, sig_alg: str | None = None) -> bytes:
    """The inner SSH signature (string(algorithm) + string(bytes)) of `data`, made in Python."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        sig_alg, sig_bytes = sig_alg or "ssh-ed25519", private_key.sign(data)
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        size = private_key.curve.key_size
        der = private_key.sign(data, ec.ECDSA(_ECDSA_HASHES[size]()))
        r, s = decode_dss_signature(der)
        sig_alg, sig_bytes = sig_alg or f"ecdsa-sha2-nistp{size}", ssh_mpint(r) + ssh_mpint(s)
    elif isinstance(private_key, rsa.RSAPrivateKey):
        sig_alg = sig_alg or "rsa-sha2-512"
        sig_bytes = private_key.sign(data, padding.PKCS1v15(), _RSA_HASHES.get(sig_alg, hashes.SHA512)())
    else:
        raise NotImplementedError(type(private_key))
    return ssh_string(sig_alg.encode()) + ssh_string(sig_bytes)


@functools.cache  # loading checks RSA keys, which takes a while for big ones
def load_private_key(key_path: Path | str):
    """The `cryptography` private key of an unencrypted key file made by make_key()."""
    return serialization.load_ssh_private_key(Path(key_path).read_bytes(), password=None)


def sign_with_cryptography(
    key_path: Path | str,
    message: bytes,
    namespace: str,
    *,
    hash_alg: str = "sha512",
    sig_alg: str | None = None,
    reserved: bytes = b"",
    version: int = 1,
) -> str:
    """A correctly signed SSHSIG for choices ssh-keygen will not make (e.g. a non-empty reserved).

    Ed25519, ECDSA and RSA keys; the reserved field is both signed and sent.
    """
    data = sshsig_signed_data(namespace.encode(), hash_alg, message, reserved)
    blob = base64.b64decode(public_key_line(key_path).split()[1])
    signature = signature_blob(load_private_key(key_path), data, sig_alg)
    envelope = Envelope(blob, namespace.encode(), reserved, hash_alg.encode(), signature, version=version)
    return envelope.armored()


def message_with_a_leading_zero_rsa_signature(key_path: Path | str, namespace: str) -> bytes:
    """A message whose rsa-sha2-512 SSHSIG by this RSA key starts with a zero byte.

    About one message in 256 gives one. PKCS#1 v1.5 is deterministic, so ssh-keygen signing
    the returned message makes exactly that signature (with the zero byte: it always sends
    the full modulus length; some other signers drop it).
    """
    private = load_private_key(key_path)
    for counter in itertools.count():
        message = b"challenge %d" % counter
        data = sshsig_signed_data(namespace.encode(), "sha512", message)
        if private.sign(data, padding.PKCS1v15(), hashes.SHA512())[0] == 0:
            return message
    raise AssertionError("unreachable")


# --- security keys built in software, and certificates (issue 22) ------------------------------

SK_FLAG_USER_PRESENT = 0x01
SK_FLAG_USER_VERIFIED = 0x04


@dataclasses.dataclass
class SoftwareSecurityKey:
    """A FIDO security key made in Python: what a YubiKey's sk key looks like from outside.

    ``kind`` is "ed25519" (sk-ssh-ed25519@openssh.com) or "ecdsa" (sk-ecdsa-sha2-nistp256).
    sign() makes the SSHSIG a token would (PROTOCOL.u2f): the private key signs
    SHA-256(application) || flags || counter || SHA-256(SSHSIG signed data), and the flags and
    counter are sent beside the signature. Every part can be chosen, to build hostile variants.
    """

    kind: str = "ed25519"
    application: bytes = b"ssh:"
    private: object = None

    def __post_init__(self):
        if self.private is None:
            self.private = (
                ed25519.Ed25519PrivateKey.generate()
                if self.kind == "ed25519"
                else ec.generate_private_key(ec.SECP256R1())
            )

    @property
    def key_type(self) -> str:
        return (
            "sk-ssh-ed25519@openssh.com" if self.kind == "ed25519" else "sk-ecdsa-sha2-nistp256@openssh.com"
        )

    @property
    def blob(self) -> bytes:
        public = self.private.public_key()
        if self.kind == "ed25519":
            material = ssh_string(
                public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            )
        else:
            point = public.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            material = ssh_string(b"nistp256") + ssh_string(point)
        return ssh_string(self.key_type.encode()) + material + ssh_string(self.application)

    def line(self, comment: str = "sk@tests") -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode()} {comment}".strip()

    def write_pub(self, directory: Path | str, name: str = "id_sk") -> Path:
        """The public key file ssh-keygen -s can certify."""
        path = Path(directory, f"{name}.pub")
        path.write_text(self.line() + "\n")
        return path

    def raw_signature(
        self,
        data: bytes,
        *,
        flags: int = SK_FLAG_USER_PRESENT,
        counter: int = 1,
        application: bytes | None = None,
        algorithm: str | None = None,
    ) -> bytes:
        """The signature blob over ``data`` (string(alg) + string(sig) + flags + counter)."""
        app = self.application if application is None else application
        signed = (
            hashlib.sha256(app).digest()
            + bytes([flags])
            + counter.to_bytes(4, "big")
            + hashlib.sha256(data).digest()
        )
        if self.kind == "ed25519":
            value = self.private.sign(signed)
        else:
            r, s = decode_dss_signature(self.private.sign(signed, ec.ECDSA(hashes.SHA256())))
            value = ssh_mpint(r) + ssh_mpint(s)
        name = (algorithm or self.key_type).encode()
        return ssh_string(name) + ssh_string(value) + bytes([flags]) + counter.to_bytes(4, "big")

    def sign(
        self,
        message: bytes,
        namespace: str,
        *,
        embedded: bytes | None = None,
        hash_alg: str = "sha512",
        **options,
    ) -> str:
        """An armoured SSHSIG by this key (``embedded``: the key blob to carry, e.g. a certificate)."""
        data = sshsig_signed_data(namespace.encode(), hash_alg, message)
        signature = self.raw_signature(data, **options)
        blob = self.blob if embedded is None else embedded
        return Envelope(blob, namespace.encode(), b"", hash_alg.encode(), signature).armored()


def certify(
    ca_key_path: Path | str,
    subject_pub: Path | str,
    *,
    identity: str = "cert@tests",
    principals: list[str] | None = None,
    validity: str | None = None,
    serial: int | None = None,
    options: list[str] = (),
    host: bool = False,
    signature_algorithm: str | None = None,
) -> Path:
    """``ssh-keygen -s CA`` on a public key file; returns the KEY-cert.pub path it wrote.

    ``validity`` is ssh-keygen's -V (e.g. "-5m:+1h", "+1d"); ``options`` its -O values
    (e.g. "source-address=10.0.0.0/8", "verify-required", "critical:name=value")."""
    subject_pub = Path(subject_pub)
    args = ["ssh-keygen", "-q", "-s", str(ca_key_path), "-I", identity]
    if principals:
        args += ["-n", ",".join(principals)]
    if validity:
        args += ["-V", validity]
    if serial is not None:
        args += ["-z", str(serial)]
    if host:
        args.append("-h")
    if signature_algorithm:
        args += ["-t", signature_algorithm]
    for option in options:
        args += ["-O", option]
    _run([*args, str(subject_pub)], env=_base_env())
    return subject_pub.with_name(subject_pub.name.removesuffix(".pub") + "-cert.pub")


def ssh_keygen_verifies_with_ca(
    ca_lines: list[str], principal: str, message: bytes, armored: str | bytes, namespace: str, directory
) -> bool:
    """Whether `ssh-keygen -Y verify -I principal` accepts ``armored`` with an allowed_signers file
    holding ``ca_lines`` (e.g. '* cert-authority ssh-ed25519 AAAA…')."""
    workdir = Path(tempfile.mkdtemp(dir=directory))
    try:
        allowed = workdir / "allowed_signers"
        allowed.write_text("".join(f"{line}\n" for line in ca_lines))
        signature = workdir / "message.sig"
        signature.write_bytes(armored.encode() if isinstance(armored, str) else armored)
        args = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal]
        args += ["-n", namespace, "-s", str(signature)]
        result = subprocess.run(args, input=message, capture_output=True, env=_base_env(), timeout=_TIMEOUT)
        return result.returncode == 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
