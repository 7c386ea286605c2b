"""Purging expired native tokens while authenticated requests keep coming.

A million expired tokens (--quick: 100,000) are inserted, a loop of GET /api/native/me runs
against a server on the same database, and ``manage.py purge_tokens --batch-size N`` runs as
its own process. Figures: purge wall time (command start to exit, Django start-up included)
and the auth loop's p99 before and during the purge. Targets are set for PostgreSQL; the
embedded (SQLite) figures are there for comparison.
"""

import multiprocessing
import re
import subprocess
import sys
import time

from bench.harness import Context
from bench.httpload import get, http_job
from bench.procs import BenchError, Clients
from bench.report import Target, percentile, ratio
from bench.servers import ROOT

TARGET_SECONDS = Target("<=", 60.0)
TARGET_P99 = Target("<=", 2.0)
BATCH = 1000
BEFORE = 4.0
PURGE_TIMEOUT = 600


def run(ctx: Context) -> None:
    rows = 100_000 if ctx.quick else 1_000_000
    ctx.figure("expired_rows", rows)
    ctx.figure("batch_size", BATCH)
    database_url, seed = ctx.prepare(users=4, expired_tokens=rows)
    with ctx.servers(database_url) as (server,):
        me = [get("/api/native/me", server.port, u["token"]) for u in seed["users"]]
        stop = multiprocessing.get_context("fork").Event()
        job = (server.port, me, 10**9, PURGE_TIMEOUT + 60, 4, stop)
        with Clients(http_job, [job], timeout=PURGE_TIMEOUT + 120) as clients:
            clients.start()
            time.sleep(BEFORE)
            purge_start = time.monotonic()
            output = purge_command(ctx, database_url)
            purge_end = time.monotonic()
            time.sleep(1.0)
            stop.set()
            ((result, _),) = clients.results()
    samples = result["samples"]
    if any(code != 200 for code in result["statuses"]):
        raise BenchError(f"the auth loop got {result['statuses']}")
    before = [lat for t, lat in samples if purge_start - BEFORE <= t < purge_start]
    during = [lat for t, lat in samples if purge_start <= t <= purge_end]
    seconds = purge_end - purge_start
    deleted = _deleted_tokens(output)
    if deleted is not None and deleted < rows:
        raise BenchError(f"purge_tokens deleted {deleted} tokens, expected {rows}: {output[-500:]}")
    ctx.figure("purge_seconds", seconds, "s")
    ctx.figure("purge_rows_per_s", rows / seconds, "rows/s")
    ctx.figure("auth_p99_before", percentile(before, 99) * 1000, "ms")
    ctx.figure("auth_p99_during", percentile(during, 99) * 1000, "ms")
    ctx.figure("auth_rps_before", len(before) / BEFORE, "req/s")
    ctx.figure("auth_rps_during", len(during) / seconds, "req/s")
    ctx.ratio("purge_seconds", seconds, TARGET_SECONDS)
    ctx.ratio("auth_p99_during_vs_before", ratio(percentile(during, 99), percentile(before, 99)), TARGET_P99)
    ctx.report.note(f"{ctx.backend.name} purge_tokens said: " + " | ".join(output.strip().splitlines()[:6]))


def purge_command(ctx: Context, database_url: str) -> str:
    cmd = [sys.executable, "manage.py", "purge_tokens", "--batch-size", str(BATCH)]
    try:
        done = subprocess.run(
            cmd,
            cwd=ROOT,
            env=ctx.backend.env(database_url),
            capture_output=True,
            text=True,
            timeout=PURGE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"purge_tokens did not finish within {PURGE_TIMEOUT} s") from None
    if done.returncode != 0:
        raise BenchError(f"purge_tokens exit {done.returncode}: {done.stderr.strip()[-800:]}")
    return done.stdout


def _deleted_tokens(output: str) -> int | None:
    match = re.search(r"^tokens: (\d+) deleted", output, re.MULTILINE)
    return int(match.group(1).replace(",", "")) if match else None
