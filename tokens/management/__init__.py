"""Helpers shared by the operator commands (tokens and rooms), so they fail and report in the
same words."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from live.confirm import wait_for


def user_or_error(username: str):
    """The user called ``username``, or a CommandError (non-zero exit)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


def add_wait_argument(parser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="how long to wait for the running server processes to confirm that their live sockets "
        "obeyed (default 3; 0 does not wait)",
    )


def report_live_effect(command, recorded: list, wait: float) -> None:
    """Say how the change reaches live sockets, and what the server processes confirmed.

    The change is committed before this runs: the server processes apply it from the database
    whether or not the push below got through, and this reports what they really did.
    """
    seqs = [seq for item in recorded for seq in item.seqs]
    if not seqs:
        return
    failed = [item.push_error or "not committed yet" for item in recorded if not item.pushed]
    bound = settings.NATIVE_LIVE_POLL_INTERVAL * 2 + 1
    if failed:
        command.stdout.write(
            f"push to the servers failed ({failed[0]}): they read the change from the database, "
            f"within {bound:g} s of its commit"
        )
    else:
        command.stdout.write("pushed to the running servers through the channel layer")
    if wait <= 0:
        command.stdout.write(f"live sockets: every live server process applies it within {bound:g} s")
        return
    confirmation = wait_for(recorded[-1].epoch, seqs, timeout=wait)
    for line in confirmation.lines():
        (command.stdout if confirmation.complete else command.stderr).write(line)
