"""Many idle authenticated sockets: what each costs, what the idle server costs, how fast a
message reaches all of them, and how fast a mass revocation closes 10,000 of them.

Sockets are opened in steps (full: 1,000 / 10,000 / 50,000 / 100,000 on PostgreSQL + Redis;
the embedded default has one process, so it stops at what one process can hold). Each socket
authenticates with a bearer header and subscribes to one of 1,000 rooms (socket i to room
i mod 1,000); every tenth socket belongs to one user (``bench-0``), the others to 100 more.
After each step, with every socket open:

- **RSS per socket**: the servers' RSS against their RSS after a warm-up, over the sockets;
- **idle CPU**: the servers' CPU over a quiet window, as a share of one core (all of them);
- **a message to each room**: 1,000 ``send`` frames (one posting socket per server, each
  sending its share at once), each socket checking it got its room's message exactly once;
  deliveries/s from the first frame sent to the last delivery, and send → delivery latency.

Then (last step only) ``manage.py revoke_user_tokens bench-0 --wait 5`` in its own process:
the time from its commit until every server process confirmed its sockets of that user closed
(the command's own confirmation; the target), the time to the 4401 close frame reaching the
last of those clients and to the last of their TCP connections closed (reported: the clients
read at niceness 10 on the same cores), and every other socket still open.
The same steps with bare Channels sockets (``/bench/ws/bare``) on fresh servers are the baseline
for RSS and idle CPU.

Limits of this machine that shape the run (and are reported): a process may hold at most
RLIMIT_NOFILE descriptors and the hard limit cannot be raised here (20,000 on the machine of
docs/benchmarks.md), so sockets are spread over as many server processes as that needs (two at
least) and over client processes of at most CLIENT_SHARE sockets each, every client process
binding its own loopback source address (127.0.0.x: 28,000 ephemeral ports per address), at
niceness CLIENT_NICE: the load generator shares the cores with the servers it measures.
"""

import asyncio
import collections
import json
import os
import queue
import random
import re
import resource
import time
from datetime import datetime

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from bench.harness import Context
from bench.procs import BenchError, Clients, report_queue
from bench.report import Target, percentile, ratio
from bench.wsload import OPTIONS, close_code, gather_limited, open_socket, stamp_close_frames

ROOMS = 1000
OTHER_USERS = 100
REVOKED_EVERY = 10  # every tenth socket is bench-0's: 10,000 of 100,000
FULL_STEPS = [1000, 10_000, 50_000, 100_000]
QUICK_STEPS = [1000, 5000]
CLIENT_SHARE = 10_000  # sockets per client process (and per loopback source address)
FD_HEADROOM = 1500  # a server's own descriptors: database, Redis, logs, listening socket
# Connects in flight per client process. Eight per process (40 at 50,000 sockets) starved six
# servers' event loops on two cores for 2-5 s at a time, and each then failed closed.
CONCURRENCY = 3
OPEN_ATTEMPTS = 5
RESUME_SPREAD_S = 5.0  # a closed socket resumes after a random 0.5 s to this
SETTLE_S = 5.0
IDLE_WINDOW_S = 20.0  # daphne's ping interval: each socket's ping falls in the window once
FANOUT_TIMEOUT_S = 240.0
CLIENT_NICE = 10  # the client processes' niceness (hold_job)
CLOSE_TIMEOUT_S = 30.0

RSS_TARGET = Target("<=", 1.0)  # ours against a bare Channels socket
IDLE_TARGET = Target("<=", 0.05)  # share of one core, all servers together
REVOKE_TARGET = Target("<=", 2.0)  # seconds from commit to the last close


