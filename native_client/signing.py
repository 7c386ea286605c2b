"""Sign a login challenge with the user's SSH key by running ``ssh-keygen -Y sign``.

We call OpenSSH rather than parsing keys ourselves: it already handles every key type, encrypted
keys (it asks for the passphrase on the terminal), security keys (it asks for a touch or a PIN)
and ssh-agent, and users trust it with their keys.
When ``SSH_AUTH_SOCK`` is set and the agent holds the key, ssh-keygen is given the ``.pub`` file,
which makes it sign through the agent, so a passphrase-protected key never needs its passphrase here.
Otherwise the private key file signs, also when the caller named the ``.pub`` beside it.

Certificates: when ``KEY-cert.pub`` lies beside the key (what ``ssh-keygen -s`` writes, and what
Vault, step-ca or Teleport hand out), the login presents the certificate and ssh-keygen is given
that file: it signs through the agent when the agent holds the certificate (``ssh-add KEY`` loads
it too), else with the private key, and embeds the certificate in the signature either way.

Security keys: ssh-keygen writes "Confirm user presence for key …" on stderr and waits for the
touch. That stderr goes to the user's terminal as it is written (and is kept for error messages),
so the prompt is never swallowed; a PIN is read from the terminal by ssh-keygen itself.
"""

import base64
import binascii
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from native_client.errors import SigningError

# Long enough for a person to type a passphrase at ssh-keygen's prompt.
SIGN_TIMEOUT = 300
QUICK_TIMEOUT = 15


CERT_SUFFIX = "-cert.pub"


def key_files(key: str | os.PathLike) -> tuple[Path | None, Path]:
    """(private key path or None, public key path) for a key given by either file (or by its
    certificate, KEY-cert.pub)."""
    path = Path(key).expanduser()
    if path.name.endswith(CERT_SUFFIX):
        path = path.with_name(path.name.removesuffix(CERT_SUFFIX))
    if path.suffix == ".pub":
        private = path.with_suffix("")
        return (private if private.exists() else None), path
    return path, Path(f"{path}.pub")


def certificate_file(key: str | os.PathLike) -> Path | None:
    """KEY-cert.pub beside the key, when there is one."""
    private, public = key_files(key)
    base = private if private is not None else public.with_suffix("")
    certificate = base.with_name(base.name + CERT_SUFFIX)
    return certificate if certificate.is_file() else None


def is_security_key(public_line: str) -> bool:
    """sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com, or a certificate of one."""
    return public_line.startswith("sk-")


def public_key_line(key: str | os.PathLike) -> str:
    """The line the login presents: the certificate beside ``key`` if there is one, else the
    OpenSSH public key line ("type base64 [comment]") of ``key``."""
    certificate = certificate_file(key)
    if certificate is not None:
        line = certificate.read_text().strip()
        if len(line.split()) < 2:
            raise SigningError(f"{certificate} is not an OpenSSH certificate.")
        return line
    return plain_public_key_line(key)


def plain_public_key_line(key: str | os.PathLike) -> str:
    """The OpenSSH public key line of ``key`` itself (never its certificate)."""
    private, public = key_files(key)
    if public.exists():
        line = public.read_text().strip()
    elif private is not None and private.exists():
        # No .pub beside the key: ssh-keygen derives it (and may ask for the passphrase).
        line = _run(["ssh-keygen", "-y", "-f", str(private)], timeout=SIGN_TIMEOUT).decode().strip()
    else:
        raise SigningError(
            f"No SSH key at {private or public}: give the path of a private key or of its .pub file."
        )
    if len(line.split()) < 2:
        raise SigningError(f"{public} is not an OpenSSH public key.")
    return line


