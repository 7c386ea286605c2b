"""``manage.py load_krl``: put an OpenSSH key revocation list in force, replacing the last one."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from foundation.changelog import capture
from tokens.krl import KrlError
from tokens.krl_store import MAX_KRL_BYTES, load
from tokens.management import add_wait_argument, report_live_effect
from tokens.management.commands.add_ssh_ca import _os_user

SHOWN = 20  # revoked keys and certificates listed by name; the rest are counted


class Command(BaseCommand):
    help = (
        "Load FILE, an OpenSSH KRL (ssh-keygen -k), replacing the KRL in force: keys and certificates "
        "it revokes can no longer log in, and every token issued through them is revoked (their live "
        "websockets close 4401 in every server process). Prints what it revoked."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        add_wait_argument(parser)

    def handle(self, *args, file, wait, **options):
        try:
            with open(file, "rb") as handle:
                data = handle.read(MAX_KRL_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror or exc}") from None
        if len(data) > MAX_KRL_BYTES:
            raise CommandError(f"{file} is over {MAX_KRL_BYTES // 2**20} MiB: not a KRL this server loads")
        try:
            with capture() as recorded:
                result = load(data, source=str(Path(file).resolve()), loaded_by=f"manage.py ({_os_user()})")
        except KrlError as exc:
            raise CommandError(f"{file}: {exc}; the KRL in force is unchanged") from None
        counts = result.krl.summary()
        self.stdout.write(
            f"loaded KRL version {result.krl.version} from {file}"
            + (f" ({result.krl.comment!r})" if result.krl.comment else "")
            + ": "
            + ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items())
        )
        if result.krl.signatures_skipped:
            self.stdout.write(
                f"{result.krl.signatures_skipped} signature section(s) skipped unchecked, as OpenSSH does"
            )
        self._list("registered key", result.keys)
        self._list("certificate that logged in", result.certificates)
        count = result.tokens_revoked
        self.stdout.write(f"revoked {count} {'token' if count == 1 else 'tokens'} issued through them")
        report_live_effect(self, recorded, wait)

    def _list(self, what: str, names: list[str]) -> None:
        self.stdout.write(f"revoked {len(names)} {what}{'' if len(names) == 1 else 's'}")
        for name in names[:SHOWN]:
            self.stdout.write(f"  {name}")
        if len(names) > SHOWN:
            self.stdout.write(f"  … and {len(names) - SHOWN} more")
