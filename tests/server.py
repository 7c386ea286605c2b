"""Start real server processes (daphne, uvicorn or gunicorn) on a free loopback port for end-to-end tests."""

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_tests() -> str:
    """A DATABASE_URL pointing at the test database pytest-django created."""
    from django.db import connection

    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or ""
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{conf.get('HOST') or '127.0.0.1'}:{conf.get('PORT') or 5432}/{conf['NAME']}"


def run_manage(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python manage.py ...`` in its own process, on the test database (``env``: overrides)."""
    full_env = {**os.environ, "DATABASE_URL": database_url_for_tests(), **(env or {})}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Quiet, fast defaults for a test server; a test passes overrides for what it exercises.
QUIET_ENV = {
    "DEBUG": "true",
    "NATIVE_PURGE_INTERVAL": "0",
    "NATIVE_RATE_CHALLENGE": "0",
    "NATIVE_RATE_TOKEN_IP": "0",
    "NATIVE_RATE_TOKEN_KEY": "0",
    "NATIVE_RATE_AUTH_FAILURES": "0",
    "NATIVE_RATE_WS_TICKET": "0",
    "NATIVE_RATE_WS_CONNECT": "0",
}


@dataclass
class ServerProcess:
    port: int
    log_path: Path
    process: subprocess.Popen
    env: dict = field(repr=False, default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/ws/native"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=None) -> None:
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def server_command(server: str, port: int, *, workers: int = 2, options: tuple = ()) -> list[str]:
    """Each server with its default options, as API.md promises (gunicorn reads gunicorn.conf.py),
    and ``options`` for daphne's command line."""
    asgi, wsgi = "config.asgi:application", "config.wsgi:application"
    if server == "daphne":
        return [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), *options, asgi]
    if server == "uvicorn":
        return [str(VENV_BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), asgi]
    if server == "gunicorn":
        return [str(VENV_BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", str(workers), wsgi]
    raise ValueError(f"unknown server {server!r}")


def start_server(
    log_dir: Path,
    *,
    env: dict | None = None,
    server: str = "daphne",
    name: str = "server",
    workers: int = 2,
    options: tuple = (),
):
    """A server process on a free port, once /api/native/health answers 200. ``server``: daphne,
    uvicorn (config.asgi) or gunicorn with ``workers`` sync workers (config.wsgi, HTTP only)."""
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    full_env = {**os.environ, **QUIET_ENV, "DATABASE_URL": database_url_for_tests(), **(env or {})}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)
    full_env["PYTHONUNBUFFERED"] = "1"
    cmd = server_command(server, port, workers=workers, options=options)
    log_file = open(log_path, "w")  # noqa: SIM115 - the process writes to it until stop()
    process = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    proc = ServerProcess(port, log_path, process, full_env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{proc.log()}")
        try:
            if httpx.get(f"{proc.url}/api/native/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"server did not become healthy:\n{proc.log()}")


# Runs in a ManageProcess: Django set up once, then one management command per line of stdin.
_MANAGE_WORKER = """
import io, json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
import django
django.setup()
from django.core.management import call_command
print("ready", flush=True)
for line in sys.stdin:
    out, err, error = io.StringIO(), io.StringIO(), None
    try:
        call_command(*json.loads(line), stdout=out, stderr=err)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"stdout": out.getvalue(), "stderr": err.getvalue(), "error": error}), flush=True)
"""


class ManageProcess:
    """A process of its own that runs management commands on demand, Django already set up.

    A cold ``manage.py`` start takes about a second; this lets a test run two commands in two
    processes milliseconds apart (within one wall-clock second, say), each with the real command
    class, the real settings and its own database connection."""

    def __init__(self, env: dict | None = None):
        full_env = {**os.environ, "DATABASE_URL": database_url_for_tests(), **(env or {})}
        full_env.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _MANAGE_WORKER],
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            self.close()
            raise RuntimeError(f"the manage process did not start: {ready!r}")

    def run(self, *args: str) -> tuple[str, str]:
        """(stdout, stderr) of ``manage.py ARGS``; a command that fails raises RuntimeError."""
        self.process.stdin.write(json.dumps(list(args)) + "\n")
        self.process.stdin.flush()
        result = json.loads(self.process.stdout.readline())
        if result["error"]:
            raise RuntimeError(f"manage.py {' '.join(args)}: {result['error']}")
        return result["stdout"], result["stderr"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
