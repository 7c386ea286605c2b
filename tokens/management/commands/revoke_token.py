"""``manage.py revoke_token``: kill one credential by id, a native token id or a service-token jti.

The effect is revocation's (tokens.revocation): refused by the verifier from now on in every
process, its unused tickets void (a ticket is refused when its credential is), and every live
socket using it closed (4401) by the server processes, which then confirm it (live.confirm).
An id that is neither a native token id nor a jti this server could have minted is refused,
so that a typo is not mistaken for a revocation.
"""

from datetime import UTC, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from foundation.changelog import capture
from foundation.timestamps import isoformat
from tokens.management import add_wait_argument, report_live_effect
from tokens.models import NativeToken, RevokedToken
from tokens.revocation import UnknownTokenId, revoke_by_id

MAX_ID_LENGTH = RevokedToken._meta.get_field("jti").max_length


class Command(BaseCommand):
    help = (
        "Revoke ID: a native token id (as listed by GET /api/native/tokens and in admin), or a "
        "service-token jti (as printed by mint_service_token), which goes on the deny-list until "
        "--expires-at (default: a year from now, the longest any service token can live, "
        "whatever NATIVE_SERVICE_TOKEN_MAX_TTL says). An ID that is neither is refused, unless --jti "
        "says to deny-list it anyway."
    )

    def add_arguments(self, parser):
        parser.add_argument("token_id", metavar="ID")
        parser.add_argument(
            "--jti",
            action="store_true",
            help="deny-list ID even though this server cannot tell it minted it (a jti from before "
            "jtis carried a check tag, or one minted with another SECRET_KEY)",
        )
        parser.add_argument(
            "--expires-at",
            default=None,
            help="for a jti: when the token expires anyway, ISO 8601 (no timezone means UTC)",
        )
        parser.add_argument("--reason", default="", help="kept with the revocation (at most 200 characters)")
        add_wait_argument(parser)

    def handle(self, *args, token_id, jti, expires_at, reason, wait, **options):
        token_id = token_id.strip()
        if not token_id or len(token_id) > MAX_ID_LENGTH or not token_id.isprintable():
            raise CommandError(f"ID must be 1 to {MAX_ID_LENGTH} printable characters")
        until = parse_expiry(expires_at) if expires_at is not None else longest_lifetime_from_now()
        reason = reason or "manage.py revoke_token"
        native = NativeToken.objects.select_related("user").filter(public_id=token_id).first()
        if native is not None and native.revoked_at is not None:
            self.stdout.write(
                f"native token {token_id} of user {native.user.username!r} was already revoked at "
                f"{isoformat(native.revoked_at)}; nothing changed"
            )
            return
        already = RevokedToken.objects.filter(jti=token_id).first() if native is None else None
        if already is not None:
            self.stdout.write(
                f"service token jti {token_id} was already deny-listed at {isoformat(already.revoked_at)} "
                f"(until {isoformat(already.expires_at)}); nothing changed"
            )
            return
        with capture() as recorded:
            try:
                kind = revoke_by_id(token_id, expires_at=until, force_jti=jti, reason=reason)
            except UnknownTokenId:
                raise CommandError(
                    f"{token_id!r} is neither a native token id nor a service-token jti this server "
                    "issued (check it for a typo); pass --jti to deny-list it anyway"
                ) from None
        now = isoformat(timezone.now())
        if kind == "native":
            self.stdout.write(
                f"revoked native token {token_id} of user {native.user.username!r} at {now}; "
                "its unused tickets are void"
            )
        else:
            entry = RevokedToken.objects.get(jti=token_id)
            self.stdout.write(
                f"deny-listed service token jti {token_id} at {now} until {isoformat(entry.expires_at)}; "
                "its unused tickets are void"
            )
        report_live_effect(self, recorded, wait)


def longest_lifetime_from_now():
    """Past the expiry of any service token minted until now (ignored for a native token id)."""
    longest = timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING + 1)
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
