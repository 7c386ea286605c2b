"""A RevokedToken added anywhere (admin included) has the full effect of a revocation."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from tokens.models import RevokedToken
from tokens.revocation import on_deny_listed


@receiver(post_save, sender=RevokedToken)
def deny_listed(sender, instance, created, **kwargs):
    if created:
        on_deny_listed(instance.jti)
