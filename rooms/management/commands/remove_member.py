"""``manage.py remove_member``: take a user out of a room; their live subscription ends at once.

Removing someone who is not a member fails (non-zero exit): the likely cause is a mistyped
name or slug, and a script should hear about it rather than believe the user was removed.
"""

from django.core.management.base import BaseCommand, CommandError

from rooms.management import room_or_error
from rooms.membership import remove_member
from tokens.management import IN_MEMORY_LAYER_NOTE, reaches_other_processes, user_or_error


class Command(BaseCommand):
    help = (
        "Remove USERNAME from room SLUG. Their websockets subscribed to the room receive "
        "'unsubscribed' (reason membership_revoked) at once. Fails if they are not a member."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("username")

    def handle(self, *args, slug, username, **options):
        room, user = room_or_error(slug), user_or_error(username)
        if not remove_member(room, user):
            raise CommandError(f"{username!r} is not a member of room {slug!r}")
        self.stdout.write(f"removed {username!r} from room {slug!r}")
        if not reaches_other_processes():
            self.stderr.write(IN_MEMORY_LAYER_NOTE, style_func=str)
