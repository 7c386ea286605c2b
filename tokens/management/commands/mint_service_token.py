"""``manage.py mint_service_token``: a signed ``nst_`` bearer token for a bot or a worker.

stdout carries the token and nothing else, so ``TOKEN=$(manage.py mint_service_token bot)``
works; the jti (to revoke it later) and the expiry go to stderr.
"""

from django.core.management.base import BaseCommand, CommandError

from foundation.timestamps import isoformat
from tokens import service_tokens
from tokens.management import user_or_error


class Command(BaseCommand):
    help = (
        "Mint a service token for USERNAME. Prints only the token on stdout, and "
        "'jti=<jti> expires_at=<ts>' on stderr; revoke it with 'revoke_token <jti>'."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--ttl",
            type=int,
            default=None,
            help="lifetime in seconds (default NATIVE_SERVICE_TOKEN_TTL, max NATIVE_SERVICE_TOKEN_MAX_TTL)",
        )
        parser.add_argument(
            "--name", default="", help="a label carried in the token (at most 100 characters)"
        )

    def handle(self, *args, username, ttl, name, **options):
        maximum = service_tokens.longest_lifetime()
        if ttl is not None and not 0 < ttl <= maximum:
            raise CommandError(f"--ttl must be between 1 and {maximum} seconds")
        user = user_or_error(username)
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive; a token for them would be refused")
        raw, claims = service_tokens.mint(user, ttl=ttl, name=name)
        self.stdout.write(raw)
        # Plain text on stderr: this is information, not an error, so no red styling on a tty.
        self.stderr.write(f"jti={claims.jti} expires_at={isoformat(claims.expires_at)}", style_func=str)
