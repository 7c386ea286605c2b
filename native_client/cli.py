"""The command line, python -m native_client: its arguments, and how a failure is reported.

A failure is one line on stderr saying what happened and what to do, and an exit code from the
one table in native_client.exit_codes, the same for every subcommand. Help texts are plain
text: argparse prints them as they are, so they hold no reST markup.
"""

import argparse
import socket
import sys
import textwrap

from native_client import commands
from native_client.commands import PROG, display, login_command
from native_client.errors import (
    ApiError,
    ClientError,
    LoginRefused,
    NetworkError,
    NotLoggedIn,
    UnknownMembers,
)
from native_client.exit_codes import ExitCode, exit_code_for, table_text
from native_client.store import TokenStore
from native_client.stream import MAX_LAST

DESCRIPTION = (
    "Log in to a native rooms server with an SSH key, then read and write its rooms from a "
    "terminal. Tokens are kept in private files and never printed."
)


def build_parser() -> argparse.ArgumentParser:
    # Shared options are accepted before or after the command; SUPPRESS keeps a subcommand's
    # unset default from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=argparse.SUPPRESS, help="server URL (default: the last one used)")
    common.add_argument(
        "--config-dir",
        default=argparse.SUPPRESS,
        help="where tokens are kept (default: $NATIVE_CLIENT_CONFIG_DIR, else ~/.config/native-client)",
    )
    common.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help="HTTP timeout in seconds (default: 10)"
    )
    # Raw: the exit-code table keeps its lines (descriptions are wrapped by hand for that reason).
    layout = {"epilog": table_text(), "formatter_class": argparse.RawDescriptionHelpFormatter}

    parser = argparse.ArgumentParser(
        prog=PROG, description=textwrap.fill(DESCRIPTION, 78), parents=[common], **layout
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, handler, help_text):
        sub = subcommands.add_parser(
            name, parents=[common], help=help_text, description=textwrap.fill(help_text, 78), **layout
        )
        sub.set_defaults(handler=handler)
        return sub

    login = command("login", commands.cmd_login, "log in with an SSH key (a key file, or through ssh-agent)")
    login.add_argument(
        "--key",
        required=True,
        help="your private key file, or its .pub file: ssh-agent signs if it holds the key, "
        "else the private key file (next to the .pub) is used",
    )
    login.add_argument("--device", default=socket.gethostname()[:100], help="device name (default: hostname)")
    command("whoami", commands.cmd_whoami, "show the logged-in user and session")
    logout = command("logout", commands.cmd_logout, "end this session (the stored token is deleted)")
    logout.add_argument("--everywhere", action="store_true", help="end every session of this user")
    command("sessions", commands.cmd_sessions, "list your live sessions (* marks this one)")
    revoke = command("revoke", commands.cmd_revoke, "end one of your sessions by id")
    revoke.add_argument("session_id", help="a session id, as sessions lists them")
    command("rooms", commands.cmd_rooms, "list your rooms")
    members = command("members", commands.cmd_members, "list a room's members: user id and username")
    members.add_argument("room", help="room slug")
    history = command("history", commands.cmd_history, "print a room's messages, oldest first")
    history.add_argument("room", help="room slug")
    history.add_argument("--limit", type=int, help="at most this many messages, 1 to 200 (default: 50)")
    history.add_argument("--before", type=int, metavar="ID", help="only messages before this id")
    history.add_argument("--after", type=int, metavar="ID", help="only messages after this id")
    send = command("send", commands.cmd_send, "post a message")
    send.add_argument("room", help="room slug")
    send.add_argument("text", help="the message")
    send.add_argument(
        "--to",
        action="append",
        metavar="USER",
        help="only for this member, by username or numeric user id (repeat for several)",
    )
    send.add_argument("--client-id", help="idempotency key (default: a fresh UUID)")
    tail = command(
        "tail",
        commands.cmd_tail,
        "print a room's latest messages, then new ones as they arrive, reconnecting as needed",
    )
    tail.add_argument("room", help="room slug")
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--last",
        type=last_count,
        default=10,
        metavar="N",
        help=f"first print the N latest messages, 0 to {MAX_LAST} (default: 10)",
    )
    start.add_argument("--after", type=int, metavar="ID", help="first print every message after this id")
    tail.add_argument("--failover", action="append", metavar="URL", help="another server to fail over to")
    return parser


def last_count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_LAST:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_LAST}")
    return value


def advice(error: ClientError, args) -> str:
    """The error's line for stderr: what happened, then what to do about it."""
    text = error.detail if isinstance(error, ApiError) else str(error)
    code = exit_code_for(error)
    server = getattr(args, "resolved_server", None)
    room = getattr(args, "room", None)
    if isinstance(error, (LoginRefused, NotLoggedIn)):
        return text  # these say what to do already
    if code is ExitCode.NOT_LOGGED_IN:
        return f"{text} Log in again: {login_command(server)}"
    if code is ExitCode.FORBIDDEN and room is not None and getattr(error, "close_code", None) != 4403:
        return f"{text} {PROG} rooms lists the rooms you are in."
    if isinstance(error, UnknownMembers):
        return f"{text} Nothing was sent; {PROG} members {room} lists the members."
    if code is ExitCode.RATE_LIMITED and getattr(error, "retry_after", None):
        return f"{text} Retry in {error.retry_after} s."
    if isinstance(error, NetworkError):
        return f"{text} Is the server running, and is --server right?"
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a bad command line exits with 2 (ExitCode.USAGE)
    args.timeout = getattr(args, "timeout", 10.0)
    store = TokenStore(getattr(args, "config_dir", None))
    try:
        return args.handler(args, store)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except ClientError as exc:
        print(f"error: {display(advice(exc, args))}", file=sys.stderr)
        return exit_code_for(exc)
