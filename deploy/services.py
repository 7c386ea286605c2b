"""The processes of the cluster: what each runs, with which environment, where it logs.

A Service is a recipe, rebuilt from the topology and the run's options whenever it is needed
(at start, and when a drill restarts one), so the only state kept between commands is the
pid of each (RUN_DIR/state.json). Every process runs in its host's namespace; the app hosts
also get a UTS namespace with their own hostname, so that their processes name themselves
``app1:PID`` in logs and in the live-connection registry, as they would on separate machines.
"""

import glob
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from deploy import netns, topology

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENV_TEMPLATE = DEPLOY / "app.env"
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


@dataclass
class Service:
    name: str  # "app1.daphne", "redis1.6379", "pg"
    host: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # run as this user (PostgreSQL refuses to run as root)
    hostname: str | None = None  # a UTS namespace of its own with this hostname

    def command(self, cluster: str) -> list[str]:
        argv = list(self.argv)
        if self.user:
            argv = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", *argv]
        if self.hostname:
            argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *argv]
        return netns.exec_argv(topology.namespace(cluster, self.host), argv)

    def spawn(self, cluster: str) -> subprocess.Popen:
        """Start it in the background: it outlives this command and logs to its file."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                self.command(cluster),
                cwd=ROOT,
                env=self.env or base_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not the cluster
            )


def base_env(venv_bin: Path | None = None) -> dict[str, str]:
    """A clean environment: nothing of the caller's (its DATABASE_URL, say) reaches the cluster."""
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": f"{venv_bin}:{path}" if venv_bin else path, "LANG": "C.UTF-8", "HOME": "/root"}


