"""The client-IP rule of API.md, for HTTP requests and websocket scopes alike.

The peer address counts, unless the peer is one of NATIVE_TRUSTED_PROXIES; then we walk
X-Forwarded-For from the right and take the first address that is not a trusted proxy. Headers
from untrusted peers are ignored, so a client cannot choose its own rate-limit bucket.
"""

import ipaddress

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str | None) -> IPAddress | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.9:443"
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def _trusted(address: IPAddress) -> bool:
    return any(address in network for network in settings.NATIVE_TRUSTED_PROXIES)


def resolve(peer: str | None, forwarded_for: str | None) -> str | None:
    address = _parse(peer)
    if address is None:
        return None
    if not forwarded_for or not _trusted(address):
        return str(address)
    for hop in reversed(forwarded_for.split(",")):
        hop_address = _parse(hop)
        if hop_address is None:
            break  # garbage: written by someone we do not trust; blame the proxy that passed it
        address = hop_address
        if not _trusted(address):
            break
    return str(address)


def from_request(request) -> str | None:
    return resolve(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def from_scope(scope) -> str | None:
    client = scope.get("client") or (None, None)
    forwarded = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"]
    return resolve(client[0], ",".join(forwarded) or None)


def rate_key(ip: str | None) -> str:
    """The bucket of an address: itself for IPv4, its /64 for IPv6 (one host owns a /64)."""
    if ip is None:
        return "unknown"
    address = ipaddress.ip_address(ip)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return ip
