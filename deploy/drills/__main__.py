"""``python -m deploy.drills N [options]`` (or ``make drill-N``): run drill N against the cluster.

1 kill the Redis primary · 2 cut an app host off from Redis and PostgreSQL · 3 rolling restart ·
4 50 ms between hosts (revocation across hosts, fan-out) · 5 fan-out with the channel layer on
one Redis and sharded over two (REDIS_LAYER_URLS). The short form (the default) is what
CI runs; ``--long`` is the form whose figures docs/benchmarks.md reports; --duration, --users,
--sockets-per-user, --rate override either. The drill runs in the cluster's client namespace
(it re-executes itself there), prints what it does and its verdict, writes every frame of every
socket to RUN_DIR/drills/N-TIME/frames.jsonl and the report to report.json beside it, and
exits 0 only if nothing was lost, duplicated or leaked and the fault kept its contract.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time

from deploy import netns, topology
from deploy.cluster import DEFAULT_NAME, Cluster, ClusterError

DRILLS = {1: "redis", 2: "partition", 3: "rolling", 4: "latency", 5: "shards"}


def presets(drill: int, size: str):
    from deploy.drills.load import Plan

    if drill in (4, 5):
        from deploy.drills import latency, shards

        return (latency if drill == 4 else shards).plan_for(size)
    if size == "long":
        plan = Plan(
            users=40, sockets_per_user=3, posters=4, rate=40, duration=120, revoked=4, unsubscribing=4
        )
        options = {"at": 30.0, "seconds": 30.0, "pause": 5.0}
    else:
        plan = Plan(users=8, sockets_per_user=2, posters=2, rate=10, duration=20 if drill != 3 else 30)
        options = {"at": 5.0, "seconds": 8.0, "pause": 1.0}
    return plan, options


async def run(cluster: Cluster, drill: int, args) -> dict:
    from deploy.drills import failover, latency, shards
    from deploy.drills.load import Load

    plan, options = presets(drill, "long" if args.long else "short")
    for field in ("duration", "users", "sockets_per_user", "rate"):
        if getattr(args, field) is not None:
            setattr(plan, field, getattr(args, field))
    out_dir = cluster.run_dir / "drills" / f"{drill}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True)
    load = Load(cluster, plan, out_dir)
    print(f"drill {drill} ({DRILLS[drill]}), {'long' if args.long else 'short'} form; output in {out_dir}")
    await load.prepare()
    if drill == 4:
        result = await latency.latency_drill(cluster, load, delay=args.delay / 1000, **options)
    elif drill == 5:
        result = await shards.shards_drill(cluster, load, **options)
    else:
        await load.open_sockets()
        if drill == 1:
            result = await failover.redis_drill(cluster, load, at=options["at"])
        elif drill == 2:
            result = await failover.partition_drill(
                cluster, load, at=options["at"], seconds=options["seconds"], host=args.host
            )
        else:
            result = await failover.rolling_drill(cluster, load, at=options["at"], pause=options["pause"])
    report = {
        "drill": drill,
        "name": DRILLS[drill],
        "form": "long" if args.long else "short",
        "plan": dataclasses.asdict(plan),
        "http": dataclasses.asdict(load.stats),
        **{key: value for key, value in result.items() if key != "verdict"},
    }
    report["contract"] = [*report.get("contract", []), *load.problems]
    if "verdict" in result:
        report["verdict"] = result["verdict"].summary()
    report["passed"] = not report.get("contract") and report.get("verdict", {"passed": True})["passed"]
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def print_report(report: dict) -> None:
    print(json.dumps({k: v for k, v in report.items() if k not in ("plan",)}, indent=1, default=str))
    print(f"drill {report['drill']} ({report['name']}): {'PASSED' if report['passed'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m deploy.drills", description=__doc__.split("\n")[0])
    parser.add_argument("drill", type=int, choices=sorted(DRILLS))
    parser.add_argument("--cluster", default=os.environ.get("CLUSTER", DEFAULT_NAME))
    parser.add_argument("--long", action="store_true", help="the long form (figures for docs/benchmarks.md)")
    parser.add_argument("--duration", type=float, help="seconds of posting")
    parser.add_argument("--users", type=int, help="subscribing users")
    parser.add_argument("--sockets-per-user", type=int)
    parser.add_argument("--rate", type=float, help="posts per second, all posters together")
    parser.add_argument(
        "--host", help="drill 2: the app host to cut off (default: the one with most sockets)"
    )
    parser.add_argument("--delay", type=float, default=50.0, help="drill 4: milliseconds between hosts")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)

    client_ns = topology.namespace(args.cluster, "client")
    if not netns.inside(client_ns):
        if not netns.exists(client_ns):
            print(f"error: no cluster {args.cluster!r} is running (make cluster)", file=sys.stderr)
            return 2
        # Every client socket must come from the client namespace, through nginx.
        command = ["ip", "netns", "exec", client_ns, sys.executable, "-m", "deploy.drills", *argv]
        os.execvp("ip", command)  # noqa: S606 - the same command, in the client namespace
    try:
        cluster = Cluster.load(args.cluster)
        report = asyncio.run(run(cluster, args.drill, args))
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1, default=str)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
