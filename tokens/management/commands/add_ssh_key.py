"""``manage.py add_ssh_key``: register a user's OpenSSH public key so they can log in with it."""

import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from tokens.login import register_key
from tokens.management import user_or_error
from tokens.models import SshKey
from tokens.ssh_signatures import SUPPORTED_KEY_TYPES, SshKeyError, parse_public_key

# The biggest public key line OpenSSH writes (RSA 16384) is under 3 KiB; anything much larger
# is not a public key, and we do not want to slurp an arbitrary file.
MAX_KEY_FILE = 16 * 1024


class Command(BaseCommand):
    help = (
        "Register an OpenSSH public key for USERNAME. KEY is a public key line "
        "('ssh-ed25519 AAAA... comment'), a path to a .pub file, or - to read it from stdin. "
        "Prints the key's SHA256 fingerprint."
    )
    stealth_options = ("stdin",)  # lets tests feed "-" without touching sys.stdin

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("key", help="public key line, path to a .pub file, or - for stdin")
        parser.add_argument("--name", default="", help="a label for the key (default: the key's comment)")
        parser.add_argument("--create-user", action="store_true", help="create USERNAME if it does not exist")
        parser.add_argument(
            "--verify-required",
            action="store_true",
            help="security keys only: logins must prove user verification (PIN or biometric), "
            "not just a touch",
        )

    def handle(self, *args, username, key, name, create_user, verify_required, **options):
        text = read_key_argument(key, options.get("stdin") or sys.stdin)
        try:
            parsed = parse_public_key(text)
        except SshKeyError as exc:
            raise CommandError(f"invalid public key: {exc}") from None
        if verify_required and not parsed.is_security_key:
            raise CommandError("--verify-required applies to security keys (sk-…) only")
        owner = SshKey.objects.filter(fingerprint=parsed.fingerprint).values_list("user__username", flat=True)
        if owner:
            # Operators may see who owns a key; the API never says.
            raise CommandError(f"key {parsed.fingerprint} is already registered to user {owner[0]!r}")
        try:
            with transaction.atomic():
                user, created = (
                    get_or_create_user(username) if create_user else (user_or_error(username), False)
                )
                ssh_key = register_key(
                    user, parsed, name=name or parsed.comment, verify_required=verify_required
                )
        except IntegrityError:  # a concurrent add of the same key won the unique constraint
            raise CommandError(f"key {parsed.fingerprint} is already registered") from None
        new = "new " if created else ""
        verification = " (user verification required)" if verify_required else ""
        self.stdout.write(
            f"added {ssh_key.key_type} key {ssh_key.fingerprint} for {new}user {user.username!r}"
            + verification
        )


def read_key_argument(value: str, stdin) -> str:
    """The key text: stdin for "-", the file when ``value`` names one, else ``value`` itself."""
    if value == "-":
        return _checked(stdin.read(MAX_KEY_FILE + 1), "stdin")
    if not _is_file(Path(value)) and not _looks_like_path(value):
        return value
    try:
        with open(value, "rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise CommandError(
            f"{value} is neither a public key line nor a readable file: {exc.strerror or exc}"
        ) from None
    return _checked(data.decode("utf-8", errors="replace"), value)


def _checked(text: str, source: str) -> str:
    if len(text) > MAX_KEY_FILE:
        raise CommandError(f"{source} is too large to be a public key")
    if "PRIVATE KEY" in text:
        # Never echo it back, and never store it.
        raise CommandError(f"{source} holds a private key; pass the public key (.pub) instead")
    return text


def _looks_like_path(value: str) -> bool:
    if any(ch.isspace() for ch in value.strip()) or value.startswith(tuple(SUPPORTED_KEY_TYPES)):
        return False
    return "/" in value or value.endswith(".pub")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the filesystem, or with a NUL byte
        return False


def get_or_create_user(username: str):
    """(user, created); a new user has no usable password: they log in with keys."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        return user, False
    user = user_model(username=username)
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise CommandError(f"cannot create user {username!r}: {' '.join(exc.messages)}") from None
    user.set_unusable_password()
    user.save()
    return user, True
