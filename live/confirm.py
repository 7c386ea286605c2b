"""Did the live sockets obey? Commands wait for the server processes to report it.

Every server process records how far it has applied the change log, and what each change did
there (foundation.models.ServerProcess, ChangeEffect; written by live.poller). After a change commits,
a command waits until every process seen recently has applied it, and tells the operator which
did, when, and what they closed; a process that does not answer is named, never reported done.
"""

import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from foundation.models import ChangeEffect, ServerProcess

# A process that has not reported for this long is taken for dead (its heartbeat is 5 s).
ALIVE_WITHIN = timedelta(seconds=15)
# With no process alive at all, how long to wait for one that is just starting to report.
NONE_ALIVE_GRACE = 1.0


@dataclass
class Confirmation:
    seq: int
    waited: float
    applied: list[str] = field(default_factory=list)  # processes that applied the change
    pending: list[tuple[str, float]] = field(default_factory=list)  # (process, seconds since seen)
    closed: int = 0
    unsubscribed: int = 0

    @property
    def complete(self) -> bool:
        return not self.pending

    def lines(self) -> list[str]:
        bound = f"{settings.NATIVE_LIVE_POLL_INTERVAL * 2 + 1:g} s"
        if not self.applied and not self.pending:
            return [
                "live sockets: no server process has reported in the last "
                f"{ALIVE_WITHIN.seconds} s, so none holds a socket this change affects"
            ]
        effects = f"{self.closed} socket(s) closed, {self.unsubscribed} subscription(s) ended"
        lines = []
        if self.applied:
            lines.append(
                f"live sockets: applied by {len(self.applied)} server process(es) within "
                f"{self.waited:.2f} s ({', '.join(self.applied)}): {effects}"
            )
        for name, age in self.pending:
            lines.append(
                f"live sockets: NOT YET CONFIRMED by {name} (last report {age:.0f} s ago); a live "
                f"process applies every change from the database within {bound} of its commit"
            )
        return lines


def wait_for(epoch: str, seqs: list[int], timeout: float = 3.0) -> Confirmation:
    """Wait up to ``timeout`` seconds for every live server process to apply the changes
    ``seqs`` (one command's) of the log ``epoch``, and sum what they did."""
    seq = max(seqs)
    started = time.monotonic()
    while True:
        now = timezone.now()
        alive = list(ServerProcess.objects.filter(seen_at__gte=now - ALIVE_WITHIN))
        pending = [p for p in alive if not _has_applied(p, epoch, seq)]
        waited = time.monotonic() - started
        if (alive and not pending) or waited >= timeout or (not alive and waited >= NONE_ALIVE_GRACE):
            break
        time.sleep(0.05)
    effects = ChangeEffect.objects.filter(seq__in=seqs).aggregate(
        closed=Sum("closed"), unsubscribed=Sum("unsubscribed")
    )
    return Confirmation(
        seq=seq,
        waited=waited,
        applied=sorted(p.name for p in alive if _has_applied(p, epoch, seq)),
        pending=[(p.name, (now - p.seen_at).total_seconds()) for p in pending],
        closed=effects["closed"] or 0,
        unsubscribed=effects["unsubscribed"] or 0,
    )


def _has_applied(process: ServerProcess, epoch: str, seq: int) -> bool:
    return process.epoch == epoch and process.applied_seq >= seq
