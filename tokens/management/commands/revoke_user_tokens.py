"""``manage.py revoke_user_tokens``: every credential of a user, at once (log out everywhere)."""

from django.core.management.base import BaseCommand

from foundation.changelog import capture
from foundation.timestamps import isoformat
from tokens.management import add_wait_argument, report_live_effect, user_or_error
from tokens.models import CredentialFloor
from tokens.revocation import revoke_user


class Command(BaseCommand):
    help = (
        "Revoke every credential of USERNAME: their native tokens, every service token minted "
        "for them before now, and every websocket ticket those minted; every live websocket of theirs "
        "closes (4401) in every server process."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--reason", default="", help="kept with each revoked token (at most 200 characters)"
        )
        add_wait_argument(parser)

    def handle(self, *args, username, reason, wait, **options):
        user = user_or_error(username)
        with capture() as recorded:
            count = revoke_user(user, reason=reason or "manage.py revoke_user_tokens")
        now = isoformat(CredentialFloor.objects.get(user=user).not_before)
        self.stdout.write(
            f"revoked every credential of user {username!r} at {now}: {count} native "
            f"{'token' if count == 1 else 'tokens'}, every service token minted before then, "
            "and every ticket they minted"
        )
        report_live_effect(self, recorded, wait)
