"""Revocation latency across processes, and what the deny-list check costs per request.

Latency: 100 sockets are open on server B, each with its own native token; one by one, each
token is revoked on server A (DELETE /api/native/tokens/{id}) and we time from just before the
request is sent to the 4401 close arriving at the client on B. Cross-process needs Redis; the
embedded default has one process, so there A and B are the same server (noted as such).

Deny-list cost: GET /api/native/me with a service token (signature + deny-list check, no token
row) against the same with a native token (one indexed query), same server, median of 3.
"""

import asyncio
import time

from bench.harness import Context, expect_ok, med
from bench.httpload import get, http_load, request_once
from bench.procs import BenchError
from bench.report import Target, percentile, ratio
from bench.wsload import close_code, gather_limited, open_socket

TARGET_P99_S = Target("<=", 1.0)
CLOSE_TIMEOUT = 5.0


async def revocations(a, b, users) -> tuple[list[float], list]:
    sockets = await gather_limited([open_socket(f"{b.ws_url}/api/ws/native", u["token"]) for u in users], 20)
    latencies, failures = [], []
    try:
        for user, ws in zip(users, sockets, strict=True):
            closed_at = {}

            async def watch(ws=ws, closed_at=closed_at):
                code = await close_code(ws, CLOSE_TIMEOUT)
                closed_at["t"], closed_at["code"] = time.monotonic(), code

            watcher = asyncio.create_task(watch())
            started = time.monotonic()
            status, body = await request_once(
                a.port, get(f"/api/native/tokens/{user['token_id']}", a.port, user["token"], method="DELETE")
            )
            await watcher
            if status != 204 or closed_at["code"] != 4401:
                failures.append((status, body[:100], closed_at["code"]))
                continue
            latencies.append(closed_at["t"] - started)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return latencies, failures


def run(ctx: Context) -> None:
    count = 100
    count_http, duration = (1000, 2.0) if ctx.quick else (6000, 8.0)
    database_url, seed = ctx.prepare(users=count + 4, service_tokens=4)
    users, spare = seed["users"][:count], seed["users"][count:]
    processes = 2 if ctx.backend.has_redis else 1
    if processes == 1:
        ctx.report.note(
            "embedded revocation latency is within one process (in-memory layer: no cross-process)"
        )
    with ctx.servers(database_url, count=processes) as servers:
        a, b = servers[0], servers[-1]
        latencies, failures = asyncio.run(revocations(a, b, users))
        if failures:
            raise BenchError(f"{len(failures)} revocations did not close with 4401: {failures[:3]}")
        native = [get("/api/native/me", a.port, u["token"]) for u in spare]
        service = [get("/api/native/me", a.port, t) for t in seed["service_tokens"]]
        http_load(a, native, count=150, duration=5)
        http_load(a, service, count=150, duration=5)
        native_runs, service_runs = [], []
        for _ in range(3):
            native_runs.append(http_load(a, native, count=count_http, duration=duration))
            service_runs.append(http_load(a, service, count=count_http, duration=duration))
        for result in native_runs + service_runs:
            expect_ok(result, "GET /api/native/me")
    ctx.figure("revocations", len(latencies))
    ctx.figure("latency_p50", percentile(latencies, 50) * 1000, "ms")
    ctx.figure("latency_p99", percentile(latencies, 99) * 1000, "ms")
    ctx.figure("latency_max", max(latencies) * 1000, "ms")
    ctx.ratio("latency_p99_s", percentile(latencies, 99), TARGET_P99_S)
    for name, runs in (("native", native_runs), ("service", service_runs)):
        ctx.figure(f"me_{name}_rps", med(runs, "rps"), "req/s")
        ctx.figure(f"me_{name}_p99", med(runs, "p99_ms"), "ms")
        ctx.figure(
            f"me_{name}_server_cpu_per_req",
            med([{"v": r["server_cpu"] / r["requests"] * 1e6} for r in runs], "v"),
            "us",
        )
    ctx.ratio("service_vs_native_rps", ratio(med(service_runs, "rps"), med(native_runs, "rps")))
