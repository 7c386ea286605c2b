"""Fault injection for the resilience tests: private Redis and PostgreSQL servers we may stop.

The machine's own PostgreSQL (5432) and Redis (6379) are shared with every other test run and
must never be stopped, so an outage test starts its own redis-server or PostgreSQL cluster on
a port of its own, points the servers under test at it, and stops, freezes or restarts it.

- PrivateRedis: ``redis-server`` with no persistence, on a port in 16370-16379.
- PrivatePostgres: a throw-away cluster (``initdb`` + ``pg_ctl``) on a port in 15440-15449, run
  as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root).
- ResilientSender: a websocket sender that, like a real client, reconnects to the next server
  after its connection dies and resends the unacknowledged frame with the same client_id.
"""

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

from tests import ws

ROOT = Path(__file__).resolve().parent.parent
REDIS_PORTS = range(16370, 16380)
POSTGRES_PORTS = range(15440, 15450)


def free_port_in(ports: range) -> int:
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def wait_until(check, *, timeout: float, what: str, interval: float = 0.05):
    """Poll ``check`` until it returns a truthy value; that value, or RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --- Redis ------------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own: stop it for an outage, start it again on the same port."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port_in(REDIS_PORTS)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.workdir / f"redis-{self.port}.log", "a") as log:
            self.process = self._spawn(log)
        wait_until(self.ping, timeout=10, what=f"redis-server on port {self.port}")

    def _spawn(self, log) -> subprocess.Popen:
        return subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def ping(self) -> bool:
        import redis

        with redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5) as client:
            return client.ping()

    def stop(self) -> None:
        """A clean shutdown: connections are closed, the port refuses new ones."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


# --- PostgreSQL -------------------------------------------------------------------------------


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {name} was not found under /usr/lib/postgresql/*/bin or on PATH")
    return on_path


def _version_key(path: str) -> tuple:
    version = path.split("/")[4]
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on its own port (trust auth on loopback, no fsync)."""

    def __init__(self):
        self.port = free_port_in(POSTGRES_PORTS)
        # Not under pytest's tmp_path: that is private to root, and the cluster runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="native-faults-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.root, self.user)
        self._run(
            postgres_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, user=self.user, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash as far as clients can tell: every connection drops at once."""
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def freeze(self) -> None:
        """The postmaster stops answering: new connections hang after the TCP handshake, while
        sessions already open (their own backend processes) still work."""
        os.kill(self.postmaster_pid(), signal.SIGSTOP)

    def thaw(self) -> None:
        if self.running:
            os.kill(self.postmaster_pid(), signal.SIGCONT)

    def sql(self, statement: str, dbname: str = "postgres"):
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else None

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.thaw()
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def manage(env: dict, *args: str) -> str:
    """Run ``manage.py`` with ``env`` overrides (e.g. a private DATABASE_URL); its stdout."""
    full_env = {**os.environ, **env}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# --- clients ----------------------------------------------------------------------------------


def timed_request(method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
    """(response, seconds): outage tests care as much about how fast the answer is as about it."""
    kwargs.setdefault("timeout", 30)
    started = time.monotonic()
    response = httpx.request(method, url, **kwargs)
    return response, time.monotonic() - started


def mint_ticket(base_url: str, token: str) -> str:
    response = httpx.post(
        f"{base_url}/api/native/ws-ticket", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


async def open_socket(server, token: str):
    """A websocket on ``server`` that has said hello."""
    socket_ = await ws.connect(f"{server.ws_url}?ticket={mint_ticket(server.url, token)}")
    hello = await ws.recv_json(socket_, timeout=10)
    assert hello["type"] == "hello", hello
    return socket_


class ResilientSender:
    """Sends numbered messages over a websocket, one at a time, as a careful client would.

    When the connection dies before the ack, it moves to the next server and resends the same
    frame with the same client_id: the server's idempotency turns the retry into the original
    message, so an unacknowledged send that did commit is not duplicated. ``acked`` is what the
    server confirmed, in order; ``reconnects`` counts the failovers.
    """

    def __init__(self, servers, token: str, room: str, prefix: str):
        self.servers, self.token, self.room, self.prefix = list(servers), token, room, prefix
        self.acked: list[int] = []
        self.reconnects = 0
        self._index = 0
        self._socket = None

    async def _connect(self):
        for _ in range(len(self.servers) * 5):
            server = self.servers[self._index % len(self.servers)]
            try:
                return await open_socket(server, self.token)
            except (OSError, AssertionError, httpx.HTTPError, websockets.WebSocketException, TimeoutError):
                self._index += 1
                await asyncio.sleep(0.2)
        raise RuntimeError("no server accepted the sender")

    async def send(self, number: int) -> int:
        frame = {"type": "send", "room": self.room, "body": f"{self.prefix} {number}"}
        frame["client_id"] = f"{self.prefix}-{number}"
        while True:
            if self._socket is None:
                self._socket = await self._connect()
            try:
                await ws.send_json(self._socket, frame)
                reply = await ws.recv_json(self._socket, timeout=15)
            except (websockets.ConnectionClosed, OSError, TimeoutError):
                self._socket = None
                self._index += 1
                self.reconnects += 1
                continue
            assert reply["type"] == "ack", reply
            self.acked.append(reply["id"])
            return reply["id"]

    async def close(self):
        if self._socket is not None:
            await self._socket.close()
