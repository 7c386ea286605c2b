"""Fail closed: a process that cannot read the change log cannot know what was taken away.

API.md: once a server process has gone longer than the enforcement bound without a successful
read of the change log (a partitioned or unreachable database), it closes its sockets with 1013
and refuses new ones with 1013 until it reads the log again. A socket then never outlives a
revocation by more than the bound, whatever fails: the push lost, Redis gone, the database out
of reach, or all three.

The poller (live.poller) records when its last complete read of the log started; everything
committed before that instant is known here. This watch runs on the event loop, independent of
the poller's thread (which may be stuck in a database call for as long as the connection's
deadline), and wakes when that instant would be FAIL_AFTER old: a change committed at T is
unknown here only while the last read started before T, so failing at ``read_at + FAIL_AFTER``
closes every socket before ``T + FAIL_AFTER`` and the loop's lateness, inside the 2-second
bound. It wakes at that deadline, not every tenth of a second (each wake of an idle process's
event loop is CPU an idle server pays: ten a second were a third of its main thread's), and at
least once a second, and every CHECK_EVERY while failing closed or while the poller waits on a
busy loop. Time the poller spends waiting for a busy event loop to apply what it read is not
counted: the log was read, and while the loop is busy nothing reaches the sockets anyway.

The watch also measures how late it wakes (``native_event_loop_lag_seconds``): a process starved
of CPU (or stopped in a long collection) runs its event loop late and its poller with it, and
fails closed like a partitioned one; the log line says which of the two it was.
"""

import asyncio
import logging
import time

from foundation import metrics
from live import verdicts

logger = logging.getLogger(__name__)

BOUND = 2.0  # API.md: seconds from a commit to its effect on live sockets, at worst
CHECK_EVERY = 0.1  # while failing closed, or while the poller waits on the loop
LONGEST_SLEEP = 1.0  # the event loop's lateness is measured at least this often
FAIL_AFTER = BOUND - 0.25  # leaves the loop's lateness and the close itself inside the bound


class FailClosed:
    def __init__(self, poller, registry):
        self.poller = poller
        self.registry = registry
        self.active = False
        self._since = 0.0
        self._worst_lag = (0.0, 0.0)  # (seconds late, when): the worst in the last BOUND seconds

    async def watch(self) -> None:
        planned = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, planned - time.monotonic()))
            now = time.monotonic()
            self.loop_ran_late(now, now - planned)
            self.check(now)
            planned = now + self.next_check_in(now)

    def next_check_in(self, now: float) -> float:
        """Seconds to the next check: when the last read would be FAIL_AFTER old."""
        if self.active or self.poller.waiting_on_loop:
            return CHECK_EVERY
        return min(LONGEST_SLEEP, max(CHECK_EVERY, self.poller.read_at + FAIL_AFTER - now))

    def loop_ran_late(self, now: float, lag: float) -> None:
        lag = max(0.0, lag)
        metrics.event_loop_lag(lag)
        worst, at = self._worst_lag
        if lag >= worst or now - at > BOUND:
            self._worst_lag = (lag, now)

    def recent_lag(self, now: float) -> float:
        """The event loop's worst lateness in the last BOUND seconds."""
        lag, at = self._worst_lag
        return lag if now - at <= BOUND else 0.0

    def check(self, now: float) -> None:
        age = now - self.poller.read_at
        metrics.change_log_read_age(age)
        unreadable = age > FAIL_AFTER and not self.poller.waiting_on_loop
        if unreadable and not self.active:
            self.active, self._since = True, now
            metrics.failing_closed(True)
            lag = self.recent_lag(now)
            logger.error(
                "change log not read for %.1f s (the enforcement bound is %g s): failing closed; "
                "websockets close 1013 and new ones are refused until the log is read again "
                "(this process's event loop ran up to %.2f s late in the last %g s: %s)",
                age,
                BOUND,
                lag,
                BOUND,
                "starved of CPU, or stopped" if lag > 0.5 else "not starved",
            )
        elif self.active and age <= FAIL_AFTER:
            self.active = False
            metrics.failing_closed(False)
            logger.warning(
                "change log read again after %.1f s failing closed: accepting websockets", now - self._since
            )
        if self.active:
            self._close_every_socket()

    def _close_every_socket(self) -> None:
        closed = 0
        for socket in list(self.registry.sockets):
            if not socket.closed:
                socket.close(*verdicts.UNAVAILABLE)
                closed += 1
        if closed:
            metrics.closed_failing_closed(closed)
            logger.error("failing closed: %d websocket(s) closed 1013", closed)
