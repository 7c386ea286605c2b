"""The faults the drills inject, as plain (blocking) operations on a running cluster.

- kill_redis_primary / restore_redis: SIGKILL the Redis that Sentinel names as primary, wait for
  the promotion, later start the dead one again as a replica of the new primary.
- cut / reconnect: an app host's back link (to Redis and PostgreSQL) goes down at the switch:
  its packets vanish (100 % loss), while nginx still reaches it on the front network.
- restart_app: SIGTERM a host's daphne and gunicorn, wait for them to exit, start them again.
- Latency: ``tc netem delay`` on every link of every app host, or, on a kernel without netem,
  deploy/delayline.py spliced into those links.
"""

import signal
import subprocess
import time

from deploy import netns, resp, services, topology
from deploy.cluster import Cluster, ClusterError, wait_for


# --- Redis ------------------------------------------------------------------------------------
def kill_redis_primary(cluster: Cluster, master: str = "native") -> dict:
    host, port = cluster.primary_of(master)
    service = f"{host.name}.{port}"
    cluster.signal(service, signal.SIGKILL)
    killed_at = time.monotonic()
    new_host, new_port = wait_for(
        lambda: (p := cluster.primary_of(master)) != (host, port) and p,
        timeout=60,
        what=f"Sentinel to promote a replica of {master}",
        interval=0.1,
    )
    return {
        "killed": service,
        "promoted": f"{new_host.name}.{new_port}",
        "failover_seconds": round(time.monotonic() - killed_at, 2),
    }


def restore_redis(cluster: Cluster, service: str, master: str = "native") -> float:
    """Start the killed Redis again as a replica of the current primary; seconds until synced."""
    started = time.monotonic()
    primary, port = cluster.primary_of(master)
    cluster.start(service, replica_of=(primary.address("back"), port))
    host = topology.host_named(service.split(".")[0])
    address = (host.address("back"), int(service.split(".")[1]))
    wait_for(
        lambda: resp.info(cluster.ns(host.name), address, "replication").get("master_link_status") == "up",
        timeout=60,
        what=f"{service} to sync as a replica",
    )
    return time.monotonic() - started


def fail_back(cluster: Cluster, primary: tuple[str, int], master: str = "native") -> None:
    """Make ``primary`` (host name, port) the primary again (apps on a fixed redis:// need it)."""
    if (lambda p: (p[0].name, p[1]))(cluster.primary_of(master)) == primary:
        return
    wait_for(
        lambda: cluster.sentinel_ask("SENTINEL", "FAILOVER", master) == "OK",
        timeout=30,
        what=f"Sentinel to accept a failover of {master}",
        interval=0.5,
    )
    wait_for(
        lambda: (lambda p: (p[0].name, p[1]))(cluster.primary_of(master)) == primary,
        timeout=60,
        what=f"{primary} to be {master}'s primary again",
        interval=0.1,
    )


# --- network ------------------------------------------------------------------------------------
def cut(cluster: Cluster, host: str, network: str = "back") -> None:
    netns.ip(
        "link", "set", topology.port_name(host, network), "down", ns=topology.switch_namespace(cluster.name)
    )


def reconnect(cluster: Cluster, host: str, network: str = "back") -> None:
    netns.ip(
        "link", "set", topology.port_name(host, network), "up", ns=topology.switch_namespace(cluster.name)
    )


# --- processes ----------------------------------------------------------------------------------
def restart_app(cluster: Cluster, host: topology.Host) -> dict:
    """SIGTERM the host's daphne and gunicorn, wait for both to exit, start both, wait healthy."""
    names = [f"{host.name}.daphne", f"{host.name}.gunicorn"]
    signalled = time.monotonic()
    for name in names:
        cluster.signal(name, signal.SIGTERM)
    stop_seconds = {name: round(cluster.wait_gone(name, timeout=15), 2) for name in names}
    started = time.monotonic()
    for name in names:
        cluster.start(name)
    cluster.wait_app(host)
    return {
        "host": host.name,
        "stop_seconds": stop_seconds,
        "start_seconds": round(time.monotonic() - started, 2),
        "signalled_at": signalled,
    }


