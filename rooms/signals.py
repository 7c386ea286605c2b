"""Any deletion of a Membership (command, admin, cascade) unsubscribes that user's sockets."""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from rooms.models import Membership
from tokens.live import send_to_groups, user_group


@receiver(post_delete, sender=Membership)
def membership_removed(sender, instance, **kwargs):
    event = {"type": "membership.revoked", "room_id": instance.room_id}
    transaction.on_commit(lambda: send_to_groups([user_group(instance.user_id)], event))
