"""What ``purge_tokens`` deletes, in short transactions.

Every kind is purged the same way: find the next batch of matching rows by primary key
(keyset: ``pk > last``, ordered, limited), delete or update the rows of that pk range that
still match, commit, repeat. Each transaction touches at most one batch, so a purge of
millions of rows never holds long locks, and each batch costs a fixed handful of queries
whatever its size (no per-row Python, no ``IN`` list of N parameters). Keyset pagination
keeps each batch query cheap: restarting from the lowest pk would walk over the index
entries of every row deleted so far, which PostgreSQL keeps until VACUUM.

The criteria only ever widen (an expired or revoked token never comes back to life, an
expired ticket never becomes valid again), so a row selected for a batch still deserves its
fate when the batch statement runs.
"""

import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connections, models, router, transaction
from django.db.models import Count, Max, Q
from django.db.models.signals import post_delete, pre_delete
from django.utils import timezone

from foundation import metrics
from tokens.models import LoginNonce, NativeToken, RevokedToken, UsedTicket
from tokens.tickets import claim_keys_before

# Measured (docs/operations-purging.md): 1M expired tokens take about 13 s on an idle 2-core
# PostgreSQL, about 32 s under heavy background load, with auth p99 at most 1.7x; a batch holds
# its transaction ~10 ms (SQLite's single writer lock included). 5,000 is ~1.5x faster for a
# one-off backlog (--batch-size) at 4x the lock time.
DEFAULT_BATCH_SIZE = 1000


@dataclass
class KindResult:
    """What happened to one kind of row."""

    kind: str
    verb: str  # "deleted" or "cleared"
    rows: int = 0
    batches: int = 0


@dataclass
class PurgeReport:
    dry_run: bool
    results: list[KindResult] = field(default_factory=list)
    stopped: bool = False  # a stop was requested before every kind was done
    seconds: float = 0.0

    def rows(self, kind: str) -> int:
        return next((result.rows for result in self.results if result.kind == kind), 0)

    @property
    def deleted(self) -> int:
        return sum(result.rows for result in self.results if result.verb == "deleted")

    @property
    def cleared(self) -> int:
        return sum(result.rows for result in self.results if result.verb == "cleared")

    def lines(self) -> list[str]:
        """One line per kind, then a summary: what ``purge_tokens`` prints."""
        would = "would be " if self.dry_run else ""
        out = []
        for result in self.results:
            batches = (
                "" if self.dry_run else f" in {result.batches} batch{'es' if result.batches != 1 else ''}"
            )
            out.append(f"{result.kind}: {result.rows} {would}{result.verb}{batches}")
        tokens = "token" if self.cleared == 1 else "tokens"
        summary = (
            f"{self.deleted} rows {would}deleted, IP and user agent {would}cleared on {self.cleared} {tokens}"
        )
        if self.dry_run:
            summary = "dry run, nothing changed: " + summary
        if self.stopped:
            summary += " (stopped early)"
        out.append(f"purge_tokens: {summary} ({self.seconds:.1f} s)")
        return out


@dataclass(frozen=True)
class Cutoffs:
    """The instants that decide what is old enough, fixed once per run."""

    now: datetime
    grace_end: datetime  # revoked/expired before this: purge
    ip_end: datetime  # tokens created before this lose their IP and user agent

    @classmethod
    def at(cls, now: datetime | None = None) -> "Cutoffs":
        now = now or timezone.now()
        return cls(
            now=now,
            grace_end=now - timedelta(seconds=settings.NATIVE_PURGE_GRACE),
            ip_end=now - timedelta(days=settings.NATIVE_IP_RETENTION_DAYS),
        )


def dead_tickets(cut: Cutoffs):
    # The claim of a used ticket (tokens.tickets) is what refuses a replay: it must stay while
    # the ticket could still be accepted. One more lifetime past its expiry covers clock skew
    # between the processes that check expiry and this one, as for nonces. Claim keys begin
    # with the ticket's expiry, so this is a range of the primary key.
    margin = timedelta(seconds=settings.NATIVE_TICKET_TTL)
    return UsedTicket.objects.filter(pk__lt=claim_keys_before(cut.now - margin))


def dead_nonces(cut: Cutoffs):
    # The record of a used nonce is what makes it single-use (tokens.challenges): it must stay
    # while the nonce could still be accepted. One more lifetime past its expiry covers clock
    # skew between the processes that check expiry and this one.
    margin = timedelta(seconds=settings.NATIVE_CHALLENGE_TTL)
    return LoginNonce.objects.filter(expires_at__lte=cut.now - margin)


