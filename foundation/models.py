"""The change log: every committed change that takes a right away, in commit order.

A revocation, a deactivation, a removed membership… writes one ``Change`` row in the same
transaction as the change itself. Every server process tails the log (live.poller) and applies
each change to its own live sockets, so a change reaches every socket even when the push through
the channel layer is lost, or was never sent (a command that cannot reach Redis).

``seq`` comes from the single ``ChangeHead`` row, incremented under its row lock and held until
commit: a change can only take seq N+1 once the transaction holding N has committed, so seqs grow
in commit order without gaps, and a reader that has applied N knows exactly what is next. (The
same trick as a room's message seq, rooms/posting.py.) Changes are rare, so the lock costs
nothing that matters; a mass revocation writes its rows last, so it holds the lock briefly.
"""

import uuid

from django.db import models
from django.utils import timezone


def new_epoch() -> str:
    return uuid.uuid4().hex


class ChangeHead(models.Model):
    """One row (pk=1): the seq of the newest committed change.

    ``epoch`` is new whenever the row is created: a log that was wiped (a flushed test
    database, a restored backup) starts a new epoch, so a reader never mistakes its seq 7 for
    the seq 7 it applied before.
    """

    seq = models.BigIntegerField(default=0)
    epoch = models.CharField(max_length=32, default=new_epoch)

    class Meta:
        verbose_name = "change log head"

    def __str__(self):
        return f"change log head at {self.seq}"


class Change(models.Model):
    class Kind(models.TextChoices):
        TOKENS_REVOKED = "tokens_revoked", "native tokens revoked"
        JTIS_DENIED = "jtis_denied", "credential ids deny-listed"
        USER_FLOOR = "user_floor", "all credentials of a user revoked"
        USER_DISABLED = "user_disabled", "user deactivated"
        USER_DELETED = "user_deleted", "user deleted"
        MEMBER_REMOVED = "member_removed", "membership removed"
        ROOM_DELETED = "room_deleted", "room deleted"

    seq = models.BigIntegerField(primary_key=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # kind-specific: {"ids": [...]}, {"user": id, "not_before": iso}, {"user": id, "room": id}, …
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["seq"]

    def __str__(self):
        return f"change {self.seq} ({self.kind})"


class ServerProcess(models.Model):
    """A server process that applies the change log, and how far it has got.

    Written by each process's poller when it applies changes and as a heartbeat, so that a
    command can tell the operator which processes have obeyed a change, and when.
    """

    name = models.CharField(max_length=200, unique=True, help_text="host:pid")
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    epoch = models.CharField(max_length=32, blank=True)
    applied_seq = models.BigIntegerField(default=0)
    live_sockets = models.IntegerField(default=0)

    def __str__(self):
        return self.name


class ChangeEffect(models.Model):
    """What one process did for one change (only written when it did something)."""

    seq = models.BigIntegerField(db_index=True)
    process = models.CharField(max_length=200)
    closed = models.IntegerField(default=0)
    unsubscribed = models.IntegerField(default=0)
    applied_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"change {self.seq} on {self.process}"
