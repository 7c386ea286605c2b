"""Recording a change in the change log (foundation.models), and the fast-path wake-ups after commit.

``record`` is called inside the transaction that makes the change (revocation services, model
signals for admin and cascades). After commit every server process learns of it three ways:
a push through the channel layer (the usual path, milliseconds), a PostgreSQL NOTIFY (sent by
the database itself at commit, so it works from a process that cannot reach Redis), and the
pollers' short poll of the log (the floor that makes the guarantee: live.poller). Only the poll
is needed for correctness; the other two make it fast.
"""

import asyncio
import logging
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection, transaction

from foundation.models import Change, ChangeHead

logger = logging.getLogger(__name__)

CONTROL_GROUP = "live.control"
WAKE_EVENT = "foundation.changelog"
NOTIFY_CHANNEL = "native_live"
IDS_PER_ROW = 1000
# One push per change: the change is committed already, and a hung Redis must not hold the
# request or the command for long (the pollers deliver it anyway).
PUSH_TIMEOUT = 2.0


@dataclass
class Recorded:
    """The seqs a transaction appended; ``pushed`` is filled in after commit."""

    seqs: list[int]
    epoch: str = ""
    pushed: bool | None = None  # None: not tried (yet); False: the push failed
    push_error: str = ""

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else 0


_captured: ContextVar[list | None] = ContextVar("live_changes_captured", default=None)


@contextmanager
def capture():
    """Collect the Recorded of every change made inside the block (commands report on them)."""
    collected: list[Recorded] = []
    token = _captured.set(collected)
    try:
        yield collected
    finally:
        _captured.reset(token)


def record(kind: str, items: list[dict]) -> Recorded:
    """Append one change row per item, in the caller's transaction."""
    if not items:
        return Recorded([])
    if not connection.in_atomic_block:
        raise RuntimeError("foundation.changelog.record must run inside the transaction of the change")
    epoch, last = _advance_head(len(items))
    first = last - len(items) + 1
    Change.objects.bulk_create(
        [Change(seq=first + offset, kind=kind, data=item) for offset, item in enumerate(items)]
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # delivered by PostgreSQL at commit, not before
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(last)])
    recorded = Recorded(list(range(first, last + 1)), epoch)
    transaction.on_commit(lambda: _push(recorded))
    collected = _captured.get()
    if collected is not None:
        collected.append(recorded)
    return recorded


def record_ids(kind: str, ids, **extra) -> Recorded:
    """A change about many credential ids, split into rows of IDS_PER_ROW."""
    ids = list(ids)
    chunks = [ids[i : i + IDS_PER_ROW] for i in range(0, len(ids), IDS_PER_ROW)]
    return record(kind, [{"ids": chunk, **extra} for chunk in chunks])


# The table name is the model's own (a constant), never input.
_ADVANCE_HEAD = f"UPDATE {ChangeHead._meta.db_table} SET seq = seq + %s WHERE id = 1 RETURNING epoch, seq"  # noqa: S608


def _advance_head(count: int) -> tuple[str, int]:
    """Take ``count`` seqs under the head row's lock (held until this transaction ends);
    returns (epoch, last seq taken)."""
    with connection.cursor() as cursor:
        cursor.execute(_ADVANCE_HEAD, [count])
        row = cursor.fetchone()
    if row is None:  # a fresh or flushed database: a new head (a new epoch), then take the seqs
        ChangeHead.objects.get_or_create(pk=1, defaults={"seq": 0})
        return _advance_head(count)
    return row[0], row[1]


def head_position() -> tuple[str, int]:
    """(epoch, seq) of the newest committed change; ("", 0) before the first one."""
    return ChangeHead.objects.filter(pk=1).values_list("epoch", "seq").first() or ("", 0)


# Whether this process holds a reader of the log that an in-memory layer would reach (the
# engine registers one when its hub starts): the seam that keeps this module below the engine.
_local_reader: Callable[[], bool] | None = None


def set_local_reader(alive: Callable[[], bool] | None) -> None:
    """The engine says how to tell whether this process tails the log (None: it does not)."""
    global _local_reader
    _local_reader = alive


def _reader_in_this_process() -> bool:
    alive = _local_reader
    return alive is not None and alive()


def _push(recorded: Recorded) -> None:
    layer = get_channel_layer()
    if layer is None or (isinstance(layer, InMemoryChannelLayer) and not _reader_in_this_process()):
        # Embedded mode, outside the server process (a command): an in-memory layer reaches
        # nobody. Say so; the server reads the change from the database.
        recorded.pushed, recorded.push_error = False, "no channel layer shared with the servers"
        return
    event = {"type": WAKE_EVENT, "seq": recorded.last_seq}
    try:
        async_to_sync(asyncio.wait_for)(layer.group_send(CONTROL_GROUP, event), PUSH_TIMEOUT)
        recorded.pushed = True
    except Exception as exc:
        # One line, no traceback: during a Redis outage this happens on every change, and the
        # pollers apply the change from the database anyway.
        recorded.pushed, recorded.push_error = False, type(exc).__name__
        logger.warning(
            "could not push change %s through the channel layer (%s); servers apply it from the "
            "database within their poll interval",
            recorded.last_seq,
            recorded.push_error,
        )
