"""The floor of the guarantee: each server process reads the change log and applies every change
to its own sockets, whether or not a push arrived.

A thread of its own (database reads must not block the event loop, and must not queue behind
the websockets' own ORM work) wakes up on a push (the hub's control channel), on a PostgreSQL
NOTIFY (live.pg_listen), or after NATIVE_LIVE_POLL_INTERVAL seconds at the latest, reads the
rows after the last seq it applied, checks the few facts a change needs re-reading (is the
membership really gone, is the user really inactive), and hands the batch to the hub on the
event loop. It also reads the last seq of every room with a local subscriber (a lost room event
is then read from the database), and records how far this process got (foundation.models
.ServerProcess, ChangeEffect), which is what lets a command report that live sockets obeyed.

Cost: two or three indexed queries per interval per process, whatever the number of sockets.
"""

import concurrent.futures
import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from foundation.changelog import head_position
from foundation.models import Change, ChangeEffect, ServerProcess
from live import presence, verdicts
from live.os_thread import set_os_thread_name
from live.pg_listen import Listener

logger = logging.getLogger(__name__)

K = Change.Kind
BATCH = 200  # change rows per read
HEARTBEAT = 5.0  # seconds between ServerProcess updates when nothing changes
ROOM_HEADS_EVERY = 1.0
SLOW_POLL = 1.0  # seconds of a poll's own work (not its waits on the event loop) worth a warning


@dataclass(eq=False)
class LoggedChange:
    """A change row, with what had to be re-read to apply it."""

    seq: int
    kind: str
    data: dict
    created_at: datetime | None = None  # the change's commit, near enough (set in its transaction)
    still_member: bool = False  # member_removed: the membership exists again
    user_state: str = ""  # user_disabled: "inactive", "active" or "deleted"
    _ids: frozenset = field(default=frozenset(), repr=False)
    _not_before: datetime | None = field(default=None, repr=False)

    def __post_init__(self):
        if "ids" in self.data:
            self._ids = frozenset(self.data["ids"])
        if self.kind == K.USER_FLOOR:
            self._not_before = parse_datetime(self.data["not_before"])

    def lag(self) -> float | None:
        """Seconds from the change to now (native_control_event_lag_seconds)."""
        return None if self.created_at is None else (timezone.now() - self.created_at).total_seconds()

    def credential_ids(self):
        return self._ids

    def user_ids(self):
        return (self.data["user"],) if "user" in self.data and self.kind != K.MEMBER_REMOVED else ()

    def verdict_for(self, socket) -> tuple[int, str] | None:
        """(close code, reason) when this change ends ``socket``, else None."""
        kind = self.kind
        if kind in (K.TOKENS_REVOKED, K.JTIS_DENIED):
            return verdicts.REVOKED if socket.credential_id in self._ids else None
        if socket.user_id != self.data.get("user"):
            return None
        if kind == K.USER_FLOOR:
            issued = socket.issued_at
            return verdicts.REVOKED if issued is None or issued <= self._not_before else None
        if kind == K.USER_DELETED or (kind == K.USER_DISABLED and self.user_state == "deleted"):
            return verdicts.REVOKED
        if kind == K.USER_DISABLED and self.user_state == "inactive":
            return verdicts.INACTIVE
        return None


def prepare(rows) -> list[LoggedChange]:
    """Rows → LoggedChange, with one query per batch for the facts to re-read."""
    changes = [LoggedChange(seq, kind, data, created_at) for seq, kind, data, created_at in rows]
    removed = [c for c in changes if c.kind == K.MEMBER_REMOVED]
    if removed:
        from rooms.models import Membership

        wanted = Q()
        for change in removed:
            wanted |= Q(user_id=change.data["user"], room_id=change.data["room"])
        existing = set(Membership.objects.filter(wanted).values_list("user_id", "room_id"))
        for change in removed:
            change.still_member = (change.data["user"], change.data["room"]) in existing
    disabled = [c for c in changes if c.kind == K.USER_DISABLED]
    if disabled:
        users = {c.data["user"] for c in disabled}
        active = dict(get_user_model().objects.filter(pk__in=users).values_list("pk", "is_active"))
        for change in disabled:
            state = active.get(change.data["user"])
            change.user_state = "deleted" if state is None else ("active" if state else "inactive")
    return changes