def _token_is_dead(cut: Cutoffs) -> Q:
    # Kept NATIVE_PURGE_GRACE past expiry/revocation so that admin can still show "revoked".
    return Q(expires_at__lte=cut.grace_end) | Q(revoked_at__lte=cut.grace_end)


def dead_tokens(cut: Cutoffs):
    return NativeToken.objects.filter(_token_is_dead(cut))


def dead_revocations(cut: Cutoffs):
    # Past its expires_at the token is refused as expired anyway (exp is signed into it, so no
    # setting brings it back); the grace also covers clock skew between processes that compare
    # expiry against their own clock. An entry whose token's expiry was not known was written
    # with the lifetime ceiling (tokens.revocation.revoke_by_id), which no token outlives.
    return RevokedToken.objects.filter(expires_at__lte=cut.grace_end)


def old_changes(cut: Cutoffs):
    # Every live process applies a change within seconds; a process that was away longer than
    # this (a database outage) reconciles its sockets against the tables instead (live.poller).
    from foundation.models import Change

    return Change.objects.filter(
        created_at__lte=cut.now - timedelta(seconds=settings.NATIVE_LIVE_CHANGE_RETENTION)
    )


def old_change_effects(cut: Cutoffs):
    from foundation.models import ChangeEffect

    return ChangeEffect.objects.filter(
        applied_at__lte=cut.now - timedelta(seconds=settings.NATIVE_LIVE_CHANGE_RETENTION)
    )


def gone_server_processes(cut: Cutoffs):
    from foundation.models import ServerProcess

    return ServerProcess.objects.filter(seen_at__lte=cut.now - timedelta(days=1))


def spent_floors(cut: Cutoffs):
    """Floors that no credential they refuse could pass anymore.

    A floor refuses service tokens with ``iat <= not_before``. The verifier refuses every token
    with ``exp - iat`` above NATIVE_SERVICE_TOKEN_MAX_TTL, which can never exceed the lifetime
    ceiling (settings), and every token without ``iat``. So a token the floor refused has
    ``exp <= not_before + ceiling``: once that is past (plus the grace, for clock skew), it is
    refused as expired whatever the maximum is now or becomes. The current maximum must not be
    used here: lowered, it would drop floors whose tokens come back when it is raised again.
    """
    from tokens.models import CredentialFloor

    longest = timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING)
    return CredentialFloor.objects.filter(not_before__lte=cut.grace_end - longest)


def spent_certificates(cut: Cutoffs):
    # A certificate past its validity can never log in again; once its tokens are purged too,
    # its record says nothing any more. (Short-lived certificates, one per session, would
    # otherwise pile up.) Never one that is still valid: a login may be reusing its row.
    from tokens.models import SshCertificate

    return SshCertificate.objects.filter(valid_before__lte=cut.grace_end, tokens__isnull=True)


def tokens_with_old_client_data(cut: Cutoffs):
    # Tokens about to be deleted are left out, so that a dry run counts what a real run does.
    return (
        NativeToken.objects.filter(created_at__lt=cut.ip_end)
        .filter(Q(created_ip__isnull=False) | ~Q(user_agent=""))
        .exclude(_token_is_dead(cut))
    )


