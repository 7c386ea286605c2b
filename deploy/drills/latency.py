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
    messages: int,
    window: int,
    fan_budget: float,
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
            revocation = await revokers.measure(label)
            fan = await fan_out(load, messages, window, label, budget=fan_budget)
        finally:
            if latency is not None:
                await asyncio.to_thread(latency.remove)
        problems = "; ".join(filter(None, [revocation.pop("problem", None), fan.pop("problem", None)]))
        results.append({"condition": label, "handshake_ms": round(rtt * 1000, 1), **revocation, **fan})
        if problems:
            results[-1]["problem"] = problems
    load.stop.set()
    await asyncio.gather(*load._tasks, return_exceptions=True)
    contract = [r["problem"] for r in results if r.get("problem")]
    return {"method": with_delay.method, "results": results, "contract": contract}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class RevocationSampler:
    """Users whose tokens are revoked one at a time, each through a host other than its socket's."""

    def __init__(self, cluster: Cluster, load: Load, count: int):
        self.cluster, self.load, self.count = cluster, load, count
        self.names: list[str] = []

    async def prepare(self) -> None:
        self.names = [name for name in self.load.users if "-r" in name][: self.count]

    async def measure(self, label: str) -> dict:
        """Revoke each user's token through a host other than its socket's; times at the client:
        from sending the request, and from its answer (the revocation has committed by then)."""
        users = self.load.users
        for name in self.names:  # a fresh token per condition: the last one was revoked
            if users[name].get("revoked"):
                await self.load._login(name)
        opened = await asyncio.gather(*(self._open(name) for name in self.names))
        host_of = await self._hosts()
        from_request, requests = [], []
        for index, (name, ws, connection_id) in enumerate(opened):
            host = host_of.get(connection_id)
            others = [h for h in topology.APPS if h.name != host]
            through = others[index % len(others)]
            watcher = asyncio.ensure_future(_closed(ws, timeout=15))
            started = now()
            status = await asyncio.to_thread(
                netns.http_request,
                self.cluster.ns("proxy"),
                (through.address("front"), topology.HTTP_PORT),
                "DELETE",
                "/api/native/logout",
                host=topology.PROXY.address("public"),
                headers={"Authorization": f"Bearer {users[name]['token']}"},
                timeout=15,
            )
            answered = now()
            users[name]["revoked"] = True
            code, closed_at = await watcher
            if status == 204 and code == 4401:
                from_request.append(closed_at - started)
                requests.append(answered - started)
            else:
                self.load.event(f"{name}: logout answered {status}, socket closed {code}")
        figures = {
            "revocations": len(from_request),
            "revocation_p50_ms": _ms(checker.percentile(from_request, 0.5)),
            "revocation_p99_ms": _ms(checker.percentile(from_request, 0.99)),
            "revocation_max_ms": _ms(max(from_request) if from_request else None),
            "logout_request_p50_ms": _ms(checker.percentile(requests, 0.5)),
        }
        self.load.event(
            f"{label}: {len(from_request)} revocations across hosts, p99 {figures['revocation_p99_ms']} ms "
            f"from the request (the request itself: p50 {figures['logout_request_p50_ms']} ms)"
        )
        if len(from_request) < len(opened):
            figures["problem"] = (
                f"{len(opened) - len(from_request)} revocations did not close their socket 4401"
            )
        return figures

    async def _open(self, name: str):
        user = self.load.users[name]
        ws, hello = await open_socket(user["api"], user["token"])
        return name, ws, hello["connection_id"]

    async def _hosts(self) -> dict[str, str]:
        answer = json.loads(await asyncio.to_thread(self.load._app_python, {"action": "sockets"}))
        return {connection_id: process.split(":")[0] for connection_id, process, _ in answer}


async def _closed(ws, timeout: float) -> tuple[int | None, float]:
    """(close code, when the close arrived), reading frames until then (None: still open)."""
    deadline = now() + timeout
    try:
        while now() < deadline:
            await asyncio.wait_for(ws.recv(), deadline - now())
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else 1006), now()
    except TimeoutError:
        await ws.close()
    return None, now()


async def fan_out(load: Load, messages: int, window: int, label: str, *, budget: float) -> dict:
    """One sender posts up to ``messages`` messages (at most ``budget`` seconds of sending) over its
    websocket, ``window`` of them unacknowledged at a time, to the room every subscriber holds.
    Messages and deliveries (over all sockets) per second, first send to last arrival."""
    room = load.rooms[0]
    sender = next(name for name in load.users if "-p" in name)
    user = load.users[sender]
    subscribers = [s for s in load.subscribers if s.ended is None]
    marks = {id(s): sum(len(log.frames) for log in s.sockets) for s in subscribers}
    tag = f"fan{int(time.time() * 1000) % 10**8}"
    acked: list[int] = []
    ws, _ = await open_socket(user["api"], user["token"])
    async with ws:
        in_flight = asyncio.Semaphore(window)
        sent = 0

        async def read_acks():
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "ack":
                    acked.append(frame["id"])
                    in_flight.release()

        reader = asyncio.ensure_future(read_acks())
        first_send = now()
        while sent < messages and now() - first_send < budget:
            await in_flight.acquire()
            body = f"{tag}-{sent} {now():.6f}"
            await ws.send(
                json.dumps({"type": "send", "room": room, "body": body, "client_id": f"{tag}-{sent}"})
            )
            sent += 1
        deadline = now() + 60
        while len(acked) < sent and now() < deadline:
            await asyncio.sleep(0.01)
        reader.cancel()
    wanted = sorted(acked)
    deadline = now() + 60
    while now() < deadline and not all(_got(s, room, tag, marks[id(s)]) >= set(wanted) for s in subscribers):
        await asyncio.sleep(0.05)
    last_arrival, delivered, problems = first_send, 0, []
    for subscriber in subscribers:
        arrivals = _arrivals(subscriber, room, tag, marks[id(subscriber)])
        if [message_id for _, message_id in arrivals] != wanted:
            problems.append(
                f"{subscriber.name}: got {len(arrivals)} of {len(wanted)} (or out of order, or twice)"
            )
        delivered += len(arrivals)
        if arrivals:
            last_arrival = max(last_arrival, arrivals[-1][0])
    seconds = last_arrival - first_send
    load.event(
        f"{label}: {len(wanted)} messages, {delivered} deliveries "
        f"to {len(subscribers)} sockets in {seconds:.1f} s"
    )
    return {
        "fan_sockets": len(subscribers),
        "fan_messages": len(wanted),
        "fan_messages_per_second": round(len(wanted) / seconds, 1) if seconds > 0 else None,
        "fan_deliveries_per_second": round(delivered / seconds) if seconds > 0 else None,
        "problem": "; ".join(problems[:3]) if problems else None,
    }


def _arrivals(subscriber: Subscriber, room: str, tag: str, mark: int) -> list[tuple[float, int]]:
    """(arrival, id) of this fan-out's messages on the subscriber's sockets, in arrival order."""
    frames = [frame for log in subscriber.sockets for frame in log.frames][mark:]
    found = []
    for arrived, frame in frames:
        if frame.get("type") != "message":
            continue
        message = frame["message"]
        if message["room"] == room and message["body"].startswith(tag):
            found.append((arrived, message["id"]))
    return found


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
        "fan_budget": 20.0,
    }