# --- latency --------------------------------------------------------------------------------------
def netem_available(cluster: Cluster) -> bool:
    """Whether this kernel has the netem qdisc: tried on a throw-away veth pair in the switch."""
    switch = topology.switch_namespace(cluster.name)
    netns.ip("link", "add", "name", "netem-probe0", "type", "veth", "peer", "name", "netem-probe1", ns=switch)
    try:
        result = subprocess.run(
            ["tc", "-n", switch, "qdisc", "add", "dev", "netem-probe0", "root", "netem", "delay", "1ms"],
            capture_output=True,
            timeout=10,
        )
        return result.returncode == 0
    finally:
        netns.ip("link", "del", "netem-probe0", ns=switch, check=False)


class Latency:
    """``delay`` seconds each way on every link of every app host (front and back)."""

    def __init__(self, cluster: Cluster, delay: float, *, use_netem: bool | None = None):
        self.cluster, self.delay = cluster, delay
        self.use_netem = netem_available(cluster) if use_netem is None else use_netem
        self.links = [(h.name, network) for h in topology.APPS for network in h.addresses]
        self.switch = topology.switch_namespace(cluster.name)
        self.process: subprocess.Popen | None = None

    @property
    def method(self) -> str:
        return "tc netem" if self.use_netem else "deploy/delayline.py (no netem in this kernel)"

    def apply(self) -> None:
        if self.use_netem:
            self._netem("add")
        else:
            self._splice()

    def remove(self) -> None:
        if self.use_netem:
            self._netem("del")
        else:
            self._unsplice()

    def _netem(self, verb: str) -> None:
        milliseconds = f"{self.delay * 1000:g}ms"
        for host, network in self.links:
            ends = [(self.cluster.ns(host), network), (self.switch, topology.port_name(host, network))]
            for ns, device in ends:
                args = ["tc", "-n", ns, "qdisc", verb, "dev", device, "root"]
                if verb == "add":
                    args += ["netem", "delay", milliseconds]
                subprocess.run(args, check=verb == "add", capture_output=True, timeout=10)

    def _splice(self) -> None:
        """Each port leaves its bridge; a veth pair takes its place; the delay line joins them."""
        setup = []
        pairs = []
        for host, network in self.links:
            port = topology.port_name(host, network)
            setup += [
                f"link add {port}-d type veth peer name {port}-x",
                f"link set {port}-x master {network}",
            ]
            setup += [f"link set {port}-d up", f"link set {port}-x up"]
            pairs.append(f"{port}:{port}-d")
        netns.ip_batch(setup, ns=self.switch)
        service = services.Service(
            "delayline",
            "sw",
            [
                str(self.cluster.recipes.venv_bin / "python"),
                "-m",
                "deploy.delayline",
                "--delay",
                str(self.delay),
                *pairs,
            ],
            self.cluster.run_dir / "delayline.log",
        )
        service.log.unlink(missing_ok=True)
        self.process = self.cluster.spawn(service)
        wait_for(
            lambda: "ready" in service.log.read_text(errors="replace"),
            timeout=30,
            what="the delay line",
        )
        netns.ip_batch(
            [f"link set {topology.port_name(h, n)} nomaster" for h, n in self.links], ns=self.switch
        )

    def _unsplice(self) -> None:
        moves = [f"link set {topology.port_name(h, n)} master {n}" for h, n in self.links]
        netns.ip_batch(moves, ns=self.switch)
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        netns.ip_batch([f"link del {topology.port_name(h, n)}-d" for h, n in self.links], ns=self.switch)


def round_trip(cluster: Cluster, host: topology.Host) -> float:
    """One TCP handshake from nginx's namespace to ``host``'s gunicorn: the added latency shows."""
    started = time.monotonic()
    try:
        netns.connect(cluster.ns("proxy"), (host.address("front"), topology.HTTP_PORT), 5).close()
    except OSError as exc:
        raise ClusterError(f"{host.name} unreachable: {exc}") from None
    return time.monotonic() - started
