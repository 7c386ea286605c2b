"""Sign a login challenge with the user's SSH key by running ``ssh-keygen -Y sign``.

We call OpenSSH rather than parsing keys ourselves: it already handles every key type, encrypted
keys (it asks for the passphrase on the terminal) and ssh-agent, and users trust it with their keys.
When ``SSH_AUTH_SOCK`` is set and the agent holds the key, ssh-keygen is given the ``.pub`` file,
which makes it sign through the agent, so a passphrase-protected key never needs its passphrase here.
Otherwise the private key file signs, also when the caller named the ``.pub`` beside it.
"""

import base64
import binascii
import hashlib
import os
import subprocess
from pathlib import Path

from native_client.errors import SigningError

# Long enough for a person to type a passphrase at ssh-keygen's prompt.
SIGN_TIMEOUT = 300
QUICK_TIMEOUT = 15


def key_files(key: str | os.PathLike) -> tuple[Path | None, Path]:
    """(private key path or None, public key path) for a key given by either file."""
    path = Path(key).expanduser()
    if path.suffix == ".pub":
        private = path.with_suffix("")
        return (private if private.exists() else None), path
    return path, Path(f"{path}.pub")


def public_key_line(key: str | os.PathLike) -> str:
    """The OpenSSH public key line ("type base64 [comment]") of ``key``."""
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
    """The armoured SSHSIG of exactly ``data`` under ``namespace``, made by ssh-keygen."""
    env = dict(os.environ if env is None else env)
    private, public = key_files(key)
    if agent_holds(public_key_line(key), env):
        signer = public
    elif private is not None and private.exists():
        signer = private
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
    )
    armored = output.decode(errors="replace")
    if "BEGIN SSH SIGNATURE" not in armored:
        raise SigningError("ssh-keygen produced no signature.")
    return armored


def _run(args: list[str], *, data: bytes | None = None, env: dict | None = None, timeout: float) -> bytes:
    try:
        result = subprocess.run(args, input=data, capture_output=True, env=env, timeout=timeout, check=False)
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
