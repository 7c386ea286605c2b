"""Helpers shared by the room commands."""

from django.core.management.base import CommandError

from rooms.models import Room


def room_or_error(slug: str) -> Room:
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        raise CommandError(f"no room {slug!r}")
    return room
