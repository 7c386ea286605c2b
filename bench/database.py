"""Backends and their databases: the bench prepares, seeds and drops its own.

embedded: a fresh SQLite file in a temp dir + the in-memory channel layer + local cache.
postgres: a fresh database ``<name>_bench`` derived from DATABASE_URL (dropped and recreated
for each scenario from a migrated template) + Redis (REDIS_URL) under a per-run key prefix.
Migrations run once per backend, into the template; each scenario gets a copy.
"""

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.procs import BenchError
from bench.servers import ROOT

# Production-like settings for every server and command the bench starts. The rate limits
# that would stop a loopback load generator (one IP, one user) are raised, not switched off,
# so their counters still cost what they cost in production; failed-auth limiting keeps its
# default except where a scenario says otherwise.
SERVER_ENV = {
    "DEBUG": "false",
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "NATIVE_BENCH_BASELINES": "true",
    "NATIVE_PURGE_INTERVAL": "0",
    "LOG_LEVEL": "WARNING",
    "NATIVE_RATE_WS_CONNECT": "1000000/m",
    "NATIVE_RATE_WS_TICKET": "1000000/m",
    "NATIVE_RATE_WS_FRAMES": "100000/s",
    "NATIVE_WS_FRAME_BURST": "100000",
}
_DROPPED_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CHANNEL_LAYER_BACKEND",
    "DJANGO_SETTINGS_MODULE",
    "REDIS_PREFIX",
)


@dataclass
class Backend:
    name: str  # "embedded" or "postgres"
    source_url: str | None = None  # the operator's DATABASE_URL (postgres only)
    redis_url: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="native-bench-")))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(64))
    prefix: str = field(default_factory=lambda: f"bench{secrets.token_hex(4)}")
    _template_ready: bool = False

    @property
    def has_redis(self) -> bool:
        return self.redis_url is not None

    # --- environment --------------------------------------------------------------------

    def env(self, database_url: str, **overrides) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(SERVER_ENV)
        env.update(SECRET_KEY=self.secret_key, DATABASE_URL=database_url)
        if self.redis_url:
            env.update(REDIS_URL=self.redis_url, REDIS_PREFIX=self.prefix)
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    # --- databases ----------------------------------------------------------------------

    def fresh_database(self) -> str:
        """A migrated, empty database for one scenario; returns its DATABASE_URL."""
        if not self._template_ready:
            self._create_template()
            self._template_ready = True
        if self.name == "embedded":
            target = self.workdir / "bench.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(self.workdir / "template.sqlite3", target)
            return f"sqlite:///{target}"
        self._pg(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')
        self._pg(f'CREATE DATABASE "{self._db_name}" TEMPLATE "{self._db_name}_tpl"')
        return self._pg_url(self._db_name)

    def _create_template(self) -> None:
        if self.name == "embedded":
            url = f"sqlite:///{self.workdir / 'template.sqlite3'}"
        else:
            self._pg(f'DROP DATABASE IF EXISTS "{self._db_name}_tpl" WITH (FORCE)')
            self._pg(f'CREATE DATABASE "{self._db_name}_tpl"')
            url = self._pg_url(f"{self._db_name}_tpl")
        self.manage(url, "migrate", "--no-input", "-v", "0", timeout=180)

    @property
    def _db_name(self) -> str:
        name = urlsplit(self.source_url).path.lstrip("/") or "native"
        return f"{name}_bench"

    def _pg_url(self, dbname: str) -> str:
        parts = urlsplit(self.source_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))

    def _pg(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self._pg_url("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    # --- Django subprocesses -------------------------------------------------------------

    def manage(self, database_url: str, *args, timeout: float = 120, **env) -> str:
        """Run ``manage.py ARGS`` with the bench settings; returns stdout, raises on failure."""
        return self._run(
            [sys.executable, "manage.py", *args], self.env(database_url, **env), timeout, " ".join(args)
        )

    def seed(self, database_url: str, **spec) -> dict:
        """Users, a room, native and service tokens (and expired rows), made through Django."""
        out = self._run(
            [sys.executable, "-m", "bench.seed"],
            self.env(database_url),
            600,
            "seed",
            stdin=json.dumps(spec),
        )
        return json.loads(out.strip().splitlines()[-1])

    @staticmethod
    def _run(cmd, env, timeout, label, stdin=None) -> str:
        try:
            done = subprocess.run(
                cmd, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{label}: did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            raise BenchError(f"{label}: exit {done.returncode}: {done.stderr.strip()[-1500:]}")
        return done.stdout

    # --- cleanup ------------------------------------------------------------------------

    def cleanup(self) -> None:
        if self.name == "postgres" and self._template_ready:
            for name in (self._db_name, f"{self._db_name}_tpl"):
                with contextlib.suppress(Exception):
                    self._pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self.redis_url:
            self.flush_redis()
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"server logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def flush_redis(self) -> None:
        """Delete this run's keys (our prefix only: the Redis database may be shared)."""
        from foundation import redis_urls

        with contextlib.suppress(Exception):
            client = redis_urls.client(self.redis_url, socket_connect_timeout=3)
            for key in client.scan_iter(f"{self.prefix}:*", count=1000):
                client.delete(key)
            client.close()


def backends_from_env(only: str | None) -> list[Backend]:
    """The embedded default always; PostgreSQL + Redis too when DATABASE_URL and REDIS_URL are set."""
    found = []
    if only in (None, "embedded"):
        found.append(Backend("embedded"))
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if only in (None, "postgres"):
        if database_url and database_url.startswith(("postgres://", "postgresql://")) and redis_url:
            found.append(Backend("postgres", database_url, redis_url))
        elif only == "postgres":
            raise BenchError("--backend postgres needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    return found