class Poller:
    def __init__(self, hub):
        self.hub = hub
        self.epoch, self.cursor = "", 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: Listener | None = None
        self._failing = False
        self._last_heads = 0.0
        self._last_beat = 0.0
        # When (monotonic) the last poll that read the whole log started: everything committed
        # before then is known here (live.fail_closed measures its age).
        self.read_at = time.monotonic()
        # True while this thread waits for the event loop to apply what it read: a busy loop,
        # not an unreadable log.
        self.waiting_on_loop = False
        self._loop_waits = 0.0  # seconds of the current poll spent in _in_loop

    def start(self, position: tuple[str, int]) -> None:
        self.epoch, self.cursor = position
        self._thread = threading.Thread(target=self._run, name="live-poller", daemon=True)
        self._thread.start()
        if connection.vendor == "postgresql" and settings.NATIVE_LIVE_PG_LISTEN:
            self._listener = Listener(self._wake, self._stop)
            self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        set_os_thread_name("live-poller")
        behind = False
        while not self._stop.is_set():
            if not behind:
                self._wake.wait(settings.NATIVE_LIVE_POLL_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                # No close_old_connections() here: with CONN_HEALTH_CHECKS it makes the next
                # query a "SELECT 1" first, doubling the idle polls. This thread keeps its one
                # connection and drops it on any failure (below).
                started = time.monotonic()
                behind = False
                self.poll_once()
                # A poll that took longer than the interval (most often: waiting for a busy
                # event loop to apply what it read) leaves read_at that far behind, which
                # live.fail_closed counts: read again at once instead of sleeping on it.
                behind = time.monotonic() - started > settings.NATIVE_LIVE_POLL_INTERVAL
                if self._failing:
                    self._failing = False
                    logger.warning("change log readable again")
            except LoopGone:
                break
            except Exception as exc:
                if not self._failing:
                    self._failing = True
                    logger.warning("change log poll failed (%s); retrying", exc)
                connection.close()
        connection.close()

    def poll_once(self) -> None:
        started = time.monotonic()
        self._loop_waits = 0.0
        epoch, head = head_position()
        read_head = time.monotonic()
        new_log = epoch != self.epoch or head < self.cursor
        if new_log:
            # A new log (a flushed database, a restored backup): apply it from its start, then
            # check every socket against the tables for whatever the old log said last.
            self.epoch, self.cursor = epoch, 0
            self._in_loop(self.hub.control.skip_to, epoch, 0)
        while head > self.cursor:
            rows = list(
                Change.objects.filter(seq__gt=self.cursor, seq__lte=head)
                .order_by("seq")
                .values_list("seq", "kind", "data", "created_at")[:BATCH]
            )
            if not rows or rows[0][0] != self.cursor + 1:  # purged before we read them
                self._skip_to(epoch, head)
                new_log = True
                break
            self._apply(prepare(rows))
        if new_log:
            self._reconcile()
        self.read_at = started
        now = read_log = time.monotonic()
        if now - self._last_heads >= ROOM_HEADS_EVERY:
            self._last_heads = now
            self._check_room_heads()
        if now - self._last_beat >= HEARTBEAT:
            self._heartbeat({})
        self._report_if_slow(started, read_head, read_log)

    def _report_if_slow(self, started: float, read_head: float, read_log: float) -> None:
        """A poll whose own work took over SLOW_POLL eats the fail-closed margin: say where it
        went, so an operator can tell a slow database from a starved process (live.fail_closed
        logs how late the event loop itself was)."""
        ended = time.monotonic()
        if ended - started - self._loop_waits > SLOW_POLL:
            logger.warning(
                "change log poll took %.2f s: head %.2f s, rows %.2f s, room heads and heartbeat "
                "%.2f s, of which %.2f s waiting for the event loop",
                ended - started,
                read_head - started,
                read_log - read_head,
                ended - read_log,
                self._loop_waits,
            )

    def _apply(self, changes: list[LoggedChange]) -> None:
        from tokens.denylist import denylist

        denylist.apply(changes)
        effects = self._in_loop(self.hub.control.apply, changes)
        self.cursor = changes[-1].seq
        self._heartbeat(effects)

    def _check_room_heads(self) -> None:
        from rooms.history import room_heads

        room_ids = self._in_loop(self.hub.delivery.local_room_ids)
        if room_ids:
            self._in_loop(self.hub.delivery.on_room_heads, room_heads(room_ids))

    def _heartbeat(self, effects: dict) -> None:
        now = timezone.now()
        self._last_beat = time.monotonic()
        # What was done first, then how far: a command that sees this process past its change
        # (live.confirm) sums the effects at once, and must find them written already.
        if effects:
            ChangeEffect.objects.bulk_create(
                ChangeEffect(seq=seq, process=presence.PROCESS, closed=c, unsubscribed=u, applied_at=now)
                for seq, (c, u) in effects.items()
            )
        ServerProcess.objects.update_or_create(
            name=presence.PROCESS,
            defaults={
                "seen_at": now,
                "epoch": self.epoch,
                "applied_seq": self.cursor,
                "live_sockets": self._in_loop(self.hub.registry.live_socket_count),
            },
        )

    def _skip_to(self, epoch: str, head: int) -> None:
        logger.warning("change log rows %s to %s were purged unread: reconciling", self.cursor + 1, head)
        self._in_loop(self.hub.control.skip_to, epoch, head)
        self.epoch, self.cursor = epoch, head

    def _reconcile(self) -> None:
        """Check every local credential and subscription against the tables (per socket, but
        only when the log cannot say what changed: it was replaced, or purged past us)."""
        from rooms.models import Membership
        from tokens.denylist import denylist
        from tokens.models import NativeToken

        denylist.sync(None)
        state = self._in_loop(self.hub.control.snapshot)
        credentials = state["credentials"]  # id → (kind, user id, issued at)
        native = [cid for cid, (kind, _, _) in credentials.items() if kind == "native"]
        live_native = set()
        for start in range(0, len(native), 1000):
            chunk = native[start : start + 1000]
            live = NativeToken.objects.live().filter(public_id__in=chunk)
            live_native |= set(live.values_list("public_id", flat=True))
        dead = [cid for cid in native if cid not in live_native]
        dead += [
            cid
            for cid, (kind, user_id, issued_at) in credentials.items()
            if kind == "service" and denylist.refuses(cid, user_id, issued_at, None)
        ]
        users = dict(get_user_model().objects.filter(pk__in=state["users"]).values_list("pk", "is_active"))
        disabled = [u for u, active in users.items() if not active]
        deleted = [u for u in state["users"] if u not in users]
        memberships = set()
        pairs = state["subscriptions"]
        for start in range(0, len(pairs), 500):
            wanted = Q()
            for user_id, room_id in pairs[start : start + 500]:
                wanted |= Q(user_id=user_id, room_id=room_id)
            memberships |= set(Membership.objects.filter(wanted).values_list("user_id", "room_id"))
        lost = [pair for pair in pairs if pair not in memberships]
        self._in_loop(self.hub.control.apply_reconciliation, dead, disabled, deleted, lost)
        self._heartbeat({})

    def _in_loop(self, fn, *args):
        """Run ``fn`` on the hub's event loop and wait for its result."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def call():
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        try:
            self.hub.loop.call_soon_threadsafe(call, context=contextvars.Context())
        except RuntimeError:  # the loop is closed: this process (or test) is over
            raise LoopGone() from None
        called = time.monotonic()
        deadline = called + 10
        self.waiting_on_loop = True
        try:
            while True:
                try:
                    return done.result(timeout=0.1)
                except concurrent.futures.TimeoutError:
                    loop = self.hub.loop
                    if self._stop.is_set() or loop.is_closed() or not loop.is_running():
                        raise LoopGone() from None
                    if time.monotonic() > deadline:
                        raise
        finally:
            self.waiting_on_loop = False
            self._loop_waits += time.monotonic() - called


class LoopGone(Exception):
    """The hub's event loop has closed: the poller stops."""
