"""Model changes that take a right away, however they are made (admin, shell, cascades), write
their change to the change log (foundation.changelog) in the same transaction, so that every live
socket obeys them in every process. Revocation services write theirs themselves."""

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver

from foundation.changelog import record
from foundation.models import Change
from tokens.models import RevokedToken
from tokens.revocation import on_deny_listed


@receiver(post_save, sender=RevokedToken)
def deny_listed(sender, instance, created, **kwargs):
    if created:
        on_deny_listed(instance)


# The verifier refuses an inactive or deleted user's credentials on the next request; their
# open sockets learn it from the change log. Outside a transaction (a shell's save()) the save
# has committed already and the change follows it in a transaction of its own.
@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_saved(sender, instance, **kwargs):
    if not instance.is_active:
        with transaction.atomic():
            record(Change.Kind.USER_DISABLED, [{"user": instance.pk}])


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def user_deleted(sender, instance, **kwargs):
    with transaction.atomic():  # inside the deletion's own transaction (Collector.delete)
        record(Change.Kind.USER_DELETED, [{"user": instance.pk}])
