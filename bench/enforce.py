"""Enforcement on live sockets (issue 12): what the guarantee costs and how long it takes.

- lost_push: every push is dropped (the server runs tests.lossy_layer, and without PostgreSQL's
  LISTEN), so each revocation reaches its socket only through the change-log poll: the worst
  case. N sockets, each with its own token, revoked one by one over HTTP on the same server;
  lag from the request to the 4401. Target: at most 2 s.
- idle: 10,000 authenticated sockets (2,000 with --quick) subscribed over 100 rooms, idle; the
  CPU of the change-log threads over the window (the guarantee's cost, read per thread), the
  whole server's CPU against bare Channels sockets', and, on PostgreSQL, the transactions per
  second the database commits (xact_commit). Target: 2 % of a core.
- mass: one user with 100,000 live tokens (20,000 with --quick), 1,000 of them (200) holding a
  socket; ``manage.py revoke_user_tokens`` in its own process; lag from its commit to the last
  socket closed. Target: 2 s.
The push path's own p99 across processes is scenario ``revoke``.
"""

import asyncio
import re
import time
from datetime import datetime

from bench.harness import Context
from bench.procs import BenchError, Clients, thread_cpu
from bench.report import Target, percentile
from bench.wsload import close_code, gather_limited, open_socket

BOUND = Target("<=", 2.0)
IDLE_TARGET = Target("<=", 0.02)
LOSSY = {"embedded": "tests.lossy_layer.LossyInMemoryLayer", "postgres": "tests.lossy_layer.LossyRedisLayer"}
ROOMS = 100
PER_PROCESS = 2500


def run(ctx: Context) -> None:
    lost_push(ctx)
    idle(ctx)
    mass(ctx)


# --- lost pushes ------------------------------------------------------------------------------


async def revoke_each(server, users) -> list[float]:
    import httpx

    url = f"{server.ws_url}/api/ws/native"
    sockets = await gather_limited([open_socket(url, u["token"]) for u in users], 20)
    lags = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for user, ws in zip(users, sockets, strict=True):
            watching = asyncio.create_task(close_code(ws, 10.0))
            started = time.monotonic()
            response = await http.delete(
                f"/api/native/tokens/{user['token_id']}", headers={"Authorization": f"Bearer {user['token']}"}
            )
            code = await watching
            if response.status_code != 204 or code != 4401:
                raise BenchError(f"revocation {response.status_code}, close {code}")
            lags.append(time.monotonic() - started)
    return lags


def lost_push(ctx: Context) -> None:
    count = 30 if ctx.quick else 100
    database_url, seed = ctx.prepare(users=count)
    env = {"CHANNEL_LAYER_BACKEND": LOSSY[ctx.backend.name], "NATIVE_LIVE_PG_LISTEN": "false"}
    with ctx.servers(database_url, **env) as (server,):
        lags = asyncio.run(revoke_each(server, seed["users"]))
    ctx.figure("lost_push.revocations", len(lags))
    ctx.figure("lost_push.lag_p50", percentile(lags, 50) * 1000, "ms")
    ctx.figure("lost_push.lag_p99", percentile(lags, 99) * 1000, "ms")
    ctx.ratio("lost_push.lag_max_s", max(lags), BOUND)


# --- idle cost ----------------------------------------------------------------------------------


def hold_job(gate, url, tokens, rooms, count):
    """Open ``count`` sockets (subscribed to rooms[i % len(rooms)] when rooms are given), then
    hold them until released."""

    async def main():
        async def one(i):
            ws = await open_socket(url, tokens[i % len(tokens)] if tokens else None)
            if rooms:
                await ws.send(f'{{"type": "subscribe", "room": "{rooms[i % len(rooms)]}"}}')
                while '"subscribed"' not in await ws.recv():
                    pass
            return ws

        sockets = await gather_limited([one(i) for i in range(count)], 25)
        await asyncio.get_running_loop().run_in_executor(None, gate.stage, 0)
        await asyncio.get_running_loop().run_in_executor(None, gate.wait_release)
        await gather_limited([ws.close() for ws in sockets], 200)
        return len(sockets)

    return asyncio.run(main())


def committed_transactions(database_url: str) -> int | None:
    if not database_url.startswith("postgres"):
        return None
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]


def guarantee_threads_cpu(pid: int) -> float:
    """CPU seconds so far of the server's change-log threads (live-poller, live-listen: they
    name themselves for the OS, live/os_thread.py)."""
    total = 0.0
    for tid, seconds in thread_cpu(pid).items():
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                name = comm.read().strip()
        except OSError:
            continue  # the thread ended meanwhile
        if name.startswith("live-"):
            total += seconds
    return total


