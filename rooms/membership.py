"""Joining and leaving rooms. Removal is pushed to the user's live sockets (rooms.signals)."""

from django.db import transaction

from rooms.models import Membership, Room


def create_room(slug: str, name: str = "", members=()) -> Room:
    with transaction.atomic():
        room = Room(slug=slug, name=name or slug)
        room.full_clean()
        room.save()
        for user in members:
            Membership.objects.get_or_create(room=room, user=user)
    return room


def add_member(room: Room, user) -> bool:
    _, created = Membership.objects.get_or_create(room=room, user=user)
    return created


def remove_member(room: Room, user) -> bool:
    deleted = 0
    for membership in Membership.objects.filter(room=room, user=user):
        membership.delete()  # one by one, so post_delete fires as it does in admin
        deleted += 1
    return bool(deleted)
