"""Querysets that claim single-use rows atomically.

A claim is one conditional UPDATE: under concurrency (several processes on PostgreSQL) exactly
one caller sees rowcount 1; everyone else sees 0 and loses.
"""

from django.apps import apps
from django.db import IntegrityError, models, transaction
from django.utils import timezone


class NativeTokenQuerySet(models.QuerySet):
    def live(self):
        """Tokens the verifier accepts (as far as the token goes): not expired, not revoked, not
        created at or before their user's ``revoke_user_tokens`` floor."""
        # By name: tokens.models imports this module. NOT EXISTS rather than a join: revocation
        # locks these rows (SELECT … FOR UPDATE), which PostgreSQL refuses on the nullable side
        # of an outer join.
        under_floor = apps.get_model("tokens", "CredentialFloor").objects.filter(
            user_id=models.OuterRef("user_id"), not_before__gte=models.OuterRef("created_at")
        )
        return self.filter(~models.Exists(under_floor), revoked_at=None, expires_at__gt=timezone.now())


class SecurityKeyCounterQuerySet(models.QuerySet):
    def advance(self, fingerprint: str, counter: int) -> bool:
        """Record a security key's signature ``counter`` if it moves forward (the rule of
        tokens.security_keys); False if it does not. One conditional UPDATE: of two logins
        racing with the same counter, exactly one wins, in every process."""
        now = timezone.now()
        if counter == 0:  # an authenticator that always reports 0, and never reported more
            moved = self.filter(fingerprint=fingerprint, highest=0).update(updated_at=now)
        else:
            moved = self.filter(fingerprint=fingerprint, highest__lt=counter).update(
                highest=counter, updated_at=now
            )
        if moved:
            return True
        if self.filter(fingerprint=fingerprint).exists():
            return False
        try:
            with transaction.atomic():
                self.create(fingerprint=fingerprint, highest=counter, updated_at=now)
        except IntegrityError:  # the key's first two logins raced: the other one created it
            return self.advance(fingerprint, counter)
        return True
