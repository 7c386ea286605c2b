"""Who is where in the cluster: hosts (one network namespace each), networks, addresses, ports.

Three networks, each a bridge in the cluster's switch namespace (``<name>-sw``):

- ``public`` 10.231.0.0/24: the clients and nginx's public side (what the internet would be);
- ``front``  10.231.1.0/24: nginx and the app hosts' gunicorn and daphne;
- ``back``   10.231.2.0/24: the app hosts, Redis, the Sentinels and PostgreSQL.

Every address lives inside the cluster's namespaces only: the machine's own network never sees
them, so two clusters with different names (a developer's and CI's) can run side by side.
These addresses are also written in deploy/nginx/native.conf and deploy/app.env, the files
docs/operations-scaling.md shows: change them there too.
"""

from dataclasses import dataclass

NETWORKS = {
    "public": "10.231.0.0/24",
    "front": "10.231.1.0/24",
    "back": "10.231.2.0/24",
}
PREFIX_LENGTH = 24


@dataclass(frozen=True)
class Host:
    name: str
    addresses: dict[str, str]  # network -> address on it

    def address(self, network: str) -> str:
        return self.addresses[network]


PROXY = Host("proxy", {"public": "10.231.0.1", "front": "10.231.1.1"})
CLIENT = Host("client", {"public": "10.231.0.100"})
APPS = tuple(Host(f"app{i}", {"front": f"10.231.1.1{i}", "back": f"10.231.2.1{i}"}) for i in (1, 2, 3))
REDIS_HOSTS = (Host("redis1", {"back": "10.231.2.21"}), Host("redis2", {"back": "10.231.2.22"}))
SENTINEL_HOST = Host("sentinel3", {"back": "10.231.2.23"})
POSTGRES = Host("pg", {"back": "10.231.2.31"})
HOSTS = (CLIENT, PROXY, *APPS, *REDIS_HOSTS, SENTINEL_HOST, POSTGRES)

# The drill clients each take one public address of their own (the rate limits count per
# client IP, which is what NATIVE_TRUSTED_PROXIES recovers from X-Forwarded-For).
CLIENT_ADDRESSES = tuple(f"10.231.0.{i}" for i in range(100, 200))

PUBLIC_URL = f"http://{PROXY.address('public')}"
HTTP_PORT = 8000  # gunicorn on each app host's front address
WS_PORT = 8001  # daphne
POSTGRES_PORT = 5432
PGBOUNCER_PORT = 6432  # with ``up --pgbouncer``: PgBouncer in transaction mode on the database host
SENTINEL_PORT = 26379

# Two Redis masters, each with a replica on the other Redis host, both watched by the three
# Sentinels: "native" carries everything (REDIS_URL); "native-b" is the second shard of the
# channel layer when REDIS_LAYER_URLS names both.
REDIS_MASTERS = {
    "native": {"port": 6379, "primary": REDIS_HOSTS[0], "replica": REDIS_HOSTS[1]},
    "native-b": {"port": 6380, "primary": REDIS_HOSTS[1], "replica": REDIS_HOSTS[0]},
}
SENTINELS = (*REDIS_HOSTS, SENTINEL_HOST)  # one Sentinel on each Redis host and a third host
SENTINEL_QUORUM = 2


def namespace(cluster: str, host: str) -> str:
    return f"{cluster}-{host}"


def switch_namespace(cluster: str) -> str:
    return f"{cluster}-sw"


def namespaces(cluster: str) -> list[str]:
    """Every namespace of the cluster, the switch last (its links are the hosts' peers)."""
    return [namespace(cluster, host.name) for host in HOSTS] + [switch_namespace(cluster)]


def port_name(host: str, network: str) -> str:
    """The switch-side end of a host's link (at most 15 characters, Linux's limit)."""
    return f"{host}-{network[0]}"


def sentinel_addresses() -> list[tuple[str, int]]:
    return [(host.address("back"), SENTINEL_PORT) for host in SENTINELS]


def host_named(name: str) -> Host:
    for host in HOSTS:
        if host.name == name:
            return host
    raise KeyError(name)


def host_of_address(address: str) -> Host:
    for host in HOSTS:
        if address in host.addresses.values():
            return host
    raise KeyError(address)
