"""Just enough of the Redis protocol (RESP2) to ask a Redis or a Sentinel inside the cluster a
question from outside its namespace: readiness, who the primary is, replication state."""

import contextlib

from deploy import netns


class RedisReplyError(RuntimeError):
    """Redis answered with an error reply."""


def command(ns: str, address: tuple[str, int], *args: str, timeout: float = 2.0):
    """Send one command from inside ``ns``; the decoded reply (str, int, list or None)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with contextlib.closing(netns.connect(ns, address, timeout)) as sock:
        sock.sendall(payload.encode())
        reader = sock.makefile("rb")
        return _read(reader)


def _read(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n").decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisReplyError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)
        return data[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read(reader) for _ in range(count)]
    raise ConnectionError(f"unexpected Redis reply {line!r}")


def info(ns: str, address: tuple[str, int], section: str) -> dict[str, str]:
    text = command(ns, address, "INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def pairs(flat: list) -> dict:
    """A Sentinel reply such as SENTINEL REPLICAS' entries: [k1, v1, k2, v2…] → dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
