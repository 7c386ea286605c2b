"""The rate limits and state caps of API.md, on django-ratelimit's counters in the Django cache.

The cache is Redis in production, so every process shares the counters. Windows and keys are
django-ratelimit's (its fixed windows with a per-key offset); each count is one atomic step with
its expiry always set (native_api/counters.py: django-ratelimit's own ``add`` then ``incr`` can
leave a key without a TTL, a permanent lockout). Views call ``enforce``; the websocket consumer
calls ``ws_connect_refused`` through ``sync_to_async``: one implementation of every limit.

When the cache cannot be reached, login limits fail closed (CacheUnavailable → 503): an outage
must not open SSH-key login and nonce minting to unlimited floods. The other limits fail open,
because they guard already-authenticated work and the verifier does not depend on the cache.
After a failure the cache is left alone for CACHE_RETRY_AFTER seconds, so that a hung Redis
costs one socket timeout per process, not one per request.
"""

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key

from foundation import metrics
from foundation.env import parse_rate
from native_api import counters
from native_api.errors import ApiError

logger = logging.getLogger("native_api.ratelimits")

SETTINGS = {
    "challenge": "NATIVE_RATE_CHALLENGE",
    "token-ip": "NATIVE_RATE_TOKEN_IP",
    "token-key": "NATIVE_RATE_TOKEN_KEY",
    "auth-failures": "NATIVE_RATE_AUTH_FAILURES",
    "ws-ticket": "NATIVE_RATE_WS_TICKET",
    "ws-connect": "NATIVE_RATE_WS_CONNECT",
}
FAIL_CLOSED = {"challenge", "token-ip", "token-key"}
# Limits that count failures and then lock the bucket: the count reaching the limit blocks.
LOCKOUTS = {"auth-failures"}
CACHE_RETRY_AFTER = 3.0
LOGIN_UNAVAILABLE = "Login is temporarily unavailable (the rate-limit store is unreachable); retry later."

_cache_down_until = 0.0


class CacheUnavailable(Exception):
    """The counters cannot be read, and this limit fails closed."""


def _cache_failed(what: str, exc: Exception | None) -> None:
    global _cache_down_until
    _cache_down_until = time.monotonic() + CACHE_RETRY_AFTER
    logger.warning("rate-limit cache unavailable (%s): %s", what, type(exc).__name__ if exc else "no count")


def _login_unavailable() -> ApiError:
    return ApiError(503, LOGIN_UNAVAILABLE, retry_after=math.ceil(CACHE_RETRY_AFTER))


def _cache_is_down() -> bool:
    return time.monotonic() < _cache_down_until


def reset_cache_state() -> None:
    """Forget a past cache failure (tests, and nothing else, need this)."""
    global _cache_down_until
    _cache_down_until = 0.0


def _usage(name: str, bucket: str, rate: str, increment: bool) -> dict | None:
    """{"count", "limit", "time_left"}; None when the limit fails open; raises CacheUnavailable."""
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return None
    if not _cache_is_down():
        try:
            # A (count, seconds) tuple: django-ratelimit's own parser reads "20/M" as per second.
            return _count(f"native:{name}", bucket, parse_rate(rate), increment)
        except Exception as exc:  # any cache client error: redis raises several kinds
            _cache_failed(name, exc)
    if name in FAIL_CLOSED:
        raise CacheUnavailable(name)
    return None


def _count(group: str, bucket: str, rate: tuple[int, int], increment: bool) -> dict:
    """Count one event in the bucket's current window (one atomic step), or only look (one
    read: django-ratelimit's look-only path writes first, a second round trip on every
    authenticated request). django-ratelimit's window and key, so counts carry over upgrades."""
    limit, period = rate
    window = _get_window(bucket, period)
    key = _make_cache_key(group, window, rate, bucket, ALL)
    count = counters.incr(key, ttl=period + EXPIRATION_FUDGE) if increment else cache.get(key, 0)
    return {"count": count, "limit": limit, "time_left": window - int(time.time())}


def hit(name: str, bucket: str, *, increment: bool = True) -> int | None:
    """Count one event (or only look, with increment=False); seconds to wait when over, else None.

    A lockout limit (failed auth) blocks once the count reaches the limit: with a limit of 20
    failures the 21st request is refused, whatever credential it carries. A counting limit
    refuses the event that goes over.
    """
    rate = getattr(settings, SETTINGS[name])
    if rate is None:
        return None
    usage = _usage(name, bucket, rate, increment)
    if usage is None:
        return None
    count, limit = usage["count"], usage["limit"]
    blocking_count = limit if name in LOCKOUTS else limit + 1
    if increment and count == blocking_count:
        logger.warning("rate limit %s reached by %s", name, bucket)
    if count < blocking_count:
        return None
    # The window ends when int(time.time()) passes django-ratelimit's window mark; time_left
    # is that mark minus the current whole second, so one more second rounds the wait up.
    return max(1, usage["time_left"] + 1)


def enforce(name: str, bucket: str) -> None:
    """``hit`` for views: raise the contract's 429 or 503."""
    try:
        retry_after = hit(name, bucket)
    except CacheUnavailable:
        raise _login_unavailable() from None
    if retry_after is not None:
        metrics.rate_limited(name)
        raise ApiError(429, f"Too many requests; retry in {retry_after} s.", retry_after=retry_after)


def ws_connect_refused(bucket: str) -> bool:
    """Count a websocket connect from ``bucket``; True when it must close with 4429 (too many
    connects, or an address locked out by failed authentication)."""
    for name, increment in (("ws-connect", True), ("auth-failures", False)):
        if hit(name, bucket, increment=increment) is not None:
            metrics.rate_limited(name)
            return True
    return False


def frame_rate() -> tuple[float, int]:
    """(frames per second, burst) for the per-connection websocket limiter; (0, 0) when off."""
    rate = settings.NATIVE_RATE_WS_FRAMES
    if rate is None:
        return 0.0, 0
    count, seconds = parse_rate(rate)
    return count / seconds, settings.NATIVE_WS_FRAME_BURST


# --- caps on stored state ---------------------------------------------------------------------
