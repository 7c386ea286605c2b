"""Websocket frame rate limit: a token bucket per connection (20/s, bursts of 40 by default).

Per connection means per process, so no shared store is needed. Excess frames get an error
frame; a client that keeps flooding is disconnected (4429).
"""

import time


class FrameLimiter:
    def __init__(self, rate: float, burst: int, close_after: int):
        self.rate, self.burst, self.close_after = rate, burst, close_after
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self.rejected_in_a_row = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.rejected_in_a_row = 0
            return True
        self.rejected_in_a_row += 1
        return False

    @property
    def should_close(self) -> bool:
        return self.rejected_in_a_row >= self.close_after
