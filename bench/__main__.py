"""``python -m bench all [--quick]`` | ``python -m bench NAME [NAME…] [--quick] [--backend B]``."""

import argparse
import importlib
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path

from bench.database import backends_from_env
from bench.harness import Context
from bench.procs import BenchError, raise_fd_limit
from bench.report import Report
from bench.servers import kill_strays, stop_all

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ["auth", "fanout", "connect", "memory", "revoke", "enforce", "purge", "flood", "admin", "scale"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="+", choices=["all", *SCENARIOS], metavar="NAME")
    parser.add_argument("--quick", action="store_true", help="smaller, faster runs (figures scaled)")
    parser.add_argument("--backend", choices=["embedded", "postgres"], help="only this backend")
    args = parser.parse_args(argv)
    names = SCENARIOS if "all" in args.names else list(dict.fromkeys(args.names))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run finally blocks and atexit
    raise_fd_limit()
    stray = kill_strays()
    report = Report(meta=machine(args.quick, names))
    if stray:
        report.note(f"killed stray bench servers from an earlier run: {stray}")
    backends = backends_from_env(args.backend)
    started = time.monotonic()
    try:
        for backend in backends:
            try:
                for name in names:
                    t0 = time.monotonic()
                    print(f"== {backend.name}: {name}", file=sys.stderr, flush=True)
                    ctx = Context(backend, report, args.quick, name)
                    try:
                        importlib.import_module(f"bench.{name}").run(ctx)
                    except BenchError as exc:
                        report.error(ctx.key("error"), str(exc))
                        print(f"   failed: {exc}", file=sys.stderr, flush=True)
                    except Exception as exc:  # a bench bug: keep the figures measured before it
                        traceback.print_exc()
                        report.error(ctx.key("error"), f"{type(exc).__name__}: {exc}")
                    print(f"   {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
                    save_partial(report)
            finally:
                stop_all()
                backend.cleanup()
    finally:
        stop_all()
    report.meta["elapsed_s"] = round(time.monotonic() - started, 1)
    print(report.table())
    print(report.as_json())
    return 1 if report.errors else 0


def save_partial(report: Report) -> None:
    """Figures so far, in bench/results/last-run.json: a long run that is cut short keeps them."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "last-run.json").write_text(report.as_json())


def machine(quick: bool, names: list[str]) -> dict:
    import psutil

    def version(package):
        try:
            from importlib.metadata import version as v

            return v(package)
        except Exception:
            return None

    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    return {
        "quick": quick,
        "scenarios": names,
        "nproc": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "versions": {
            p: version(p)
            for p in ("django", "channels", "daphne", "uvicorn", "channels-redis", "psycopg", "websockets")
        },
        "postgres": _pg_version(),
        "redis": _redis_version(),
    }


def _pg_version():
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return None
    try:
        import psycopg

        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3) as conn:
            return conn.execute("show server_version").fetchone()[0]
    except Exception:
        return None


def _redis_version():
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    try:
        from foundation import redis_urls

        return redis_urls.client(url, socket_connect_timeout=3).info("server").get("redis_version")
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