def per_server_limit() -> int:
    """Sockets one server process may hold: its descriptor limit less what it needs itself."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - FD_HEADROOM


def steps_for(ctx: Context) -> list[int]:
    """The socket counts to measure at; BENCH_SCALE_STEPS=1000,20000 overrides them (and
    BENCH_SCALE_SERVER=uvicorn serves the sockets with uvicorn instead of daphne, and
    BENCH_SCALE_CURVES=bare measures one curve alone)."""
    steps = QUICK_STEPS if ctx.quick else FULL_STEPS
    if os.environ.get("BENCH_SCALE_STEPS"):
        steps = [int(step) for step in os.environ["BENCH_SCALE_STEPS"].split(",")]
    if not ctx.backend.has_redis:
        # One process (the in-memory layer does not cross processes): what it can hold.
        steps = [s for s in steps if s <= per_server_limit()]
    return steps


def plan_sockets(count: int, tokens: list[str], revoked_token: str, rooms: list[str]) -> list[tuple]:
    """(token, room, revoked?) of socket i, the same whatever the step."""
    out = []
    for i in range(count):
        revoked = i % REVOKED_EVERY == 0
        token = revoked_token if revoked else tokens[i % len(tokens)]
        out.append((token, rooms[i % len(rooms)], revoked))
    return out


# --- client processes -------------------------------------------------------------------------


def hold_job(gate, urls, specs, steps, source, reports, path):
    """This process's share of the sockets: ``specs[i]`` is (token, room, revoked) of its socket
    i, connected to urls[i % len(urls)] from ``source``; ``steps`` its cumulative counts. After
    each step it meets the parent, then waits for one message on every socket and reports."""

    # The load generator shares the two cores with the servers it measures; on a machine of
    # its own it would not take their CPU. At a lower priority it reads when the servers leave
    # it time, so the measurement's clients do not starve a server's event loop past the
    # enforcement bound (ours and bare alike).
    os.nice(CLIENT_NICE)
    stamp_close_frames()
    last_ids: dict[int, int] = {}  # socket i -> the id of the last message of its room it saw
    early: dict[int, list] = {}  # socket i -> messages that came with a resume, before subscribed

    async def open_one(i, after=None):
        """Connect socket i and subscribe it (with ``after`` when it resumes), as a client does."""
        token, room, revoked = specs[i] if specs else (None, None, False)
        url = f"{urls[i % len(urls)]}{path}"
        headers = {"Authorization": f"Bearer {token}"} if token else None
        for attempt in range(OPEN_ATTEMPTS):
            try:
                ws = await ws_connect(url, additional_headers=headers, local_addr=(source, 0), **OPTIONS)
                hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if hello.get("type") != "hello":
                    raise BenchError(f"expected hello, got {hello}")
                if room is not None:
                    subscribe = {"type": "subscribe", "room": room}
                    if after is not None:
                        subscribe["after"] = after
                    await ws.send(json.dumps(subscribe))
                    backlog = []
                    while True:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                        if frame.get("type") == "subscribed":
                            break
                        backlog.append(frame)  # with after: the messages missed, first
                    last_ids.setdefault(i, frame.get("last_message_id") or 0)
                    early[i] = backlog
                return ws
            except (OSError, InvalidMessage, InvalidStatus, TimeoutError, ConnectionClosed) as exc:
                # A handshake dropped under the connect storm, or 1013 (a dependency did not
                # answer in time): a client reconnects with back-off, and so does this one.
                if attempt == OPEN_ATTEMPTS - 1:
                    raise
                retried[type(exc).__name__ if not isinstance(exc, ConnectionClosed) else _code(exc)] += 1
                await asyncio.sleep(1.0 + attempt)

    async def one_message(i, room, tag, deadline):
        """(receive time, latency) of socket i's message, or a problem string. A socket the
        server closes 1013 or 1012 (failing closed under overload, a restart) reconnects and
        resumes with ``after``, as API.md tells a client to: its message must still come once."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                if early.get(i):
                    frame = early[i].pop(0)
                else:
                    frame = json.loads(
                        await asyncio.wait_for(sockets[i].recv(), max(0.1, deadline - loop.time()))
                    )
            except TimeoutError:
                return "missing"
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else 1006
                if code not in (1012, 1013) or loop.time() > deadline:
                    return f"closed {code}"
                resumed[_code(closed)] += 1
                # A process that fails closed drops thousands of sockets at once; clients that all
                # came back half a second later would be a reconnect storm of their own. Jittered
                # back-off, and no more handshakes in flight than while opening, as a client does.
                await asyncio.sleep(random.uniform(0.5, RESUME_SPREAD_S))
                async with resuming:
                    sockets[i] = await open_one(i, after=last_ids.get(i, 0))
                continue
            now = time.monotonic()
            if frame.get("type") != "message":
                return f"unexpected {frame.get('type')}"
            message = frame["message"]
            step_tag, its_room, sent_at = message["body"].split()
            if step_tag != tag or its_room != room or message["id"] <= last_ids.get(i, 0):
                return "wrong message"  # another room's, or one seen before
            last_ids[i] = message["id"]
            return now, now - float(sent_at)

    retried = collections.Counter()
    resumed = collections.Counter()
    resuming = asyncio.Semaphore(CONCURRENCY)
    sockets = []

    async def main():
        loop = asyncio.get_running_loop()
        for index, target in enumerate(steps):
            sockets.extend(
                await gather_limited([open_one(i) for i in range(len(sockets), target)], CONCURRENCY)
            )
            # A server that failed closed while the step opened (overload: its loop starved) closed
            # sockets 1013; they come back, resuming, before the parent measures the step, so
            # that every step is measured with all of its sockets open.
            while closed := [i for i, ws in enumerate(sockets) if ws.close_code is not None]:
                for i in closed:
                    resumed[f"close {sockets[i].close_code} while opening"] += 1
                reopened = await gather_limited(
                    [open_one(i, after=last_ids.get(i, 0)) for i in closed], CONCURRENCY
                )
                for i, ws in zip(closed, reopened, strict=True):
                    sockets[i] = ws
            await loop.run_in_executor(None, gate.stage, 2 * index)  # opened: the parent measures
            if specs:
                deadline = loop.time() + FANOUT_TIMEOUT_S
                tag = f"scale-{index}"
                got = await asyncio.gather(
                    *(one_message(i, specs[i][1], tag, deadline) for i in range(len(sockets)))
                )
                delivered = [g for g in got if isinstance(g, tuple)]
                problems = [g for g in got if not isinstance(g, tuple)]
                reports.put(
                    {
                        "step": index,
                        "last": max((g[0] for g in delivered), default=None),
                        "latencies": [round(g[1], 4) for g in delivered],
                        "problems": problems[:5],
                        "problem_count": len(problems),
                        "retried": dict(retried),
                        "resumed": dict(resumed),
                    }
                )
            await loop.run_in_executor(None, gate.stage, 2 * index + 1)  # measured: open more
        if specs:
            await loop.run_in_executor(None, gate.stage, 2 * len(steps))
            revoked = [ws for i, ws in enumerate(sockets) if specs[i][2]]
            closes = await asyncio.gather(*(close_code(ws, CLOSE_TIMEOUT_S) for ws in revoked))
            closed_at = time.time()  # close_code returns on the close; the latest is what counts
            frames_at = [getattr(ws, "close_frame_at", None) for ws in revoked]
            survivors = [ws for i, ws in enumerate(sockets) if not specs[i][2]]
            still_open = sum(1 for ws in survivors if ws.close_code is None)
            reports.put(
                {
                    "step": "revoke",
                    "codes": sorted({c for c in closes}, key=str),
                    "revoked": len(revoked),
                    "last_close": closed_at,
                    "last_close_frame": max((t for t in frames_at if t is not None), default=closed_at),
                    "survivors": len(survivors),
                    "still_open": still_open,
                }
            )
        await loop.run_in_executor(None, gate.wait_release)
        await gather_limited([ws.close() for ws in sockets], 500)
        return len(sockets)

    return asyncio.run(main())