def fingerprint(public_line: str) -> str:
    """``SHA256:…`` of the key blob, as ``ssh-keygen -lf`` prints it (and the server shows it)."""
    try:
        blob = base64.b64decode(public_line.split()[1], validate=True)
    except (IndexError, binascii.Error):
        return "an unreadable key"
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def agent_holds(public_line: str, env: dict | None = None) -> bool:
    """True when the ssh-agent at SSH_AUTH_SOCK holds the key of ``public_line``."""
    env = os.environ if env is None else env
    if not env.get("SSH_AUTH_SOCK"):
        return False
    try:
        listed = subprocess.run(
            ["ssh-add", "-L"], capture_output=True, env=env, timeout=QUICK_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    wanted = public_line.split()[:2]
    return listed.returncode == 0 and any(
        line.split()[:2] == wanted for line in listed.stdout.decode(errors="replace").splitlines()
    )


def sign(data: bytes, namespace: str, key: str | os.PathLike, env: dict | None = None) -> str:
    """The armoured SSHSIG of exactly ``data`` under ``namespace``, made by ssh-keygen (with the
    certificate beside ``key`` embedded, when there is one)."""
    env = dict(os.environ if env is None else env)
    private, public = key_files(key)
    certificate = certificate_file(key)
    presented = public_key_line(key)
    if agent_holds(presented, env):
        signer = certificate or public
    elif private is not None and private.exists():
        signer = certificate or private
        if certificate is not None:
            # ssh-keygen would try an agent that holds the plain key but not the certificate,
            # which refuses; without the agent it grafts the certificate onto the private key.
            env.pop("SSH_AUTH_SOCK", None)
    elif env.get("SSH_AUTH_SOCK"):
        raise SigningError(
            f"No private key next to {public}, and the ssh-agent does not hold this key: "
            f"load it with ssh-add, or log in with the private key file instead."
        )
    else:
        raise SigningError(
            f"No private key next to {public}, and no ssh-agent is running (SSH_AUTH_SOCK is unset): "
            f"log in with the private key file instead, or start ssh-agent and load the key with ssh-add."
        )
    # Data on stdin: ssh-keygen then writes the signature to stdout and never touches a file.
    output = _run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", namespace, "-f", str(signer)],
        data=data,
        env=env,
        timeout=SIGN_TIMEOUT,
        show_stderr=is_security_key(presented),
    )
    armored = output.decode(errors="replace")
    if "BEGIN SSH SIGNATURE" not in armored:
        raise SigningError("ssh-keygen produced no signature.")
    return armored


def _run(
    args: list[str],
    *,
    data: bytes | None = None,
    env: dict | None = None,
    timeout: float,
    show_stderr: bool = False,
) -> bytes:
    """Run ssh-keygen; ``show_stderr``: its stderr reaches the user's terminal as it is written
    (a security key's touch prompt) and is kept for the error message too."""
    try:
        if show_stderr:
            result = _run_showing_stderr(args, data, env, timeout)
        else:
            result = subprocess.run(
                args, input=data, capture_output=True, env=env, timeout=timeout, check=False
            )
    except FileNotFoundError:
        raise SigningError("ssh-keygen was not found; install OpenSSH.") from None
    except subprocess.TimeoutExpired:
        raise SigningError("ssh-keygen did not finish in time.") from None
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        message = f"ssh-keygen failed: {lines[-1] if lines else f'exit {result.returncode}'}"
        if "passphrase" in message:
            message += " (add the key to ssh-agent with ssh-add, or type its passphrase at a terminal)"
        raise SigningError(message)
    return result.stdout


def _run_showing_stderr(args, data, env, timeout) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    kept: list[bytes] = []
    stderr, process.stderr = process.stderr, None  # read here only, never by communicate()

    def forward():
        for chunk in iter(lambda: os.read(stderr.fileno(), 4096), b""):
            kept.append(chunk)
            sys.stderr.write(chunk.decode(errors="replace"))
            sys.stderr.flush()

    forwarder = threading.Thread(target=forward, daemon=True)
    forwarder.start()
    try:
        stdout, _ = process.communicate(input=data, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    forwarder.join(timeout=5)
    stderr.close()
    return subprocess.CompletedProcess(args, process.returncode, stdout, b"".join(kept))
