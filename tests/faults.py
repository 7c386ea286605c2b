"""Fault injection for the resilience tests: private Redis and PostgreSQL servers we may stop.

The machine's own PostgreSQL (5432) and Redis (6379) are shared with every other test run and
must never be stopped, so an outage test starts its own redis-server or PostgreSQL cluster on
a port of its own, points the servers under test at it, and stops, freezes or restarts it.

- PrivateRedis: ``redis-server`` with no persistence, on a port in 16370-16379.
- SentinelRedis: a primary, a replica and three Sentinels (``redis-server --sentinel``) that fail
  over within seconds, on ports in 16380-16399; ``kill_primary`` is SIGKILL.
- PrivatePostgres: a throw-away cluster (``initdb`` + ``pg_ctl``) on a port in 15440-15449, run
  as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root).
- ResilientSender: a websocket sender that, like a real client, reconnects to the next server
  after its connection dies and resends the unacknowledged frame with the same client_id.
"""

import asyncio
import contextlib
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

from deploy.cluster import wait_for as wait_until  # poll until truthy, RuntimeError after timeout
from deploy.services import postgres_bin
from native_client import Backoff, Tail
from tests import ws

FAST = Backoff(initial=0.05, cap=0.5, rate_limited=1.0)  # a client that reconnects at once

ROOT = Path(__file__).resolve().parent.parent
REDIS_PORTS = range(16370, 16380)
SENTINEL_GROUP_PORTS = range(16380, 16400)
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


def free_ports_in(ports: range, count: int) -> list[int]:
    """``count`` distinct free ports (held together while they are picked)."""
    held = []
    try:
        for port in ports:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            if len(held) == count:
                return [s.getsockname()[1] for s in held]
        raise RuntimeError(f"fewer than {count} free ports in {ports.start}-{ports.stop - 1}")
    finally:
        for sock in held:
            sock.close()


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


class SentinelRedis:
    """A Redis primary with one replica, watched by three Sentinels that fail over fast: the
    primary is down after DOWN_AFTER_MS without an answer, and a failover that stalls is retried
    after twice FAILOVER_TIMEOUT_MS. ``url`` is the redis+sentinel:// address of the group.
    ``stop`` ends every process it started, whatever state the group is in."""

    MASTER = "native"
    DOWN_AFTER_MS = 1000
    FAILOVER_TIMEOUT_MS = 3000

    def __init__(self, workdir: Path):
        self.workdir = workdir
        ports = free_ports_in(SENTINEL_GROUP_PORTS, 5)
        self.primary_port, self.replica_port, self.sentinel_ports = ports[0], ports[1], ports[2:]
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.MASTER}/0"

    def start(self) -> None:
        self._spawn(self.primary_port)
        self._spawn(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        wait_until(self._replica_in_sync, timeout=10, what="the replica to sync")
        for port in self.sentinel_ports:
            config = self.workdir / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} {self.DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.MASTER} {self.FAILOVER_TIMEOUT_MS}\n"
            )
            self._spawn(port, str(config), "--sentinel", config_first=True)
        # The Sentinels find the replica (INFO) and each other (hello messages, every 2 s).
        wait_until(self._sentinels_ready, timeout=15, what="three Sentinels that know the group")

    def _spawn(self, port: int, *args: str, config_first: bool = False) -> None:
        server = shutil.which("redis-server") or "redis-server"
        options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        options += ["--repl-diskless-sync-delay", "0"]  # the replica syncs at once, not in 5 s
        if config_first:  # a Sentinel: its config file must come first, and be writable
            command = [server, *args, "--dir", str(self.workdir)]
        else:
            command = [
                server,
                *options,
                "--dir",
                str(self.workdir),
                "--dbfilename",
                f"dump-{port}.rdb",
                *args,
            ]
        with open(self.workdir / f"redis-{port}.log", "a") as log:
            self.processes[port] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.client(port).ping(), timeout=10, what=f"redis-server on port {port}")

    @staticmethod
    def client(port: int):
        import redis

        return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5, decode_responses=True)

    def _ask(self, sentinel_port: int, *args: str):
        # Raw SENTINEL replies: redis-py 6.4's parsers for sentinel_master() and friends fail on a
        # plain client (an unexpected return_responses argument).
        return self.client(sentinel_port).execute_command("SENTINEL", *args)

    def _replica_in_sync(self) -> bool:
        return self.client(self.replica_port).info("replication").get("master_link_status") == "up"

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            reply = self._ask(port, "MASTER", self.MASTER)
            state = dict(zip(reply[::2], reply[1::2], strict=True))
            if (
                int(state["num-slaves"]) < 1
                or int(state["num-other-sentinels"]) < len(self.sentinel_ports) - 1
            ):
                return False
        return True

    def primary(self) -> int:
        """The primary's port, as a majority of the Sentinels report it."""
        votes = [self._ask(port, "GET-MASTER-ADDR-BY-NAME", self.MASTER) for port in self.sentinel_ports]
        ports = [int(vote[1]) for vote in votes if vote]
        return max(set(ports), key=ports.count)

    def kill_primary(self) -> int:
        """SIGKILL the primary (no goodbye to anyone); returns its port."""
        port = self.primary()
        process = self.processes[port]
        process.kill()
        process.wait()
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 20) -> int:
        """The new primary's port, once every Sentinel names it and it accepts writes."""

        def promoted():
            ports = {
                int(self._ask(port, "GET-MASTER-ADDR-BY-NAME", self.MASTER)[1])
                for port in self.sentinel_ports
            }
            if len(ports) != 1 or old_port in ports:
                return None
            (port,) = ports
            return port if self.client(port).info("replication")["role"] == "master" else None

        return wait_until(promoted, timeout=timeout, what="the Sentinels to fail over")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


# --- PostgreSQL -------------------------------------------------------------------------------


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


class Subscriber:
    """A real client tail, collecting message ids, with its reconnect events."""

    def __init__(self, token, servers, room="general"):
        self.ids: list[int] = []
        self.events = []
        self.tail = Tail(token, [s.url for s in servers], room, backoff=FAST, on_event=self.events.append)
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        async for message in self.tail.messages():
            self.ids.append(message["id"])

    def subscribed_to(self, server) -> bool:
        return any(e.kind == "subscribed" and e.url == server.url for e in self.events)

    async def until(self, predicate, what, timeout=30.0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if self.task.done():
                self.task.result()  # raises what stopped the tail
            assert loop.time() < deadline, f"timed out waiting for {what}; events: {self.events}"
            await asyncio.sleep(0.05)

    async def stop(self):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


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
