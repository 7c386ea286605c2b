"""The client-IP rule of API.md, for HTTP requests, websocket scopes, token metadata and logs.

The peer address counts, unless the peer is one of NATIVE_TRUSTED_PROXIES; then we walk
X-Forwarded-For from the right and take the first address that is not a trusted proxy. Headers
from untrusted peers are ignored, so a client cannot choose its own rate-limit bucket: whatever
it writes into X-Forwarded-For ends up on the left of the entries our proxies append.
"""

import functools
import ipaddress

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV6_BUCKET_PREFIX = 64  # one subscriber usually owns a whole /64


@functools.lru_cache(maxsize=4096)  # pure, and asked about the same few peers at every connect
def parse(value: str | None) -> IPAddress | None:
    """An address as peers and proxies write it ("1.2.3.4", "1.2.3.4:80", "[::1]:443",
    "::ffff:1.2.3.4", "fe80::1%eth0"), or None for anything else."""
    if not value:
        return None
    value = value.strip().strip('"')
    if value.startswith("["):  # "[2001:db8::1]" or "[2001:db8::1]:443"
        end = value.find("]")
        if end < 0:
            return None
        value = value[1:end]
    elif value.count(":") == 1:  # "203.0.113.9:443"; an IPv6 address has at least two colons
        value = value.split(":", 1)[0]
    value = value.split("%", 1)[0]  # a zone id names our own interface, not the client
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
    return address


def _trusted(address: IPAddress) -> bool:
    return any(address in network for network in settings.NATIVE_TRUSTED_PROXIES)


def resolve(peer: str | None, forwarded_for: str | None) -> str | None:
    """The client address for a connection from ``peer`` carrying ``forwarded_for``."""
    address = parse(peer)
    if address is None:
        return None
    if not forwarded_for or not _trusted(address):
        return str(address)
    for hop in reversed(forwarded_for.split(",")):
        hop_address = parse(hop)
        if hop_address is None:
            # A trusted proxy passed on something that is not an address ("unknown", junk the
            # client wrote): anything further left is the client's own words, so stop at the
            # last address we can vouch for rather than let the client pick its bucket.
            break
        address = hop_address
        if not _trusted(address):
            break
    return str(address)


def from_request(request) -> str | None:
    # Django joins repeated X-Forwarded-For headers with "," in arrival order, as RFC 9110 allows.
    return resolve(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def from_scope(scope) -> str | None:
    client = scope.get("client") or (None, None)
    forwarded = [
        value.decode("latin-1")
        for name, value in scope.get("headers", [])
        if name.lower() == b"x-forwarded-for"
    ]
    return resolve(client[0], ",".join(forwarded) or None)


@functools.lru_cache(maxsize=4096)
def rate_key(ip: str | None) -> str:
    """The rate-limit bucket of an address: itself for IPv4, its /64 for IPv6 (a single host
    can use every address of its /64, so per-address buckets would be free to multiply)."""
    address = parse(ip)
    if address is None:
        return "unknown"  # no peer address (a unix socket): everyone shares one bucket
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_BUCKET_PREFIX}", strict=False))
    return str(address)