def _code(closed: ConnectionClosed) -> str:
    return f"close {closed.rcvd.code if closed.rcvd else 1006}"


# --- the parent -------------------------------------------------------------------------------


async def post_to_rooms(servers, token: str, rooms: list[str], tag: str) -> tuple[float, dict]:
    """One message to each room through ``send`` frames, as a client posts: one socket per
    server, each sending its share of the rooms without waiting, then reading the acks. A
    socket closed 1013/1012 reconnects and sends again what was not acked, with the same
    ``client_id``, so the server keeps one message per room (API.md: a repeat returns the
    original). Returns (the time the first frame went out, {reply type: count})."""
    replies: dict[str, int] = {}

    async def post(server, share):
        pending = list(share)
        for attempt in range(OPEN_ATTEMPTS):
            ws = None
            try:
                # Inside the try: a server failing closed answers the open itself with 1013.
                ws = await open_socket(f"{server.ws_url}/api/ws/native", token)
                for room in pending:
                    body = f"{tag} {room} {time.monotonic():.6f}"
                    frame = {"type": "send", "room": room, "body": body, "client_id": f"{tag}-{room}"}
                    await ws.send(json.dumps(frame))
                while pending:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    replies[reply.get("type")] = replies.get(reply.get("type"), 0) + 1
                    pending.pop(0)  # replies come in frame order
                return
            except ConnectionClosed as closed:
                if attempt == OPEN_ATTEMPTS - 1 or (closed.rcvd and closed.rcvd.code not in (1012, 1013)):
                    raise
                replies[_code(closed)] = replies.get(_code(closed), 0) + 1
                await asyncio.sleep(1.0 + attempt)
            finally:
                if ws is not None:
                    await ws.close()

    started = time.monotonic()
    shares = [rooms[i :: len(servers)] for i in range(len(servers))]
    await asyncio.gather(*(post(server, share) for server, share in zip(servers, shares, strict=True)))
    return started, replies


