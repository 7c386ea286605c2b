"""Fan-out: one room, N subscribers, M messages sent through the websocket ``send`` frame.

Ours (/api/ws/native: authenticated, persisted, per-recipient visibility and ordering) against
the bare group-broadcast consumer (/bench/ws/bare), on the same server and channel layer, on
daphne and uvicorn, and on every channel layer the backend offers. The sender is one more
subscriber and keeps at most WINDOW messages in flight (sent but not yet back to itself), so
latency is delivery latency, not the depth of a queue we filled on purpose.
"""

import asyncio
import json
import time

from bench.harness import Context
from bench.procs import BenchError, run_clients
from bench.report import Target, median, percentile, ratio
from bench.wsload import gather_limited, open_socket, recv_type

TARGET = Target(">=", 1.0)
WINDOW = 10
LAYERS = {
    "memory": None,
    "redis": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def fanout_job(gate, url, tokens, room, m, sender_token, timeout):
    async def subscribe(token):
        ws = await open_socket(url, token)
        if room is not None:
            await ws.send(json.dumps({"type": "subscribe", "room": room}))
            await recv_type(ws, "subscribed")
        return ws

    async def receive(ws, latencies, last):
        got = 0
        while got < m:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "message":
                latencies.append(time.monotonic() - float(frame["message"]["body"].split()[0]))
                got += 1
        last.append(time.monotonic())
        return got

    async def send_all(ws, state):
        for i in range(m):
            while state["sent"] - state["back"] >= WINDOW:
                await state["event"].wait()
                state["event"].clear()
            body = f"{time.monotonic():.6f} {i} " + "x" * 40
            await ws.send(json.dumps({"type": "send", "room": room or "bare", "body": body}))
            state["sent"] += 1

    async def sender_receive(ws, state):
        while state["back"] < m:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "message":
                state["back"] += 1
                state["event"].set()

    async def main():
        sockets = await gather_limited([subscribe(t) for t in tokens], 20)
        sender = await subscribe(sender_token) if sender_token is not None else None
        latencies, last = [], []
        start = gate.ready()
        tasks = [receive(ws, latencies, last) for ws in sockets]
        if sender is not None:
            state = {"sent": 0, "back": 0, "event": asyncio.Event()}
            tasks += [send_all(sender, state), sender_receive(sender, state)]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        except TimeoutError:
            raise BenchError(
                f"fan-out incomplete after {timeout:.0f} s: {len(latencies)} deliveries"
            ) from None
        finally:
            await asyncio.gather(*(ws.close() for ws in [*sockets, sender] if ws), return_exceptions=True)
        return {"latencies": latencies, "last": max(last, default=start)}

    return asyncio.run(main())


def measure(server, path, tokens, sender_token, room, m, processes=2, timeout=120.0):
    url = f"{server.ws_url}{path}"
    shares = [tokens[i::processes] for i in range(processes)]
    jobs = [
        (url, share, room, m, sender_token if i == 0 else None, timeout) for i, share in enumerate(shares)
    ]
    cpu = server.cpu()
    started, results = run_clients(fanout_job, jobs, timeout=timeout + 60)
    server_cpu = server.cpu() - cpu
    latencies = [lat for result, _ in results for lat in result["latencies"]]
    elapsed = max(result["last"] for result, _ in results) - started
    return {
        "deliveries": len(latencies),
        "dps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "server_cpu_per_delivery_us": server_cpu / len(latencies) * 1e6,
        "client_cpu_share": sum(cpu for _, cpu in results) / elapsed,
    }


def variants(ctx: Context):
    layers = ["redis", "pubsub"] if ctx.backend.has_redis else ["memory"]
    return [(kind, layer) for kind in ("daphne", "uvicorn") for layer in layers]


def run(ctx: Context) -> None:
    n, m = (20, 50) if ctx.quick else (50, 200)
    rounds = 3
    ctx.figure("subscribers", n)
    ctx.figure("messages", m)
    database_url, seed = ctx.prepare(users=n + 1)
    tokens = [u["token"] for u in seed["users"][:n]]
    sender = seed["users"][n]["token"]
    best = {}
    for kind, layer in variants(ctx):
        env = {"CHANNEL_LAYER_BACKEND": LAYERS[layer]} if LAYERS[layer] else {}
        with ctx.servers(database_url, kind=kind, **env) as (server,):
            measure(server, "/api/ws/native", tokens[:5], sender, seed["room"], 10)  # warm-up
            measure(server, "/bench/ws/bare", tokens[:5], "", None, 10)
            ours, bare = [], []
            for _ in range(rounds):
                ours.append(measure(server, "/api/ws/native", tokens, sender, seed["room"], m))
                bare.append(measure(server, "/bench/ws/bare", [None] * n, "", None, m))
        label = f"{kind}_{layer}"
        for name, runs in (("ours", ours), ("bare", bare)):
            for field, unit in (
                ("dps", "deliveries/s"),
                ("p50_ms", "ms"),
                ("p99_ms", "ms"),
                ("server_cpu_per_delivery_us", "us"),
                ("client_cpu_share", "cpu/s"),
            ):
                ctx.figure(f"{label}.{name}_{field}", median([r[field] for r in runs]), unit)
            if any(r["deliveries"] != n * m for r in runs):
                raise BenchError(f"{label} {name}: lost deliveries {[r['deliveries'] for r in runs]}")
        ours_dps = median([r["dps"] for r in ours])
        ctx.ratio(f"{label}.ours_vs_bare_dps", ratio(ours_dps, median([r["dps"] for r in bare])), TARGET)
        best[label] = ours_dps
    winner = max(best, key=best.get)
    ctx.report.note(f"{ctx.backend.name} fan-out: fastest configuration for our consumer: {winner}")
