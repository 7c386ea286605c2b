"""What every scenario does around its measurement: a fresh seeded database, servers that are
always stopped, checks that responses are what the scenario expects."""

import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.database import Backend
from bench.procs import BenchError
from bench.report import Report, median
from bench.servers import ROOT, start_server


@dataclass
class Context:
    backend: Backend
    report: Report
    quick: bool
    scenario: str

    def key(self, name: str) -> str:
        return f"{self.backend.name}.{self.scenario}.{name}"

    def figure(self, name: str, value, unit: str = "") -> None:
        self.report.figure(self.key(name), value, unit)

    def ratio(self, name: str, value, target=None) -> None:
        self.report.ratio(self.key(name), value, target)

    def prepare(self, **seed) -> tuple[str, dict]:
        database_url = self.backend.fresh_database()
        return database_url, self.backend.seed(database_url, **seed)

    def servers(self, database_url: str, count: int = 1, kind: str = "daphne", **env):
        """Start ``count`` servers on the same database and channel layer; stop them after."""
        return self.servers_of(database_url, *((str(i), kind, ROOT) for i in range(count)), **env)

    @contextlib.contextmanager
    def servers_of(self, database_url: str, *specs: tuple[str, str, Path], **env):
        """Servers of different kinds (or source trees) side by side: specs are (name, kind, root)."""
        started = []
        try:
            for name, kind, root in specs:
                server_env, label = self.backend.env(database_url, **env), f"{self.scenario}-{name}"
                workdir = self.backend.workdir
                started.append(start_server(server_env, workdir, kind=kind, name=label, root=root))
            yield started
            for server in started:
                if not server.alive():
                    raise BenchError(f"{server.name} died during the run:\n{server.log_tail()}")
        finally:
            for server in started:
                server.stop()

    def tree_at(self, ref: str) -> Path:
        """The source tree at git ``ref`` (exported once per run under the work dir), so that a
        before/after comparison runs both in the same run, on the same machine and data."""
        target = Path(self.backend.workdir) / f"tree-{ref}"
        if not target.exists():
            target.mkdir(parents=True)
            archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=False)
            if archive.returncode != 0:
                raise BenchError(f"git archive {ref} failed: {archive.stderr.decode(errors='replace')}")
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        return target


def expect_ok(result: dict, what: str, status: int = 200) -> None:
    other = {code: n for code, n in result["statuses"].items() if code != status}
    if other:
        raise BenchError(f"{what}: expected only {status}, got {result['statuses']}")


def med(results: list[dict], field: str):
    return median([r[field] for r in results])
