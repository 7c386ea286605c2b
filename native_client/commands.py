"""What each CLI subcommand does, and how it prints. Parsing and exit codes live in native_client.cli.

Every handler takes the parsed arguments and the token store and returns 0; failures are
exceptions, which cli.main turns into one line on stderr and the exit code of their kind.
"""

import asyncio
import sys

from native_client.api import NativeClient, normalize_server
from native_client.errors import ApiError, NotLoggedIn, UsageProblem
from native_client.store import TokenStore
from native_client.stream import StreamEvent, Tail

PROG = "python -m native_client"


def display(text) -> str:
    """Text from the server, made safe for a terminal: control characters (escape sequences,
    newlines, bidi overrides) are shown escaped, so a message cannot forge lines or repaint."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def message_line(message: dict) -> str:
    sender = (message.get("sender") or {}).get("username", "?")
    return f"[{message.get('id')}] {display(sender)}: {display(message.get('body', ''))}"


def login_command(server: str | None) -> str:
    return f"{PROG} login{f' --server {server}' if server else ''} --key PATH"


# --- session ----------------------------------------------------------------------------------


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


# --- rooms ------------------------------------------------------------------------------------


def cmd_rooms(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        rooms = client.rooms()
    for room in rooms:
        last = room.get("last_message_id")
        print(f"{display(room['slug'])}  {display(room.get('name', ''))}  last id {last if last else '-'}")
    return 0


def cmd_members(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        members = client.members(args.room)
    for member in members:
        print(f"{member['id']}  {display(member['username'])}")
    return 0


def cmd_history(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        page = client.history(args.room, limit=args.limit, before=args.before, after=args.after)
    for message in page["messages"]:
        print(message_line(message))
    return 0


def cmd_send(args, store: TokenStore) -> int:
    with logged_in_client(args, store) as client:
        targets = client.user_ids(args.room, args.to) if args.to else None  # before sending anything
        message = client.send(args.room, args.text, client_id=args.client_id, target_user_ids=targets)
    print(message_line(message))
    return 0


def cmd_tail(args, store: TokenStore) -> int:
    server = resolve_server(args, store)
    stored = store.load(server)
    if stored is None:
        raise NotLoggedIn(not_logged_in(server))
    servers = [server, *(normalize_server(url) for url in args.failover or [])]
    status = TailStatus(args.room, shows_history=args.after is None and args.last > 0)
    tail = Tail(
        stored.token,
        servers,
        args.room,
        args.after,
        last=args.last if args.after is None else 0,
        on_event=status.event,
    )

    async def run():
        async for message in tail.messages():
            status.printed += 1
            print(message_line(message), flush=True)

    asyncio.run(run())
    return 0


class TailStatus:
    """tail's status lines on stderr, so that stdout holds only messages."""

    def __init__(self, room: str, *, shows_history: bool):
        self.room, self.shows_history = room, shows_history
        self.printed = 0
        self.subscriptions = 0

    def event(self, event: StreamEvent) -> None:
        if event.kind == "subscribed":
            self.subscriptions += 1
            where = f"subscribed to {display(self.room)} at {event.url}"
            if self.subscriptions > 1:
                line = f"{where} again; nothing missed"
            elif self.shows_history and not self.printed:
                line = f"{where}: no messages yet; waiting for new ones (Ctrl-C to stop)"
            elif self.printed:
                count = f"{self.printed} earlier message{'' if self.printed == 1 else 's'}"
                line = f"{where}: {count} above; waiting for new ones (Ctrl-C to stop)"
            else:
                line = f"{where}; waiting for new messages (Ctrl-C to stop)"
            print(line, file=sys.stderr, flush=True)
        elif event.kind == "reconnecting" and event.close_code == 4401:
            print(f"{event.detail}; trying again with a new ticket", file=sys.stderr, flush=True)
        elif event.kind == "reconnecting":
            target = f" to {event.url}" if event.url else ""
            print(f"{event.detail}; reconnecting{target} in {event.delay:.1f} s", file=sys.stderr, flush=True)


# --- helpers ----------------------------------------------------------------------------------


def resolve_server(args, store: TokenStore) -> str:
    server = getattr(args, "server", None) or store.last_server()
    if not server:
        raise UsageProblem("No server given and none used before: pass --server URL.")
    args.resolved_server = normalize_server(server)  # for error messages that name it
    return args.resolved_server


def not_logged_in(server: str) -> str:
    return f"Not logged in to {server}; run: {login_command(server)}"


def logged_in_client(args, store: TokenStore) -> NativeClient:
    server = resolve_server(args, store)
    stored = store.load(server)
    if stored is None:
        raise NotLoggedIn(not_logged_in(server))
    return NativeClient(server, stored.token, timeout=args.timeout)
