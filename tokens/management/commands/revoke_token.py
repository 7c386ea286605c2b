"""``manage.py revoke_token``: kill one credential by id, a native token id or a service-token jti.

The effect is revocation's (tokens.revocation): refused by the verifier from now on in every
process, unused tickets burnt, live sockets told to close (4401) once the change has committed.
Commands run in autocommit mode, so those after-commit hooks fire before the command returns.
"""

from datetime import UTC, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from native_api.timestamps import isoformat
from tokens.management import IN_MEMORY_LAYER_NOTE, reaches_other_processes
from tokens.models import NativeToken, RevokedToken
from tokens.revocation import revoke_by_id

MAX_ID_LENGTH = RevokedToken._meta.get_field("jti").max_length


class Command(BaseCommand):
    help = (
        "Revoke ID: a native token id (as listed by GET /api/native/tokens and in admin), "
        "or else a service-token jti, which goes on the deny-list until --expires-at "
        "(default: now + NATIVE_SERVICE_TOKEN_MAX_TTL, the longest a service token can live)."
    )

    def add_arguments(self, parser):
        parser.add_argument("token_id", metavar="ID")
        parser.add_argument(
            "--expires-at",
            default=None,
            help="for a jti: when the token expires anyway, ISO 8601 (no timezone means UTC)",
        )
        parser.add_argument("--reason", default="", help="kept with the revocation (at most 200 characters)")

    def handle(self, *args, token_id, expires_at, reason, **options):
        token_id = token_id.strip()
        if not token_id or len(token_id) > MAX_ID_LENGTH or not token_id.isprintable():
            raise CommandError(f"ID must be 1 to {MAX_ID_LENGTH} printable characters")
        until = parse_expiry(expires_at) if expires_at is not None else longest_lifetime_from_now()
        reason = reason or "manage.py revoke_token"
        native = NativeToken.objects.filter(public_id=token_id).first()
        if native is not None and native.revoked_at is not None:
            self.stdout.write(
                f"native token {token_id} was already revoked at {isoformat(native.revoked_at)}"
            )
            return
        already = RevokedToken.objects.filter(jti=token_id).first() if native is None else None
        kind = revoke_by_id(token_id, expires_at=until, reason=reason)
        if kind == "native":
            self.stdout.write(f"revoked native token {token_id} of user {native.user.username!r}")
        else:
            entry = already or RevokedToken.objects.get(jti=token_id)
            state = "was already deny-listed" if already else "deny-listed"
            self.stdout.write(f"{state} service token jti {token_id} until {isoformat(entry.expires_at)}")
        if not reaches_other_processes():
            self.stderr.write(IN_MEMORY_LAYER_NOTE, style_func=str)


def longest_lifetime_from_now():
    """Past the expiry of any service token minted until now (ignored for a native token id)."""
    longest = timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_MAX_TTL + 1)
    return (timezone.now() + longest).replace(microsecond=0)


def parse_expiry(value: str):
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:  # well-formed but impossible, e.g. month 13
        parsed = None
    if parsed is None:
        raise CommandError(
            f"--expires-at {value!r} is not an ISO 8601 date and time (e.g. 2026-11-22T18:42:31Z)"
        )
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    if parsed <= timezone.now():
        raise CommandError("--expires-at is in the past: a token that has expired needs no revocation")
    return parsed
