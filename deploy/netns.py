"""Network namespaces through iproute2, and sockets opened inside one from this process.

``connect(ns, address)`` opens a TCP connection from inside namespace ``ns`` without a
subprocess: a short-lived thread switches itself into the namespace (setns(2) changes the
network namespace of the calling thread only), creates the socket there, and hands it back;
a socket stays in the namespace it was created in. The cluster's readiness checks and the
drills' probes use it to reach addresses that exist only inside the cluster.
"""

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """An iproute2 command failed."""


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result.stdout


def ip_batch(commands: list[str], ns: str | None = None) -> None:
    """Several ``ip`` commands in one process (``ip -batch``): tens of them in milliseconds."""
    if not commands:
        return
    cmd = ["ip", *(["-n", ns] if ns else []), "-batch", "-"]
    result = subprocess.run(cmd, input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NetnsError(f"ip -batch in {ns or 'the root namespace'}: {result.stderr.strip()}")


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def add(ns: str) -> None:
    ip("netns", "add", ns)
    ip("link", "set", "lo", "up", ns=ns)


def delete(ns: str) -> None:
    """Remove ``ns``: its links go with it (a veth pair dies with either end)."""
    if exists(ns):
        ip("netns", "del", ns, check=False)


def pids(ns: str) -> list[int]:
    if not exists(ns):
        return []
    out = ip("netns", "pids", ns, check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def exec_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def inode(ns: str) -> int:
    return os.stat(NETNS_DIR / ns).st_ino


def inside(ns: str) -> bool:
    """Whether this process already runs in ``ns``."""
    return exists(ns) and os.stat("/proc/self/ns/net").st_ino == inode(ns)


def run_in(ns: str, fn):
    """``fn()`` on a thread that has entered ``ns``; its result, or its exception."""
    outcome: dict = {}

    def target():
        try:
            with open(NETNS_DIR / ns) as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns into {ns}: {os.strerror(errno)}")
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def connect(ns: str, address: tuple[str, int], timeout: float = 2.0) -> socket.socket:
    """A TCP connection to ``address`` made from inside ``ns``."""

    def open_connection():
        return socket.create_connection(address, timeout=timeout)

    return run_in(ns, open_connection)


def http_status(ns: str, address: tuple[str, int], path: str, host: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET path`` from inside ``ns``, or None if nothing answered."""
    try:
        return http_request(ns, address, "GET", path, host=host, timeout=timeout)
    except OSError:
        return None


def http_request(
    ns: str,
    address: tuple[str, int],
    method: str,
    path: str,
    *,
    host: str,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
) -> int | None:
    """One bodiless HTTP/1.0 request from inside ``ns``; the response's status code."""
    lines = [f"{method} {path} HTTP/1.0", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with contextlib.closing(connect(ns, address, timeout)) as sock:
        sock.settimeout(timeout)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = sock.recv(64).decode("latin-1")
    parts = head.split(" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
