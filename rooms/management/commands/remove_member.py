"""``manage.py remove_member``: take a user out of a room; their live subscriptions end at once,
in every server process, which then confirm it (live.confirm).

Removing someone who is not a member fails (non-zero exit): the likely cause is a mistyped
name or slug, and a script should hear about it rather than believe the user was removed.
"""

from django.core.management.base import BaseCommand, CommandError

from foundation.changelog import capture
from rooms.management import room_or_error
from rooms.membership import remove_member
from tokens.management import add_wait_argument, report_live_effect, user_or_error


class Command(BaseCommand):
    help = (
        "Remove USERNAME from room SLUG. Their websockets subscribed to the room receive "
        "'unsubscribed' (reason membership_revoked) and nothing more from it, in every server "
        "process. Fails if they are not a member."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("username")
        add_wait_argument(parser)

    def handle(self, *args, slug, username, wait, **options):
        room, user = room_or_error(slug), user_or_error(username)
        with capture() as recorded:
            removed = remove_member(room, user)
        if not removed:
            raise CommandError(f"{username!r} is not a member of room {slug!r}")
        self.stdout.write(f"removed {username!r} from room {slug!r}")
        report_live_effect(self, recorded, wait)
