"""Connects per second: mint a ticket with POST ws-ticket + open /api/ws/native?ticket= on
daphne (config.asgi) + wait for hello, against bare connects (open the bare Channels consumer
on the same daphne + wait for its hello). Bearer-header connects (no ticket, daphne alone) are
measured too. Server CPU per connect counts every process the connect touched.

Where the ticket is minted: on the embedded default, on the same daphne (what a newcomer's
``make run`` serves); on PostgreSQL + Redis, through the production layout, on gunicorn
(config.wsgi, 2 workers), with the same-daphne figure reported beside it.

Targets: ticket ≥ 0.5× bare (embedded, same daphne), ≥ 0.6× bare (PostgreSQL, production
layout); bearer ≥ 0.8× bare."""

import asyncio
import json
import time

from bench.harness import Context
from bench.httpload import Budget, get, read_response
from bench.procs import BenchError, run_clients
from bench.report import Target, median, percentile, ratio
from bench.servers import ROOT
from bench.wsload import open_socket

TICKET_TARGETS = {"embedded": Target(">=", 0.5), "postgres": Target(">=", 0.6)}
BEARER_TARGET = Target(">=", 0.8)


def connect_job(gate, port, http_port, mode, tokens, count, concurrency, timeout):
    base = f"ws://127.0.0.1:{port}"

    async def worker(index, budget, latencies):
        token = tokens[index % len(tokens)] if tokens else None
        reader = writer = None
        try:
            while budget.take():
                started = time.monotonic()
                if mode.startswith("ticket"):
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
    touched = [server] if http is server else [server, http]
    cpu = sum(s.cpu() for s in touched)
    started, results = run_clients(connect_job, jobs, timeout=timeout + 60)
    server_cpu = sum(s.cpu() for s in touched) - cpu
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
    production = ctx.backend.name == "postgres"
    # "ticket" is the mode with the target: minted on gunicorn on PostgreSQL (the production
    # layout), on the same daphne on the embedded default; "ticket_same_daphne" is reported.
    runs = {"ticket": [], "bearer": [], "bare": []}
    if production:
        runs["ticket_same_daphne"] = []
    specs = (("ws", "daphne", ROOT), ("http", "gunicorn", ROOT))[: 2 if production else 1]
    with ctx.servers_of(database_url, *specs) as servers:
        server = servers[0]
        minting = {"ticket": servers[-1], "ticket_same_daphne": server}
        for mode in runs:
            measure(server, minting.get(mode, server), mode, tokens, 20)  # warm-up
        for _ in range(rounds):
            for mode, results in runs.items():
                results.append(measure(server, minting.get(mode, server), mode, tokens, count))
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
    target = TICKET_TARGETS[ctx.backend.name]
    ctx.ratio("ticket_vs_bare_cps", ratio(median([r["cps"] for r in runs["ticket"]]), bare), target)
    if production:
        same = median([r["cps"] for r in runs["ticket_same_daphne"]])
        ctx.ratio("ticket_same_daphne_vs_bare_cps", ratio(same, bare))
    ctx.ratio("bearer_vs_bare_cps", ratio(median([r["cps"] for r in runs["bearer"]]), bare), BEARER_TARGET)
