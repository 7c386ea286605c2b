"""Bring the cluster up and down: ``python -m deploy.cluster up|down|status`` (root; ``make cluster``).

Up: namespaces and links first, then three chains in parallel, each polling for readiness
rather than sleeping: PostgreSQL (initdb, start, role and database, migrations),
Redis (two primaries, their replicas, then the three Sentinels), nginx, and collectstatic; then
the three app hosts' gunicorn and daphne at once, each waited for through its health endpoint;
last, nginx's own health answer as a client sees it. Any failure, Ctrl-C or SIGTERM during the
start tears everything down again before the command exits.

Down: every process in the cluster's namespaces gets SIGTERM (PostgreSQL a fast shutdown),
whatever is left after 10 s SIGKILL, then the namespaces go, and every link and bridge with
them (they all live inside the namespaces; the machine's own network is never touched). Down is
idempotent: it finds what exists by the cluster's namespace names, not by what a start recorded.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deploy import netns, resp, services, topology
from deploy.services import Recipes, Service

DEFAULT_NAME = "native"
RUN_ROOT = Path(os.environ.get("CLUSTER_RUN_ROOT") or tempfile.gettempdir())
STOP_GRACE = 10.0  # daphne's and gunicorn's own stop takes at most 9 s (API.md: within 10 s)
SENTINEL_DOWN_AFTER_MS = 2000


class ClusterError(RuntimeError):
    """The cluster could not be started, or is not there."""


class Stopping(BaseException):
    """The start was abandoned (a signal, or a failure in a parallel chain)."""


def run_dir_for(name: str) -> Path:
    return RUN_ROOT / f"native-cluster-{name}"


def wait_for(
    check, *, timeout: float, what: str, interval: float = 0.05, stop: threading.Event | None = None
):
    """Poll ``check`` until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        if stop is not None and stop.is_set():
            raise Stopping(what)
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Cluster:
    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        venv_bin: Path | None = None,
        workers: int = 2,
        overrides: dict[str, str] | None = None,
        pgbouncer: bool = False,
    ):
        self.name = name
        self.run_dir = run_dir_for(name)
        self.recipes = Recipes(
            name,
            self.run_dir,
            venv_bin or Path(sys.executable).parent,
            workers,
            dict(overrides or {}),
            pgbouncer,
        )
        self.pids: dict[str, int] = {}
        self._children: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # --- state ----------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    def save(self) -> None:
        state = {
            "name": self.name,
            "venv_bin": str(self.recipes.venv_bin),
            "workers": self.recipes.workers,
            "overrides": self.recipes.overrides,
            "pgbouncer": self.recipes.pgbouncer,
            "pids": self.pids,
        }
        self.state_path.write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, name: str = DEFAULT_NAME) -> "Cluster":
        path = run_dir_for(name) / "state.json"
        if not netns.exists(topology.switch_namespace(name)) or not path.exists():
            raise ClusterError(f"no cluster {name!r} is running (make cluster)")
        state = json.loads(path.read_text())
        cluster = cls(
            name,
            venv_bin=Path(state["venv_bin"]),
            workers=state["workers"],
            overrides=state["overrides"],
            pgbouncer=state.get("pgbouncer", False),
        )
        cluster.pids = state["pids"]
        return cluster

    def ns(self, host: str) -> str:
        return topology.namespace(self.name, host)

    # --- processes --------------------------------------------------------------------------
    def spawn(self, service: Service) -> subprocess.Popen:
        with self._lock:
            if self._stopping.is_set():
                raise Stopping(service.name)
            process = service.spawn(self.name)
            self._children.append(process)
            self.pids[service.name] = process.pid
        return process

    def start(self, name: str, **options) -> int:
        """(Re)start one service by name; its pid. Readiness is the caller's to wait for."""
        process = self.spawn(self.recipes.by_name(name, **options))
        self.save()
        return process.pid

    def alive(self, name: str) -> bool:
        pid = self.pids.get(name)
        return pid is not None and pid_alive(pid)

    def signal(self, name: str, signum: int) -> None:
        os.kill(self.pids[name], signum)

    def wait_gone(self, name: str, timeout: float) -> float:
        """Seconds until the service's process had exited (ClusterError after ``timeout``)."""
        started = time.monotonic()
        wait_for(lambda: not self.alive(name), timeout=timeout, what=f"{name} to exit")
        return time.monotonic() - started

    def run(self, service: Service, timeout: float = 300) -> None:
        """Run a one-off command (migrate, collectstatic) to completion; ClusterError if it fails."""
        process = self.spawn(service)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise ClusterError(f"{service.name} took longer than {timeout} s") from None
        if code != 0:
            tail = "\n".join(service.log.read_text(errors="replace").splitlines()[-30:])
            raise ClusterError(f"{service.name} failed (exit {code}); {service.log}:\n{tail}")

    def output(self, service: Service, stdin: str = "", timeout: float = 120) -> str:
        """Run a one-off command, feeding it ``stdin``; its stdout (ClusterError if it fails)."""
        result = subprocess.run(
            service.command(self.name),
            cwd=services.ROOT,
            env=service.env or services.base_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise ClusterError(f"{service.name} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        return result.stdout

    # --- readiness --------------------------------------------------------------------------
    def app_healthy(self, host: topology.Host, port: int) -> bool:
        address = (host.address("front"), port)
        status = netns.http_status(self.ns("proxy"), address, "/api/native/health", host=public_host())
        return status == 200

    def public_healthy(self) -> bool:
        address = (topology.PROXY.address("public"), 80)
        status = netns.http_status(self.ns("client"), address, "/api/native/health", host=public_host())
        return status == 200

    def wait_app(self, host: topology.Host, timeout: float = 120) -> None:
        for port, kind in ((topology.HTTP_PORT, "gunicorn"), (topology.WS_PORT, "daphne")):
            self._wait_healthy(host, port, kind, timeout)

    def _wait_healthy(self, host: topology.Host, port: int, kind: str, timeout: float) -> None:
        name = f"{host.name}.{kind}"

        def healthy():
            if not self.alive(name):
                log = self.recipes.by_name(name).log
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise ClusterError(f"{name} exited during start; {log}:\n{tail}")
            return self.app_healthy(host, port)

        deadline = time.monotonic() + timeout
        while not _checked(healthy):
            if self._stopping.is_set():
                raise Stopping(name)
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} did not answer /api/native/health with 200 within {timeout} s")
            time.sleep(0.1)

    def redis_ping(self, host: topology.Host, port: int) -> bool:
        return resp.command(self.ns(host.name), (host.address("back"), port), "PING") == "PONG"

    def sentinel_ask(self, *args: str, timeout: float = 2.0):
        """Ask the first Sentinel that answers (a drill may have cut one off)."""
        error: Exception | None = None
        for host in topology.SENTINELS:
            try:
                return resp.command(
                    self.ns(host.name), (host.address("back"), topology.SENTINEL_PORT), *args, timeout=timeout
                )
            except (OSError, resp.RedisReplyError, ConnectionError) as exc:
                error = exc
        raise ClusterError(f"no Sentinel answered {' '.join(args)}: {error}")

    def primary_of(self, master: str = "native") -> tuple[topology.Host, int]:
        """The host and port Sentinel names as ``master``'s primary now."""
        address, port = self.sentinel_ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", master)
        return topology.host_of_address(address), int(port)

    # --- up -------------------------------------------------------------------------------------
    def up(self) -> None:
        require_root()
        ensure_tools(self.recipes.pgbouncer)
        if netns.exists(topology.switch_namespace(self.name)):
            raise ClusterError(f"cluster {self.name!r} is already up (make cluster-down first)")
        started = time.monotonic()
        try:
            self._prepare_run_dir()
            self._build_network()
            with ThreadPoolExecutor(max_workers=4) as pool:
                chains = [
                    pool.submit(self._start_postgres),
                    pool.submit(self._start_redis),
                    pool.submit(self._start_nginx),
                    pool.submit(self._collectstatic),
                ]
                _results(chains, self._stopping)
                self.save()
                apps = [pool.submit(self._start_app, host) for host in topology.APPS]
                apps.append(pool.submit(self._wait_sentinels))
                _results(apps, self._stopping)
            wait_for(self.public_healthy, timeout=30, what="nginx's health answer", stop=self._stopping)
            self.save()
        except BaseException:
            self._stopping.set()
            print("start failed: tearing the cluster down", file=sys.stderr)
            self.down()
            raise
        print(f"cluster {self.name!r} is up in {time.monotonic() - started:.1f} s")

    def _prepare_run_dir(self) -> None:
        """A clean run directory; the reports of earlier drills (drills/) are kept."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for entry in self.run_dir.iterdir():
            if entry.name == "drills":
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        values = services.new_secrets()
        (self.run_dir / "static").mkdir()
        for directory in [*(host.name for host in topology.HOSTS), "nginx"]:
            (self.run_dir / directory).mkdir()
        for host in topology.APPS:
            directory = self.run_dir / host.name
            (directory / "metrics").mkdir()
            env = services.render_env(
                {
                    **values,
                    "METRICS_DIR": str(directory / "metrics"),
                    "STATIC_ROOT": str(self.run_dir / "static"),
                }
            )
            if self.recipes.pgbouncer:
                env += services.pgbouncer_env(values["DB_PASSWORD"])
            env_path = directory / "app.env"
            env_path.touch(mode=0o600)
            env_path.write_text(env)
        (self.run_dir / "db-password").touch(mode=0o600)
        (self.run_dir / "db-password").write_text(values["DB_PASSWORD"])

    def _build_network(self) -> None:
        sw = topology.switch_namespace(self.name)
        netns.add(sw)
        switch = [f"link add {net} type bridge" for net in topology.NETWORKS]
        switch += [f"link set {net} up" for net in topology.NETWORKS]
        inside_by_host: dict[str, list[str]] = {}
        for host in topology.HOSTS:
            ns = self.ns(host.name)
            netns.add(ns)
            inside = []
            for network, address in host.addresses.items():
                port = topology.port_name(host.name, network)
                switch += [
                    f"link add {port} type veth peer name {network} netns {ns}",
                    f"link set {port} master {network}",
                    f"link set {port} up",
                ]
                inside.append(f"addr add {address}/{topology.PREFIX_LENGTH} dev {network}")
            if host is topology.CLIENT:
                inside += [
                    f"addr add {a}/{topology.PREFIX_LENGTH} dev public" for a in topology.CLIENT_ADDRESSES[1:]
                ]
            inside += [f"link set {network} up" for network in host.addresses]
            inside_by_host[host.name] = inside
        netns.ip_batch(switch, ns=sw)
        for host_name, commands in inside_by_host.items():
            netns.ip_batch(commands, ns=self.ns(host_name))

    def _start_postgres(self) -> None:
        pg_dir = self.recipes.pg_dir
        services.chown_tree(pg_dir, "postgres")
        initdb = [services.postgres_bin("initdb"), "-D", str(pg_dir / "data"), "-U", "postgres"]
        initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8"]
        _run_as("postgres", initdb, pg_dir / "initdb.log")
        with open(pg_dir / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {topology.NETWORKS['back']} scram-sha-256\n")
        self.spawn(self.recipes.postgres())
        isready = [
            services.postgres_bin("pg_isready"),
            "-q",
            "-h",
            str(pg_dir),
            "-p",
            str(topology.POSTGRES_PORT),
        ]
        wait_for(
            lambda: subprocess.run(isready, timeout=5).returncode == 0,
            timeout=60,
            what="PostgreSQL to accept connections",
            stop=self._stopping,
        )
        password = (self.run_dir / "db-password").read_text()
        sql = [
            f"CREATE ROLE native LOGIN PASSWORD '{password}'",
            "CREATE DATABASE native OWNER native",
        ]
        psql = [services.postgres_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", str(pg_dir)]
        psql += ["-p", str(topology.POSTGRES_PORT), "-U", "postgres", "-d", "postgres"]
        if self.recipes.pgbouncer:
            # Behind PgBouncer the -c options of the connection are ignored: the role holds them.
            sql += [
                "ALTER ROLE native SET statement_timeout = '10s'",
                "ALTER ROLE native SET idle_in_transaction_session_timeout = '60s'",
            ]
        for statement in sql:
            subprocess.run([*psql, "-c", statement], check=True, capture_output=True, timeout=30)
        migrate = self.recipes.manage(topology.APPS[0], "migrate", "--noinput", name="migrate")
        if self.recipes.pgbouncer:
            self._start_pgbouncer(password)
            migrate.env["DATABASE_URL"] = migrate.env["DATABASE_DIRECT_URL"]  # migrations go direct
        self.run(migrate)

    def _start_pgbouncer(self, password: str) -> None:
        pg_dir = self.recipes.pg_dir
        (pg_dir / "pgbouncer.ini").write_text(self.recipes.pgbouncer_config())
        userlist = pg_dir / "userlist.txt"
        userlist.touch(mode=0o600)
        userlist.write_text(f'"native" "{password}"\n')
        services.chown_tree(pg_dir / "pgbouncer.ini", "postgres")
        services.chown_tree(userlist, "postgres")
        self.spawn(self.recipes.pgbouncer_service())
        isready = netns.exec_argv(
            self.ns("pg"),
            [services.postgres_bin("pg_isready"), "-q", "-h", topology.POSTGRES.address("back")]
            + ["-p", str(topology.PGBOUNCER_PORT)],
        )
        wait_for(
            lambda: subprocess.run(isready, timeout=5).returncode == 0,
            timeout=30,
            what="PgBouncer to accept connections",
            stop=self._stopping,
        )

    def _start_redis(self) -> None:
        for service in services.redis_services(self.recipes):
            self.spawn(service)
        for spec in topology.REDIS_MASTERS.values():
            for role in ("primary", "replica"):
                host = spec[role]
                wait_for(
                    lambda h=host, p=spec["port"]: self.redis_ping(h, p),
                    timeout=30,
                    what=f"Redis on {host.name}:{spec['port']}",
                    stop=self._stopping,
                )
            replica = spec["replica"]
            address = (replica.address("back"), spec["port"])
            wait_for(
                lambda r=replica, a=address: resp.info(self.ns(r.name), a, "replication").get(
                    "master_link_status"
                )
                == "up",
                timeout=30,
                what=f"the replica on {replica.name}:{spec['port']} to sync",
                stop=self._stopping,
            )
        # Sentinels start once the replicas are attached: the first INFO a Sentinel reads from
        # a primary then lists its replica (otherwise it would learn of it 10 s later).
        for host in topology.SENTINELS:
            config = self.run_dir / host.name / "sentinel.conf"
            config.write_text(self.recipes.sentinel_config(host, SENTINEL_DOWN_AFTER_MS))
            self.spawn(self.recipes.sentinel(host))

    def _wait_sentinels(self) -> None:
        """Every Sentinel sees both masters, their replicas and a quorum of its peers."""
        for host in topology.SENTINELS:
            address = (host.address("back"), topology.SENTINEL_PORT)
            for master in topology.REDIS_MASTERS:

                def ready(h=host, a=address, m=master):
                    ask = lambda *args: resp.command(self.ns(h.name), a, *args)  # noqa: E731
                    replicas = [resp.pairs(r) for r in ask("SENTINEL", "REPLICAS", m)]
                    linked = any(
                        r["flags"] == "slave" and r.get("master-link-status") == "ok" for r in replicas
                    )
                    return linked and ask("SENTINEL", "CKQUORUM", m).startswith("OK")

                wait_for(
                    ready, timeout=60, what=f"Sentinel on {host.name} to watch {master}", stop=self._stopping
                )

    def _start_nginx(self) -> None:
        (self.run_dir / "nginx" / "tmp").mkdir()
        self.spawn(self.recipes.nginx())
        address = (topology.PROXY.address("public"), 80)
        wait_for(
            lambda: netns.connect(self.ns("client"), address, 1).close() or True,
            timeout=30,
            what="nginx to listen",
            stop=self._stopping,
        )

    def _collectstatic(self) -> None:
        self.run(
            self.recipes.manage(
                topology.APPS[0], "collectstatic", "--noinput", "-v", "0", name="collectstatic"
            )
        )

    def _start_app(self, host: topology.Host) -> None:
        for service in (self.recipes.gunicorn(host), self.recipes.daphne(host)):
            self.spawn(service)
        self.wait_app(host)

    # --- down -----------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop every process of the cluster and remove its namespaces; what was removed."""
        with self._lock:
            self._stopping.set()
        existing = [ns for ns in topology.namespaces(self.name) if netns.exists(ns)]
        pids = {pid for ns in existing for pid in netns.pids(ns)}
        postmaster = _postmaster_pid(self.recipes.pg_dir)
        for pid in pids:
            _kill(pid, signal.SIGINT if pid == postmaster else signal.SIGTERM)
        if not self._wait_all_gone(pids, STOP_GRACE):
            for pid in pids:
                _kill(pid, signal.SIGKILL)
            self._wait_all_gone(pids, 5)
        # A process started while we were stopping (a drill's restart) is caught here.
        late = {pid for ns in existing for pid in netns.pids(ns)} - pids
        for pid in late:
            _kill(pid, signal.SIGKILL)
        self._wait_all_gone(late, 5)
        # PID 1 reaps the processes it inherited a moment later: wait, so that nothing of the
        # cluster (not even a <defunct> entry) is listed once this returns.
        _wait_reaped(pids | late, 10)
        for ns in existing:
            netns.delete(ns)
        left = [ns for ns in existing if netns.exists(ns)]
        if left:
            raise ClusterError(f"could not remove namespaces {left}")
        return existing

    def _wait_all_gone(self, pids: set[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            for child in self._children:
                child.poll()  # reap our own children, or they would linger as zombies
            if not any(pid_alive(pid) for pid in pids):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


# --- helpers ------------------------------------------------------------------------------------


def public_host() -> str:
    return topology.PROXY.address("public")


def pid_alive(pid: int) -> bool:
    """Running (a zombie has exited: it only waits for its parent to read its status)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _wait_reaped(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _postmaster_pid(pg_dir: Path) -> int | None:
    try:
        return int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _checked(check) -> bool:
    try:
        return bool(check())
    except ClusterError:
        raise
    except Exception:
        return False


def _results(futures, stopping: threading.Event) -> None:
    """Wait for parallel chains; the first failure stops the others and is raised."""
    try:
        for future in futures:
            future.result()
    except BaseException:
        stopping.set()
        raise


def _run_as(user: str, argv: list[str], log: Path) -> None:
    with open(log, "w") as out:
        result = subprocess.run(
            ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    if result.returncode != 0:
        raise ClusterError(f"{argv[0]} failed; see {log}")


def require_root() -> None:
    if os.geteuid() != 0:
        raise ClusterError("the cluster needs root (network namespaces): run it with sudo")


def ensure_tools(pgbouncer: bool = False) -> None:
    """nginx (and PgBouncer if asked for) from Debian's packages if missing; the other tools
    must be there already."""
    wanted = [("nginx", "nginx-light")] + ([("pgbouncer", "pgbouncer")] if pgbouncer else [])
    for binary, package in wanted:
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            print(f"{binary} is not installed: apt-get install {package}", file=sys.stderr)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)
    missing = [tool for tool in ("ip", "redis-server", "setpriv", "unshare") if shutil.which(tool) is None]
    if missing:
        raise ClusterError(
            f"missing tools: {', '.join(missing)} (apt-get install iproute2 redis-server util-linux)"
        )
    services.postgres_bin("postgres")
    if not services.os_user_exists("postgres"):
        raise ClusterError("the postgres user is missing (apt-get install postgresql)")


def print_status(cluster: Cluster) -> None:
    for name, pid in sorted(cluster.pids.items()):
        print(f"{name:20} pid {pid:<8} {'running' if pid_alive(pid) else 'EXITED'}")
    for master in topology.REDIS_MASTERS:
        try:
            host, port = cluster.primary_of(master)
            print(f"Redis {master}: primary on {host.name}:{port}")
        except ClusterError as exc:
            print(f"Redis {master}: {exc}")
    print(f"nginx health: {'ok' if cluster.public_healthy() else 'DOWN'} ({topology.PUBLIC_URL})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--name", default=os.environ.get("CLUSTER", DEFAULT_NAME), help="namespace prefix")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per app host")
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="app hosts reach PostgreSQL through PgBouncer (transaction mode)",
    )
    parser.add_argument(
        "--redis",
        choices=("file", "primary"),
        default="file",
        help="REDIS_URL: as deploy/app.env says, or the primary's plain redis:// address",
    )
    args = parser.parse_args(argv)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # Ctrl-C must reach us even when started from a shell that ignores SIGINT in the background.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.action == "up":
            overrides = {}
            if args.redis == "primary":
                primary = topology.REDIS_MASTERS["native"]
                overrides["REDIS_URL"] = f"redis://{primary['primary'].address('back')}:{primary['port']}/0"
            cluster = Cluster(args.name, workers=args.workers, overrides=overrides, pgbouncer=args.pgbouncer)
            cluster.up()
            print(f"run directory (logs, env files): {cluster.run_dir}")
            print(f"public address (from the client namespace): {topology.PUBLIC_URL}")
            print(f"drills: make drill-1 … drill-5 CLUSTER={args.name}")
            print(f"stop: make cluster-down CLUSTER={args.name}")
        elif args.action == "down":
            require_root()
            removed = Cluster(args.name).down()
            print(
                f"cluster {args.name!r}: "
                + (f"removed {len(removed)} namespaces" if removed else "nothing to remove")
            )
        else:
            print_status(Cluster.load(args.name))
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the cluster was torn down", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
