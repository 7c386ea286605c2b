"""This process's sockets, found by credential and by user.

A change from the log names credentials or users (a revoked token, a deactivated user); the
registry turns it into the sockets it ends with a dictionary lookup, at a cost per change and
never per socket. It also reports each authenticated socket to the live-connection registry
shared by every process (live.presence) and to /metrics.
"""

import weakref

from foundation import metrics
from live import presence


class SocketRegistry:
    def __init__(self):
        self.sockets: weakref.WeakSet = weakref.WeakSet()  # every open socket, authenticated or not
        self.by_credential: dict[str, set] = {}
        self.by_user: dict[int, set] = {}

    def connected(self, socket) -> None:
        self.sockets.add(socket)

    def register(self, socket) -> None:
        """An authenticated socket: reachable by its credential and its user from now on."""
        self.by_credential.setdefault(socket.credential_id, set()).add(socket)
        self.by_user.setdefault(socket.user_id, set()).add(socket)
        presence.opened(socket.presence_entry())
        metrics.socket_opened()

    def unregister(self, socket) -> None:
        if socket.user_id is None:
            return
        for index, key in ((self.by_credential, socket.credential_id), (self.by_user, socket.user_id)):
            members = index.get(key)
            if members is not None:
                members.discard(socket)
                if not members:
                    del index[key]
        presence.closed(socket.connection_id)
        metrics.socket_closed()

    def matching(self, user_ids, credential_ids) -> set:
        """The sockets of any of these users or credentials."""
        found = set()
        for key in user_ids:
            found |= self.by_user.get(key, set())
        for key in credential_ids:
            found |= self.by_credential.get(key, set())
        return found

    def of_user(self, user_id: int) -> list:
        return list(self.by_user.get(user_id, ()))

    def of_credential(self, credential_id: str) -> list:
        return list(self.by_credential.get(credential_id, ()))

    def credentials(self) -> dict[str, tuple]:
        """Credential id -> (kind, user id, issued at) of every credential with a socket here."""
        out = {}
        for cid, sockets in self.by_credential.items():
            socket = next(iter(sockets))
            out[cid] = (socket.credential_kind, socket.user_id, socket.issued_at)
        return out

    def users(self) -> list[int]:
        return list(self.by_user)

    def live_socket_count(self) -> int:
        return sum(len(sockets) for sockets in self.by_credential.values())
