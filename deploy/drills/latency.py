"""Drill 4: the cluster with 50 ms between hosts, measured against the same cluster without.

Two measurements, each made first without and then with the delay, in the same run:

- revocation across hosts: a user's socket is open through nginx on some app host (the
  live-connection registry says which); the drill revokes its token (``DELETE logout``) straight
  at the gunicorn of *another* host and times, at the client, from the request to the socket's
  4401 close. p50/p99/max over the samples; API.md's bound is 1 s normally, 2 s at worst.
- fan-out: sockets spread over the three hosts, one sender posting over its websocket with a
  window of messages in flight; messages delivered per second over every socket, each socket
  checked to get every message once and in order.

The delay is ``tc netem`` on both ends of every app host link, or deploy/delayline.py where the
kernel lacks netem; then the "without" figures also go through the delay line (set to 0), so
that its CPU cost is in both and the difference is the delay alone.
"""

import asyncio
import json
import time

from websockets.exceptions import ConnectionClosed

from deploy import netns, topology
from deploy.cluster import Cluster
from deploy.drills import checker, faults
from deploy.drills.client import Subscriber, now, open_socket
from deploy.drills.load import Load, Plan


async def latency_drill(
    cluster: Cluster,
    load: Load,
    *,
    delay: float,
    revocations: int,
    fan_sockets_per_user: int,
    messages: int,
    window: int,
    layer_options: list[tuple[str, dict]] | None = None,
) -> dict:
    """``load``'s subscribers are the fan-out sockets; ``revocations`` more users are logged in
    once per condition for the revocation samples."""
    with_delay = faults.Latency(cluster, delay)
    without = None if with_delay.use_netem else faults.Latency(cluster, 0.0, use_netem=False)
    conditions = [("no added delay", without), (f"{delay * 1000:g} ms between hosts", with_delay)]
    revokers = RevocationSampler(cluster, load, revocations)
    await revokers.prepare()
    await load.open_sockets()
    results = []
    for label, latency in conditions:
        if latency is not None:
            await asyncio.to_thread(latency.apply)
        try:
            rtt = await asyncio.to_thread(faults.round_trip, cluster, topology.APPS[0])
            load.event(f"{label}: TCP handshake nginx -> app1 {rtt * 1000:.1f} ms")
            samples = await revokers.measure(label)
            fan = await fan_out(load, messages, window, label)
        finally:
            if latency is not None:
                await asyncio.to_thread(latency.remove)
        results.append({"condition": label, "handshake_ms": round(rtt * 1000, 1), **_stats(samples), **fan})
    load.stop.set()
    await asyncio.gather(*load._tasks, return_exceptions=True)
    contract = [r["problem"] for r in results if r.get("problem")]
    return {"method": with_delay.method, "results": results, "contract": contract}


