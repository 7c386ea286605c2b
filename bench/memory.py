"""Server RSS per idle authenticated socket, at 2,000 and 10,000 sockets (--quick: 2,000 only).

RSS is read from the server process before and after opening the sockets (after a warm-up
that opened and closed a few, so lazy imports and thread pools are already paid for). Sockets
authenticate with a bearer header and then stay idle; they are spread over several client
processes so neither the client's file-descriptor limit nor its speed is what we measure.
A fresh server of the same kind holding bare (unauthenticated) sockets is the baseline.
"""

import asyncio
import time

from websockets.exceptions import InvalidMessage, InvalidStatus

from bench.harness import Context
from bench.procs import Clients
from bench.report import Target, ratio
from bench.wsload import gather_limited, open_socket

TARGET = Target("<=", 1.1)  # ours against a bare Channels socket (issue 14)
PER_PROCESS = 2500
SETTLE = 1.5
CONCURRENCY = 25


async def open_retrying(url, token, attempts: int = 3):
    """Under a connect storm the server may drop a handshake it could not serve in time
    (daphne gives the app 5 s); such a socket is retried, not counted."""
    for attempt in range(attempts):
        try:
            return await open_socket(url, token)
        except (OSError, InvalidMessage, InvalidStatus, TimeoutError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)


def hold_job(gate, url, tokens, steps):
    """Open sockets up to each count in ``steps`` (this process's share), meeting the parent after
    each step, then hold them until released."""

    async def main():
        sockets = []
        for index, target in enumerate(steps):
            fresh = await gather_limited(
                [
                    open_retrying(url, tokens[i % len(tokens)] if tokens else None)
                    for i in range(len(sockets), target)
                ],
                CONCURRENCY,
            )
            sockets.extend(fresh)
            await asyncio.get_running_loop().run_in_executor(None, gate.stage, index)
        await asyncio.get_running_loop().run_in_executor(None, gate.wait_release)
        await gather_limited([ws.close() for ws in sockets], 200)
        return len(sockets)

    return asyncio.run(main())


def measure(ctx: Context, database_url: str, path: str, tokens, steps: list[int], name: str) -> dict:
    """{sockets: KB per socket} for one fresh server; each step is recorded as soon as it is
    measured, so a failure at 10,000 keeps the 2,000 figure."""
    processes = max(2, -(-steps[-1] // PER_PROCESS))
    shares = [
        [step // processes + (1 if i < step % processes else 0) for step in steps] for i in range(processes)
    ]
    out = {}
    with ctx.servers(database_url) as (server,):
        url = f"{server.ws_url}{path}"
        warm = Clients(hold_job, [(url, tokens, [50])], timeout=120)
        with warm:
            warm.start()
            warm.let_go()
            warm.results()
        time.sleep(SETTLE)
        before = server.rss()
        jobs = [(url, tokens[i::processes] if tokens else None, share) for i, share in enumerate(shares)]
        with Clients(hold_job, jobs, timeout=600, stages=len(steps)) as clients:
            for index, step in enumerate(steps):
                clients.stage(index)
                time.sleep(SETTLE)
                out[step] = (server.rss() - before) / step / 1024
                ctx.figure(f"{name}_kb_per_socket_at_{step}", out[step], "KB")
            clients.let_go()
            clients.results()
    return out


def run(ctx: Context) -> None:
    steps = [2000] if ctx.quick else [2000, 10000]
    database_url, seed = ctx.prepare(users=50)
    tokens = [u["token"] for u in seed["users"]]
    ours = measure(ctx, database_url, "/api/ws/native", tokens, steps, "ours")
    bare = measure(ctx, database_url, "/bench/ws/bare", None, steps, "bare")
    for step in steps:
        ctx.ratio(f"ours_vs_bare_kb_at_{step}", ratio(ours[step], bare[step]), TARGET)
