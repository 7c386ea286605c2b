"""``manage.py add_ssh_ca``: trust a certificate authority's user certificates for logging in."""

import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from tokens.authorities import AuthorityError, add_authority
from tokens.management.commands.add_ssh_key import read_key_argument


class Command(BaseCommand):
    help = (
        "Trust the CA whose public key is KEY (a key line, a path to a .pub file, or - for stdin) "
        "under NAME: user certificates it signs log in as the user their principal names, without "
        "their keys being registered. Prints the CA key's fingerprint."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("key", help="the CA's public key line, a path to its .pub file, or -")
        parser.add_argument(
            "--principals",
            default="",
            metavar="USER,USER…",
            help="only these usernames may log in with this CA's certificates (default: any user)",
        )

    def handle(self, *args, name, key, principals, **options):
        text = read_key_argument(key, options.get("stdin") or sys.stdin)
        try:
            authority = add_authority(name, text, principals=principals, added_by=f"manage.py ({_os_user()})")
        except AuthorityError as exc:
            raise CommandError(str(exc)) from None
        scope = f"users {authority.principals}" if authority.principals else "any user"
        self.stdout.write(
            f"trusted CA {authority.name!r}: {authority.key_type} {authority.fingerprint}, for {scope}"
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown user"
