"""Websocket frame rate limit: a token bucket per connection (20/s, bursts of 40 by default).

Per connection means per process, so no shared store is needed. A frame over the limit is
refused with an error frame. Each refusal is also a strike; strikes fade at a tenth of the frame
rate, and a connection that collects more strikes than the burst is disconnected (4429). So a
client that overshoots now and then only sees errors, while one that keeps sending faster than
about 1.1 times the rate is closed within seconds (at twice the rate: about 2.5 s), instead of
costing the server an error frame for every frame it floods. Counting refusals "in a row" would
never close a client that floods at twice the rate: every other frame of it is allowed.
"""

import time

STRIKE_FADE = 0.1  # strikes fade at this fraction of the frame rate


class FrameLimiter:
    def __init__(self, rate: float, burst: int, *, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.strikes = 0.0
        self.updated = clock()

    def allow(self) -> bool:
        """Take one frame: True when it is within the limit."""
        now = self.clock()
        elapsed, self.updated = max(0.0, now - self.updated), now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.strikes = max(0.0, self.strikes - elapsed * self.rate * STRIKE_FADE)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.strikes += 1
        return False

    @property
    def should_close(self) -> bool:
        return self.strikes > self.burst
