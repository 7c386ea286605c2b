"""Where a scenario's server time goes: run one load against a real server and record it with
py-spy (not a dependency of the project: ``pip install py-spy`` anywhere and put it on PATH).

    python -m bench.profile LOAD [--backend postgres]
    LOAD: me-wsgi | me-asgi | connect-bearer | connect-ticket | connect-ticket-daphne | fanout | idle

(connect-ticket mints on gunicorn, the production layout; connect-ticket-daphne on the daphne
that serves the socket, the embedded default's layout.)

Prints the hottest frames (own time and with callees) of the server processes, sampling only
the thread that holds the GIL (Python CPU time, not waits); ``idle`` prints each server
thread's share instead. The raw stacks are kept in bench/results/profile-<load>-<backend>.txt
(py-spy's raw format). Figures are not recorded: ``python -m bench`` measures.
"""

import argparse
import collections
import os
import subprocess
import sys
import threading
import time

from bench.database import backends_from_env
from bench.harness import Context
from bench.httpload import get, http_load
from bench.report import Report
from bench.servers import ROOT, stop_all

RESULTS = ROOT / "bench" / "results"

SECONDS = 15


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument(
        "load",
        choices=[
            "me-wsgi",
            "me-asgi",
            "connect-bearer",
            "connect-ticket",
            "connect-ticket-daphne",
            "fanout",
            "idle",
        ],
    )
    parser.add_argument("--backend", choices=["embedded", "postgres"], default="embedded")
    args = parser.parse_args(argv)
    backend = backends_from_env(args.backend)[-1]
    ctx = Context(backend, Report(meta={}), True, "profile")
    if args.load == "idle":
        return profile_idle(ctx, backend)
    database_url, seed = ctx.prepare(users=101 if args.load == "fanout" else 8)
    tokens = [u["token"] for u in seed["users"]]
    env = {}
    if args.load.startswith("connect"):
        specs = [("ws", "daphne", ROOT), ("http", "gunicorn", ROOT)]
    elif args.load == "fanout":  # 100 sockets x 100 messages, as bench fanout (uvicorn on Redis)
        specs = [("main", "uvicorn" if backend.has_redis else "daphne", ROOT)]
        env = (
            {"CHANNEL_LAYER_BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}
            if backend.has_redis
            else {}
        )
    else:
        specs = [("main", "gunicorn" if args.load == "me-wsgi" else "daphne", ROOT)]
    try:
        with ctx.servers_of(database_url, *specs, **env) as servers:
            watched = servers if args.load in ("connect-ticket", "fanout") else servers[:1]
            pids = [p.pid for server in watched for p in server.processes()]
            load = threading.Thread(target=run_load, args=(args.load, servers, tokens, seed), daemon=True)
            load.start()
            time.sleep(2)  # warm
            RESULTS.mkdir(exist_ok=True)
            raw = str(RESULTS / f"profile-{args.load}-{args.backend}.txt")
            record(pids, raw)
            load.join(timeout=SECONDS * 3)
            print_top(raw)
    finally:
        stop_all()
        backend.cleanup()
    return 0


def profile_idle(ctx, backend, sockets=10_000, processes=4) -> int:
    """10,000 idle authenticated sockets over 100 rooms (bench enforce's idle case); prints the
    CPU share of one core of each server thread (from /proc, named by py-spy), so the
    change-log poller's own cost is read directly rather than as a difference of two servers."""
    from bench.enforce import ROOMS, hold_job
    from bench.procs import Clients, thread_cpu

    database_url, seed = ctx.prepare(users=200, rooms=ROOMS)
    tokens, rooms = [u["token"] for u in seed["users"]], seed["rooms"][1:]
    raw = str(RESULTS / f"profile-idle-{backend.name}.txt")
    RESULTS.mkdir(exist_ok=True)
    try:
        with ctx.servers(database_url) as (server,):
            url = f"{server.ws_url}/api/ws/native"
            jobs = [(url, tokens[i::processes], rooms, sockets // processes) for i in range(processes)]
            with Clients(hold_job, jobs, timeout=900, stages=1) as clients:
                clients.start()
                time.sleep(5.0)
                seconds, rate = 20, 100
                argv = ["py-spy", "record", "-p", str(server.pid), "-d", str(seconds), "-r", str(rate)]
                before = thread_cpu(server.pid)
                subprocess.run([*argv, "--threads", "-f", "raw", "-o", raw], capture_output=True, check=False)
                after = thread_cpu(server.pid)
                cpu = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
                clients.let_go()
                clients.results()
        names = {}
        with open(raw) as data:
            for line in data:
                first = line.split(";", 1)[0]  # "thread (TID): NAME"
                if first.startswith("thread ("):
                    tid, _, name = first[len("thread (") :].partition("): ")
                    names[int(tid, 0)] = name
        print(f"CPU share of one core per server thread over {seconds} s, {sockets} idle sockets")
        for tid, used in sorted(cpu.items(), key=lambda item: -item[1]):
            print(f"{used / seconds:7.4f}  {names.get(tid, tid)}")
    finally:
        stop_all()
        backend.cleanup()
    return 0


def run_load(load, servers, tokens, seed) -> None:
    if load == "fanout":
        from bench.fanout import measure as fanout

        deadline = time.monotonic() + SECONDS + 4
        while time.monotonic() < deadline:
            fanout(servers, "/api/ws/native", tokens[:100], tokens[100], seed["room"], 100)
        return
    if load in ("me-wsgi", "me-asgi"):
        http_load(
            servers[0],
            [get("/api/native/me", servers[0].port, t) for t in tokens],
            count=10**6,
            duration=SECONDS + 4,
        )
        return
    from bench.connect import measure  # the scenario's own client

    minting = servers[1] if load == "connect-ticket" else servers[0]
    mode = "bearer" if load == "connect-bearer" else "ticket"
    measure(servers[0], minting, mode, tokens, count=10**6, timeout=SECONDS + 4)


def record(pids, raw) -> None:
    procs = [
        subprocess.Popen(
            [
                "py-spy",
                "record",
                "-p",
                str(pid),
                "-d",
                str(SECONDS),
                "-r",
                "200",
                "--gil",
                "-f",
                "raw",
                "-o",
                f"{raw}.{pid}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]
    for proc in procs:
        proc.wait()
    with open(raw, "w") as out:
        for pid in pids:
            if os.path.exists(f"{raw}.{pid}"):
                with open(f"{raw}.{pid}") as part:
                    out.write(part.read())


def print_top(raw, count=25) -> None:
    own, total, samples = collections.Counter(), collections.Counter(), 0
    with open(raw) as data:
        for line in data:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack or "(idle)" in stack:
                continue
            frames = stack.split(";")
            samples += int(n)
            own[frames[-1]] += int(n)
            for frame in set(frames):
                total[frame] += int(n)
    print(f"{samples} busy samples ({raw})")
    for title, counter in (("own", own), ("with callees", total)):
        print(f"--- {title}")
        for frame, n in counter.most_common(count):
            print(f"{100 * n / max(samples, 1):5.1f}%  {frame[:160]}")


if __name__ == "__main__":
    sys.exit(main())