def _stats(samples: list[float]) -> dict:
    return {
        "revocations": len(samples),
        "revocation_p50_ms": _ms(checker.percentile(samples, 0.5)),
        "revocation_p99_ms": _ms(checker.percentile(samples, 0.99)),
        "revocation_max_ms": _ms(max(samples) if samples else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class RevocationSampler:
    """Users whose tokens are revoked one at a time, each through a host other than its socket's."""

    def __init__(self, cluster: Cluster, load: Load, count: int):
        self.cluster, self.load, self.count = cluster, load, count
        self.names: list[str] = []

    async def prepare(self) -> None:
        self.names = [name for name in self.load.users if "-r" in name][: self.count]

    async def measure(self, label: str) -> list[float]:
        users = self.load.users
        for name in self.names:  # a fresh token per condition: the last one was revoked
            if users[name].get("revoked"):
                await self.load._login(name)
        opened = await asyncio.gather(*(self._open(name) for name in self.names))
        host_of = await self._hosts()
        samples = []
        for index, (name, ws, connection_id) in enumerate(opened):
            host = host_of.get(connection_id)
            others = [h for h in topology.APPS if h.name != host]
            through = others[index % len(others)]
            started = now()
            status = await asyncio.to_thread(
                netns.http_request,
                self.cluster.ns("proxy"),
                (through.address("front"), topology.HTTP_PORT),
                "DELETE",
                "/api/native/logout",
                host=topology.PROXY.address("public"),
                headers={"Authorization": f"Bearer {users[name]['token']}"},
                timeout=10,
            )
            users[name]["revoked"] = True
            code = await _close_code(ws, timeout=10)
            if status == 204 and code == 4401:
                samples.append(now() - started)
            else:
                self.load.event(f"{name}: logout answered {status}, socket closed {code}")
        figures = _stats(samples)
        self.load.event(
            f"{label}: {len(samples)} revocations across hosts, "
            f"p99 {figures['revocation_p99_ms']} ms, max {figures['revocation_max_ms']} ms"
        )
        return samples

    async def _open(self, name: str):
        user = self.load.users[name]
        ws, hello = await open_socket(user["api"], user["token"])
        return name, ws, hello["connection_id"]

    async def _hosts(self) -> dict[str, str]:
        answer = json.loads(await asyncio.to_thread(self.load._app_python, {"action": "sockets"}))
        return {connection_id: process.split(":")[0] for connection_id, process, _ in answer}


async def _close_code(ws, timeout: float) -> int | None:
    deadline = now() + timeout
    try:
        while now() < deadline:
            await asyncio.wait_for(ws.recv(), deadline - now())
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006
    except TimeoutError:
        await ws.close()
    return None


async def fan_out(load: Load, messages: int, window: int, label: str) -> dict:
    """One sender, ``messages`` messages to the room every subscriber holds; deliveries per second."""
    room = load.rooms[0]
    sender = next(name for name in load.users if "-p" in name)
    user = load.users[sender]
    subscribers = [s for s in load.subscribers if s.ended is None]
    marks = {id(s): sum(len(log.frames) for log in s.sockets) for s in subscribers}
    tag = f"fan{int(time.time() * 1000) % 10**8}"
    ws, _ = await open_socket(user["api"], user["token"])
    async with ws:
        in_flight = asyncio.Semaphore(window)
        acked: list[int] = []

        async def read_acks():
            while len(acked) < messages:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "ack":
                    acked.append(frame["id"])
                    in_flight.release()

        reader = asyncio.ensure_future(read_acks())
        first_send = now()
        for n in range(messages):
            await in_flight.acquire()
            body = f"{tag}-{n} {now():.6f}"
            await ws.send(json.dumps({"type": "send", "room": room, "body": body, "client_id": f"{tag}-{n}"}))
        await asyncio.wait_for(reader, 60)
    wanted = set(acked)
    deadline = now() + 60
    while now() < deadline and not all(_got(s, room, tag, marks[id(s)]) >= wanted for s in subscribers):
        await asyncio.sleep(0.05)
    last_arrival, delivered, problems = first_send, 0, []
    for subscriber in subscribers:
        arrivals = _arrivals(subscriber, room, tag, marks[id(subscriber)])
        ids = [message_id for _, message_id in arrivals]
        if ids != sorted(wanted):
            problems.append(f"{subscriber.name}: got {len(ids)} of {len(wanted)} (or out of order / twice)")
        delivered += len(ids)
        if arrivals:
            last_arrival = max(last_arrival, arrivals[-1][0])
    seconds = last_arrival - first_send
    load.event(f"{label}: fan-out {delivered} deliveries in {seconds:.2f} s to {len(subscribers)} sockets")
    return {
        "fan_sockets": len(subscribers),
        "fan_messages": messages,
        "fan_deliveries": delivered,
        "fan_seconds": round(seconds, 2),
        "fan_per_second": round(delivered / seconds) if seconds > 0 else None,
        "problem": "; ".join(problems[:3]) if problems else None,
    }


def _arrivals(subscriber: Subscriber, room: str, tag: str, mark: int) -> list[tuple[float, int]]:
    frames = [frame for log in subscriber.sockets for frame in log.frames][mark:]
    return [
        (arrived, frame["message"]["id"])
        for arrived, frame in frames
        if frame.get("type") == "message"
        and frame["message"]["room"] == room
        and frame["message"]["body"].startswith(tag)
    ]


def _got(subscriber: Subscriber, room: str, tag: str, mark: int) -> set[int]:
    return {message_id for _, message_id in _arrivals(subscriber, room, tag, mark)}


def plan_for(size: str) -> tuple[Plan, dict]:
    """The load (fan-out sockets) and the drill's own sizes, short or long."""
    if size == "long":
        return Plan(
            users=30, sockets_per_user=10, posters=1, revoked=60, unsubscribing=0, revoke_halfway=False
        ), {
            "revocations": 60,
            "messages": 200,
            "window": 10,
        }
    return Plan(users=10, sockets_per_user=4, posters=1, revoked=20, unsubscribing=0, revoke_halfway=False), {
        "revocations": 20,
        "messages": 100,
        "window": 10,
    }
