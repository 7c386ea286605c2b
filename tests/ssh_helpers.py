"""Make real OpenSSH keys and SSHSIG signatures in tests, using ssh-keygen, ssh-agent, ssh-add.

Typical use::

    key = make_key(tmp_path, "ed25519")
    armored = sign(key, b"hello", "example-namespace")
    public_line = public_key_line(key)              # contents of key + ".pub"

    with ssh_agent(key) as env:                     # a real agent holding the key
        armored = sign_with_agent(pub_path(key), b"hello", "example-namespace", env)

Passphrases are fed to ssh-keygen/ssh-add through SSH_ASKPASS (SSH_ASKPASS_REQUIRE=force), so
nothing ever waits on a terminal. Every command runs with the caller's agent variables
removed, so a developer's own ssh-agent never leaks into a test.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_KINDS: dict[str, list[str]] = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa2048": ["-t", "rsa", "-b", "2048"],
    "rsa1024": ["-t", "rsa", "-b", "1024"],
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
