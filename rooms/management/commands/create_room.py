"""``manage.py create_room``: a new room, optionally with its first members."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from rooms.membership import create_room


class Command(BaseCommand):
    help = (
        "Create room SLUG (lowercase letters, digits, - and _). Members can be given as "
        "--member alice --member bob or --member alice bob."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="", help="display name (default: the slug)")
        parser.add_argument(
            "--member", dest="members", action="extend", nargs="+", default=[], metavar="USERNAME"
        )

    def handle(self, *args, slug, name, members, **options):
        wanted = list(dict.fromkeys(members))
        users = list(get_user_model().objects.filter(username__in=wanted))
        missing = sorted(set(wanted) - {user.username for user in users})
        if missing:
            raise CommandError(f"no user named {', '.join(map(repr, missing))}; nothing was created")
        try:
            room = create_room(slug, name, members=users)
        except ValidationError as exc:
            raise CommandError(f"cannot create room {slug!r}: {' '.join(exc.messages)}") from None
        noun = "member" if len(users) == 1 else "members"
        self.stdout.write(f"created room {room.slug!r} ({room.name}) with {len(users)} {noun}")
