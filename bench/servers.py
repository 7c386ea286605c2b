"""Server processes (daphne, uvicorn or gunicorn) on loopback, always stopped.

Every process the bench starts is recorded: in memory (stopped in ``finally`` blocks and at
exit), in a pid file (a later run kills strays a killed run left behind, by pid), and with
PR_SET_PDEATHSIG so the kernel ends it if the bench itself is killed.
"""

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.procs import BenchError, die_with_parent, raise_fd_limit

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PID_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "native-bench-pids"
MARKER = "NATIVE_BENCH_OWNER"

_running: list["Server"] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _preexec():
    os.setsid()
    die_with_parent()
    raise_fd_limit()


@dataclass
class Server:
    name: str
    kind: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def processes(self) -> list[psutil.Process]:
        """The server process and its children (gunicorn's workers)."""
        main = psutil.Process(self.pid)
        return [main, *main.children(recursive=True)]

    def cpu(self) -> float:
        """User + system CPU seconds of the server process (and its workers) so far."""
        total = 0.0
        for process in self.processes():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def rss(self) -> int:
        return sum(process.memory_info().rss for process in self.processes())

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        (PID_DIR / str(self.pid)).unlink(missing_ok=True)
        if self in _running:
            _running.remove(self)


GUNICORN_WORKERS = 2  # one per core of this machine, as docs/operations.md recommends


def command(kind: str, port: int) -> tuple[list[str], str]:
    """(argv, the path that answers 200 once it is ready) for each kind, default options.

    gunicorn-minimal is the baseline project of bench/minimal_wsgi.py under the same gunicorn."""
    asgi, health = "config.asgi:application", "/api/native/health"
    if kind == "daphne":
        return [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), asgi], health
    if kind == "uvicorn":
        return [str(VENV_BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), asgi], health
    if kind in ("gunicorn", "gunicorn-minimal"):
        app = "config.wsgi:application" if kind == "gunicorn" else "bench.minimal_wsgi:application"
        argv = [str(VENV_BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", str(GUNICORN_WORKERS), app]
        return argv, health if kind == "gunicorn" else "/bench/plain"
    raise ValueError(kind)


def start_server(
    env: dict, log_dir: Path, *, kind: str = "daphne", name: str = "server", root: Path = ROOT
) -> Server:
    """Start a server; ``root`` is the source tree it runs (another commit's, for a before/after)."""
    port = free_port()
    cmd, ready_path = command(kind, port)
    log_path = log_dir / f"{name}-{kind}-{port}.log"
    full_env = {**env, MARKER: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            cmd, cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_preexec
        )
    server = Server(name, kind, port, process, log_path)
    _running.append(server)
    PID_DIR.mkdir(exist_ok=True)
    (PID_DIR / str(process.pid)).write_text(str(os.getpid()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise BenchError(f"{name} ({kind}) exited at start:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}{ready_path}", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    server.stop()
    raise BenchError(f"{name} ({kind}) not healthy within 30 s:\n{server.log_tail()}")


def stop_all() -> None:
    for server in list(_running):
        server.stop()


def kill_strays() -> list[int]:
    """Kill servers left by an earlier bench run that died: by the pids it recorded, and only
    when that process is still a bench server (our marker in its environment) whose owner is gone."""
    killed = []
    if not PID_DIR.exists():
        return killed
    for entry in PID_DIR.iterdir():
        try:
            pid, owner = int(entry.name), int(entry.read_text() or 0)
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(owner) and owner != os.getpid():
            continue  # another bench run is alive and owns it
        try:
            proc = psutil.Process(pid)
            if proc.environ().get(MARKER) == str(owner):
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
        except (psutil.Error, ProcessLookupError, PermissionError):
            pass
        entry.unlink(missing_ok=True)
    return killed


atexit.register(stop_all)
