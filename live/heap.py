"""Garbage collection that cannot stop this process for as long as the enforcement bound.

CPython's full collection (generation 2) walks every tracked object while holding the GIL: the
event loop, the change-log poller and the fail-closed watch all stop. A websocket is about 120
tracked objects (daphne's and ours; a bare Channels socket about 130), so a process holding
17,000 sockets tracks 2 M objects, and each full collection while its sockets opened took
1.3 s of CPU at 8,000 sockets and 2-3 s at 17,000 on the machine of docs/benchmarks.md (more
in wall time under load): past the 2-second bound, so the process failed closed
(live.fail_closed) and its clients all reconnected, growing the heap towards the next one.

So what has lived a while is taken out of the walk. At every maintenance of the hub
(live.hub.MAINTENANCE_EVERY, 5 s) the collector runs over what is not frozen yet (what was
allocated since the last freeze: cheap) and freezes what survived (``gc.freeze``). A socket's
objects are frozen within seconds of its opening and cost no collection after that. Frozen
objects are still freed by reference counting when their last reference goes, only cycles among
them are not: a finished connection's cycles are cut where it ends (config.daphne_cycles for
daphne's, native_api.consumer for ours), so a closed socket leaves nothing behind.

The frozen count is read (a walk of the frozen list) when the sockets held moved by a tenth and
at every thaw's turn, not at every freeze: at 10,000 sockets the walk took 165 ms.

Anything else that becomes cyclic garbage after it was frozen is reclaimed by a thaw: every
THAW_EVERY seconds the frozen objects go back to the collector for one full collection, if it
would be short (the frozen count times the last full collection's seconds per object, under
THAW_BUDGET). A process too large for that does not thaw; ``native_gc_frozen_objects`` shows
its heap, and a restart frees it.

Freezing is on only where connections are known to end without cycles (the server declares it:
config.daphne_compat), and ``NATIVE_GC_FREEZE=false`` turns it off.
"""

import gc
import logging
import random
import time

from foundation import metrics

logger = logging.getLogger(__name__)

THAW_EVERY = 600.0
THAW_BUDGET = 0.5  # seconds of full collection a thaw may cost (the fail-closed watch allows 1.75)
FIRST_SECONDS_PER_OBJECT = 2e-6  # until the first full collection here is measured

_server_connections_end_without_cycles = False


def connections_end_without_cycles() -> None:
    """The server (config.daphne_compat) cuts every finished connection's cycles."""
    global _server_connections_end_without_cycles
    _server_connections_end_without_cycles = True


class Heap:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.per_object = FIRST_SECONDS_PER_OBJECT
        # Processes started together (a deploy, a bench) would all walk their heaps at the same
        # moment every THAW_EVERY: each takes its first turn at a random point of the interval.
        self.last_thaw = clock() - random.uniform(0, THAW_EVERY)
        self.thaws_refused = 0
        self.counted_at: int | None = None  # the sockets held when the frozen count was read

    def freeze(self, sockets: int | None = None, recount: bool = False) -> None:
        """Collect what is not frozen yet and freeze what survived; the frozen count (for
        native_gc_frozen_objects) is read again only when the ``sockets`` held moved by a tenth
        since it was last read, when ``sockets`` is not given, or when asked to."""
        gc.collect()
        gc.freeze()
        if (
            recount
            or sockets is None
            or self.counted_at is None
            or abs(sockets - self.counted_at) >= max(1, self.counted_at // 10)
        ):
            # get_freeze_count() walks the frozen list, an object at a time: 165 ms at 10,000
            # sockets (1.2 M objects), which every five seconds was half an idle server's CPU.
            self.counted(sockets, gc.get_freeze_count())

    def counted(self, sockets: int | None, frozen: int) -> None:
        self.counted_at = sockets
        metrics.gc_frozen_objects(frozen)

    def full_collection(self, tracked: int) -> tuple[int, float]:
        """A full collection over the ``tracked`` objects not frozen: (collected, seconds); its
        seconds per object are kept for the next thaw's projection."""
        started = time.perf_counter()
        collected = gc.collect()
        took = time.perf_counter() - started
        self.per_object = took / max(tracked, 1)
        return collected, took

    def thaw(self, tracked: int | None = None) -> float:
        """One full collection over everything, frozen included (``tracked``: the frozen count,
        when it was just read)."""
        tracked = gc.get_freeze_count() if tracked is None else tracked
        gc.unfreeze()
        collected, took = self.full_collection(tracked)
        logger.info("full collection over %d objects: %d collected in %.3f s", tracked, collected, took)
        return took

    def maintain(self, sockets: int) -> None:
        """The hub's periodic call, with the sockets this process holds: thaw if due and short
        enough, then freeze."""
        now = self.clock()
        if now - self.last_thaw < THAW_EVERY:
            self.freeze(sockets)
            return
        self.last_thaw = now
        frozen = gc.get_freeze_count()  # the turn's one walk of the frozen list
        projected = frozen * self.per_object
        if projected <= THAW_BUDGET:
            self.thaw(frozen)
            self.freeze(sockets, recount=True)
            return
        self.thaws_refused += 1
        metrics.gc_thaw_refused()
        if self.thaws_refused == 1:
            logger.warning(
                "not thawing %d frozen objects: a full collection would take about %.1f s,"
                " longer than the %.1f s budget (native_gc_frozen_objects shows the heap)",
                frozen,
                projected,
                THAW_BUDGET,
            )
        self.counted(sockets, frozen)  # what this freeze adds is counted at the next walk
        self.freeze(sockets)


def start(enabled: bool) -> Heap | None:
    """This process's heap keeper (one full collection, measured, then a freeze), or None where
    freezing is off."""
    _watch_pauses()
    if not (enabled and _server_connections_end_without_cycles):
        return None
    heap = Heap()
    heap.full_collection(len(gc.get_objects()))  # nothing is frozen yet: this measures the cost
    heap.freeze()
    return heap


# Collections seen by the callback below, exported by export_pauses(). The callback runs wherever
# an allocation triggers a collection, possibly inside a metric's lock: it only appends here.
_pauses: list = []
_pause_started = 0.0
PAUSE_WORTH_RECORDING = 0.001  # seconds; every full collection is recorded whatever it took


def _on_collection(phase: str, info: dict) -> None:
    global _pause_started
    if phase == "start":
        _pause_started = time.perf_counter()
        return
    took = time.perf_counter() - _pause_started
    worth = info["generation"] == 2 or took >= PAUSE_WORTH_RECORDING
    if worth and len(_pauses) < 10_000:
        _pauses.append((info["generation"], took))


def _watch_pauses() -> None:
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


def export_pauses() -> float:
    """Move the recorded collections to native_gc_pause_seconds; the longest, in seconds."""
    longest = 0.0
    while _pauses:
        generation, took = _pauses.pop()
        metrics.gc_pause(generation, took)
        longest = max(longest, took)
    return longest
