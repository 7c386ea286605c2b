"""A RevokedToken added anywhere (admin included) has the full effect of a revocation; a user
deactivated or deleted anywhere (admin included) loses their live sockets too."""

from django.conf import settings
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver

from tokens.live import close_sockets_after_commit, user_group
from tokens.models import RevokedToken
from tokens.revocation import on_deny_listed


@receiver(post_save, sender=RevokedToken)
def deny_listed(sender, instance, created, **kwargs):
    if created:
        on_deny_listed(instance.jti)


# The verifier refuses an inactive or deleted user's credentials on the next request, but an
# open socket is never asked again: tell it to close (4401) once the change has committed.
@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_saved(sender, instance, **kwargs):
    if not instance.is_active:
        close_sockets_after_commit(user_group(instance.pk))


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def user_deleted(sender, instance, **kwargs):
    close_sockets_after_commit(user_group(instance.pk))
