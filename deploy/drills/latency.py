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

from websockets.exceptions import ConnectionClosed

from deploy import netns, topology
from deploy.cluster import Cluster
from deploy.drills import checker, faults
from deploy.drills.client import now, open_socket
from deploy.drills.fanout import fan_out
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
            fan = await fan_out(load, label, messages=messages, window=window, budget=fan_budget)
        finally:
            if latency is not None:
                await asyncio.to_thread(latency.remove)
        problems = "; ".join(filter(None, [revocation.pop("problem", None), fan.pop("problem", None)]))
        results.append({"condition": label, "handshake_ms": round(rtt * 1000, 1), **revocation, **fan})
        if problems:
            results[-1]["problem"] = problems
    load.stop.set()
    await asyncio.gather(*load.tasks, return_exceptions=True)
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
        self.names = self.load.named("revoked")[: self.count]

    async def measure(self, label: str) -> dict:
        """Revoke each user's token through a host other than its socket's; times at the client:
        from sending the request, and from its answer (the revocation has committed by then)."""
        users = self.load.users
        for name in self.names:  # a fresh token per condition: the last one was revoked
            if users[name].get("revoked"):
                await self.load.login(name)
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
        answer = json.loads(await asyncio.to_thread(self.load.app_python, {"action": "sockets"}))
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


def plan_for(size: str) -> tuple[Plan, dict]:
    """The load (fan-out sockets) and the drill's own sizes, short or long."""
    if size == "long":
        plan = Plan(
            users=30, sockets_per_user=10, posters=1, revoked=60, unsubscribing=0, revoke_halfway=False
        )
        return plan, {"revocations": 60, "messages": 400, "window": 10, "fan_budget": 60.0}
    plan = Plan(users=10, sockets_per_user=4, posters=1, revoked=20, unsubscribing=0, revoke_halfway=False)
    return plan, {"revocations": 20, "messages": 100, "window": 10, "fan_budget": 20.0}
