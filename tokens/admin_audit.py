"""Admin History (django.contrib.admin LogEntry) for what operators do in bulk, in bounded amounts.

Django logs the forms it saves itself (a deny-list entry added, a membership added or deleted,
a user edited). Actions and our own pages are logged here. One entry per object is right for a
handful; revoking 100,000 tokens must not write 100,000 rows in the request, so:

- up to BOUND objects: one entry on each (a token's History says who revoked it);
- more tokens, but from at most BOUND users: one entry on each user ("Revoked 5,000 tokens");
- more users than that: one summary entry on the operator's own user record.

The tokens themselves always record ``revoked_by``, ``revoked_at`` and the reason, whatever the
size: that is the per-token audit, and History is the operator's trail.
"""

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.db.models import Count

BOUND = 100


def log_each(request, objects, message: str) -> None:
    """One CHANGE entry per object (callers keep ``objects`` within BOUND)."""
    if objects:
        LogEntry.objects.log_actions(request.user.pk, list(objects), CHANGE, message)


def log_summary(request, message: str) -> None:
    """One entry on the operator's own user: for changes too wide to log per object."""
    log_each(request, [request.user], message)


class RevocationPlan:
    """Decided before revoking (afterwards the selection may match nothing): how to log it."""

    def __init__(self, live_tokens):
        self.tokens = list(live_tokens.select_related("user")[: BOUND + 1])
        self.per_user = None
        if len(self.tokens) > BOUND:
            self.tokens = None
            per_user = list(live_tokens.order_by().values("user_id").annotate(n=Count("pk"))[: BOUND + 1])
            if len(per_user) <= BOUND:
                self.per_user = {row["user_id"]: row["n"] for row in per_user}

    def write(self, request, revoked: int, reason: str) -> None:
        if not revoked:
            return
        if self.tokens is not None:
            log_each(request, self.tokens, f"Revoked ({reason}).")
        elif self.per_user is not None:
            users = get_user_model().objects.filter(pk__in=self.per_user)
            for user in users:
                n = self.per_user[user.pk]
                log_each(request, [user], f"Revoked {n:,} of their native tokens ({reason}).")
        else:
            log_summary(request, f"Revoked {revoked:,} native tokens of more than {BOUND} users ({reason}).")
