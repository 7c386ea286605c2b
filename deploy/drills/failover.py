"""Drills 1-3: a fault under a steady load, and the checker's verdict on every frame.

1. ``redis``: SIGKILL the Redis primary; Sentinel promotes the replica; afterwards the dead one
   comes back as a replica (and, for app hosts on a plain redis:// URL, is made primary again).
2. ``partition``: one app host loses its back link (Redis and PostgreSQL) for a while. It must
   close its sockets 1013 within the enforcement bound (API.md: fail closed) and refuse new
   ones with 1013; its clients reconnect through nginx to the other hosts and resume.
3. ``rolling``: SIGTERM each app host's daphne and gunicorn in turn, start them again: clients
   see 1012, reconnect, resume; every process is gone within 10 s of its SIGTERM.
On top of the checker's verdict (nothing lost, duplicated or leaked), each drill checks what
its fault promises and lists any breach under ``contract``.
"""

import asyncio
import time

from deploy import topology
from deploy.cluster import Cluster
from deploy.drills import faults
from deploy.drills.client import now
from deploy.drills.load import Load

FAIL_CLOSED_BOUND = 2.0  # API.md: a process that cannot read the change log closes within the bound
CLIENT_TOLERANCE = 0.25  # the close frame's trip to the client, on a busy 2-core machine
STOP_BOUND = 10.0  # API.md: SIGTERM ends any of these processes within 10 seconds


def redis_url_is_plain(cluster: Cluster) -> bool:
    url = cluster.recipes.app_env(topology.APPS[0])["REDIS_URL"]
    return url.startswith("redis://")


async def redis_drill(cluster: Cluster, load: Load, *, at: float) -> dict:
    original = cluster.primary_of("native")
    plain = redis_url_is_plain(cluster)
    contract: list[str] = []

    async def fault(load: Load) -> dict:
        await asyncio.sleep(at)
        load.event(f"SIGKILL the Redis primary ({original[0].name}:{original[1]})")
        outcome = await asyncio.to_thread(faults.kill_redis_primary, cluster)
        load.event(f"Sentinel promoted {outcome['promoted']} after {outcome['failover_seconds']} s")
        return outcome

    result = await load.run(fault)
    outcome = result["fault"]
    outcome["redis_url"] = "redis:// (the old primary's address)" if plain else "redis+sentinel://"
    synced = await asyncio.to_thread(faults.restore_redis, cluster, outcome["killed"])
    load.event(f"{outcome['killed']} restarted and synced as a replica in {synced:.1f} s")
    if plain:
        await asyncio.to_thread(faults.fail_back, cluster, (original[0].name, original[1]))
        load.event(f"failed back to {original[0].name}:{original[1]} (the address in REDIS_URL)")
    return {**result, "contract": contract}


async def partition_drill(
    cluster: Cluster, load: Load, *, at: float, seconds: float, host: str | None
) -> dict:
    contract: list[str] = []

    async def fault(load: Load) -> dict:
        await asyncio.sleep(at)
        counts = await load.locate_sockets()
        victim = host or max(counts, key=counts.get)
        on_victim = [s.current for s in load.subscribers if s.current and s.current.host == victim]
        load.event(f"sockets by host: {counts}; cutting {victim} off from Redis and PostgreSQL")
        await asyncio.to_thread(faults.cut, cluster, victim)
        cut_at = now()
        try:
            await asyncio.sleep(seconds)
        finally:
            await asyncio.to_thread(faults.reconnect, cluster, victim)
        load.event(f"{victim}'s back link restored after {now() - cut_at:.1f} s")
        closes = []
        for log in on_victim:
            closed_after = None if log.closed_at is None else log.closed_at - cut_at
            closes.append((log.close_code, closed_after))
            if log.close_code is None:
                contract.append(
                    f"a socket on {victim} was still open when the link came back, not closed 1013"
                )
            elif log.close_code != 1013:
                contract.append(f"a socket on {victim} ended with {log.close_code}, not 1013")
            elif closed_after > FAIL_CLOSED_BOUND + CLIENT_TOLERANCE:
                contract.append(f"a socket on {victim} closed 1013 only {closed_after:.2f} s after the cut")
        healthy = await asyncio.to_thread(_healthy_within, cluster, topology.host_named(victim), 60)
        load.event(
            f"{victim} healthy again after {healthy:.1f} s"
            if healthy is not None
            else f"{victim} NOT healthy"
        )
        if healthy is None:
            contract.append(f"{victim} did not answer health 200 within 60 s of the link's return")
        delays = [d for _, d in closes if d is not None]
        return {
            "host": victim,
            "sockets_on_host": len(on_victim),
            "closed_1013": sum(1 for code, _ in closes if code == 1013),
            "close_after_cut_max": round(max(delays), 2) if delays else None,
            "cut_seconds": seconds,
            "healthy_again_after": healthy,
        }

    result = await load.run(fault)
    return {**result, "contract": contract}


def _healthy_within(cluster: Cluster, host: topology.Host, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if cluster.app_healthy(host, topology.HTTP_PORT) and cluster.app_healthy(host, topology.WS_PORT):
            return round(time.monotonic() - started, 2)
        time.sleep(0.2)
    return None


async def rolling_drill(cluster: Cluster, load: Load, *, at: float, pause: float) -> dict:
    contract: list[str] = []

    async def fault(load: Load) -> dict:
        await asyncio.sleep(at)
        hosts = []
        for host in topology.APPS:
            await load.locate_sockets()
            on_host = [s.current for s in load.subscribers if s.current and s.current.host == host.name]
            load.event(f"SIGTERM {host.name}'s daphne and gunicorn ({len(on_host)} sockets there)")
            record = await asyncio.to_thread(faults.restart_app, cluster, host)
            signalled = record.pop("signalled_at")
            # Sockets that ended before the signal (a revoked one) are not the restart's.
            codes = [log.close_code for log in on_host if log.closed_at is None or log.closed_at >= signalled]
            for name, seconds in record["stop_seconds"].items():
                if seconds > STOP_BOUND:
                    contract.append(f"{name} took {seconds} s to stop after SIGTERM")
            for code in codes:
                if code != 1012:
                    contract.append(f"a socket on {host.name} ended with {code}, not 1012")
            record.update(sockets=len(codes), closed_1012=codes.count(1012))
            load.event(
                f"{host.name} back: stopped in {max(record['stop_seconds'].values())} s, "
                f"healthy {record['start_seconds']} s after the start"
            )
            hosts.append(record)
            await asyncio.sleep(pause)
        return {"hosts": hosts}

    result = await load.run(fault)
    return {**result, "contract": contract}
