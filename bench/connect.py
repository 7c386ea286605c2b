"""Connects per second through the production layout: mint a ticket with POST ws-ticket on
gunicorn (config.wsgi) + open /api/ws/native?ticket= on daphne (config.asgi) + wait for hello,
against bare connects (open the bare Channels consumer on the same daphne + wait for its
hello). Bearer-header connects (no ticket, daphne alone) are measured too. Server CPU per
connect counts every process the connect touched (gunicorn's workers and daphne).

Targets: ticket ≥ 0.5× bare, bearer ≥ 0.8× bare."""

import asyncio
import json
import time

from bench.harness import Context
from bench.httpload import Budget, get, read_response
from bench.procs import BenchError, run_clients
from bench.report import Target, median, percentile, ratio
from bench.servers import ROOT
from bench.wsload import open_socket

TICKET_TARGET = Target(">=", 0.5)
BEARER_TARGET = Target(">=", 0.8)


def connect_job(gate, port, http_port, mode, tokens, count, concurrency, timeout):
    base = f"ws://127.0.0.1:{port}"

    async def worker(index, budget, latencies):
        token = tokens[index % len(tokens)] if tokens else None
        reader = writer = None
        try:
            while budget.take():
                started = time.monotonic()
                if mode == "ticket":
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
                    writer.write(get("/api/native/ws-ticket", http_port, token, method="POST"))
                    status, body, keep_alive = await asyncio.wait_for(read_response(reader), timeout)
                    if status != 201:
                        raise BenchError(f"ws-ticket answered {status}: {body[:200]!r}")
                    if not keep_alive:
                        writer.close()
                        reader = writer = None
                    ws = await open_socket(f"{base}/api/ws/native?ticket={json.loads(body)['ticket']}")
                elif mode == "bearer":
                    ws = await open_socket(f"{base}/api/ws/native", token)
                else:
                    ws = await open_socket(f"{base}/bench/ws/bare")
                latencies.append(time.monotonic() - started)
                await ws.close()
        finally:
            if writer is not None:
                writer.close()

    async def main():
        latencies = []
        start = gate.ready()
        budget = Budget(count, start + timeout)
        await asyncio.wait_for(
            asyncio.gather(*(worker(i, budget, latencies) for i in range(concurrency))), timeout + 10
        )
        return {"latencies": latencies, "end": time.monotonic()}

    return asyncio.run(main())


def measure(server, http, mode, tokens, count, processes=2, concurrency=6, timeout=60.0):
    jobs = [
        (server.port, http.port, mode, tokens[i::processes], count // processes, concurrency, timeout)
        for i in range(processes)
    ]
    cpu = server.cpu() + http.cpu()
    started, results = run_clients(connect_job, jobs, timeout=timeout + 60)
    server_cpu = server.cpu() + http.cpu() - cpu
    latencies = [lat for result, _ in results for lat in result["latencies"]]
    elapsed = max(result["end"] for result, _ in results) - started
    return {
        "cps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "server_cpu_per_connect_us": server_cpu / max(1, len(latencies)) * 1e6,
        "client_cpu_share": sum(cpu for _, cpu in results) / elapsed,
    }


def run(ctx: Context) -> None:
    count, rounds = (120, 3) if ctx.quick else (600, 3)
    database_url, seed = ctx.prepare(users=20)
    tokens = [u["token"] for u in seed["users"]]
    runs = {"ticket": [], "bearer": [], "bare": []}
    specs = (("ws", "daphne", ROOT), ("http", "gunicorn", ROOT))
    with ctx.servers_of(database_url, *specs) as (server, http):
        for mode in runs:
            measure(server, http, mode, tokens, 20)  # warm-up
        for _ in range(rounds):
            for mode, results in runs.items():
                results.append(measure(server, http, mode, tokens, count))
    for mode, results in runs.items():
        for field, unit in (
            ("cps", "connects/s"),
            ("p50_ms", "ms"),
            ("p99_ms", "ms"),
            ("server_cpu_per_connect_us", "us"),
            ("client_cpu_share", "cpu/s"),
        ):
            ctx.figure(f"{mode}_{field}", median([r[field] for r in results]), unit)
    bare = median([r["cps"] for r in runs["bare"]])
    ctx.ratio("ticket_vs_bare_cps", ratio(median([r["cps"] for r in runs["ticket"]]), bare), TICKET_TARGET)
    ctx.ratio("bearer_vs_bare_cps", ratio(median([r["cps"] for r in runs["bearer"]]), bare), BEARER_TARGET)
