"""Querysets that claim single-use rows atomically.

A claim is one conditional UPDATE: under concurrency (several processes on PostgreSQL) exactly
one caller sees rowcount 1; everyone else sees 0 and loses.
"""

from django.db import models
from django.utils import timezone


class LoginNonceQuerySet(models.QuerySet):
    def claim(self, nonce_digest: str) -> bool:
        now = timezone.now()
        return bool(self.filter(digest=nonce_digest, used_at=None, expires_at__gt=now).update(used_at=now))

    def pending(self):
        return self.filter(used_at=None, expires_at__gt=timezone.now())


class WsTicketQuerySet(models.QuerySet):
    def claim(self, ticket_digest: str, **annotations):
        """Mark the ticket used and return it, or None if it is unknown, used or expired."""
        now = timezone.now()
        claimed = self.filter(digest=ticket_digest, used_at=None, expires_at__gt=now).update(used_at=now)
        if not claimed:
            return None
        return self.select_related("user", "native_token").annotate(**annotations).get(digest=ticket_digest)

    def pending(self):
        return self.filter(used_at=None, expires_at__gt=timezone.now())

    def kill_unused(self, **credential):
        """Burn the unused tickets of a credential (native_token=… or service_jti=…)."""
        return self.filter(used_at=None, **credential).update(used_at=timezone.now())


class NativeTokenQuerySet(models.QuerySet):
    def live(self):
        return self.filter(revoked_at=None, expires_at__gt=timezone.now())
