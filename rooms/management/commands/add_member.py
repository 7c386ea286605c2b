"""``manage.py add_member``: let a user into a room (idempotent)."""

from django.core.management.base import BaseCommand

from rooms.management import room_or_error
from rooms.membership import add_member
from tokens.management import user_or_error


class Command(BaseCommand):
    help = "Make USERNAME a member of room SLUG. Adding an existing member changes nothing and succeeds."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("username")

    def handle(self, *args, slug, username, **options):
        room, user = room_or_error(slug), user_or_error(username)
        if add_member(room, user):
            self.stdout.write(f"added {username!r} to room {slug!r}")
        else:
            self.stdout.write(f"{username!r} is already a member of room {slug!r}; nothing changed")
