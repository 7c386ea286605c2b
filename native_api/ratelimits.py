"""The rate limits of API.md, on django-ratelimit's counters in the Django cache.

The cache is Redis in production, so every process shares the counters (django-ratelimit uses
``cache.add`` then the atomic ``INCR``). Views and the websocket consumer both call ``hit`` (the
consumer through ``sync_to_async``), so there is one implementation of every limit.

When the cache cannot be reached, login limits fail closed (CacheUnavailable → 503): an outage
must not open SSH-key login to unlimited guessing. The other limits fail open, because they
guard already-authenticated work and the verifier does not depend on the cache.
"""

from django.conf import settings
from django_ratelimit.core import get_usage

from config.env import parse_rate
from native_api.errors import ApiError

SETTINGS = {
    "challenge": "NATIVE_RATE_CHALLENGE",
    "token-ip": "NATIVE_RATE_TOKEN_IP",
    "token-key": "NATIVE_RATE_TOKEN_KEY",
    "auth-failures": "NATIVE_RATE_AUTH_FAILURES",
    "ws-ticket": "NATIVE_RATE_WS_TICKET",
    "ws-connect": "NATIVE_RATE_WS_CONNECT",
}
FAIL_CLOSED = {"challenge", "token-ip", "token-key"}


class CacheUnavailable(Exception):
    """The counters cannot be read, and this limit fails closed."""


def hit(name: str, bucket: str, *, increment: bool = True) -> int | None:
    """Count one event (or only look, with increment=False); seconds to wait when over, else None.

    Looking reports "over" once the limit is reached, so that with a limit of 20 failures the
    21st request is refused, whatever credential it carries.
    """
    rate = getattr(settings, SETTINGS[name])
    if rate is None:
        return None
    try:
        usage = get_usage(
            None, group=f"native:{name}", key=lambda group, request: bucket, rate=rate, increment=increment
        )
        if usage is not None and usage["limit"] == 0:  # django-ratelimit's "the cache failed"
            raise CacheUnavailable(name)
    except Exception:
        if name in FAIL_CLOSED:
            raise CacheUnavailable(name) from None
        return None
    if usage is None:
        return None
    over = usage["count"] >= usage["limit"] if not increment else usage["count"] > usage["limit"]
    return max(1, usage["time_left"]) if over else None


def enforce(name: str, bucket: str) -> None:
    """``hit`` for views: raise the contract's 429 or 503."""
    try:
        retry_after = hit(name, bucket)
    except CacheUnavailable:
        raise ApiError(
            503, "Login is temporarily unavailable (rate-limit store unreachable); retry later."
        ) from None
    if retry_after is not None:
        raise ApiError(429, f"Too many requests; retry in {retry_after} s.", retry_after=retry_after)


def frame_rate() -> tuple[float, int]:
    """(frames per second, burst) for the per-connection websocket limiter; (0, 0) when off."""
    rate = settings.NATIVE_RATE_WS_FRAMES
    if rate is None:
        return 0.0, 0
    count, seconds = parse_rate(rate)
    return count / seconds, settings.NATIVE_WS_FRAME_BURST
