"""Authenticated REST: GET /api/native/me with a native token, in the two places it is served.

- WSGI, the production HTTP layout: ``gunicorn -w 2 config.wsgi:application`` against the
  smallest possible Django JSON view under the same gunicorn (``bench/minimal_wsgi.py``: no
  apps, no middleware, no database). Target: ≥ 0.35×.
- ASGI, one daphne process: this tree against the tree before issue 13 (``BEFORE_REF``),
  exported with ``git archive`` and run side by side on the same data. Target: ≥ 2×.

Rounds alternate between the two sides of each ratio; medians of 3.
"""

import os

from bench.harness import Context, expect_ok, med
from bench.httpload import get, http_load
from bench.report import Target, ratio
from bench.servers import ROOT

WSGI_TARGET = Target(">=", 0.35)
ASGI_TARGET = Target(">=", 2.0)
# The commit this round started from: daphne served everything, through the old middleware path.
BEFORE_REF = os.environ.get("BENCH_BEFORE_REF", "3baeaf6")


def run(ctx: Context) -> None:
    count, duration, rounds = (1500, 2.5, 3) if ctx.quick else (6000, 6.0, 3)
    database_url, seed = ctx.prepare(users=8)
    tokens = [u["token"] for u in seed["users"]]

    specs = (("ours", "gunicorn", ROOT), ("minimal", "gunicorn-minimal", ROOT))
    with ctx.servers_of(database_url, *specs) as (ours, minimal):
        me = [get("/api/native/me", ours.port, token) for token in tokens]
        plain = [get("/bench/plain", minimal.port)]
        runs = alternate(rounds, count, duration, (ours, me, "me"), (minimal, plain, "plain"))
    report(ctx, "wsgi", runs)
    ctx.ratio("wsgi_me_vs_minimal_rps", ratio(med(runs["me"], "rps"), med(runs["plain"], "rps")), WSGI_TARGET)

    specs = (("ours", "daphne", ROOT), ("before", "daphne", ctx.tree_at(BEFORE_REF)))
    with ctx.servers_of(database_url, *specs) as (ours, before):
        runs = alternate(
            rounds,
            count,
            duration,
            (ours, [get("/api/native/me", ours.port, t) for t in tokens], "me"),
            (before, [get("/api/native/me", before.port, t) for t in tokens], "me_before"),
            (ours, [get("/bench/plain", ours.port)], "plain"),
            (before, [get("/bench/plain", before.port)], "plain_before"),
        )
    report(ctx, "asgi", runs)
    me_vs_before = ratio(med(runs["me"], "rps"), med(runs["me_before"], "rps"))
    ctx.ratio("asgi_me_vs_before_rps", me_vs_before, ASGI_TARGET)
    ctx.ratio("asgi_me_vs_plain_rps", ratio(med(runs["me"], "rps"), med(runs["plain"], "rps")))


def alternate(rounds, count, duration, *sides):
    """Warm each side up, then measure them in turn, ``rounds`` times; {label: [results]}."""
    for server, requests, _ in sides:
        http_load(server, requests, count=150, duration=5)  # imports, connections, caches
    runs = {label: [] for _, _, label in sides}
    for _ in range(rounds):
        for server, requests, label in sides:
            result = http_load(server, requests, count=count, duration=duration)
            expect_ok(result, label)
            runs[label].append(result)
    return runs


def report(ctx: Context, layout: str, runs: dict) -> None:
    for label, results in runs.items():
        name = f"{layout}_{label}"
        ctx.figure(f"{name}_rps", med(results, "rps"), "req/s")
        ctx.figure(f"{name}_p50", med(results, "p50_ms"), "ms")
        ctx.figure(f"{name}_p99", med(results, "p99_ms"), "ms")
        ctx.figure(f"{name}_server_cpu_per_req", med([cpu_per_request(r) for r in results], "v"), "us")
        ctx.figure(f"{name}_client_cpu_share", med([client_share(r) for r in results], "v"), "cpu/s")


def cpu_per_request(result: dict) -> dict:
    return {"v": result["server_cpu"] / result["requests"] * 1e6}


def client_share(result: dict) -> dict:
    """Client CPU seconds per wall second: near the number of cores means the client saturated."""
    return {"v": result["client_cpu"] / result["elapsed"]}
