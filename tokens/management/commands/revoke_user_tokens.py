"""``manage.py revoke_user_tokens``: log a user out everywhere."""

from django.core.management.base import BaseCommand

from tokens.management import IN_MEMORY_LAYER_NOTE, reaches_other_processes, user_or_error
from tokens.revocation import revoke_user


class Command(BaseCommand):
    help = (
        "Revoke every native token of USERNAME and close all of their live websockets "
        "(4401). Service tokens stay valid for new requests: revoke them by jti with revoke_token."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--reason", default="", help="kept with each revoked token (at most 200 characters)"
        )

    def handle(self, *args, username, reason, **options):
        user = user_or_error(username)
        count = revoke_user(user, reason=reason or "manage.py revoke_user_tokens")
        noun = "token" if count == 1 else "tokens"
        self.stdout.write(f"revoked {count} native {noun} of user {username!r} and closed their live sockets")
        if not reaches_other_processes():
            self.stderr.write(IN_MEMORY_LAYER_NOTE, style_func=str)
