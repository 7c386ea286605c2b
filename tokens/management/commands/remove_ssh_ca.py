"""``manage.py remove_ssh_ca``: stop trusting a CA, and revoke every token issued through it."""

from django.core.management.base import BaseCommand, CommandError

from foundation.changelog import capture
from tokens.management import add_wait_argument, report_live_effect
from tokens.models import CertificateAuthority
from tokens.revocation import remove_authority


class Command(BaseCommand):
    help = (
        "Stop trusting the CA called NAME: its certificates no longer log in, and every token issued "
        "through one of them is revoked; their live websockets close (4401) in every server process."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        add_wait_argument(parser)

    def handle(self, *args, name, wait, **options):
        authority = CertificateAuthority.objects.filter(name=name).first()
        if authority is None:
            raise CommandError(f"no CA named {name!r}")
        with capture() as recorded:
            count = remove_authority(authority, reason=f"CA {name} removed (manage.py remove_ssh_ca)")
        self.stdout.write(
            f"removed CA {name!r} ({authority.fingerprint}); revoked {count} "
            f"{'token' if count == 1 else 'tokens'} issued through its certificates"
        )
        report_live_effect(self, recorded, wait)
