"""Fan-out: one room, N subscribers, M messages sent through the websocket ``send`` frame.

Ours (/api/ws/native: authenticated, persisted, per-recipient visibility and ordering, one hub
per process) against the bare group-broadcast consumer (/bench/ws/bare: one channel and one
group membership per socket, as plain Channels does), on the same servers and channel layer:
daphne with the in-memory layer (embedded); uvicorn with RedisPubSubChannelLayer, and two daphne
processes on RedisChannelLayer with the subscribers split between them (PostgreSQL + Redis).
Sizes: 100 sockets x 100 messages and 1,000 sockets in one room; on Redis also 5,000 sockets
over 2 processes, where every socket must receive every message once and in order.

The sender is one more subscriber and keeps at most WINDOW messages in flight (sent but not yet
back to itself), so latency is delivery latency, not the depth of a queue we filled on purpose.
Every subscriber checks that it got each message exactly once, in order.
"""

import asyncio
import json
import time

from bench.harness import Context
from bench.procs import BenchError, Clients, cpu_seconds
from bench.report import Target, median, percentile, ratio
from bench.wsload import gather_limited, open_socket, recv_type

TARGET = Target(">=", 3.0)
LARGE_ROOM_TARGET = Target(">=", 10.0)  # issue 24: at 1,000 sockets, on every layer
LATENCY_TARGET = Target("<=", 1.0)
WINDOW = 10
LAYERS = {
    "memory": None,
    "redis": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def fanout_job(gate, urls, tokens, room, m, sender, timeout):
    """Subscribers on ``urls`` (socket i on urls[i % len]); ``sender`` is (url, token) or None."""

    async def subscribe(url, token):
        ws = await open_socket(url, token)
        if room is not None:
            await ws.send(json.dumps({"type": "subscribe", "room": room}))
            await recv_type(ws, "subscribed")
        return ws

    async def receive(ws, latencies, last, disorder):
        seen = []
        while len(seen) < m:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "message":
                sent_at, index = frame["message"]["body"].split()[:2]
                latencies.append(time.monotonic() - float(sent_at))
                seen.append(int(index))
        if seen != list(range(m)):
            disorder.append(seen[:20])
        last.append(time.monotonic())

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
        sockets = await gather_limited([subscribe(urls[i % len(urls)], t) for i, t in enumerate(tokens)], 20)
        sending = await subscribe(*sender) if sender is not None else None
        latencies, last, disorder = [], [], []
        start = gate.ready()
        cpu_at_start = cpu_seconds()
        tasks = [receive(ws, latencies, last, disorder) for ws in sockets]
        if sending is not None:
            state = {"sent": 0, "back": 0, "event": asyncio.Event()}
            tasks += [send_all(sending, state), sender_receive(sending, state)]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        except TimeoutError:
            raise BenchError(
                f"fan-out incomplete after {timeout:.0f} s: {len(latencies)} deliveries"
            ) from None
        finally:
            await gather_limited([ws.close() for ws in [*sockets, sending] if ws], 200)
        cpu = cpu_seconds() - cpu_at_start  # the fan-out only, not the connects
        return {"latencies": latencies, "last": max(last, default=start), "disorder": disorder, "cpu": cpu}

    return asyncio.run(main())


def measure(servers, path, tokens, sender_token, room, m, processes=2, timeout=180.0):
    urls = [f"{server.ws_url}{path}" for server in servers]
    shares = [tokens[i::processes] for i in range(processes)]
    # Each client process spreads its sockets over every server; the sender is on the first.
    jobs = [
        (urls, share, room, m, (urls[0], sender_token) if i == 0 else None, timeout)
        for i, share in enumerate(shares)
    ]
    with Clients(fanout_job, jobs, timeout=timeout + 120) as clients:
        started = clients.start()
        cpu = sum(server.cpu() for server in servers)  # from here: the fan-out, not the connects
        results = clients.results()
        server_cpu = sum(server.cpu() for server in servers) - cpu
    latencies = [lat for result, _ in results for lat in result["latencies"]]
    disorder = [d for result, _ in results for d in result["disorder"]]
    if disorder:
        raise BenchError(f"{path}: messages out of order or missing: {disorder[:2]}")
    elapsed = max(result["last"] for result, _ in results) - started
    return {
        "deliveries": len(latencies),
        "dps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "server_cpu_per_delivery_us": server_cpu / len(latencies) * 1e6,
        "client_cpu_share": sum(result["cpu"] for result, _ in results) / elapsed,
    }


def variants(ctx: Context) -> list[tuple[str, str, int]]:
    """(server kind, layer, processes)."""
    if ctx.backend.has_redis:
        return [("uvicorn", "pubsub", 1), ("daphne", "redis", 2)]
    return [("daphne", "memory", 1)]


def sizes(ctx: Context) -> list[tuple[int, int]]:
    return [(60, 40), (400, 10)] if ctx.quick else [(100, 100), (1000, 20)]


FIELDS = (
    ("dps", "deliveries/s"),
    ("p50_ms", "ms"),
    ("p99_ms", "ms"),
    ("server_cpu_per_delivery_us", "us"),
    ("client_cpu_share", "cpu/s"),
)


def run(ctx: Context) -> None:
    biggest = max(n for n, _ in sizes(ctx))
    large = 5000 if ctx.backend.has_redis and not ctx.quick else 0
    database_url, seed = ctx.prepare(users=max(biggest, large) + 1)
    users = seed["users"]
    sender = users[-1]["token"]
    rounds = 1 if ctx.quick else 3
    for kind, layer, processes in variants(ctx):
        env = {"CHANNEL_LAYER_BACKEND": LAYERS[layer]} if LAYERS[layer] else {}
        label = f"{kind}_{layer}{'_x2' if processes > 1 else ''}"
        with ctx.servers(database_url, count=processes, kind=kind, **env) as servers:
            tokens = [u["token"] for u in users[:5]]
            measure(servers, "/api/ws/native", tokens, sender, seed["room"], 10)  # warm-up
            measure(servers, "/bench/ws/bare", [None] * 5, "", None, 10)
            for n, m in sizes(ctx):
                tokens = [u["token"] for u in users[:n]]
                ours, bare = [], []
                for _ in range(rounds):
                    ours.append(measure(servers, "/api/ws/native", tokens, sender, seed["room"], m))
                    bare.append(measure(servers, "/bench/ws/bare", [None] * n, "", None, m))
                key = f"{label}.{n}x{m}"
                for name, runs in (("ours", ours), ("bare", bare)):
                    for field, unit in FIELDS:
                        ctx.figure(f"{key}.{name}_{field}", median([r[field] for r in runs]), unit)
                    if any(r["deliveries"] != n * m for r in runs):
                        raise BenchError(f"{key} {name}: lost deliveries {[r['deliveries'] for r in runs]}")
                ours_dps, bare_dps = median([r["dps"] for r in ours]), median([r["dps"] for r in bare])
                target = LARGE_ROOM_TARGET if n >= 1000 else TARGET
                ctx.ratio(f"{key}.ours_vs_bare_dps", ratio(ours_dps, bare_dps), target)
                p99 = ratio(median([r["p99_ms"] for r in ours]), median([r["p99_ms"] for r in bare]))
                ctx.ratio(f"{key}.ours_vs_bare_p99", p99, LATENCY_TARGET)
            if large and processes == 2:
                tokens = [u["token"] for u in users[:large]]
                result = measure(servers, "/api/ws/native", tokens, sender, seed["room"], 10, processes=4)
                if result["deliveries"] != large * 10:
                    raise BenchError(f"5000 sockets: {result['deliveries']} deliveries, not {large * 10}")
                for field, unit in FIELDS:
                    ctx.figure(f"{label}.{large}x10.ours_{field}", result[field], unit)