def idle_share(ctx, database_url, path, tokens, rooms, sockets, window) -> dict:
    """Server CPU share of one core (all of it, and the change-log threads alone), database
    transactions per second, sockets held."""
    processes = max(2, -(-sockets // PER_PROCESS))
    with ctx.servers(database_url) as (server,):
        url = f"{server.ws_url}{path}"
        jobs = [
            (url, tokens[i::processes] if tokens else None, rooms, sockets // processes)
            for i in range(processes)
        ]
        with Clients(hold_job, jobs, timeout=900, stages=1) as clients:
            clients.start()  # every client has opened (and subscribed) its sockets
            # Let the connect storm's after-effects settle: PostgreSQL reports an idle
            # backend's pending statistics (xact_commit) up to 10 s late.
            time.sleep(12.0)
            cpu, xacts, started = server.cpu(), committed_transactions(database_url), time.monotonic()
            log_cpu = guarantee_threads_cpu(server.pid)
            time.sleep(window)
            elapsed = time.monotonic() - started
            share = (server.cpu() - cpu) / elapsed
            log_share = (guarantee_threads_cpu(server.pid) - log_cpu) / elapsed
            xacts_after = committed_transactions(database_url)
            clients.let_go()
            held = sum(result for result, _ in clients.results())
    rate = None if xacts is None else (xacts_after - xacts) / elapsed
    return {"share": share, "log_share": log_share, "xacts": rate, "held": held}


def idle(ctx: Context) -> None:
    """The same number of idle sockets on a fresh server: ours (authenticated, subscribed over
    100 rooms, hub and change-log poller running) against bare Channels sockets; the difference
    is what the hub and the guarantee cost when nothing happens."""
    sockets, window = (2000, 10.0) if ctx.quick else (10_000, 20.0)
    database_url, seed = ctx.prepare(users=200, rooms=ROOMS)
    tokens = [u["token"] for u in seed["users"]]
    rooms = seed["rooms"][1:]
    ours = idle_share(ctx, database_url, "/api/ws/native", tokens, rooms, sockets, window)
    bare = idle_share(ctx, database_url, "/bench/ws/bare", None, None, sockets, window)
    ctx.figure("idle.sockets", ours["held"])
    ctx.figure("idle.rooms", len(rooms))
    ctx.figure("idle.ours_cpu_share_of_one_core", ours["share"])
    ctx.figure("idle.bare_cpu_share_of_one_core", bare["share"])
    # Everything our idle server does more than bare Channels (hub, presence, metrics, the
    # log): noisy, since the bare server's own idle CPU varies by a few % between runs.
    ctx.figure("idle.ours_minus_bare_cpu_share", ours["share"] - bare["share"])
    # The guarantee itself: the change-log threads' CPU, read per thread from /proc.
    ctx.ratio("idle.guarantee_cpu_share_of_one_core", ours["log_share"], IDLE_TARGET)
    if ours["xacts"] is not None:
        # Every database round trip of the idle server (polls, heartbeats), whatever the sockets.
        ctx.figure("idle.ours_db_transactions_per_s", ours["xacts"], "/s")
        ctx.figure("idle.bare_db_transactions_per_s", bare["xacts"], "/s")


# --- mass revocation ----------------------------------------------------------------------------


def hold_and_watch_job(gate, url, tokens):
    """Open a socket per token, then report when each one was closed (wall clock)."""

    async def main():
        sockets = await gather_limited([open_socket(url, t) for t in tokens], 25)
        await asyncio.get_running_loop().run_in_executor(None, gate.stage, 0)

        async def watch(ws):
            code = await close_code(ws, 60.0)
            return code, time.time()

        return await asyncio.gather(*(watch(ws) for ws in sockets))

    return asyncio.run(main())


def mass(ctx: Context) -> None:
    sockets, rows = (200, 20_000) if ctx.quick else (1000, 99_000)
    database_url, seed = ctx.prepare(users=2, first_user_tokens=sockets - 1, first_user_rows=rows)
    tokens = [seed["users"][0]["token"], *seed["first_user_tokens"]]
    total = len(tokens) + rows
    with ctx.servers(database_url) as (server,):
        url = f"{server.ws_url}/api/ws/native"
        jobs = [(url, tokens[i::4]) for i in range(4)]
        with Clients(hold_and_watch_job, jobs, timeout=300, stages=1) as clients:
            clients.start()  # every client has opened (and subscribed) its sockets
            started = time.monotonic()
            out = ctx.backend.manage(
                database_url, "revoke_user_tokens", "bench-0", "--wait", "5", timeout=120
            )
            command_s = time.monotonic() - started
            clients.let_go()
            closes = [entry for result, _ in clients.results() for entry in result]
    match = re.search(r"at (\S+Z): (\d+) native tokens", out)
    if not match or int(match.group(2)) != total:
        raise BenchError(f"revoke_user_tokens did not revoke {total} tokens: {out.strip()[:300]}")
    committed = datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()
    if any(code != 4401 for code, _ in closes):
        raise BenchError(f"not every socket closed 4401: {sorted({c for c, _ in closes})}")
    ctx.figure("mass.tokens", total)
    ctx.figure("mass.sockets", len(closes))
    ctx.figure("mass.command_s", command_s, "s")
    ctx.ratio("mass.last_close_after_commit_s", max(at for _, at in closes) - committed, BOUND)
    ctx.report.note(f"{ctx.backend.name} mass revocation: " + " | ".join(out.strip().splitlines()[1:]))