def postgres_bin(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` (Debian keeps each major under its own dir)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return on_path


def _version_key(path: str) -> tuple:
    version = path.split("/")[4]
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


# --- the app hosts' environment -------------------------------------------------------------


def new_secrets() -> dict[str, str]:
    return {"SECRET_KEY": secrets.token_urlsafe(64), "DB_PASSWORD": secrets.token_hex(16)}


def pgbouncer_env(password: str) -> str:
    """The lines that put an app host behind PgBouncer (appended to its app.env)."""
    address = topology.POSTGRES.address("back")
    return (
        "# PgBouncer in transaction mode; the change log's LISTEN and the purge lock go direct.\n"
        f"DATABASE_URL=postgres://native:{password}@{address}:{topology.PGBOUNCER_PORT}/native\n"
        f"DATABASE_DIRECT_URL=postgres://native:{password}@{address}:{topology.POSTGRES_PORT}/native\n"
    )


def render_env(values: dict[str, str]) -> str:
    """deploy/app.env with its @NAME@ placeholders filled in."""

    def fill(match: re.Match) -> str:
        if match.group(1) not in values:
            raise KeyError(f"deploy/app.env needs a value for @{match.group(1)}@")
        return values[match.group(1)]

    return PLACEHOLDER.sub(fill, ENV_TEMPLATE.read_text())


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile= reads them (no quotes, no expansion)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


# --- recipes --------------------------------------------------------------------------------


@dataclass
class Recipes:
    """Everything needed to rebuild any service of one run."""

    cluster: str
    run_dir: Path
    venv_bin: Path
    workers: int = 2
    overrides: dict[str, str] = field(default_factory=dict)  # on top of app.env (--redis primary…)
    pgbouncer: bool = False  # DATABASE_URL through PgBouncer, DATABASE_DIRECT_URL to PostgreSQL

    # PostgreSQL ----------------------------------------------------------------------------
    @property
    def pg_dir(self) -> Path:
        return self.run_dir / "pg"

    def postgres(self) -> Service:
        options = {
            "listen_addresses": topology.POSTGRES.address("back"),
            "port": str(topology.POSTGRES_PORT),
            "unix_socket_directories": str(self.pg_dir),
            "max_connections": "300",
            "log_connections": "off",
        }
        argv = [postgres_bin("postgres"), "-D", str(self.pg_dir / "data")]
        for name, value in options.items():
            argv += ["-c", f"{name}={value}"]
        return Service("pg", "pg", argv, self.pg_dir / "postgres.log", user="postgres")

    def pgbouncer_service(self) -> Service:
        argv = [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", str(self.pg_dir / "pgbouncer.ini")]
        return Service("pg.pgbouncer", "pg", argv, self.pg_dir / "pgbouncer.log", user="postgres")

    def pgbouncer_config(self) -> str:
        """Transaction pooling, as a large deployment runs it (docs/operations-scaling.md)."""
        address = topology.POSTGRES.address("back")
        return (
            "\n".join(
                [
                    "[databases]",
                    f"native = host={address} port={topology.POSTGRES_PORT} dbname=native",
                    "[pgbouncer]",
                    f"listen_addr = {address}",
                    f"listen_port = {topology.PGBOUNCER_PORT}",
                    "unix_socket_dir =",
                    "auth_type = scram-sha-256",
                    f"auth_file = {self.pg_dir / 'userlist.txt'}",
                    "pool_mode = transaction",
                    "max_client_conn = 2000",
                    "default_pool_size = 40",
                    # The app sends its server-side timeouts as -c options at connect; PgBouncer 1.18
                    # refuses the options parameter unless told to ignore it (the role has them).
                    "ignore_startup_parameters = extra_float_digits,options",
                ]
            )
            + "\n"
        )

    # Redis and Sentinel ----------------------------------------------------------------------
    def redis(self, host: topology.Host, port: int, replica_of: tuple[str, int] | None = None) -> Service:
        """A redis-server; ``replica_of`` overrides the topology's role (a restart after failover)."""
        directory = self.run_dir / host.name
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--bind", host.address("back"),
            "--port", str(port),
            "--protected-mode", "no",  # a private network; in production add requirepass and TLS
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
        ]  # fmt: skip
        if replica_of is None:
            for spec in topology.REDIS_MASTERS.values():
                if spec["port"] == port and spec["replica"] == host:
                    replica_of = (spec["primary"].address("back"), port)
        if replica_of is not None:
            argv += ["--replicaof", replica_of[0], str(replica_of[1])]
        return Service(f"{host.name}.{port}", host.name, argv, directory / f"redis-{port}.log")

    def sentinel(self, host: topology.Host) -> Service:
        directory = self.run_dir / host.name
        return Service(
            f"{host.name}.sentinel",
            host.name,
            [shutil.which("redis-server") or "redis-server", str(directory / "sentinel.conf"), "--sentinel"],
            directory / "sentinel.log",
        )

    def sentinel_config(self, host: topology.Host, down_after_ms: int) -> str:
        """Sentinel rewrites this file as it learns (replicas, other Sentinels, failovers)."""
        lines = [
            f"bind {host.address('back')}",
            f"port {topology.SENTINEL_PORT}",
            "protected-mode no",
            f"dir {self.run_dir / host.name}",
        ]
        for master, spec in topology.REDIS_MASTERS.items():
            primary = spec["primary"].address("back")
            lines += [
                f"sentinel monitor {master} {primary} {spec['port']} {topology.SENTINEL_QUORUM}",
                f"sentinel down-after-milliseconds {master} {down_after_ms}",
                f"sentinel failover-timeout {master} 10000",
                f"sentinel parallel-syncs {master} 1",
            ]
        return "\n".join(lines) + "\n"

    # App hosts ---------------------------------------------------------------------------------
    def app_env(self, host: topology.Host) -> dict[str, str]:
        env = {**base_env(self.venv_bin), **parse_env((self.run_dir / host.name / "app.env").read_text())}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.overrides)
        return env

    def _app_service(self, host: topology.Host, kind: str, argv: list[str]) -> Service:
        """One of an app host's servers: its log beside the host's others, the app's environment."""
        return Service(
            f"{host.name}.{kind}",
            host.name,
            argv,
            self.run_dir / host.name / f"{kind}.log",
            env=self.app_env(host),
            hostname=host.name,
        )

    def gunicorn(self, host: topology.Host) -> Service:
        argv = [
            str(self.venv_bin / "gunicorn"),
            "-b", f"{host.address('front')}:{topology.HTTP_PORT}",
            "-w", str(self.workers),
            "config.wsgi:application",
        ]  # fmt: skip
        return self._app_service(host, "gunicorn", argv)

    def daphne(self, host: topology.Host) -> Service:
        argv = [
            str(self.venv_bin / "daphne"),
            "-b", host.address("front"),
            "-p", str(topology.WS_PORT),
            "config.asgi:application",
        ]  # fmt: skip
        return self._app_service(host, "daphne", argv)

    def manage(self, host: topology.Host, *args: str, name: str = "manage") -> Service:
        """``python manage.py ARGS`` on an app host, as an operator would run it there."""
        return self.python(host, "manage.py", *args, name=name)

    def python(self, host: topology.Host, *args: str, name: str) -> Service:
        """The project's python on an app host, with the host's environment (without
        PROMETHEUS_MULTIPROC_DIR: a command is not one of the servers /metrics adds up)."""
        env = self.app_env(host)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return Service(
            f"{host.name}.{name}",
            host.name,
            [str(self.venv_bin / "python"), *args],
            self.run_dir / host.name / f"{name}.log",
            env=env,
            hostname=host.name,
        )

    # nginx -----------------------------------------------------------------------------------
    def nginx(self) -> Service:
        prefix = self.run_dir / "nginx"
        argv = [
            shutil.which("nginx") or "/usr/sbin/nginx",
            "-p", f"{prefix}/",
            "-e", str(prefix / "error.log"),
            "-c", str(DEPLOY / "nginx" / "nginx.conf"),
            "-g", "daemon off;",
        ]  # fmt: skip
        return Service("nginx", "proxy", argv, prefix / "nginx.out")

    def by_name(self, name: str, **options) -> Service:
        """The recipe of a service from its name (what state.json records)."""
        if name == "pg":
            return self.postgres()
        if name == "nginx":
            return self.nginx()
        if name == "pg.pgbouncer":
            return self.pgbouncer_service()
        host_name, _, kind = name.partition(".")
        host = topology.host_named(host_name)
        if kind == "sentinel":
            return self.sentinel(host)
        if kind.isdigit():
            return self.redis(host, int(kind), **options)
        if kind in ("gunicorn", "daphne"):
            return getattr(self, kind)(host)
        raise KeyError(name)


def app_services(recipes: Recipes) -> list[Service]:
    return [make(host) for host in topology.APPS for make in (recipes.gunicorn, recipes.daphne)]


def redis_services(recipes: Recipes) -> list[Service]:
    return [
        recipes.redis(spec[role], spec["port"])
        for spec in topology.REDIS_MASTERS.values()
        for role in ("primary", "replica")
    ]


def os_user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def chown_tree(path: Path, user: str) -> None:
    shutil.chown(path, user, user)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), user, user)
