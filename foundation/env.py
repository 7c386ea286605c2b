"""Typed readers for environment settings.

Every setting goes through one of these so that a typo such as ``DEBUG=ture`` or
``NATIVE_TOKEN_TTL=30d`` stops the process at start-up with a message naming the
variable, instead of silently falling back to a default.
"""

import ipaddress
import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = 0, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be <= {maximum}, not {number}")
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be <= {maximum}, not {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP network (CIDR)") from None
    return networks


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def env_rate(name: str, default: str) -> str | None:
    """A rate such as ``20/m`` or ``5/10s``; ``0`` (or ``off``) disables the limit (None)."""
    value = _raw(name) or default
    if value.lower() in {"0", "off", "none"}:
        return None
    parse_rate(value, name=name)
    return value


def parse_rate(value: str, *, name: str = "rate") -> tuple[int, int]:
    """``"20/m"`` → (20, 60); ``"5/10s"`` → (5, 10). Raises ImproperlyConfigured."""
    count, _, period = value.partition("/")
    try:
        number = int(count)
        unit = period[-1:].lower()
        multiplier = int(period[:-1] or 1)
        seconds = multiplier * _PERIODS[unit]
    except (ValueError, KeyError, IndexError):
        raise ImproperlyConfigured(
            f"{name} must look like 20/m (count/period, period s, m, h or d), not {value!r}"
        ) from None
    if number < 1 or seconds < 1:
        raise ImproperlyConfigured(f"{name} must be a positive rate, not {value!r}")
    return number, seconds
