"""``python -m native_client``: log in with an SSH key, then read and write rooms from a terminal.

Exit codes: 0 success; 1 an API or network error (one line on stderr, the server's detail);
2 logging in is needed (no stored token, the server refused it, a tail ended with 4401) or the
server forbade it (4403, not a member). Tokens are stored, never printed.
"""

import argparse
import asyncio
import socket
import sys

from native_client.api import NativeClient, normalize_server
from native_client.errors import (
    ApiError,
    ClientError,
    NotLoggedIn,
    StreamForbidden,
    StreamStopped,
    StreamUnauthorized,
)
from native_client.store import TokenStore
from native_client.stream import StreamEvent, Tail

PROG = "python -m native_client"


class UsageProblem(ClientError):
    """The command line cannot be acted on (e.g. no server given and none remembered)."""


def display(text) -> str:
    """Text from the server, made safe for a terminal: control characters (escape sequences,
    newlines, bidi overrides) are shown escaped, so a message cannot forge lines or repaint."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def message_line(message: dict) -> str:
    sender = (message.get("sender") or {}).get("username", "?")
    return f"[{message.get('id')}] {display(sender)}: {display(message.get('body', ''))}"


# --- commands ---------------------------------------------------------------------------------


def cmd_login(args, store: TokenStore) -> int:
    server = resolve_server(args, store)
    with NativeClient(server, timeout=args.timeout) as client:
        issued = client.login(args.key, device_name=args.device)
    store.save(server, issued)
    user = issued["user"]
    print(
        f"Logged in to {server} as {display(user['username'])} "
        f"(session {issued['token_id']}, expires {issued['expires_at']})."
    )
    return 0


def cmd_whoami(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        me = client.me()
    token = me["token"]
    device = f' "{display(token["device_name"])}"' if token.get("device_name") else ""
    print(
        f"{display(me['user']['username'])} (user {me['user']['id']}) on {client.server_url}, "
        f"session {token['id']}{device}, expires {token['expires_at']}"
    )
    return 0


def cmd_logout(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        try:
            if args.everywhere:
                client.logout_everywhere()
            else:
                client.logout()
        except ApiError as exc:
            if not exc.auth_needed:
                raise
            store.delete(client.server_url)  # already dead on the server: just forget it here
            print(f"Logged out of {client.server_url} (the server had already ended this session).")
            return 0
    store.delete(client.server_url)
    print(f"Logged out of {client.server_url}{' on every device' if args.everywhere else ''}.")
    return 0


def cmd_sessions(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        sessions = client.sessions()
    for s in sessions:
        print(
            f"{'*' if s.get('current') else ' '} {s['id']}  {display(s.get('device_name') or '-')}  "
            f"created {s.get('created_at')}  last used {s.get('last_used_at') or 'never'}  "
            f"expires {s.get('expires_at')}"
        )
    return 0


def cmd_revoke(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        client.revoke_session(args.session_id)
    stored = store.load(client.server_url)
    if stored and stored.token_id == args.session_id:
        store.delete(client.server_url)
    print(f"Revoked session {args.session_id}.")
    return 0


def cmd_rooms(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        rooms = client.rooms()
    for room in rooms:
        last = room.get("last_message_id")
        print(f"{display(room['slug'])}  {display(room.get('name', ''))}  last id {last if last else '-'}")
    return 0


def cmd_history(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        page = client.history(args.room, limit=args.limit, before=args.before, after=args.after)
    for message in page["messages"]:
        print(message_line(message))
    return 0


def cmd_send(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        message = client.send(args.room, args.text, client_id=args.client_id, target_user_ids=args.to)
    print(message_line(message))
    return 0


def cmd_tail(args, store: TokenStore) -> int:
    server = resolve_server(args, store)
    stored = store.load(server)
    if stored is None:
        raise NotLoggedIn(not_logged_in(server))
    servers = [server, *(normalize_server(url) for url in args.failover or [])]
    tail = Tail(stored.token, servers, args.room, args.after, on_event=status_line)

    async def run():
        async for message in tail.messages():
            print(message_line(message), flush=True)

    asyncio.run(run())
    return 0


def status_line(event: StreamEvent) -> None:
    if event.kind == "subscribed":
        print(f"subscribed at {event.url}", file=sys.stderr, flush=True)
    elif event.kind == "reconnecting":
        target = f" to {event.url}" if event.url else ""
        print(f"{event.detail}; reconnecting{target} in {event.delay:.1f} s", file=sys.stderr, flush=True)


# --- helpers ----------------------------------------------------------------------------------


def resolve_server(args, store: TokenStore) -> str:
    server = getattr(args, "server", None) or store.last_server()
    if not server:
        raise UsageProblem("No server given and none used before: pass --server URL.")
    return normalize_server(server)


def not_logged_in(server: str) -> str:
    return f"Not logged in to {server}; run: {PROG} login --server {server} --key PATH"


def logged_in_client(args, store: TokenStore) -> NativeClient:
    server = resolve_server(args, store)
    stored = store.load(server)
    if stored is None:
        raise NotLoggedIn(not_logged_in(server))
    return NativeClient(server, stored.token, timeout=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    # Shared options are accepted before or after the command; SUPPRESS keeps a subcommand's
    # unset default from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=argparse.SUPPRESS, help="server URL (default: the last one used)")
    common.add_argument(
        "--config-dir", default=argparse.SUPPRESS, help="where tokens are kept ($NATIVE_CLIENT_CONFIG_DIR)"
    )
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="HTTP timeout in seconds")

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, handler, help_text):
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    login = command("login", cmd_login, "log in with an SSH key (file or ssh-agent)")
    login.add_argument("--key", required=True, help="private key, or its .pub to sign through ssh-agent")
    login.add_argument("--device", default=socket.gethostname()[:100], help="device name (default: hostname)")
    command("whoami", cmd_whoami, "show the logged-in user and session")
    logout = command("logout", cmd_logout, "end this session (the stored token is deleted)")
    logout.add_argument("--everywhere", action="store_true", help="end every session of this user")
    command("sessions", cmd_sessions, "list your live sessions (* marks this one)")
    revoke = command("revoke", cmd_revoke, "end one of your sessions by id")
    revoke.add_argument("session_id")
    command("rooms", cmd_rooms, "list your rooms")
    history = command("history", cmd_history, "print a room's messages")
    history.add_argument("room")
    history.add_argument("--limit", type=int)
    history.add_argument("--before", type=int)
    history.add_argument("--after", type=int)
    send = command("send", cmd_send, "post a message")
    send.add_argument("room")
    send.add_argument("text")
    send.add_argument("--to", type=int, action="append", metavar="USER_ID", help="only for these users")
    send.add_argument("--client-id", help="idempotency key (default: a fresh UUID)")
    tail = command("tail", cmd_tail, "print a room's messages as they arrive, reconnecting as needed")
    tail.add_argument("room")
    tail.add_argument("--after", type=int, help="first print every message after this id")
    tail.add_argument("--failover", action="append", metavar="URL", help="another server to fail over to")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.timeout = getattr(args, "timeout", 10.0)
    store = TokenStore(getattr(args, "config_dir", None))
    try:
        return args.handler(args, store)
    except KeyboardInterrupt:
        return 130
    except (NotLoggedIn, UsageProblem, StreamUnauthorized, StreamForbidden) as exc:
        return fail(str(exc), 2)
    except ApiError as exc:
        if exc.auth_needed:
            return fail(f"{exc.detail} Log in again: {PROG} login --key PATH", 2)
        return fail(exc.detail, 1)
    except (StreamStopped, ClientError) as exc:
        return fail(str(exc), 1)


def fail(message: str, code: int) -> int:
    print(f"error: {display(message)}", file=sys.stderr)
    return code
