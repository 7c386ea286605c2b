"""Drill 5: fan-out across the three app hosts with the channel layer on one Redis, then sharded
over two (REDIS_LAYER_URLS), in the same run and on the same sockets.

Both Redis masters of the cluster are Sentinel groups ("native", "native-b"). For each layer
configuration every app process is restarted with it (the whole list must be the same on every
process: docs/operations-scaling.md, "Changing the list"); the subscribers see 1012, resume
with ``after`` and are checked like any other socket; then two senders post to two rooms at once
(deploy/drills/fanout.py). The cluster's own configuration is put back at the end.
"""

import asyncio

from deploy import topology
from deploy.cluster import Cluster
from deploy.drills.client import now
from deploy.drills.fanout import fan_out
from deploy.drills.load import Load, Plan


def sentinel_url(master: str) -> str:
    sentinels = ",".join(f"{host}:{port}" for host, port in topology.sentinel_addresses())
    return f"redis+sentinel://{sentinels}/{master}"


LAYERS = [
    ("one Redis (the layer on REDIS_URL)", None),
    ("two Redis (REDIS_LAYER_URLS)", ",".join(sentinel_url(master) for master in topology.REDIS_MASTERS)),
]


def restart_apps(cluster: Cluster, layer_urls: str | None) -> None:
    """Every app process stopped, then started with this layer list (a rolling restart would
    mix two lists: slower delivery while it lasts, which is not what is measured here)."""
    if layer_urls is None:
        cluster.recipes.overrides.pop("REDIS_LAYER_URLS", None)
    else:
        cluster.recipes.overrides["REDIS_LAYER_URLS"] = layer_urls
    cluster.save()
    names = [f"{host.name}.{kind}" for host in topology.APPS for kind in ("daphne", "gunicorn")]
    for name in names:
        if cluster.alive(name):
            cluster.signal(name, 15)
    for name in names:
        cluster.wait_gone(name, timeout=15)
    for name in names:
        cluster.start(name)
    for host in topology.APPS:
        cluster.wait_app(host)


async def shards_drill(
    cluster: Cluster, load: Load, *, messages: int, window: int, fan_budget: float
) -> dict:
    original = cluster.recipes.overrides.get("REDIS_LAYER_URLS")
    results = []
    try:
        for label, layer_urls in LAYERS:
            before = now()
            await asyncio.to_thread(restart_apps, cluster, layer_urls)
            load.event(f"every app process restarted: {label}")
            if not load.tasks:
                await load.open_sockets()
            else:
                await load.resubscribed(before)
            fan = await fan_out(
                load, label, messages=messages, window=window, budget=fan_budget, rooms=load.rooms
            )
            results.append({"layer": label, **fan})
    finally:
        await asyncio.to_thread(restart_apps, cluster, original)
        load.event("the cluster's own layer configuration is back")
    load.stop.set()
    await asyncio.gather(*load.tasks, return_exceptions=True)
    return {"results": results, "contract": [r["problem"] for r in results if r.get("problem")]}


def plan_for(size: str) -> tuple[Plan, dict]:
    if size == "long":
        plan = Plan(
            users=40, sockets_per_user=10, posters=2, revoked=0, unsubscribing=0, revoke_halfway=False
        )
        return plan, {"messages": 400, "window": 10, "fan_budget": 60.0}
    plan = Plan(users=15, sockets_per_user=4, posters=2, revoked=0, unsubscribing=0, revoke_halfway=False)
    return plan, {"messages": 150, "window": 10, "fan_budget": 20.0}
