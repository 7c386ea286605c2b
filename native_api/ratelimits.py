"""The rate limits and state caps of API.md, on counters in the Django cache.

The cache is Redis in production, so every process shares the counters. Windows and keys are
django-ratelimit's (fixed windows with a per-key offset); each request's counts and reads are
one atomic step, one round trip (native_api/counters.py). Views call ``enforce``; bearer
authentication (native_api/auth.py) calls ``known_lockout``, ``auth_failed`` and
``authenticated``; the websocket consumer calls ``ws_connect_refused`` and ``auth_failed`` in
its admission hop: one implementation of every limit.

The failed-auth lockout is read after the credential is verified, in the same round trip as the
limits an authenticated request counts and the read its view asked for (``authenticated``). An
address's failures are counted as they happen, and a process that has seen a lockout refuses
that address at once until the window ends, with no I/O at all (``_Lockouts``): API.md's
behaviour (the 21st request refused, whatever it carries) at one round trip per request.

When the cache cannot be reached, login limits fail closed (CacheUnavailable → 503): an outage
must not open SSH-key login and nonce minting to unlimited floods. The other limits fail open,
because they guard already-authenticated work and the verifier does not depend on the cache.
After a failure the cache is left alone for CACHE_RETRY_AFTER seconds, so that a hung Redis
costs one socket timeout per process, not one per request.
"""

import functools
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key

from foundation import metrics
from foundation.env import parse_rate
from foundation.redis_scripts import PendingRead
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
    """Forget a past cache failure and the lockouts seen (tests, and nothing else, need this)."""
    global _cache_down_until
    _cache_down_until = 0.0
    _lockouts.forget()


@dataclass(frozen=True)
class _Counter:
    """One limit's counter for one bucket in the current window (django-ratelimit's windows
    and keys, so counts carry over an upgrade)."""

    name: str
    bucket: str
    limit: int
    period: int
    window: int  # django-ratelimit's window mark: this window lasts while int(time) <= window
    key: str

    @classmethod
    def of(cls, name: str, bucket: str) -> "_Counter | None":
        """None when the limit is off."""
        rate = getattr(settings, SETTINGS[name])
        if rate is None or not getattr(settings, "RATELIMIT_ENABLE", True):
            return None
        # A (count, seconds) tuple: django-ratelimit's own parser reads "20/M" as per second.
        limit, period = parsed = parse_rate(rate)
        window = _get_window(bucket, period)
        return cls(name, bucket, limit, period, window, _cache_key(name, window, parsed, bucket))

    @property
    def added(self) -> tuple[str, int, int]:
        return self.key, self.period + EXPIRATION_FUDGE, 1

    def retry_after(self, count: int, *, counted: bool) -> int | None:
        """Seconds to wait when ``count`` refuses, else None.

        A lockout limit (failed auth) blocks once the count reaches the limit: with a limit of
        20 failures the 21st request is refused, whatever credential it carries. A counting
        limit refuses the event that goes over. ``counted``: ``count`` includes this event.
        """
        lockout = self.name in LOCKOUTS
        blocking = self.limit if lockout else self.limit + 1
        if counted and count == blocking:
            logger.warning("rate limit %s reached by %s", self.name, self.bucket)
        if lockout and count >= self.limit:
            _lockouts.remember(self)
        if count < blocking or (lockout and counted and count == self.limit):
            return None  # the failure that reaches the lockout is answered as a failure
        return self.wait()

    def wait(self) -> int:
        # The window ends when int(time.time()) passes its mark; the mark minus the current
        # whole second, plus one, rounds the wait up.
        return max(1, self.window - int(time.time()) + 1)


@functools.lru_cache(maxsize=4096)
def _cache_key(name: str, window: int, rate: tuple[int, int], bucket: str) -> str:
    """django-ratelimit's key (a hash, and settings read, on every call: kept per window)."""
    return _make_cache_key(f"native:{name}", window, rate, bucket, ALL)


class _Lockouts:
    """Buckets this process has seen locked out, until their window ends.

    A lockout only ends with its window (its count never falls), so once a count read from the
    cache has reached the limit, this process refuses that bucket without asking the cache or
    the database again: a locked-out address that keeps trying costs nothing here. Another
    process learns it from its own next count or read (every refused or authenticated request
    makes one). Bounded: an overfull table forgets expired entries, then everything.
    """

    MAX = 10_000

    def __init__(self):
        self._until: dict[tuple, int] = {}

    def remember(self, counter: _Counter) -> None:
        if len(self._until) >= self.MAX:
            now = int(time.time())
            self._until = {k: w for k, w in self._until.items() if w >= now}
            if len(self._until) >= self.MAX:
                self._until = {}
        self._until[(counter.bucket, counter.limit, counter.period)] = counter.window

    def retry_after(self, bucket: str) -> int | None:
        rate = settings.NATIVE_RATE_AUTH_FAILURES
        if not self._until or rate is None:
            return None
        window = self._until.get((bucket, *parse_rate(rate)))
        if window is None or window < int(time.time()):
            return None
        return max(1, window - int(time.time()) + 1)

    def forget(self) -> None:
        self._until = {}