def purge(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    now: datetime | None = None,
    keep_going: Callable[[], bool] = lambda: True,
    after_batch: Callable[[], None] = lambda: None,
) -> PurgeReport:
    """Run every kind once. ``keep_going`` is asked before each batch (a stop request ends the
    run after the current batch); ``after_batch`` runs after each commit (the lock refresh)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.monotonic()
    cut = Cutoffs.at(now)
    report = PurgeReport(dry_run=dry_run)
    steps = [
        (KindResult("tickets", "deleted"), dead_tickets(cut), _delete),
        (KindResult("nonces", "deleted"), dead_nonces(cut), _delete),
        (KindResult("tokens", "deleted"), dead_tokens(cut), _delete_tokens),
        (KindResult("revocations", "deleted"), dead_revocations(cut), _delete),
        (KindResult("certificate records", "deleted"), spent_certificates(cut), _delete),
        (KindResult("user revocation floors", "deleted"), spent_floors(cut), _delete),
        (KindResult("change log rows", "deleted"), old_changes(cut), _delete),
        (KindResult("change effects", "deleted"), old_change_effects(cut), _delete),
        (KindResult("server process records", "deleted"), gone_server_processes(cut), _delete),
        (KindResult("client IP/user agent", "cleared"), tokens_with_old_client_data(cut), _clear_client_data),
    ]
    try:
        with nullcontext() if dry_run else _commits_without_flush(router.db_for_write(NativeToken)):
            for result, queryset, action in steps:
                report.results.append(result)
                if dry_run:
                    result.rows = queryset.count()
                    continue
                finished = _in_batches(queryset, action, result, batch_size, keep_going, after_batch)
                if not finished:
                    report.stopped = True
                    break
    except Exception:
        if not dry_run:
            metrics.purge_not_run("failed")
        raise
    report.seconds = time.monotonic() - started
    if not dry_run:
        metrics.purge_finished(report)
    return report


def _in_batches(queryset, action, result: KindResult, batch_size, keep_going, after_batch) -> bool:
    """Apply ``action`` batch by batch; False when stopped before the end."""
    last_pk = None
    while True:
        if not keep_going():
            return False
        pending = queryset if last_pk is None else queryset.filter(pk__gt=last_pk)
        with transaction.atomic(using=queryset.db):
            # Bounds of the next batch in one query: an aggregate over the sliced queryset
            # becomes SELECT MAX(id), COUNT(id) FROM (SELECT id ... ORDER BY id LIMIT n).
            bounds = pending.order_by("pk").values("pk")[:batch_size].aggregate(hi=Max("pk"), n=Count("pk"))
            if not bounds["n"]:
                return True
            batch = pending.filter(pk__lte=bounds["hi"])
            result.rows += action(batch)
        result.batches += 1
        last_pk = bounds["hi"]
        after_batch()
        if bounds["n"] < batch_size:
            return True


@contextmanager
def _commits_without_flush(using: str):
    """On PostgreSQL, let this session's commits return before their WAL reaches the disk.
    A batch lost in a crash is simply redone by the next run, and a commit no longer waits
    for an fsync (1M rows in batches of 1,000 went from 48 s to 33 s on a busy machine). Set
    once for the session, not per batch: each extra statement is one more round trip a batch."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        yield
        return
    with conn.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    try:
        yield
    finally:
        try:
            with conn.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")
        except DatabaseError:
            pass  # a broken connection is closed and replaced, setting and all


def _delete(batch) -> int:
    # Tickets, nonces and deny-list rows have no dependents and no delete signals, so Django
    # deletes them with one DELETE ... WHERE (a "fast delete"), never row by row.
    return batch.delete()[0]


def _clear_client_data(batch) -> int:
    return batch.update(created_ip=None, user_agent="")


def _delete_tokens(batch) -> int:
    """Delete a batch of tokens with one statement per dependent relation plus one for the
    tokens, instead of Django's Collector, which loads every token into Python and deletes
    them 100 at a time."""
    plan = _dependent_relations()
    if plan is None:
        # Something needs Python per row (a delete signal, PROTECT, a generic relation):
        # let Django's Collector do it, slower but correct.
        return batch.delete()[1].get(NativeToken._meta.label, 0)
    batch_pks = batch.values("pk")
    for relation in plan:
        dependents = relation.related_model._base_manager.filter(**{f"{relation.field.name}__in": batch_pks})
        if relation.on_delete is models.CASCADE:
            dependents.delete()  # one DELETE for a fast-deletable model
        else:  # SET_NULL
            dependents.update(**{relation.field.name: None})
    return batch._raw_delete(batch.db)


def _dependent_relations():
    """The relations pointing at NativeToken that one UPDATE/DELETE each can honour, or None
    when a token delete needs Django's Collector. Read each time: cheap, and always current."""
    if pre_delete.has_listeners(NativeToken) or post_delete.has_listeners(NativeToken):
        return None
    meta = NativeToken._meta
    if (
        meta.parents
        or meta.many_to_many
        or any(hasattr(f, "bulk_related_objects") for f in meta.private_fields)
    ):
        return None
    plan = []
    for relation in meta.related_objects:
        if relation.many_to_many:
            return None
        if relation.on_delete is models.DO_NOTHING:
            continue
        if relation.on_delete not in (models.CASCADE, models.SET_NULL):
            return None
        plan.append(relation)
    return plan
