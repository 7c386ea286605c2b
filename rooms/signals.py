"""Any deletion of a Membership (command, admin, cascade) or of a Room ends the live
subscriptions it allowed, in every process: the change goes to the change log (foundation.changelog) in
the deletion's own transaction."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver

from foundation.changelog import record
from foundation.models import Change
from rooms.models import Membership, Room


def _deleting(origin, model) -> bool:
    if isinstance(origin, QuerySet):
        return origin.model is model
    return isinstance(origin, model)


@receiver(post_delete, sender=Membership)
def membership_removed(sender, instance, origin=None, **kwargs):
    # A room's or a user's deletion records one change for all of its memberships.
    if _deleting(origin, Room) or _deleting(origin, get_user_model()):
        return
    with transaction.atomic():
        record(Change.Kind.MEMBER_REMOVED, [{"user": instance.user_id, "room": instance.room_id}])


@receiver(pre_delete, sender=Room)
def room_deleted(sender, instance, **kwargs):
    with transaction.atomic():
        record(Change.Kind.ROOM_DELETED, [{"room": instance.pk}])
