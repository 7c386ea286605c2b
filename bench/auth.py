"""Authenticated REST vs a trivial view: GET /api/native/me with a native token against
GET /bench/plain (no auth, no database), same server, rounds alternated, median of 3."""

from bench.harness import Context, expect_ok, med
from bench.httpload import get, http_load
from bench.report import Target, ratio

TARGET = Target(">=", 0.9)


def run(ctx: Context) -> None:
    count, duration, rounds = (1500, 2.5, 3) if ctx.quick else (6000, 6.0, 3)
    database_url, seed = ctx.prepare(users=8)
    with ctx.servers(database_url) as (server,):
        me = [get("/api/native/me", server.port, u["token"]) for u in seed["users"]]
        plain = [get("/bench/plain", server.port)]
        http_load(server, me, count=150, duration=5)  # warm-up: imports, connections, caches
        http_load(server, plain, count=150, duration=5)
        plain_runs, me_runs = [], []
        for _ in range(rounds):
            plain_runs.append(http_load(server, plain, count=count, duration=duration))
            me_runs.append(http_load(server, me, count=count, duration=duration))
        for result in plain_runs:
            expect_ok(result, "GET /bench/plain")
        for result in me_runs:
            expect_ok(result, "GET /api/native/me")
    for name, runs in (("plain", plain_runs), ("me", me_runs)):
        ctx.figure(f"{name}_rps", med(runs, "rps"), "req/s")
        ctx.figure(f"{name}_p50", med(runs, "p50_ms"), "ms")
        ctx.figure(f"{name}_p99", med(runs, "p99_ms"), "ms")
        ctx.figure(f"{name}_server_cpu_per_req", med([cpu_per_request(r) for r in runs], "v"), "us")
        ctx.figure(f"{name}_client_cpu_share", med([client_share(r) for r in runs], "v"), "cpu/s")
    ctx.ratio("me_vs_plain_rps", ratio(med(me_runs, "rps"), med(plain_runs, "rps")), TARGET)


def cpu_per_request(result: dict) -> dict:
    return {"v": result["server_cpu"] / result["requests"] * 1e6}


def client_share(result: dict) -> dict:
    """Client CPU seconds per wall second: near the number of cores means the client saturated."""
    return {"v": result["client_cpu"] / result["elapsed"]}