def wait_reports(clients, reports, count: int, timeout: float) -> list[dict]:
    """One report from each of ``count`` client processes; a client that failed ends the wait."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"only {len(out)} of {count} client processes reported within {timeout:.0f} s")
        try:
            out.append(reports.get(timeout=min(remaining, 2.0)))
        except queue.Empty:
            if any(not process.is_alive() for process, _ in clients.procs):
                raise BenchError(f"a client process failed: {clients.early_errors()}") from None
    return out


def layout(total: int, servers: int) -> tuple[int, int]:
    """(server processes, client processes) for ``total`` sockets."""
    return max(servers, -(-total // per_server_limit())), max(2, -(-total // CLIENT_SHARE))


def idle_share(servers, window: float) -> float:
    before, started = sum(s.cpu() for s in servers), time.monotonic()
    time.sleep(window)
    return (sum(s.cpu() for s in servers) - before) / (time.monotonic() - started)


def warm_up(servers, path, token) -> None:
    """A few sockets opened and closed on every server first, so that lazy imports, thread pools
    and caches are paid for before the RSS baseline is read."""

    async def main():
        for server in servers:
            headers = {"Authorization": f"Bearer {token}"} if token else None
            sockets = [
                await ws_connect(f"{server.ws_url}{path}", additional_headers=headers, **OPTIONS)
                for _ in range(20)
            ]
            await asyncio.gather(*(ws.recv() for ws in sockets))
            await asyncio.gather(*(ws.close() for ws in sockets))

    asyncio.run(main())


def curve(ctx: Context, database_url: str, seed: dict | None, steps: list[int], name: str) -> dict:
    """Open the steps on fresh servers and measure each; ``seed`` None is the bare baseline."""
    processes, client_count = layout(steps[-1], 2 if ctx.backend.has_redis else 1)
    path = "/api/ws/native" if seed else "/bench/ws/bare"
    specs, tokens = None, None
    if seed:
        users = seed["users"]
        tokens = [u["token"] for u in users[1 : 1 + OTHER_USERS]]
        specs = plan_sockets(steps[-1], tokens, users[0]["token"], seed["rooms"][1 : 1 + ROOMS])
    out = {"servers": processes, "clients": client_count}
    reports = report_queue()
    kind = os.environ.get("BENCH_SCALE_SERVER", "daphne")
    with ctx.servers(database_url, count=processes, kind=kind) as servers:
        warm_up(servers, path, tokens[0] if tokens else None)
        time.sleep(SETTLE_S)
        rss_before = sum(s.rss() for s in servers)
        urls = [s.ws_url for s in servers]
        jobs = []
        for c in range(client_count):
            # socket i of the run belongs to client i % client_count; keeping i's spec keeps its
            # user and room, and i % len(urls) on the client side spreads it over the servers.
            mine = list(range(c, steps[-1], client_count))
            share = [sum(1 for i in mine if i < step) for step in steps]
            own_specs = [specs[i] for i in mine] if specs else None
            jobs.append((urls, own_specs, share, f"127.0.0.{10 + c}", reports, path))
        stages = 2 * len(steps) + (1 if seed else 0)
        with Clients(hold_job, jobs, timeout=1800, stages=stages) as clients:
            started = time.monotonic()  # the clients start opening as soon as they are forked
            for index, step in enumerate(steps):
                clients.stage(2 * index)
                ctx.figure(
                    f"{name}_connects_per_s_to_{step}",
                    (step - (steps[index - 1] if index else 0)) / (time.monotonic() - started),
                    "/s",
                )
                time.sleep(SETTLE_S)
                rss = (sum(s.rss() for s in servers) - rss_before) / step / 1024
                idle = idle_share(servers, IDLE_WINDOW_S)
                ctx.figure(f"{name}_kb_per_socket_at_{step}", rss, "KB")
                ctx.figure(f"{name}_idle_cpu_share_at_{step}", idle)
                out[step] = {"kb": rss, "idle": idle}
                if seed:
                    out[step].update(fan_out(ctx, servers, seed, clients, reports, client_count, index, step))
                started = clients.stage(2 * index + 1)
            if seed:
                out["revoke"] = revoke(ctx, database_url, clients, reports, client_count, 2 * len(steps))
            clients.let_go()
            held = sum(result for result, _ in clients.results())
    if held != steps[-1]:
        raise BenchError(f"{name}: held {held} sockets, expected {steps[-1]}")
    return out


def fan_out(ctx, servers, seed, clients, reports, client_count, index, step) -> dict:
    poster = seed["users"][1]["token"]
    rooms = seed["rooms"][1 : 1 + ROOMS]
    started, replies = asyncio.run(post_to_rooms(servers, poster, rooms, f"scale-{index}"))
    posted_s = time.monotonic() - started
    got = wait_reports(clients, reports, client_count, FANOUT_TIMEOUT_S + 60)
    if replies.get("ack") != len(rooms) or set(replies) - {"ack", "close 1012", "close 1013"}:
        raise BenchError(f"sending to {len(rooms)} rooms was answered {replies}")
    if len(replies) > 1:
        ctx.report.note(f"{ctx.backend.name} scale, {step} sockets: the sending sockets resumed: {replies}")
    problems = sum(r["problem_count"] for r in got)
    if problems:
        sample = [p for r in got for p in r["problems"]][:5]
        raise BenchError(f"at {step} sockets, {problems} sockets did not get their message once: {sample}")
    retried, resumed = collections.Counter(), collections.Counter()
    for r in got:
        retried.update(r["retried"])
        resumed.update(r["resumed"])
    if retried or resumed:
        ctx.report.note(
            f"{ctx.backend.name} scale, {step} sockets, so far: connects retried {dict(retried)},"
            f" sockets closed and resumed with after {dict(resumed)}"
        )
    latencies = [x for r in got for x in r["latencies"]]
    elapsed = max(r["last"] for r in got) - started
    figures = {
        "deliveries_per_s": len(latencies) / elapsed,
        "sends_acked_s": posted_s,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }
    for key, value in figures.items():
        ctx.figure(f"ours_fanout_{key}_at_{step}", value)
    return figures


def revoke(ctx, database_url, clients, reports, client_count, stage) -> dict:
    clients.stage(stage)
    out = ctx.backend.manage(database_url, "revoke_user_tokens", "bench-0", "--wait", "5", timeout=300)
    got = wait_reports(clients, reports, client_count, CLOSE_TIMEOUT_S + 60)
    match = re.search(r"at (\S+Z): (\d+) native tokens?", out)
    if not match:
        raise BenchError(f"revoke_user_tokens said: {out.strip()[:300]}")
    committed = datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()
    codes = {c for r in got for c in r["codes"]}
    if codes != {4401}:
        raise BenchError(f"the revoked user's sockets closed with {codes}, not only 4401")
    survivors, still_open = sum(r["survivors"] for r in got), sum(r["still_open"] for r in got)
    if still_open != survivors:
        raise BenchError(f"{survivors - still_open} sockets of other users closed too")
    revoked = sum(r["revoked"] for r in got)
    # The bound is the servers': every process has closed its sockets of the user (each 4401
    # frame written) and said so, as the command confirms it to the operator. Where the clients
    # saw it is reported beside it: the 4401 frame reaching each client, and the TCP teardown
    # after it (the client's reply, the server's drop); on this machine the clients are the
    # load generator, at niceness 10 on the servers' two cores, so they read late.
    applied = re.search(r"applied by (\d+) server process\(es\) within ([\d.]+) s", out)
    if not applied or "NOT YET CONFIRMED" in out:
        raise BenchError(f"revoke_user_tokens did not confirm every server: {out.strip()[:400]}")
    lag = max(r["last_close_frame"] for r in got) - committed
    teardown = max(r["last_close"] for r in got) - committed
    ctx.figure("revoke_sockets", revoked)
    ctx.figure("revoke_server_processes", int(applied.group(1)))
    ctx.figure("revoke_last_close_frame_at_a_client_after_commit_s", lag, "s")
    ctx.figure("revoke_last_tcp_close_after_commit_s", teardown, "s")
    ctx.ratio("revoke_every_server_closed_after_commit_s", float(applied.group(2)), REVOKE_TARGET)
    return {"sockets": revoked, "servers_s": float(applied.group(2)), "lag_s": lag, "teardown_s": teardown}


def run(ctx: Context) -> None:
    steps = steps_for(ctx)
    database_url, seed = ctx.prepare(users=1 + OTHER_USERS, rooms=ROOMS)
    curves = os.environ.get("BENCH_SCALE_CURVES", "ours,bare").split(",")  # one alone, to redo it
    ours = curve(ctx, database_url, seed, steps, "ours") if "ours" in curves else None
    bare = curve(ctx, database_url, None, steps, "bare") if "bare" in curves else None
    if ours is None or bare is None:
        return
    ctx.figure("server_processes", ours["servers"])
    ctx.figure("client_processes", ours["clients"])
    ctx.figure("fd_limit_per_process", resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    for step in steps:
        ctx.ratio(f"ours_vs_bare_kb_at_{step}", ratio(ours[step]["kb"], bare[step]["kb"]), RSS_TARGET)
        ctx.ratio(f"ours_idle_cpu_share_at_{step}", ours[step]["idle"], IDLE_TARGET)
        ctx.figure(f"ours_minus_bare_idle_cpu_share_at_{step}", ours[step]["idle"] - bare[step]["idle"])