_lockouts = _Lockouts()


def _counts(
    name: str, added: list[_Counter], read: list[_Counter], along: PendingRead | None = None
) -> list[int] | None:
    """One atomic step (native_api.counters), carrying ``along`` when it can; None when the
    cache failed and the limit fails open; raises CacheUnavailable for a limit that fails closed."""
    if not _cache_is_down():
        try:
            return counters.count([c.added for c in added], [c.key for c in read], along=along)
        except Exception as exc:  # any cache client error: redis raises several kinds
            _cache_failed(name, exc)
    if name in FAIL_CLOSED:
        raise CacheUnavailable(name)
    return None


def hit(name: str, bucket: str, *, increment: bool = True) -> int | None:
    """Count one event (or only look, with increment=False); seconds to wait when over, else None."""
    counter = _Counter.of(name, bucket)
    if counter is None:
        return None
    found = _counts(name, [counter] if increment else [], [] if increment else [counter])
    if found is None:
        return None
    return counter.retry_after(found[0], counted=increment)


def enforce(name: str, bucket: str) -> None:
    """``hit`` for views: raise the contract's 429 or 503."""
    try:
        retry_after = hit(name, bucket)
    except CacheUnavailable:
        raise _login_unavailable() from None
    if retry_after is not None:
        metrics.rate_limited(name)
        raise ApiError(429, f"Too many requests; retry in {retry_after} s.", retry_after=retry_after)


# --- authentication: the failed-auth lockout and what an authenticated caller counts ---------


def known_lockout(bucket: str) -> int | None:
    """Seconds to wait when this process already knows ``bucket`` is locked out (no I/O)."""
    return _lockouts.retry_after(bucket)


def auth_failed(bucket: str) -> int | None:
    """Count a failed authentication from ``bucket``; seconds to wait when the address was
    locked out already (answer 429, not 401), else None."""
    return hit("auth-failures", bucket)


def authenticated(
    bucket: str, user_limit: tuple[str, str] | None = None, *, along: PendingRead | None = None
) -> tuple[str, int] | None:
    """An authenticated request from ``bucket``: in one round trip, read the address's
    failed-auth lockout, count ``user_limit`` ((limit name, bucket), e.g. the user's ws-ticket
    limit) and carry ``along`` (a read the view needs, which makes itself when asked for its
    value if no round trip carried it: limits off, the cache down or not Redis). (limit name,
    seconds to wait) when refused, else None."""
    lockout = _Counter.of("auth-failures", bucket)
    counted = _Counter.of(*user_limit) if user_limit else None
    added, read = [counted] if counted else [], [lockout] if lockout else []
    if not added and not read:
        return None
    found = _counts(user_limit[0] if counted else "auth-failures", added, read, along)
    if found is None:
        return None
    if lockout is not None and (wait := lockout.retry_after(found[-1], counted=False)) is not None:
        return lockout.name, wait
    if counted is not None and (wait := counted.retry_after(found[0], counted=True)) is not None:
        return counted.name, wait
    return None


def ws_connect_refused(bucket: str) -> bool:
    """Count a websocket connect from ``bucket`` and read the address's failed-auth lockout, in
    one round trip; True when it must close with 4429 (too many connects, or locked out)."""
    if _lockouts.retry_after(bucket) is not None:
        metrics.rate_limited("auth-failures")
        return True
    connect, lockout = _Counter.of("ws-connect", bucket), _Counter.of("auth-failures", bucket)
    added, read = [connect] if connect else [], [lockout] if lockout else []
    if not added and not read:
        return False
    found = _counts("ws-connect", added, read)
    if found is None:
        return False
    if connect is not None and connect.retry_after(found[0], counted=True) is not None:
        metrics.rate_limited("ws-connect")
        return True
    if lockout is not None and lockout.retry_after(found[-1], counted=False) is not None:
        metrics.rate_limited("auth-failures")
        return True
    return False


def frame_rate() -> tuple[float, int]:
    """(frames per second, burst) for the per-connection websocket limiter; (0, 0) when off."""
    rate = settings.NATIVE_RATE_WS_FRAMES
    if rate is None:
        return 0.0, 0
    count, seconds = parse_rate(rate)
    return count / seconds, settings.NATIVE_WS_FRAME_BURST
